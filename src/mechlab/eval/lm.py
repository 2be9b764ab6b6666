"""Language-model evaluation: bits-per-byte and perplexity over non-overlapping or sliding windows.

Windows follow the usual Hugging Face recipe. A window covers tokens [b, b + context); the model predicts each
token from those before it inside the window. With ``stride == context`` (non-overlapping) every token but the
first of each window is scored, so ``n_tokens = N - n_windows``. With a smaller stride, a window scores only the
tokens past the previous window's end, each seen with at least ``context - stride`` tokens of history.
Bits-per-byte divides the summed negative log-likelihood (in bits) by the UTF-8 bytes of the scored tokens.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError


@dataclass
class EvalResult:
    nll: float  # summed negative log-likelihood, nats
    n_tokens: int
    n_bytes: int
    n_windows: int
    context: int
    stride: int
    # with by_position: NLL summed over the full-length windows at each predicted position (index i: the token
    # predicted from i + 1 tokens of its window), and how many windows that is
    position_nll: list[float] | None = None
    position_windows: int = 0

    @property
    def loss(self) -> float:
        """Mean nats per scored token."""
        return self.nll / max(self.n_tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / max(self.n_bytes, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte}


def windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window over a stream of n tokens."""
    if context < 2 or not 0 < stride <= context:
        raise ConfigError(f"need context >= 2 and 0 < stride <= context (got context={context}, stride={stride})")
    out, prev_end, begin = [], 0, 0
    while prev_end < n:
        end = min(begin + context, n)
        first = max(prev_end, begin + 1)
        if first < end:
            out.append((begin, end, first))
        prev_end = end
        begin += stride
    return out


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, stream: TokenStream, context: int = 1024, stride: int | None = None,
                batch_size: int = 8, max_windows: int | None = None, spread: bool = False,
                dtype: torch.dtype | None = None, progress: bool = False, by_position: bool = False,
                bos_id: int | None = None) -> EvalResult:
    """Score ``stream`` with ``model`` (which maps ids (B, T) to (logits, loss)); see the module docstring.

    ``bos_id``: the first token of every window (never scored) is replaced by this BOS, as llama.cpp's perplexity
    does for models that expect one (``add_bos``); the scored tokens and bytes are unchanged.

    ``max_windows`` keeps the first windows only, or with ``spread`` that many spaced evenly over the stream.
    ``by_position`` also sums the NLL by position inside the window (non-overlapping full-length windows only).
    """
    stride = stride or context
    wins = windows(len(stream), context, stride)
    if max_windows is not None and max_windows < len(wins):
        keep = np.linspace(0, len(wins) - 1, max_windows).round().astype(int) if spread else range(max_windows)
        wins = [wins[i] for i in keep]
    if not wins:
        raise ConfigError(f"stream of {len(stream)} tokens is too short to evaluate")
    device = next(model.parameters()).device
    token_bytes = torch.from_numpy(np.asarray(stream.token_bytes, dtype=np.int64))
    was_training = model.training
    model.eval()
    nll, n_tok, n_bytes = 0.0, 0, 0
    pos_nll, pos_windows = torch.zeros(context - 1, dtype=torch.float64), 0
    autocast = torch.autocast(device.type, dtype=dtype) if dtype not in (None, torch.float32) else nullcontext()
    # Equal-length windows share a batch; the ragged last window runs alone.
    groups: dict[int, list] = {}
    for w in wins:
        groups.setdefault(w[1] - w[0], []).append(w)
    bar = tqdm(total=len(wins), desc="eval", unit="win", disable=not progress, leave=False)
    for _length, ws in groups.items():
        for i in range(0, len(ws), batch_size):
            batch = ws[i : i + batch_size]
            ids = torch.from_numpy(np.stack([np.asarray(stream.ids[b:e], dtype=np.int64) for b, e, _ in batch])).to(device)
            if bos_id is not None:
                ids[:, 0] = bos_id
            with autocast:
                logits, _ = model(ids[:, :-1])
            losses = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
            for row, (b, e, first) in enumerate(batch):
                sel = slice(first - b - 1, e - b - 1)
                nll += float(losses[row, sel].double().sum())
                targets = ids[row, first - b : e - b].cpu()
                n_tok += len(targets)
                n_bytes += int(token_bytes[targets].sum())
                if by_position and e - b == context and first == b + 1:
                    pos_nll += losses[row].double().cpu()
                    pos_windows += 1
            bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return EvalResult(nll, n_tok, n_bytes, len(wins), context, stride,
                      pos_nll.tolist() if by_position else None, pos_windows)
