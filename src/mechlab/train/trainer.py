"""The one training loop of mechlab.

AdamW (weight decay only on tensors of two or more dimensions; or plain gradient descent, ``optimizer="sgd"``),
linear warmup then cosine decay, gradient clipping, gradient accumulation, optional bf16 autocast, periodic
evaluation, a progress bar, a JSON-lines metrics log and atomic checkpoints that resume exactly. Data parallelism
comes from ``torch.distributed``: launch the same command with ``torchrun --nproc_per_node N`` (gloo on CPU, nccl
on GPU).

Determinism: the batch of optimiser step ``s`` is drawn from ``numpy.random.default_rng([seed, s])`` as
``batch_size`` window offsets; process ``r`` of ``W`` takes micro-batch ``a`` as the slice
``(a·W + r)·micro`` of them. Data order therefore depends only on (seed, step), so a resumed run and a run on any
number of processes see the same global batches.

Other tasks (not next-token prediction: a denoiser on points of a manifold, a regression, a distillation) run
through the same loop by passing a :class:`Task`: it builds the model (after ``torch.manual_seed(seed)``), gives the
batch of every optimiser step as a function of (seed, step) and, optionally, its own loss (e.g. KL to a teacher,
:mod:`mechlab.train.distill`), the parameter groups it trains (every other parameter frozen meanwhile; a group may
carry its own peak learning rate), hooks before and after every optimiser step, and an evaluation at
``eval_every``. The loop, optimiser, schedule, clipping, accumulation, data parallelism, observables and the metrics
log are the same; such a run writes no checkpoints (a task's model is any ``nn.Module``) and so cannot resume: the
trained model is returned, unless the task carries a tokenizer: the synthetic retrieval tasks are data sources
(``data="retrieval:needle"``, ``"retrieval:copy,payload=4"``; :mod:`mechlab.data.retrieval`) whose Task carries a
tokenizer and a model of the family, so such a run writes normal checkpoints and resumes like a language-model run.
A task run with ``out_dir = None`` writes no files at all (its log goes to ``on_log``).

Quantisation-aware training and fine-tuning of quantised models follow prepare -> this loop -> convert
(:func:`mechlab.quant.qat.qat_`, :func:`mechlab.quant.finetune.finetune_`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mechlab.checkpoint import load_checkpoint, load_trainer_state, save_checkpoint, set_latest
from mechlab.data.batches import batch_offsets, get_batch
from mechlab.data.tokens import TokenStream, build_tokenizer, token_stream
from mechlab.errors import ConfigError, TrainingDiverged
from mechlab.eval.lm import EvalResult, evaluate_lm
from mechlab.mechanics import (
    adam_threshold,
    hidden_state_dimension,
    layer_statistics,
    loop_observables,
    preconditioned_sharpness,
    snapshot_matrices,
    top_hessian_eigenvalue,
)
from mechlab.models import build_model, preset
from mechlab.utils import write_json_atomic

log = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.json"
RESUMES = "resumes.jsonl"  # one record per resume that changed the run: {"step", "changes": {field: [old, new]}}
METRICS = "metrics.jsonl"
MAX_SEQ_LEN = 65536  # the longest training context accepted: a (seq_len x seq_len) attention map per head beyond it


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``train_config.json`` in the run directory)."""

    model: str = "tiny"
    """Model preset (see `mechlab presets`). Its vocab_size becomes the tokenizer's and its max_seq_len max(seq_len,
    64); the run logs each value it changes."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """ModelConfig fields changed from the preset's, e.g. d_model=128 (on the command line: repeat KEY=VALUE; with
    --config the given keys are merged key by key over the file's model_overrides). vocab_size is the tokenizer's:
    an override that differs is refused."""
    data: str = "stdlib"
    """Corpus name (see `mechlab corpora`), a path to .txt files, or a synthetic task generated on the fly:
    'retrieval:needle' or 'retrieval:copy', options after commas (min_gap, max_gap, far_gap, far_fraction, payload,
    probes; e.g. 'retrieval:copy,payload=4'): rows of seq_len tokens, its own 48-symbol tokenizer (recorded as tokenizer
    'retrieval'; another tokenizer is refused)."""
    tokenizer: str = "byte"
    """'byte', 'bpe:VOCAB' (trained on the corpus) or a tokenizer.json."""
    data_dir: str | None = None
    """Local directory holding the corpus files (else MECHLAB_DATA, else download to the cache)."""
    seq_len: int = 256
    """Training context in tokens (at most 65536; the model's max_seq_len grows to it unless an override sets one)."""
    batch_size: int = 16
    """Sequences per optimiser step (all processes, all micro-steps)."""
    micro_batch_size: int | None = None
    """Sequences per process and micro-step (gradient accumulation; default: batch_size / world size)."""
    steps: int = 1000
    """Optimiser steps."""
    lr: float = 3e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Learning rate at the last step, as a fraction of lr (the cosine decay's floor)."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    weight_decay: float = 0.1
    """AdamW weight decay (>=2-D tensors only)."""
    optimizer: str = "adamw"
    """'adamw' or 'sgd' (plain gradient descent, no momentum; weight decay as in AdamW, decoupled)."""
    beta1: float = 0.9
    """AdamW's beta1."""
    beta2: float = 0.95
    """AdamW's beta2."""
    eps: float = 1e-8
    """AdamW epsilon (the Hyperloop paper's recipe uses 1e-6)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    dtype: str = "float32"
    """float32 or bfloat16 (autocast)."""
    eval_every: int = 200
    """Validate every N steps."""
    eval_windows: int = 32
    """Validation windows per evaluation."""
    log_every: int = 10
    """Log the training loss, bits per byte, learning rate and throughput to metrics.jsonl every N steps."""
    save_every: int = 200
    """Checkpoint every N steps."""
    keep_checkpoints: int = 2
    """Checkpoints kept in the run directory (the oldest are deleted)."""
    observe_every: int = 0
    """Log per-layer weight norm, effective rank, update/weight ratio every N steps (0 = off)."""
    hessian_every: int = 0
    """Log the top Hessian eigenvalue against 2/lr and, under AdamW, the preconditioned sharpness against
    (2 + 2·beta1)/((1 − beta1)·lr) every N steps, on the step's last micro-batch (0 = off; mechlab.mechanics)."""
    hessian_iters: int = 20
    """Power iterations per sharpness measurement."""
    hidden_id_every: int = 0
    """Log the intrinsic dimension (TWO-NN, MLE) of the hidden states after every block on fixed validation
    windows of HIDDEN_ID_TOKENS tokens every N steps (0 = off; mechlab.mechanics.hidden_state_dimension)."""
    seed: int = 0
    """Seed for initialisation and data order."""
    out_dir: str | None = "runs/train"
    """Run directory: a new or empty folder, or a run to --resume or --overwrite (a library Task run, such as
    distillation, may set None to write nothing)."""

    def validate(self) -> None:
        """Raise ConfigError naming the field and its value for anything a run cannot use: wrong types (a bool is
        not an int, a string not a number), non-finite or out-of-range numbers."""
        ints = ("seq_len", "batch_size", "steps", "eval_every", "eval_windows", "log_every", "save_every",
                "keep_checkpoints", "warmup_steps", "observe_every", "hessian_every", "hessian_iters", "hidden_id_every",
                "seed")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"train config: {name} must be an integer, got {v!r}")
        for name in ("seq_len", "batch_size", "steps", "eval_every", "eval_windows", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train config: {name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "observe_every", "hessian_every", "hessian_iters", "hidden_id_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train config: {name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.micro_batch_size is not None and (isinstance(self.micro_batch_size, bool) or
                                                  not isinstance(self.micro_batch_size, int) or self.micro_batch_size <= 0):
            raise ConfigError(f"train config: micro_batch_size must be a positive integer, got {self.micro_batch_size!r}")
        for name in ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "eps", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"train config: {name} must be a finite number, got {v!r}")
        if self.lr <= 0:
            raise ConfigError(f"train config: lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train config: min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train config: {name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"train config: optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.optimizer == "adamw":  # unused by plain gradient descent
            for name in ("beta1", "beta2"):
                if not 0 <= getattr(self, name) < 1:
                    raise ConfigError(f"train config: {name} must lie in [0, 1), got {getattr(self, name)}")
            if self.eps <= 0:
                raise ConfigError(f"train config: eps (AdamW's ε) must be positive, got {self.eps}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"train config: dtype must be float32 or bfloat16, got {self.dtype!r}")
        if not isinstance(self.model_overrides, dict) or not all(isinstance(k, str) for k in self.model_overrides):
            raise ConfigError(f"train config: model_overrides must be an object of ModelConfig fields (string keys), "
                              f"got {self.model_overrides!r}")
        if self.seq_len > MAX_SEQ_LEN:
            raise ConfigError(f"train config: seq_len {self.seq_len} exceeds {MAX_SEQ_LEN} tokens (its attention and "
                              f"activations would not fit in memory)")
        if self.out_dir is not None and (not isinstance(self.out_dir, str) or not self.out_dir.strip()):
            raise ConfigError(f"train config: out_dir must name a run directory, got {self.out_dir!r}")
        if self.warmup_steps > self.steps:
            log.warning("warmup_steps = %d exceeds steps = %d: the learning rate never reaches its peak",
                        self.warmup_steps, self.steps)
        if self.hessian_every > self.steps:
            log.warning("hessian_every = %d exceeds steps = %d: only step 0 is measured", self.hessian_every, self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"train config: unknown keys {sorted(unknown)}")
        return cls(**d)


# What a resumed run may change: its length and learning-rate schedule (lr_at uses the new values from the resumed
# step on), the cadence of evaluation, logging, checkpoints and observables, and where things live. Any other
# field would make the second part of the run a different experiment from the first, so it is refused.
RESUMABLE = ("steps", "lr", "min_lr_ratio", "warmup_steps", "eval_every", "eval_windows", "log_every", "save_every",
             "keep_checkpoints", "observe_every", "hessian_every", "hessian_iters", "hidden_id_every",
             "micro_batch_size", "data_dir", "out_dir")


SOURCE_TOKENIZER = "retrieval"  # the tokenizer a run on a retrieval data source records (mechlab.data.retrieval)


def resume_changes(saved: TrainConfig, cfg: TrainConfig, step: int) -> dict[str, tuple[Any, Any]]:
    """{field: (saved value, new value)} of the fields ``cfg`` changes in the run ``saved`` resumed at ``step``.
    Raises ConfigError naming every field that cannot change on resume (see :data:`RESUMABLE`), and when the new
    ``steps`` leaves nothing to train."""
    diff = {f.name: (getattr(saved, f.name), getattr(cfg, f.name)) for f in dataclasses.fields(TrainConfig)
            if getattr(saved, f.name) != getattr(cfg, f.name)}
    refused = [k for k in diff if k not in RESUMABLE]
    if refused:
        what = ", ".join(f"{k} ({diff[k][0]!r} -> {diff[k][1]!r})" for k in refused)
        raise ConfigError(f"cannot change {what} when resuming: those fields define the run. On resume only "
                          f"{', '.join(RESUMABLE)} may change; start a new run (another --out) for the rest")
    if cfg.steps <= step:
        raise ConfigError(f"the run is at step {step}: steps = {cfg.steps} leaves nothing to train "
                          f"(give more steps than {step} to continue it)")
    return diff


def lr_at(step: int, cfg: TrainConfig, peak: float | None = None) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from lr to lr·min_lr_ratio at the last step (lr: ``peak``
    if given, e.g. a parameter group's own rate, else ``cfg.lr``). With no warmup, min_lr_ratio = 1 is a constant
    rate and min_lr_ratio = 0 a cosine from lr at step 0 to 0 after the last step."""
    top = cfg.lr if peak is None else peak
    if step < cfg.warmup_steps:
        return top * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = top * cfg.min_lr_ratio
    return floor + 0.5 * (top - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """AdamW (``cfg.optimizer == "adamw"``) or plain SGD without momentum (``"sgd"``: gradient descent on the
    batch; its weight decay θ ← θ − lr·wd·θ is AdamW's decoupled one), weight decay on tensors of two or more
    dimensions; a group's ``lr_mult`` (the model's parameterisation, e.g. μP's 1/m on hidden matrices) scales the
    scheduled lr. ``groups`` (a :class:`Task`'s parameter groups: dicts with "params" and optionally "lr", the
    group's own peak rate, kept as "peak_lr" and scheduled by :func:`lr_at`) replaces the model's trainable
    parameters; each is split by dimension for the weight decay like the model's."""
    if groups is not None:
        param_groups = []
        for g in groups:
            own = {"peak_lr": float(g["lr"])} if "lr" in g else {}
            by_dim: dict[bool, list] = {}
            for p in g["params"]:
                by_dim.setdefault(p.dim() >= 2, []).append(p)
            param_groups += [{"params": by_dim[decay], "weight_decay": cfg.weight_decay if decay else 0.0,
                              "lr_mult": 1.0, **own} for decay in (True, False) if decay in by_dim]
        return _optimizer(param_groups, cfg)
    mults = model.lr_multipliers() if hasattr(model, "lr_multipliers") else {}
    by_key: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            by_key.setdefault((p.dim() >= 2, mults.get(name, 1.0)), []).append(p)
    param_groups = [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_mult": mult}
                    for (decay, mult), ps in sorted(by_key.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]
    return _optimizer(param_groups, cfg)


def _optimizer(param_groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def sharpness_record(model, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float,
                     cfg: TrainConfig, step: int) -> dict:
    """The metrics-log row of the edge-of-stability observables on the batch (x, y), after optimiser step ``step``
    taken with base learning rate ``lr``: ``hessian_top`` against ``two_over_lr`` = 2/lr (the threshold of gradient
    descent, arXiv 2103.00065) and, for Adam/AdamW, ``precond_sharpness`` λ_max(P⁻¹H) against ``adam_threshold``
    = (2 + 2·beta1)/((1 − beta1)·lr) (arXiv 2207.14484), P folding in each group's ``lr_mult``
    (:func:`mechlab.mechanics.adam_preconditioner`)."""
    def batch_loss():
        return model(x, y)[1]

    params = list(model.parameters())
    rec = {"step": step, "two_over_lr": 2 / lr,
           "hessian_top": top_hessian_eigenvalue(batch_loss, params, iters=cfg.hessian_iters, seed=step)}
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        rec["precond_sharpness"] = preconditioned_sharpness(batch_loss, params, optimizer, base_lr=lr,
                                                            iters=cfg.hessian_iters, seed=step)
        rec["adam_threshold"] = adam_threshold(lr, cfg.beta1)
    return rec


HIDDEN_ID_TOKENS = 2048  # hidden states (one per token) per layer for the intrinsic-dimension observable


def hidden_id_record(model, stream: TokenStream, cfg: TrainConfig, step: int) -> dict:
    """The metrics-log row of the intrinsic dimension of the hidden states by layer (embedding, then the output of
    every block application in call order) on HIDDEN_ID_TOKENS tokens of evenly spread validation windows:
    ``{"step", "hidden_id": {"twonn": [...], "mle": [...]}}`` (:func:`mechlab.mechanics.hidden_state_dimension`)."""
    n = max(1, min(HIDDEN_ID_TOKENS // cfg.seq_len, len(stream) // (cfg.seq_len + 1)))
    offsets = np.linspace(0, len(stream) - cfg.seq_len - 1, n).astype(np.int64)
    x, _ = get_batch(stream.ids, offsets, cfg.seq_len)
    return {"step": step, "hidden_id": hidden_state_dimension(model, x.to(next(model.parameters()).device))}


@dataclass
class Task:
    """A training task other than next-token prediction, for the one loop (see the module docstring).

    ``build_model()`` returns an ``nn.Module`` whose ``forward(x, y)`` returns ``(output, scalar loss)`` (or any
    module, with ``loss``); it is called after ``torch.manual_seed(cfg.seed)``. ``batch(seed, step, batch_size)``
    returns the step's ``(x, y)`` tensors with ``batch_size`` rows, a function of its arguments only (so data order
    depends on (seed, step), as for token windows). ``evaluate(model)``, if given, returns a dict of floats logged
    with the step at step 0, every ``eval_every`` steps and at the end.

    Optional: ``loss(model, x, y)`` the scalar loss of a micro-batch (default ``model(x, y)[1]``; e.g. KL to a
    teacher, :func:`mechlab.train.distill.kl_to_teacher`); ``param_groups(model)`` the parameters trained, as a
    list of dicts with "params" and optionally "lr" (the group's own peak rate, scheduled like ``cfg.lr``), every
    other parameter of the model frozen during the run (their ``requires_grad`` flags are restored at its end);
    ``before_step(step)`` called before every optimiser step (0-based), its dict of floats added to the step's log
    record; ``after_step(step)`` called after it; ``train_mode`` False runs the model in eval mode throughout (no
    dropout) and leaves its mode as it was; ``device`` the device to train on (default: CUDA if present, else the
    CPU); ``desc`` the progress bar's label. ``seq_len``, if given, is the row length of the task's batches: the run refuses a
    ``TrainConfig.seq_len`` that differs (the recorded config and the data are one). ``tokenizer``, if given (with a
    model of the family), makes the run write normal checkpoints, as a data source of ``TrainConfig.data`` does
    (``retrieval:...``, :func:`mechlab.data.retrieval.source_task`)."""

    build_model: Callable[[], torch.nn.Module]
    batch: Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]]
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    param_groups: Callable[[torch.nn.Module], list[dict]] | None = None
    before_step: Callable[[int], dict[str, float]] | None = None
    after_step: Callable[[int], None] | None = None
    train_mode: bool = True
    device: torch.device | str | None = None
    desc: str = "train"
    seq_len: int | None = None
    tokenizer: Any = None


@dataclass
class TrainResult:
    model: torch.nn.Module
    tokenizer: Any
    out_dir: Path | None
    step: int
    final_eval: EvalResult | None
    initial_eval: EvalResult | None = None


class _Dist:
    """The process group, if the run was launched by torchrun with more than one process."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.started_here = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            self.started_here = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.started_here:
            dist.destroy_process_group()


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def run_model_config(cfg: TrainConfig, vocab_size: int):
    """The model config of a run: preset ``cfg.model`` with ``cfg.model_overrides``, the vocabulary of the run's
    tokenizer (``vocab_size``) and max_seq_len = max(seq_len, 64) unless an override gives one. Logs each value
    that differs from the preset's (what the run changes); raises ConfigError when an override conflicts: a
    vocab_size other than the tokenizer's, or a max_seq_len below seq_len."""
    over = dict(cfg.model_overrides)
    if "vocab_size" in over and over["vocab_size"] != vocab_size:
        raise ConfigError(f"model_overrides vocab_size={over['vocab_size']!r} conflicts with the tokenizer's "
                          f"{vocab_size} symbols (the model's vocabulary is the tokenizer's: drop the override)")
    if "max_seq_len" in over and not (isinstance(over["max_seq_len"], int) and over["max_seq_len"] >= cfg.seq_len):
        raise ConfigError(f"model_overrides max_seq_len={over['max_seq_len']!r} is below the run's seq_len "
                          f"{cfg.seq_len}")
    base = preset(cfg.model, **{k: v for k, v in over.items() if k not in ("vocab_size", "max_seq_len")})
    mcfg = preset(cfg.model, **{"max_seq_len": max(cfg.seq_len, 64), **over, "vocab_size": vocab_size})
    for name, why in (("vocab_size", "the tokenizer's"), ("max_seq_len", "max(seq_len, 64)" if "max_seq_len" not in over
                                                          else "the override")):
        if getattr(mcfg, name) != getattr(base, name):
            log.info("model %s: %s %d (%s; the preset has %d)", cfg.model, name, getattr(mcfg, name), why,
                     getattr(base, name))
    return mcfg


def validation_record(model, stream: TokenStream, cfg: TrainConfig, step: int) -> tuple[EvalResult, dict]:
    """The metrics-log row of a validation pass: loss and bits/byte, plus the loop observables of a looped model
    (arXiv 2604.21254; :func:`mechlab.mechanics.loop_observables`) on a fixed batch of validation windows."""
    result = evaluate_lm(model, stream, context=cfg.seq_len, max_windows=cfg.eval_windows, spread=True,
                         batch_size=max(cfg.batch_size, 8), dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else None)
    rec = {"step": step, "val_loss": result.loss, "val_bpb": result.bits_per_byte}
    if model.config.is_looped:
        n = min(8, cfg.eval_windows, max(len(stream) // (cfg.seq_len + 1), 1))
        offsets = np.linspace(0, len(stream) - cfg.seq_len - 1, n).astype(np.int64)
        x, y = get_batch(stream.ids, offsets, cfg.seq_len)
        device = next(model.parameters()).device
        rec.update(loop_observables(model, x.to(device), y.to(device)))
    return result, rec


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True,
          stop_after: int | None = None, on_log: Callable[[dict], None] | None = None,
          task: Task | None = None) -> TrainResult:
    """Train (or resume) the run ``cfg`` describes; returns the model after the last step.

    ``resume`` continues from ``out_dir/latest``; ``overwrite`` starts afresh in an existing run directory;
    ``stop_after`` ends the process's work after that many optimiser steps (the schedule still spans
    ``cfg.steps``), as an interruption would. ``task`` trains a :class:`Task` instead of a language model (the
    model, data and data fields of ``cfg`` are then unused; no checkpoints, so no ``resume``, no ``hidden_id_every``).
    """
    cfg.validate()
    from mechlab.data.retrieval import is_source

    if is_source(cfg.data) and task is not None:
        raise ConfigError(f"data {cfg.data!r} is itself a task: give a Task or a retrieval data source, not both")
    if is_source(cfg.data) and cfg.hidden_id_every:
        raise ConfigError(f"data {cfg.data!r} has no token windows: hidden_id_every must be 0")
    if is_source(cfg.data):  # its own 48-symbol tokenizer, recorded as such
        if cfg.tokenizer not in (TrainConfig.tokenizer, SOURCE_TOKENIZER):
            raise ConfigError(f"data {cfg.data!r} brings its own 48-symbol tokenizer: drop tokenizer "
                              f"{cfg.tokenizer!r}")
        cfg = dataclasses.replace(cfg, tokenizer=SOURCE_TOKENIZER)
    if task is not None and (resume or cfg.hidden_id_every):
        raise ConfigError("a Task run writes no checkpoints and has no token windows: it cannot --resume or log "
                          "hidden_id_every; train it again from step 0 with hidden_id_every = 0")
    if cfg.hidden_id_every and not resume:  # before the tokenizer and the data: the preset says the architecture
        from mechlab.mechanics.observables import check_hidden_states

        try:
            mcfg = preset(cfg.model, **cfg.model_overrides)
        except (ConfigError, TypeError, ValueError):
            mcfg = None  # the run's own model building reports it; the model itself is checked again there
        if mcfg is not None:
            check_hidden_states(mcfg)
    if cfg.out_dir is None and task is None:
        raise ConfigError("train config: out_dir is required for a language-model run (only a Task run may write nothing)")
    out = None if cfg.out_dir is None else Path(cfg.out_dir)
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"run directory {out} is a file; choose another --out")
    env = _Dist()
    try:
        return _train(cfg, out, env, resume, overwrite, progress, stop_after, on_log, task)
    finally:
        env.close()


def _train(cfg, out: Path | None, env: _Dist, resume, overwrite, progress, stop_after, on_log, task=None) -> TrainResult:
    micro = cfg.micro_batch_size or cfg.batch_size // env.world
    if micro <= 0 or cfg.batch_size % (micro * env.world):
        raise ConfigError(f"batch_size={cfg.batch_size} must be a multiple of micro_batch_size × processes = {micro} × {env.world}")
    accum = cfg.batch_size // (micro * env.world)
    from mechlab.data.retrieval import is_source, source_task

    if task is None and is_source(cfg.data):  # a synthetic task named as data: a Task that writes checkpoints
        task = source_task(cfg)
    if task is not None and task.seq_len is not None and task.seq_len != cfg.seq_len:
        raise ConfigError(f"the task's rows are {task.seq_len} tokens but the run's seq_len is {cfg.seq_len}: "
                          "give the same length to both")
    device = torch.device(task.device) if task is not None and task.device is not None else _device()

    exists = out is not None and ((out / "latest").exists() or (out / TRAIN_CONFIG).exists())
    if exists and not (resume or overwrite):
        raise ConfigError(f"run directory {out} already holds a run: pass --resume to continue it or --overwrite to start again")
    if resume and not (out / "latest").exists():
        raise ConfigError(f"nothing to resume in {out}: it has no checkpoint yet")
    env.barrier()  # every process has looked at the run directory before the first one writes to it

    changes: dict = {}
    train_stream = val_stream = None
    if resume:
        ckpt = load_checkpoint(out, device=device)
        model, tok = ckpt.model, ckpt.tokenizer
        state = load_trainer_state(out)
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        saved = load_train_config(out)
        if is_source(saved.data) and saved.tokenizer == TrainConfig.tokenizer:  # recorded before SOURCE_TOKENIZER
            saved = dataclasses.replace(saved, tokenizer=SOURCE_TOKENIZER)
        changes = resume_changes(saved, cfg, step)
        for name, (old, new) in changes.items():
            log.info("resume at step %d: %s %r -> %r", step, name, old, new)
    elif task is not None:  # any nn.Module, built under the run's seed
        tok, train_stream, val_stream = None, None, None
        torch.manual_seed(cfg.seed)
        model = task.build_model().to(device)
        tok = task.tokenizer
    else:
        tok = build_tokenizer(cfg.tokenizer, cfg.data, cfg.data_dir)
        mcfg = run_model_config(cfg, tok.vocab_size)
        torch.manual_seed(cfg.seed)
        model = build_model(mcfg).to(device)
    if cfg.hidden_id_every:  # refuse now, not at step hidden_id_every after the training time is spent
        from mechlab.mechanics.observables import check_hidden_states

        check_hidden_states(model)
    if not resume:
        step, state = 0, None
        if env.main and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS).unlink(missing_ok=True)
            write_json_atomic(out / TRAIN_CONFIG, cfg.to_dict())
    if task is None and train_stream is None:
        train_stream = token_stream(cfg.data, "train", tok, cfg.data_dir)
        val_stream = token_stream(cfg.data, "validation", tok, cfg.data_dir)

    was_training = model.training
    groups = task.param_groups(model) if task is not None and task.param_groups is not None else None
    flags = _train_only(model, groups) if groups is not None else []
    try:
        return _loop(cfg, out, env, task, model, tok, train_stream, val_stream, groups, state, step, resume, changes,
                     micro, accum, device, progress, stop_after, on_log)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        if task is not None and not task.train_mode:
            model.train(was_training)


def _train_only(model: torch.nn.Module, groups: list[dict]) -> list[tuple[torch.nn.Parameter, bool]]:
    """Freeze every parameter of ``model`` but those of ``groups``; returns (parameter, old flag) to restore."""
    params = list(model.parameters()) + [p for g in groups for p in g["params"]]
    flags = list({id(p): (p, p.requires_grad) for p in params}.values())
    for p in model.parameters():
        p.requires_grad_(False)
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return flags


def _loop(cfg, out, env, task, model, tok, train_stream, val_stream, groups, state, step, resume, changes, micro,
          accum, device, progress, stop_after, on_log) -> TrainResult:
    model.train(task is None or task.train_mode)
    optimizer = make_optimizer(model, cfg, groups)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    if env.main and resume:
        _truncate_metrics(out / METRICS, step)
        if changes:  # only now: a resume that fails on its data or state leaves the run as it was
            write_json_atomic(out / TRAIN_CONFIG, cfg.to_dict())
            with open(out / RESUMES, "a") as f:
                f.write(json.dumps({"step": step, "changes": {k: list(v) for k, v in changes.items()}}) + "\n")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if env.world > 1 else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()

    def log_record(rec: dict) -> None:
        if env.main:
            if out is not None:
                with open(out / METRICS, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if on_log:
                on_log(rec)

    def task_eval(at: int) -> None:
        if env.main and task.evaluate is not None:
            was_training = model.training
            model.eval()
            log_record({"step": at, **task.evaluate(model)})
            model.train(was_training)

    initial_eval = None
    if step == 0 and env.main:
        if task is None:
            initial_eval, rec = validation_record(model, val_stream, cfg, 0)
            log_record(rec)
        else:
            task_eval(0)

    last = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    bar = tqdm(total=cfg.steps, initial=step, desc="train" if task is None else task.desc, unit="step", disable=not (progress and env.main),
               dynamic_ncols=True, mininterval=1.0)
    final_eval = None
    t_last, steps_since = time.perf_counter(), 0
    while step < last:
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = (lr if "peak_lr" not in g else lr_at(step, cfg, g["peak_lr"])) * g.get("lr_mult", 1.0)
        extra = task.before_step(step) if task is not None and task.before_step is not None else {}
        if task is None:
            offsets = batch_offsets(cfg.seed, step, cfg.batch_size, len(train_stream), cfg.seq_len)
        else:
            task_x, task_y = task.batch(cfg.seed, step, cfg.batch_size)
        loss_sum, step_bytes = 0.0, 0
        for a in range(accum):
            lo = (a * env.world + env.rank) * micro
            if task is None:
                x, y = get_batch(train_stream.ids, offsets[lo : lo + micro], cfg.seq_len)
                step_bytes += int(train_stream.token_bytes[y.numpy()].sum())
            else:
                x, y = task_x[lo : lo + micro], task_y[lo : lo + micro]
            x, y = x.to(device), y.to(device)
            sync = nullcontext() if (env.world == 1 or a == accum - 1) else ddp.no_sync()
            with sync:
                with autocast:
                    loss = task.loss(ddp, x, y) if task is not None and task.loss is not None else ddp(x, y)[1]
                if not torch.isfinite(loss):
                    bar.close()
                    raise TrainingDiverged(
                        f"loss is {loss.item()} at step {step} (lr {lr:.3g}). Lower --lr, keep gradient clipping on, "
                        f"or use float32" + (f"; the last good checkpoint (if any) is in {out}." if out else ".")
                    )
                (loss / accum).backward()
            loss_sum += loss.item() / accum
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        observe = env.main and cfg.observe_every and (step + 1) % cfg.observe_every == 0
        before = snapshot_matrices(model) if observe else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if task is not None and task.after_step is not None:
            task.after_step(step)
        step += 1
        steps_since += 1
        bar.update(1)
        if observe:
            log_record({"step": step, "grad_norm": float(grad_norm), "layers": layer_statistics(model, before)})
        if env.main and cfg.hessian_every and step % cfg.hessian_every == 0:
            log_record(sharpness_record(model, optimizer, x, y, lr, cfg, step))
        if env.main and cfg.hidden_id_every and step % cfg.hidden_id_every == 0:
            log_record(hidden_id_record(model, val_stream, cfg, step))

        if step % cfg.log_every == 0 or step == last:
            now = time.perf_counter()
            tps = steps_since * tokens_per_step / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            bpb = loss_sum * micro * accum * cfg.seq_len / math.log(2) / max(step_bytes, 1)  # this process's share
            rec = {"step": step, "loss": loss_sum, "train_bpb": bpb, "lr": lr, "grad_norm": float(grad_norm), "tokens": step * tokens_per_step,
                   "tokens_per_s": tps}
            if task is not None:  # rows of a task, not tokens
                rec = {"step": step, "loss": loss_sum, "lr": lr, "grad_norm": float(grad_norm),
                       "rows_per_s": tps / cfg.seq_len, **extra}
            log_record(rec)
            bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tps:,.0f}")
        if task is not None:
            if step % cfg.eval_every == 0 or step == cfg.steps:
                task_eval(step)
            if task.tokenizer is None:  # any nn.Module: no checkpoint
                continue
        elif env.main and (step % cfg.eval_every == 0 or step == cfg.steps):
            final_eval, rec = validation_record(model, val_stream, cfg, step)
            log_record(rec)
            bar.write(f"step {step}: validation loss {final_eval.loss:.4f}, {final_eval.bits_per_byte:.4f} bits/byte")
        if step % cfg.save_every == 0 or step == last:
            if env.main:
                path = save_checkpoint(out / "checkpoints" / f"step-{step:07d}", model, tok,
                                       meta={"step": step, "train_config": cfg.to_dict()},
                                       trainer_state={"step": step, "optimizer": optimizer.state_dict(),
                                                      "torch_rng": torch.get_rng_state()})
                set_latest(out, path, cfg.keep_checkpoints)
            env.barrier()
    bar.close()
    if task is None or task.train_mode:
        model.eval()
    return TrainResult(model, tok, out, step, final_eval, initial_eval)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log records past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def load_train_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / TRAIN_CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {TRAIN_CONFIG}: not a run directory")
    return TrainConfig.from_dict(json.loads(path.read_text()))
