"""Synthetic long-range retrieval tasks generated on the fly (no download), for the one trainer (arXiv 2605.13370).

Vocabulary (48 symbols, :data:`VOCAB_SIZE`): markers KEY 0, VAL 1, QUERY 2, COPY 3, DELIM 4; 16 keys 5–20; 16
values (also the copy payload alphabet) 21–36; 11 filler symbols 37–47, disjoint from keys and values.

- ``needle`` (single-needle retrieval): ``fillers · KEY k VAL v · G fillers · QUERY k → v``. One target per row, the
  value v predicted at the final k; v lies G + 2 positions before that prediction. Chance = 1/16.
- ``copy`` (multi-symbol copy-paste): ``fillers · p_1 … p_P DELIM · G fillers · COPY → p_1 … p_P``: P targets, the
  payload predicted after COPY with the true prefix fed (teacher forcing); a row is right only if all P are
  (exact match). Chance = 16^(−P).

Rows are ``seq_len`` + 1 symbols (``max(seq_len + 1, core length)`` when G is larger than training allows), filled in
front with random fillers; inputs x are the first L symbols, targets y the last L, with −100 (ignored by the loss)
everywhere but the answer positions, so the loss and the accuracy count only answers. Row i of optimiser step s of
seed σ is drawn from ``numpy.random.default_rng([σ, s])``: data order depends on (seed, step) only, as the trainer
requires of a :class:`~mechlab.train.trainer.Task`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mechlab.errors import ConfigError

KEY, VAL, QUERY, COPY, DELIM = 0, 1, 2, 3, 4
KEYS = np.arange(5, 21)
VALUES = np.arange(21, 37)
FILLERS = np.arange(37, 48)
VOCAB_SIZE = 48
IGNORE = -100


@dataclass(frozen=True)
class RetrievalTask:
    """A synthetic task: ``kind`` "needle" or "copy"; training rows of ``seq_len`` tokens with gaps G drawn
    uniformly from [min_gap, max_gap]; ``payload`` symbols to copy (copy only)."""

    kind: str = "needle"
    seq_len: int = 128
    min_gap: int = 0
    max_gap: int = 96
    payload: int = 8

    def __post_init__(self) -> None:
        if self.kind not in ("needle", "copy"):
            raise ConfigError(f"retrieval task: kind must be 'needle' or 'copy', got {self.kind!r}")
        for name in ("seq_len", "payload"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"retrieval task: {name} must be a positive integer, got {v!r}")
        if not 0 <= self.min_gap <= self.max_gap:
            raise ConfigError(f"retrieval task: need 0 <= min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")
        if self.core_length(self.max_gap) > self.seq_len + 1:
            raise ConfigError(f"retrieval task: a gap of {self.max_gap} needs rows of {self.core_length(self.max_gap)} "
                              f"symbols; raise seq_len to >= {self.core_length(self.max_gap) - 1} or lower max_gap")

    def core_length(self, gap: int) -> int:
        """Symbols of a row without its front filler: 7 + G (needle), 2P + 2 + G (copy)."""
        return 7 + gap if self.kind == "needle" else 2 * self.payload + 2 + gap

    @property
    def answers(self) -> int:
        """Target positions per row (1 for the needle, P for copy)."""
        return 1 if self.kind == "needle" else self.payload

    @property
    def chance(self) -> float:
        """Exact-match accuracy of uniform guessing among the 16 values."""
        return 1 / len(VALUES) ** self.answers

    def row(self, rng: np.random.Generator, gap: int, length: int) -> np.ndarray:
        """One row of ``length`` symbols with gap G (``length`` >= core_length(gap))."""
        if self.kind == "needle":
            k, v = rng.choice(KEYS), rng.choice(VALUES)
            core = [KEY, k, VAL, v, *rng.choice(FILLERS, gap), QUERY, k, v]
        else:
            p = rng.choice(VALUES, self.payload)
            core = [*p, DELIM, *rng.choice(FILLERS, gap), COPY, *p]
        return np.concatenate([rng.choice(FILLERS, length - len(core)), np.asarray(core)]).astype(np.int64)

    def rows(self, rng: np.random.Generator, gaps: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) (len(gaps), L) int64 for the given gaps; L = max(seq_len, longest core − 1)."""
        length = max(self.seq_len + 1, max(self.core_length(int(g)) for g in gaps))
        r = torch.from_numpy(np.stack([self.row(rng, int(g), length) for g in gaps]))
        x, y = r[:, :-1], r[:, 1:].clone()
        y[:, : y.shape[1] - self.answers] = IGNORE
        return x, y

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of optimiser step ``step``: gaps uniform on [min_gap, max_gap], rows of seq_len."""
        rng = np.random.default_rng([seed, step])
        return self.rows(rng, rng.integers(self.min_gap, self.max_gap + 1, size=batch_size))


@torch.no_grad()
def exact_match(model: torch.nn.Module, task: RetrievalTask, gap: int, n_rows: int, seed: int,
                batch_size: int = 32, chunk: int | None = None) -> np.ndarray:
    """Per-row exact-match (bool array of n_rows) of ``model`` on fresh rows of gap G (seeded by (seed, G), so every
    model is scored on the same rows): all answer positions predicted right by argmax. ``chunk`` streams each row
    through the model's cache (``Transformer.forward_chunked``) instead of one full pass."""
    rng = np.random.default_rng([seed, 1_000_003, gap])
    x, y = task.rows(rng, np.full(n_rows, gap))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = []
    for i in range(0, n_rows, batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model.forward_chunked(xb, chunk) if chunk else model(xb)[0]
        ans = yb[:, -task.answers :]
        hits.append((logits[:, -task.answers :].argmax(-1) == ans).all(-1).cpu())
    model.train(was_training)
    return torch.cat(hits).numpy()


def training_task(model_cfg, task: RetrievalTask, eval_gaps: tuple[int, ...] = (), eval_rows: int = 64,
                  eval_seed: int = 0):
    """A :class:`~mechlab.train.trainer.Task` for the one trainer: builds ``build_model(model_cfg)``, draws
    :meth:`RetrievalTask.batch` and, at each evaluation, logs ``acc_G{g}`` = exact-match accuracy at every gap of
    ``eval_gaps`` on ``eval_rows`` rows."""
    from mechlab.models import build_model
    from mechlab.train.trainer import Task

    if model_cfg.vocab_size < VOCAB_SIZE:
        raise ConfigError(f"retrieval tasks use {VOCAB_SIZE} symbols; the model's vocab_size is {model_cfg.vocab_size}")

    def evaluate(model) -> dict[str, float]:
        return {f"acc_G{g}": float(exact_match(model, task, g, eval_rows, eval_seed).mean()) for g in eval_gaps}

    return Task(build_model=lambda: build_model(model_cfg), batch=task.batch, evaluate=evaluate if eval_gaps else None)
