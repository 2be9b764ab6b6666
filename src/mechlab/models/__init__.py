"""Models: config dataclasses with presets, and ``build_model`` for every architecture."""

from mechlab.errors import ConfigError
from mechlab.models.config import ARCHS, PRESETS, ModelConfig, preset
from mechlab.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig):
    """The model a config describes (``cfg.arch`` picks the family)."""
    if cfg.arch in ARCHS:  # one class, switched by the config
        return Transformer(cfg)
    raise ConfigError(f"unknown architecture {cfg.arch!r}")


__all__ = ["PRESETS", "ModelConfig", "preset", "KVCache", "Transformer", "build_model"]
