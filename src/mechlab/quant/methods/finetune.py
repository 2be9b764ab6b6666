"""Trellis PTQ with real sign vectors, then end-to-end fine-tuning with the codes frozen (``trellis-ft``),
registered for :class:`mechlab.quant.finetune.FinetuneConfig`."""

from __future__ import annotations

import dataclasses

from mechlab.errors import ConfigError
from mechlab.quant.finetune import FinetuneConfig, finetune_
from mechlab.quant.methods.trellis import TrellisConfig
from mechlab.quant.registry import QuantMethod, method_named, register


def from_options(name: str, bits: int, options: dict, train: dict) -> FinetuneConfig:
    """``--method trellis-ft``: the trellis flags for the PTQ (real_signs always on), ``train`` FinetuneConfig
    fields."""
    unknown = set(train) - {f.name for f in dataclasses.fields(FinetuneConfig)}
    if unknown:
        raise ConfigError(f"{name} takes no QAT setting {', '.join(sorted(unknown))}")
    trellis = method_named("trellis").from_options("trellis", bits, {**options, "real_signs": True}, {})
    return FinetuneConfig(trellis=trellis, **train)


def from_dict(d: dict) -> FinetuneConfig:
    """A stored FinetuneConfig (its trellis config nested as a dict)."""
    return FinetuneConfig(**{**d, "trellis": TrellisConfig(**d.get("trellis", {"real_signs": True}))})


def train(model, teacher, config: FinetuneConfig, stream, progress: bool = False) -> dict:
    """Fine-tune the PTQ-coded ``model`` towards ``teacher``; returns the run's summary."""
    return finetune_(model, teacher, config, stream, progress=progress)


register(QuantMethod(config=FinetuneConfig, cli_names=("trellis-ft",), from_options=from_options,
                     ptq=lambda config: config.trellis, train=train, from_dict=from_dict))
