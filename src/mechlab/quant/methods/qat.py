"""Trellis PTQ then quantisation-aware training (``bcjr-qat``: soft BCJR decoding; ``ste-qat``: straight-through
Viterbi), registered for :class:`mechlab.quant.qat.QATConfig`."""

from __future__ import annotations

import dataclasses

from mechlab.errors import ConfigError
from mechlab.quant.methods.trellis import TrellisConfig
from mechlab.quant.qat import QATConfig, qat_
from mechlab.quant.registry import QuantMethod, method_named, register


def from_options(name: str, bits: int, options: dict, train: dict) -> QATConfig:
    """``--method bcjr-qat`` / ``ste-qat``: the trellis flags for the PTQ, ``train`` QATConfig fields."""
    unknown = set(train) - {f.name for f in dataclasses.fields(QATConfig)}
    if unknown:
        raise ConfigError(f"{name} takes no fine-tuning setting {', '.join(sorted(unknown))}")
    trellis = method_named("trellis").from_options("trellis", bits, options, {})
    return QATConfig(trellis=trellis, estimator=name.split("-")[0], **train)


def from_dict(d: dict) -> QATConfig:
    """A stored QATConfig (its trellis config nested as a dict)."""
    return QATConfig(**{**d, "trellis": TrellisConfig(**d.get("trellis", {}))})


def train(model, teacher, config: QATConfig, stream, progress: bool = False) -> dict:
    """QAT of the PTQ-coded ``model`` towards ``teacher``; returns the run's summary."""
    return qat_(model, teacher, config, stream, progress=progress).summary()


register(QuantMethod(config=QATConfig, cli_names=("bcjr-qat", "ste-qat"), from_options=from_options,
                     ptq=lambda config: config.trellis, train=train, from_dict=from_dict))
