"""Round-to-nearest (RTN): per-group integer grids along the input dimension, stored as :class:`IntLinear`."""

from __future__ import annotations

from dataclasses import dataclass

from mechlab.errors import ConfigError
from mechlab.quant.linear import IntLinear
from mechlab.quant.registry import QuantMethod, register, reject_training_settings
from mechlab.quant.scalar import check_format, format_unsupported, rtn_quantize
from mechlab.quant.scalar import int_head as head
from mechlab.quant.scalar import int_table as table


@dataclass(frozen=True)
class RTNConfig:
    """Round-to-nearest on a per-group grid along the input dimension."""

    bits: int = 4
    """Bits per weight (1-8)."""
    group_size: int = 128
    """Input columns per scale."""
    symmetric: bool = False
    """±absmax grid instead of the min/max grid with a zero point."""

    embedding: bool = False
    """Code the token embedding and the LM head too (tied: one code serves both; PTQ only; mechlab.quant.embedding)."""
    embedding_bits: int | None = None
    """With embedding: bits per weight of the embedding / head table (None: the same as the layers)."""
    format: str | None = None
    """A llama.cpp block type (q4_0, q4_1, q8_0): blocks of 32 on llama.cpp's own grid, so `mechlab export gguf --type` of the same type writes these codes unchanged (fixes bits and group_size; None: mechlab's own grid)."""

    method = "rtn"
    needs_hessian = False

    def __post_init__(self) -> None:
        check_format(self, "RTN")
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"RTN: bits must be in 1..8 (got {self.bits})")
        if self.embedding_bits is not None and not self.embedding:
            raise ConfigError("RTN: embedding_bits codes the embedding / LM head, which needs embedding=True "
                              "(--embedding); without it the table would stay in float")
        if self.embedding_bits is not None and not 1 <= self.embedding_bits <= 8:
            raise ConfigError(f"RTN: embedding_bits must be in 1..8 (got {self.embedding_bits})")
        if self.group_size < 1:
            raise ConfigError(f"RTN: group_size must be >= 1 (got {self.group_size})")


def transform(layer: IntLinear, w, h, config: RTNConfig, index: int):
    """Fill ``layer`` with the RTN codes of w (out, in); returns the decoded weights."""
    return layer.set(*rtn_quantize(w, config)).weight()


def from_options(name: str, bits: int, options: dict, train: dict) -> RTNConfig:
    """``--method rtn``: bits, group_size, embedding, embedding_bits, symmetric, format."""
    reject_training_settings(name, train)
    return RTNConfig(bits=bits, group_size=options.get("group_size", 128), symmetric=options.get("symmetric", False),
                     embedding=options.get("embedding", False),
                     embedding_bits=options.get("embedding_bits"), format=options.get("format"))


register(QuantMethod(config=RTNConfig, cli_names=("rtn",), layer=IntLinear, transform=transform,
                     from_options=from_options, table=table, head=head, unsupported=format_unsupported))
