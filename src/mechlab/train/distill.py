"""Distillation through the one training loop: KL(teacher ‖ student) over the full vocabulary on random token
windows, a subset of the student's parameters trained (quantisation-aware training and fine-tuning of quantised
models; BCJR-QAT, arXiv 2605.10655; QTIP, arXiv 2406.11235).

A distillation is a :class:`mechlab.train.trainer.Task`: the student is the model, the loss is
:func:`kl_to_teacher`, the batches are :func:`mechlab.data.batches.window_batches` (the trainer's own windows, a
function of (seed, step)), the trained parameters are its parameter groups. :func:`distill_config` is the
:class:`TrainConfig` of the loop the quantisation code used before it ran through the trainer: Adam (AdamW with no
weight decay; β = (0.9, 0.999), ε = 1e-8), no warmup, a constant rate or a cosine from lr to 0 after the last step
(:func:`lr_factor`), no gradient clipping, both models in eval mode. The caller prepares the student (swaps the
layers it trains), calls :func:`distill`, and converts the result (e.g. hardens the codes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.data.batches import window_batches
from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError
from mechlab.train.trainer import Task, TrainConfig, lr_at, train

SCHEDULES = ("constant", "cosine")


def kl_teacher_student(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) over the full vocabulary, averaged over positions (nats); logits (..., vocab), computed
    in float32."""
    t = F.log_softmax(teacher_logits.float(), -1)
    s = F.log_softmax(student_logits.float(), -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def kl_to_teacher(teacher: nn.Module) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``loss(student, x, y)`` of a distillation :class:`Task`: KL(teacher ‖ student) of the two models'
    logits on the token ids ``x`` (batch, seq) — the targets ``y`` are unused; the teacher runs without gradient.
    Both models' ``forward(x)`` return ``(logits, ...)``."""
    def loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_logits, _ = teacher(x)
        s_logits, _ = student(x)
        return kl_teacher_student(t_logits, s_logits)

    return loss


def check_distill_settings(what: str, steps: int, lr: float, batch_size: int, seq_len: int,
                           schedule: str = "constant") -> None:
    """The settings every :func:`distill` run needs (a ConfigError naming ``what`` otherwise)."""
    if steps < 0 or not lr > 0 or batch_size < 1 or seq_len < 2:
        raise ConfigError(f"{what}: need steps >= 0, lr > 0, batch_size >= 1 and seq_len >= 2")
    if schedule not in SCHEDULES:
        raise ConfigError(f"{what}: unknown learning-rate schedule {schedule!r}; choose {' or '.join(SCHEDULES)}")


def distill_config(*, steps: int, lr: float, batch_size: int, seq_len: int, seed: int = 0,
                   schedule: str = "constant") -> TrainConfig:
    """The :class:`TrainConfig` of a distillation (see the module docstring): ``steps`` Adam steps at peak rate
    ``lr`` on ``batch_size`` windows of ``seq_len`` tokens, ``schedule`` constant or cosine to 0, every step logged,
    no files written."""
    check_distill_settings("distillation", steps, lr, batch_size, seq_len, schedule)
    n = max(steps, 1)
    return TrainConfig(steps=n, lr=lr, warmup_steps=0, min_lr_ratio=1.0 if schedule == "constant" else 0.0,
                       weight_decay=0.0, optimizer="adamw", beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=0.0,
                       batch_size=batch_size, seq_len=seq_len, seed=seed, log_every=1, eval_every=n, save_every=n,
                       out_dir=None)


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The multiplier of the base learning rate at ``step`` of ``steps``: 1 throughout (``constant``), or a cosine
    from 1 at the first step down to 0 after the last (``cosine``); :func:`mechlab.train.trainer.lr_at` of
    :func:`distill_config` at peak 1."""
    cfg = TrainConfig(steps=steps, warmup_steps=0, min_lr_ratio=1.0 if schedule == "constant" else 0.0)
    return lr_at(step, cfg, 1.0)


LOG_KEYS = ("step", "loss", "lr", "grad_norm", "rows_per_s")


def distill(model: nn.Module, teacher: nn.Module, params: list, stream: TokenStream, *, steps: int,
            lr: float, batch_size: int, seq_len: int, seed: int = 0, schedule: str = "constant",
            desc: str = "distill", before_step=None, after_step=None, progress: bool = True) -> list[dict]:
    """Train ``params`` of ``model`` against KL(teacher ‖ student) on random windows of ``stream`` through the one
    training loop (:func:`mechlab.train.trainer.train` with :func:`distill_config`; every other parameter of
    ``model`` frozen meanwhile); returns one record per step: {"step" (0-based), what ``before_step(step)``
    returned, "kl" (nats, before the step)}. ``params`` is a list of parameters, or of parameter groups (dicts
    with "params" and optionally their own peak "lr"). Both models run in eval mode (no dropout); the caller's
    torch random state is left as it was. Raises ConfigError for bad settings, TrainingDiverged when the KL
    becomes NaN or infinite."""
    cfg = distill_config(steps=steps, lr=lr, batch_size=batch_size, seq_len=seq_len, seed=seed, schedule=schedule)
    if steps == 0:
        return []
    groups = params if params and isinstance(params[0], dict) else [{"params": list(params)}]
    device = groups[0]["params"][0].device
    teacher.eval()
    records: list[dict] = []

    def on_log(rec: dict) -> None:
        if "loss" in rec:
            extra = {k: v for k, v in rec.items() if k not in LOG_KEYS}
            records.append({"step": rec["step"] - 1, **extra, "kl": rec["loss"]})

    task = Task(build_model=lambda: model, batch=window_batches(stream.ids, seq_len), loss=kl_to_teacher(teacher),
                param_groups=lambda _m: groups, before_step=before_step, after_step=after_step, train_mode=False,
                device=device, desc=desc)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        train(cfg, progress=progress, on_log=on_log, task=task)
    return records


__all__ = ["SCHEDULES", "check_distill_settings", "distill", "distill_config", "kl_teacher_student", "kl_to_teacher",
           "lr_factor"]
