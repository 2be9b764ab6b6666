"""Training batches of token windows, a function of (seed, step) only.

The batch of optimiser step ``s`` is drawn from ``numpy.random.default_rng([seed, s])`` as ``batch_size`` window
start offsets into a token array; a window of ``seq_len + 1`` tokens gives the inputs (its first ``seq_len``) and
the next-token targets (its last ``seq_len``). The one trainer (:mod:`mechlab.train.trainer`) draws every
language-model batch this way, and a distillation (:mod:`mechlab.train.distill`) draws its windows the same way, so
data order depends only on (seed, step): a resumed run, a run on any number of processes and a distillation with
the same seed see the same windows.
"""

from __future__ import annotations

import numpy as np
import torch

from mechlab.errors import ConfigError


def batch_offsets(seed: int, step: int, batch_size: int, n_tokens: int, seq_len: int) -> np.ndarray:
    """Start offsets (int64, shape (batch_size,)) of the training windows of optimiser step ``step`` in a token
    array of ``n_tokens`` tokens, uniform on [0, n_tokens − seq_len − 1]. Raises ConfigError when the array holds
    fewer than seq_len + 2 tokens."""
    high = n_tokens - seq_len - 1
    if high <= 0:
        raise ConfigError(f"training split has {n_tokens} tokens, fewer than seq_len + 2 = {seq_len + 2}")
    return np.random.default_rng([seed, step]).integers(0, high + 1, size=batch_size)


def get_batch(ids: np.ndarray, offsets: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of ``ids`` starting at ``offsets``: inputs and next-token targets, both int64 of shape
    (len(offsets), seq_len)."""
    rows = np.stack([np.asarray(ids[o : o + seq_len + 1], dtype=np.int64) for o in offsets])
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


def window_batches(ids: np.ndarray, seq_len: int):
    """``batch(seed, step, batch_size) -> (x, y)``: the windows of ``ids`` that :func:`batch_offsets` draws for
    that step (the batch function of a :class:`mechlab.train.trainer.Task` on a token array)."""
    ids = np.asarray(ids)

    def batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return get_batch(ids, batch_offsets(seed, step, batch_size, len(ids), seq_len), seq_len)

    return batch


__all__ = ["batch_offsets", "get_batch", "window_batches"]
