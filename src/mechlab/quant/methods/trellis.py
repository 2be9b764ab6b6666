"""Trellis-coded quantisation (QTIP, Tseng et al. 2024, arXiv:2406.11235; docs/quantization.md), stored as
:class:`TrellisLinear`: the config, the transform (:func:`mechlab.quant.qtip.trellis_quantize`) and the
registration."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mechlab.errors import ConfigError
from mechlab.quant.linear import TrellisLinear
from mechlab.quant.qtip import trellis_quantize
from mechlab.quant.registry import QuantMethod, register, reject_training_settings

CODES = ("lut", "1mad", "3inst", "hyb")


@dataclass(frozen=True)
class TrellisConfig:
    """Trellis-coded quantisation (QTIP; arXiv:2406.11235 §1–4) at exactly k bits per weight.

    L state bits, k bits per weight, V weights per trellis step, a state→value ``code``, the random Hadamard
    transform (``rht``), Hessian-aware BlockLDLQ rounding (``ldlq``, needs calibration Hessians) and the
    tail-biting two-pass encode (``tail_biting``; without it the start state's L−kV bits are stored too).
    ``real_signs`` stores the RHT sign vectors as real fp16 per-row and per-column scales, fitted to the layer's
    output error after coding (and trainable end to end, :func:`mechlab.quant.finetune.finetune_`), at 16·(m+n)
    bits per m×n matrix instead of m+n. ``embedding``: the token embedding and the LM head are coded too, with
    the same L, V and code and ``embedding_bits`` (default k) bits per weight (:func:`table`)."""

    L: int = 16
    """State bits (8-16; encode time grows as 2^L)."""
    k: int = 2
    """Bits per weight (2, 3, 4)."""
    V: int = 1
    """Weights per trellis step (1 or 2)."""
    code: str = "1mad"
    """State-to-value code: lut, 1mad, 3inst (V=1) or hyb (V=2)."""
    rht: bool = True
    """Random Hadamard transform."""
    ldlq: bool = True
    """Hessian-aware BlockLDLQ (needs calibration data)."""
    tail_biting: bool = True
    """Circular bitstream, exactly k bits per weight."""
    damp: float = 0.01
    """Hessian damping of BlockLDLQ, as a fraction of the mean of its diagonal."""
    seed: int = 0
    """Seed of the RHT sign vectors and the pure-LUT code."""
    real_signs: bool = False
    """RHT sign vectors as fp16 row/column scales fitted to each layer's output error (always on for trellis-ft)."""
    embedding: bool = False
    """Code the token embedding and the LM head too (tied: one code serves both; PTQ only; mechlab.quant.embedding)."""
    embedding_bits: int | None = None
    """With embedding: bits per weight of the embedding / head table (None: the same as the layers)."""

    method = "trellis"
    tile: int = 16
    """Weights are coded in tile×tile tiles, one trellis sequence of tile² weights each (the stored format's 16)."""

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ConfigError(f"trellis: code must be one of {', '.join(CODES)} (got {self.code!r})")
        if self.V not in (1, 2):
            raise ConfigError(f"trellis: V must be 1 or 2 (got {self.V})")
        if self.code in ("1mad", "3inst") and self.V != 1:
            raise ConfigError(f"trellis: the {self.code} code is defined for V=1")
        if self.code == "hyb" and self.V != 2:
            raise ConfigError("trellis: the hyb code is defined for V=2")
        if not 1 <= self.k <= 8 or not self.k * self.V < self.L <= 24:
            raise ConfigError(f"trellis: need 1 <= k <= 8 and k·V < L <= 24 (got L={self.L}, k={self.k}, V={self.V})")
        if self.embedding_bits is not None and not self.embedding:
            raise ConfigError("trellis: embedding_bits codes the embedding / LM head, which needs embedding=True "
                              "(--embedding); without it the table would stay in float")
        if self.embedding_bits is not None and not (1 <= self.embedding_bits <= 8
                                                    and self.embedding_bits * self.V < self.L):
            raise ConfigError(f"trellis: embedding_bits must be in 1..8 with embedding_bits·V < L (got "
                              f"{self.embedding_bits}, L={self.L}, V={self.V})")
        if self.real_signs and not self.rht:
            raise ConfigError("trellis: real_signs makes the RHT sign vectors real scales, so it needs rht")
        if (self.tile * self.tile) % self.V:
            raise ConfigError("trellis: V must divide the tile size")

    @property
    def needs_hessian(self) -> bool:
        return self.ldlq

    @property
    def seq_len(self) -> int:
        return self.tile * self.tile


def unsupported(linear, config: TrellisConfig) -> str | None:
    """Layers that are not made of whole tiles stay in float."""
    if linear.in_features % config.tile or linear.out_features % config.tile:
        return f"{linear.out_features}×{linear.in_features} is not made of {config.tile}×{config.tile} tiles"
    return None


def transform(layer: TrellisLinear, w, h, config: TrellisConfig, index: int):
    """Code w (out, in) into ``layer`` (the RHT signs seeded by the config's seed and the layer's index)."""
    code, w_hat = trellis_quantize(w, config, h, seed=config.seed * 100003 + index)
    layer.set(code)
    return w_hat


def table(config: TrellisConfig) -> tuple[TrellisConfig, bool, bool]:
    """An embedding table is a TrellisLinear without its own RHT (whose output side would mix rows, so a lookup
    would decode whole Hadamard blocks), the input side rotated outside it when ``rht``, one fp16 scale per row."""
    inner = dataclasses.replace(config, rht=False, real_signs=False, embedding=False, embedding_bits=None,
                                k=config.embedding_bits or config.k)
    return inner, config.rht, True


def head(config):
    """An untied LM head is a Linear layer of this method at the table's bits."""
    return dataclasses.replace(config, embedding=False, embedding_bits=None, k=config.embedding_bits or config.k)


def from_options(name: str, bits: int, options: dict, train: dict) -> TrellisConfig:
    """``--method trellis``: k = bits, L, V, code, rht, ldlq, tail_biting, real_signs."""
    reject_training_settings(name, train)
    keys = ("L", "V", "code", "rht", "ldlq", "tail_biting", "real_signs", "embedding", "embedding_bits")
    return TrellisConfig(k=bits, **{k: options[k] for k in keys if k in options})


register(QuantMethod(config=TrellisConfig, cli_names=("trellis",), layer=TrellisLinear, transform=transform,
                     unsupported=unsupported, from_options=from_options, table=table, head=head))
