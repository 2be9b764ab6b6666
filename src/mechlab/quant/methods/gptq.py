"""GPTQ (Frantar et al. 2023, arXiv:2210.17323): Hessian-aware rounding onto the RTN format (:class:`IntLinear`)."""

from __future__ import annotations

from dataclasses import dataclass

from mechlab.errors import ConfigError
from mechlab.quant.linear import IntLinear
from mechlab.quant.registry import QuantMethod, register, reject_training_settings
from mechlab.quant.scalar import check_format, format_unsupported, gptq_quantize
from mechlab.quant.scalar import int_head as head
from mechlab.quant.scalar import int_table as table


@dataclass(frozen=True)
class GPTQConfig:
    """GPTQ (Frantar et al.): columns one at a time, the error of each fed back through the inverse Hessian;
    asymmetric min/max groups along the input dimension, Hessian damping ``damp`` × mean diag. ``act_order``
    visits columns by decreasing Hessian diagonal, with each group's grid fixed from the original weights first
    (static groups: the stored format is the same)."""

    bits: int = 4
    """Bits per weight (1-8)."""
    group_size: int = 128
    """Input columns per scale."""
    damp: float = 0.01
    """Hessian damping, as a fraction of the mean of its diagonal."""
    block_size: int = 128
    """Columns updated lazily together (in column order: when one group spans the whole row)."""
    act_order: bool = False
    """Columns by decreasing Hessian diagonal (static groups)."""

    embedding: bool = False
    """Code the token embedding and the LM head too (tied: one code serves both; PTQ only; mechlab.quant.embedding)."""
    embedding_bits: int | None = None
    """With embedding: bits per weight of the embedding / head table (None: the same as the layers)."""
    format: str | None = None
    """A llama.cpp block type (q4_0, q4_1, q8_0): blocks of 32 on llama.cpp's own grid, so `mechlab export gguf --type` of the same type writes these codes unchanged (fixes bits and group_size; None: mechlab's own grid)."""

    method = "gptq"
    needs_hessian = True

    def __post_init__(self) -> None:
        check_format(self, "GPTQ")
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"GPTQ: bits must be in 1..8 (got {self.bits})")
        if self.embedding_bits is not None and not self.embedding:
            raise ConfigError("GPTQ: embedding_bits codes the embedding / LM head, which needs embedding=True "
                              "(--embedding); without it the table would stay in float")
        if self.embedding_bits is not None and not 1 <= self.embedding_bits <= 8:
            raise ConfigError(f"GPTQ: embedding_bits must be in 1..8 (got {self.embedding_bits})")
        if self.group_size < 1 or self.block_size < 1 or self.damp < 0:
            raise ConfigError("GPTQ: group_size and block_size must be >= 1 and damp >= 0")


def transform(layer: IntLinear, w, h, config: GPTQConfig, index: int):
    """Fill ``layer`` with the GPTQ codes of w (out, in) under the proxy Hessian h; returns the decoded weights."""
    return layer.set(*gptq_quantize(w, h, config)).weight()


def from_options(name: str, bits: int, options: dict, train: dict) -> GPTQConfig:
    """``--method gptq``: bits, group_size, embedding, embedding_bits, act_order, format."""
    reject_training_settings(name, train)
    return GPTQConfig(bits=bits, group_size=options.get("group_size", 128), act_order=options.get("act_order", False),
                      embedding=options.get("embedding", False),
                     embedding_bits=options.get("embedding_bits"), format=options.get("format"))


register(QuantMethod(config=GPTQConfig, cli_names=("gptq",), layer=IntLinear, transform=transform,
                     from_options=from_options, table=table, head=head, unsupported=format_unsupported))
