"""Models: config dataclasses with presets, and ``build_model`` for every architecture."""

from mechlab.models.config import ARCHS, PRESETS, ModelConfig, preset
from mechlab.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig):
    """The model a config describes: one class for every family in ``ARCHS``, switched by ``cfg.arch``
    (which ``ModelConfig`` has already validated)."""
    return Transformer(cfg)


__all__ = ["ARCHS", "PRESETS", "ModelConfig", "preset", "KVCache", "Transformer", "build_model"]
