"""Where the time of batch-1 decoding goes: ``model.generate`` profiled by component.

Every module's forward is timed by hooks (``time.perf_counter`` around it) and charged exclusively: a module's time
less its children's, so that each millisecond is counted once. The LM head is timed through the model's ``head``
method (its final norm inside it stays a norm). Components:

* ``Linear layers``: the block projections (float ``nn.Linear`` or any stored quantised layer);
* ``LM head``: the output matmul (a float matrix, the tied embedding's code, or an untied head layer);
* ``attention``: what the attention modules do besides their projections (RoPE, the KV cache, SDPA);
* ``norms``, ``MLP activation`` (the gate's nonlinearity and the product), ``embedding lookup``;
* ``residuals and glue``: the blocks' and the model's own code (residual additions, reshapes, RoPE table slices);
* ``sampling and loop``: everything outside the model's forward (picking the token, the loop in ``generate``).

The decode steps alone are profiled: a run of ``1 + new_tokens`` tokens less a run of 1 token (the prompt's
prefill and the first token), per decoded token, the median over ``repeats`` such pairs (timings on a shared CPU
scatter). The hooks cost a few microseconds per module call, so the profile's total is a little above an unhooked
decode step's time: use it for shares, and a plain ``generate`` for speed.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch

COMPONENTS = ("Linear layers", "LM head", "attention", "norms", "MLP activation", "embedding lookup",
              "residuals and glue", "sampling and loop")


def _component(name: str, module: torch.nn.Module, embed: torch.nn.Module | None) -> str:
    kind = type(module).__name__
    if name == "lm_head" or (embed is not None and name.startswith("embed.") and hasattr(module, "in_features")):
        return "LM head"  # an untied head, or the stored layer of a quantised tied table (read by its attend)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return "Linear layers"
    if kind == "Attention":
        return "attention"
    if "Norm" in kind:
        return "norms"
    if kind in ("SwiGLU", "MLP"):
        return "MLP activation"
    if "Embedding" in kind:
        return "embedding lookup"
    return "residuals and glue"


class _Timer:
    """Exclusive times by component: a stack of (start, time of children) frames."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []

    def enter(self) -> None:
        self.stack.append([time.perf_counter(), 0.0])

    def leave(self, component: str) -> None:
        start, children = self.stack.pop()
        dt = time.perf_counter() - start
        self.totals[component] += dt - children
        if self.stack:
            self.stack[-1][1] += dt


@torch.inference_mode()
def _hooked_run(model: torch.nn.Module, prompt: torch.Tensor, tokens: int) -> dict[str, float]:
    timer, handles = _Timer(), []
    embed = getattr(model, "embed", None)
    for name, module in model.named_modules():
        if module is model:
            continue
        comp = _component(name, module, embed)
        handles.append(module.register_forward_pre_hook(lambda *_: timer.enter()))
        handles.append(module.register_forward_hook(lambda *_, c=comp: timer.leave(c)))
    head = getattr(model, "head", None)

    def timed_head(x):
        timer.enter()
        try:
            return head(x)
        finally:
            timer.leave("LM head")

    if head is not None:
        model.head = timed_head  # an instance attribute over the method, removed below
    try:
        start = time.perf_counter()
        model.generate(prompt, tokens, temperature=0.0, top_k=None)
        total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
        if head is not None:
            del model.head
    out = dict(timer.totals)
    out["sampling and loop"] = total - sum(out.values())
    return out


def decode_profile(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int = 32, repeats: int = 3) -> list[dict]:
    """Per component (:data:`COMPONENTS`), the time per decoded token of greedy batch-1 generation after
    ``prompt`` (1, T) int64 token ids: rows ``{"component", "ms/token", "share"}`` (shares of the decode step, summing
    to 1), the median of ``repeats`` measurements, with torch's current thread count. ``model`` is any mechlab
    language model with ``generate`` (float or quantised); its training mode is restored afterwards. Raises
    ValueError for fewer than 2 new tokens, fewer than 1 repeat, or a prompt that is not (1, T) integer ids in the
    vocabulary with T >= 1 (ConfigError when prompt + new tokens exceed the model's context)."""
    for what, v, least in (("new_tokens", new_tokens, 2), ("repeats", repeats, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"a decode profile needs {what} a whole number >= {least} (got {v!r})")
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] < 1 \
            or prompt.dtype not in (torch.int64, torch.int32):
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"prompt must be (1, T) integer token ids with T >= 1 (got {shape})")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if int(prompt.min()) < 0 or (vocab is not None and int(prompt.max()) >= vocab):
        raise ValueError(f"prompt ids must lie in [0, {vocab}) (got {int(prompt.min())}..{int(prompt.max())})")
    training = model.training
    model.eval()
    try:
        _hooked_run(model, prompt, 2)  # warm-up: kernels loaded, layers planned
        samples = []
        for _ in range(repeats):
            full = _hooked_run(model, prompt, 1 + new_tokens)
            first = _hooked_run(model, prompt, 1)
            samples.append({c: (full.get(c, 0.0) - first.get(c, 0.0)) / new_tokens for c in COMPONENTS})
    finally:
        model.train(training)
    per_token = {c: max(statistics.median(s[c] for s in samples), 0.0) for c in COMPONENTS}
    step = sum(per_token.values())
    return [{"component": c, "ms/token": 1e3 * per_token[c], "share": per_token[c] / step if step else 0.0}
            for c in COMPONENTS]
