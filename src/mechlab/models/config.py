"""Model configuration: one frozen dataclass and named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from mechlab.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU, no biases.

    ``n_kv_heads`` defaults to ``n_heads`` (plain multi-head attention); ``d_ff`` defaults to 8/3·d_model
    rounded up to a multiple of 32.
    """

    vocab_size: int = 259
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    rope_base: float = 10000.0
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    init_std: float = 0.02
    arch: str = "transformer"

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 32 * -(-(8 * self.d_model // 3) // 32))
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"model config: head_dim={self.head_dim} must be even for RoPE")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"model config: n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if not self.rope_base > 1 or not self.norm_eps > 0 or not self.init_std > 0:
            raise ConfigError("model config: rope_base must be > 1, norm_eps and init_std > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"model config: unknown keys {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


PRESETS: dict[str, dict[str, Any]] = {
    # Tiny models that train on 2 CPU cores in minutes (vocabulary set by the tokenizer at train time).
    "nano": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=192, max_seq_len=512),
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=384, max_seq_len=1024),
    "small": dict(d_model=192, n_layers=6, n_heads=6, n_kv_heads=2, d_ff=512, max_seq_len=1024),
    # The shape of SmolLM2-135M (for imported checkpoints).
    "smollm2-135m": dict(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536,
                         rope_base=100000.0, max_seq_len=8192, tie_embeddings=True),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, with optional field overrides (e.g. ``vocab_size``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
