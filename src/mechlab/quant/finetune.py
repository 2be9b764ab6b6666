"""End-to-end fine-tuning of a trellis-quantised model's continuous parts, codes frozen (QTIP's last stage;
QTIP, arXiv 2406.11235).

After PTQ with ``real_signs`` (whose layer-wise stage already fitted each layer's sign vectors to its own output
error), every trellis layer is

    y = s_out ⊙ (W₀ (s_in ⊙ x)),   W₀ = H_mᵀ W̃ H_n, W̃ the decoded codes times the global scale,

and the sign vectors s_out, s_in (real per-row and per-column scales) and the RMSNorm gains are trained together
against KL(teacher ‖ student) on the full vocabulary (teacher: the unquantised model) with
:func:`mechlab.train.distill.distill`, the one training loop QAT uses: prepare (:func:`prepare_finetune`) -> the
loop -> convert (:func:`convert_finetune`). Optionally (``embedding_lr`` > 0) the token embedding trains too, at its own learning rate: it is
stored in float like the norms (tied, it is also the LM head), so this spends no bits either. The codes never change, so the stored bits per weight do not either; W₀ is decoded once, and a
step costs one float forward and backward of the model (no weight gradients). At the end the trained vectors are
written back into the layers in fp16, the precision they are stored in.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError
from mechlab.quant import rht as rht_ops
from mechlab.quant.api import set_module
from mechlab.quant.config import TrellisConfig
from mechlab.quant.linear import TrellisLinear
from mechlab.train.distill import check_distill_settings, distill


@dataclass(frozen=True)
class FinetuneConfig:
    """Trellis PTQ with real sign vectors (``trellis``; its layer-wise fit included), then ``steps`` Adam steps at
    ``lr`` (``schedule``: constant or cosine to 0) on windows of ``batch_size`` × ``seq_len`` tokens; ``norms``:
    train the RMSNorm gains too; ``embedding_lr`` > 0: train the token embeddings too, at that rate."""

    trellis: TrellisConfig = TrellisConfig(real_signs=True)
    """The trellis PTQ the fine-tuning starts from (real_signs on)."""
    steps: int = 100
    """Optimiser steps."""
    lr: float = 1e-3
    """Adam learning rate of the sign vectors and norms."""
    batch_size: int = 4
    """Sequences per step."""
    seq_len: int = 512
    """Tokens per sequence."""
    norms: bool = True
    """Train the RMSNorm gains too."""
    schedule: str = "constant"
    """Learning rate constant or cosine to 0."""
    embedding_lr: float = 0.0
    """Also train the float token embedding at this rate (0: frozen)."""
    seed: int = 0
    """Seed of the training windows."""

    method = "trellis-ft"

    def __post_init__(self) -> None:
        if not self.trellis.real_signs:
            raise ConfigError("fine-tuning trains the real sign vectors: the trellis config needs real_signs=True")
        check_distill_settings("fine-tuning", self.steps, self.lr, self.batch_size, self.seq_len, self.schedule)
        if not self.embedding_lr >= 0:
            raise ConfigError(f"fine-tuning: embedding_lr must be >= 0 (0: frozen), got {self.embedding_lr}")

    @property
    def needs_hessian(self) -> bool:
        return self.trellis.needs_hessian


class ScaledCodeLinear(nn.Module):
    """A ``real_signs`` trellis layer while fine-tuning: W₀ decoded once (a constant), the sign vectors trainable."""

    def __init__(self, layer: TrellisLinear):
        super().__init__()
        s_out, s_in = layer.signs()
        ones_out, ones_in = torch.ones_like(s_out), torch.ones_like(s_in)
        self.register_buffer("w0", rht_ops.inverse_rht_weight(layer.rotated_weight(), ones_out, ones_in),
                             persistent=False)
        self.s_out, self.s_in = nn.Parameter(s_out.clone()), nn.Parameter(s_in.clone())
        self.bias = None if layer.bias is None else layer.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x * self.s_in, self.w0) * self.s_out
        return y if self.bias is None else y + self.bias


def norm_gains(model: nn.Module) -> list[nn.Parameter]:
    """The gain vectors of every normalisation layer (modules whose class name ends in "Norm")."""
    return [p for m in model.modules() if type(m).__name__.endswith("Norm") for p in m.parameters(recurse=False)]


def embeddings(model: nn.Module) -> list[nn.Parameter]:
    """The weight of every token embedding (each once; a tied LM head shares it)."""
    return list({id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}.values())


def prepare_finetune(model: nn.Module) -> tuple[dict[str, TrellisLinear], dict[str, ScaledCodeLinear]]:
    """Replace every ``real_signs`` trellis layer of ``model`` by a :class:`ScaledCodeLinear` in place; returns the
    original layers and their replacements by qualified name. Raises ConfigError when there is none."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, TrellisLinear) and m.config.real_signs}
    if not layers:
        raise ConfigError("fine-tuning needs trellis layers quantised with real_signs=True (sign vectors as scales)")
    scaled = {n: ScaledCodeLinear(m) for n, m in layers.items()}
    for name, layer in scaled.items():
        set_module(model, name, layer)
    return layers, scaled


def convert_finetune(model: nn.Module, layers: dict[str, TrellisLinear], scaled: dict[str, ScaledCodeLinear]) -> None:
    """Write the trained sign vectors back into the trellis layers (fp16, their stored precision) and put those
    layers back in place of the :func:`prepare_finetune` replacements."""
    for name, layer in scaled.items():
        layers[name].set_signs(layer.s_out, layer.s_in)
        set_module(model, name, layers[name])


def finetune_(model: nn.Module, teacher: nn.Module, config: FinetuneConfig, stream: TokenStream,
              progress: bool = True) -> dict:
    """Fine-tune ``model``'s ``real_signs`` trellis layers (and norm gains) against ``teacher`` in place
    (:func:`prepare_finetune` -> the one training loop -> :func:`convert_finetune`); returns a JSON-able summary
    (the KL curve, the parameters trained, seconds)."""
    layers, scaled = prepare_finetune(model)
    params = [p for layer in scaled.values() for p in (layer.s_out, layer.s_in)]
    gains = norm_gains(model) if config.norms else []
    embed = embeddings(model) if config.embedding_lr > 0 else []
    groups = [{"params": params + gains}] + ([{"params": embed, "lr": config.embedding_lr}] if embed else [])
    t0 = time.perf_counter()
    try:
        steps = distill(model, teacher, groups, stream, steps=config.steps, lr=config.lr,
                        batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed,
                        schedule=config.schedule, desc="fine-tune", progress=progress)
    finally:
        convert_finetune(model, layers, scaled)
    return {"method": config.method, **asdict(config), "layers": len(layers),
            "parameters": sum(p.numel() for p in params + gains + embed), "steps": len(steps),
            "kl_first": steps[0]["kl"] if steps else None, "kl_last": steps[-1]["kl"] if steps else None,
            "kl_curve": [s["kl"] for s in steps], "seconds": time.perf_counter() - t0}


__all__ = ["FinetuneConfig", "ScaledCodeLinear", "convert_finetune", "embeddings", "finetune_", "norm_gains",
           "prepare_finetune"]
