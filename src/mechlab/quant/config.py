"""Quantisation configs: small frozen dataclasses, one per method (the torchao ``quantize_`` shape)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mechlab.errors import ConfigError

CODES = ("lut", "1mad", "3inst", "hyb")


@dataclass(frozen=True)
class RTNConfig:
    """Round-to-nearest on a per-group grid along the input dimension."""

    bits: int = 4
    group_size: int = 128
    symmetric: bool = False  # False: min/max grid with a zero point; True: ±absmax grid

    method = "rtn"
    needs_hessian = False

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"RTN: bits must be in 1..8 (got {self.bits})")
        if self.group_size < 1:
            raise ConfigError(f"RTN: group_size must be >= 1 (got {self.group_size})")


@dataclass(frozen=True)
class GPTQConfig:
    """GPTQ (Frantar et al.): columns one at a time, the error of each fed back through the inverse Hessian;
    asymmetric min/max groups along the input dimension, Hessian damping ``damp`` × mean diag. ``act_order``
    visits columns by decreasing Hessian diagonal, with each group's grid fixed from the original weights first
    (static groups: the stored format is the same)."""

    bits: int = 4
    group_size: int = 128
    damp: float = 0.01
    block_size: int = 128  # columns updated lazily together (in column order: when one group spans the whole row)
    act_order: bool = False

    method = "gptq"
    needs_hessian = True

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"GPTQ: bits must be in 1..8 (got {self.bits})")
        if self.group_size < 1 or self.block_size < 1 or self.damp < 0:
            raise ConfigError("GPTQ: group_size and block_size must be >= 1 and damp >= 0")


@dataclass(frozen=True)
class TrellisConfig:
    """Trellis-coded quantisation (QTIP, arXiv 2406.11235) at exactly k bits per weight.

    L state bits, k bits per weight, V weights per trellis step, a state→value ``code``, the random Hadamard
    transform (``rht``), Hessian-aware BlockLDLQ rounding (``ldlq``, needs calibration Hessians) and the
    tail-biting two-pass encode (``tail_biting``; without it the start state's L−kV bits are stored too).
    ``real_signs`` stores the RHT sign vectors as real fp16 per-row and per-column scales, fitted to the layer's
    output error after coding (and trainable end to end, :func:`mechlab.quant.finetune.finetune_`), at 16·(m+n)
    bits per m×n matrix instead of m+n."""

    L: int = 16
    k: int = 2
    V: int = 1
    code: str = "1mad"
    rht: bool = True
    ldlq: bool = True
    tail_biting: bool = True
    damp: float = 0.01
    seed: int = 0  # sign vectors of the RHT and the pure-LUT code
    real_signs: bool = False

    method = "trellis"
    tile: int = 16  # weights are coded in 16×16 tiles, one trellis sequence of 256 weights each

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


def config_to_dict(cfg) -> dict[str, Any]:
    return {"method": cfg.method, **dataclasses.asdict(cfg)}


def config_from_dict(d: dict[str, Any]):
    d = dict(d)
    method = d.pop("method", None)
    cls = {"rtn": RTNConfig, "gptq": GPTQConfig, "trellis": TrellisConfig}.get(method)
    if cls is None:
        raise ConfigError(f"unknown quantisation method {method!r}")
    return cls(**d)
