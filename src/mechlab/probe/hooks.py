"""Forward hooks that read and edit a mechlab Transformer's FFN neurons and residual stream in the model's own
forward pass (no second copy of the forward code).

Sites, for block ``l`` of ``model.blocks`` (a Llama-style pre-norm block, ``x + attn(norm(x))``, then
``+ mlp(norm(x))`` with ``mlp(u) = W_down (silu(W_gate u) * W_up u)``):

* ``a[l]`` (d_ff,): the FFN hidden activation, the input of ``mlp.down`` (a forward pre-hook on it);
* ``x[l]`` (d_model,): the block's residual input (a forward pre-hook on the block); ``x[L]`` is the final
  residual, the input of the final RMSNorm ``model.norm`` (a forward pre-hook on it);
* ``f[l]`` (d_model,): the FFN output ``W_down a[l]`` (a forward hook on ``mlp.down``).

Every site is read at one position per row (the decision position). :func:`record` reads them, optionally keeping
``a`` in the autograd graph for attribution patching; :func:`intervene` edits them (neuron multipliers and
additive values, residual injection) at every position of each forward call it is active for, so it composes
with the KV cache (``Transformer.generate``, :class:`DecisionSet`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from mechlab.errors import ConfigError
from mechlab.models.transformer import KVCache


def check_probeable(model: torch.nn.Module) -> None:
    """Raise ConfigError unless ``model`` is a mechlab Transformer with one residual stream whose blocks run once
    each (``arch == "transformer"``: trained models, SmolLM2 and other imports). Looped models run a block several
    times and mHC models keep several streams, so a neuron there has no single activation per token."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "blocks") or not hasattr(model, "norm"):
        raise ConfigError("perturbation probing needs a mechlab Transformer (a checkpoint's model)")
    if cfg.arch != "transformer":
        raise ConfigError(f"perturbation probing reads one activation per neuron and token; a {cfg.arch!r} model runs "
                          "blocks several times or keeps several streams: probe an arch='transformer' model")
    for blk in model.blocks:
        if not isinstance(getattr(blk.mlp.down, "weight", None), torch.Tensor):
            raise ConfigError("perturbation probing needs float FFN down projections (W_down); this model's are "
                              "quantised: probe the float checkpoint")


def _gather(t: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """Rows of t (B, T, D) at positions pos (B,), or the last position when pos is None -> (B, D)."""
    if pos is None:
        return t[:, -1]
    return t[torch.arange(t.shape[0], device=t.device), pos]


@dataclass
class Trace:
    """What :func:`record` saw at the decision positions of a batch of B rows.

    a: (B, L, d_ff) FFN hidden activations; x: (B, L + 1, d_model) residual inputs of the blocks and the final
    residual; f: (B, L, d_model) FFN outputs; ``a_graph`` the per-layer (B, d_ff) activations still in the autograd
    graph (only with ``grad=True``; :meth:`grad_a` differentiates through them)."""

    a: torch.Tensor | None = None
    x: torch.Tensor | None = None
    f: torch.Tensor | None = None
    a_graph: list[torch.Tensor] = field(default_factory=list)
    chunks: list[tuple[torch.Tensor, list[torch.Tensor]]] = field(default_factory=list)

    def grad_a(self, output: torch.Tensor) -> torch.Tensor:
        """∂output/∂a (B, L, d_ff) at the recorded activations, by one backward pass (needs ``grad=True``).
        ``output`` is a scalar built from the recorded forward's outputs."""
        parts = self.chunks or [(torch.arange(self.a.shape[0]), self.a_graph)]
        if not parts[0][1]:
            raise ConfigError("grad_a needs a trace recorded with grad=True")
        flat = [t for _, layers in parts for t in layers]
        grads = torch.autograd.grad(output, flat)
        out = torch.empty(self.a.shape, dtype=grads[0].dtype)
        j = 0
        for rows, layers in parts:
            out[rows] = torch.stack(grads[j:j + len(layers)], 1)
            j += len(layers)
        return out


@contextmanager
def record(model: torch.nn.Module, pos: torch.Tensor | None = None, grad: bool = False) -> Iterator[Trace]:
    """Record ``a``, ``x`` and ``f`` (see the module docstring) of the next forward call at positions ``pos`` (B,)
    (None: the last position of the call). With ``grad=True`` the activations stay in the graph
    (``trace.a_graph``) for a backward pass; the residual stream is made to require grad at the first block so the
    model's parameters need not. The trace is filled when the block exits."""
    check_probeable(model)
    L = len(model.blocks)
    a: list = [None] * L
    f: list = [None] * L
    x: list = [None] * (L + 1)
    handles = []

    def block_pre(i):
        def hook(_mod, args):
            h = args[0]
            if grad and i == 0 and not h.requires_grad:
                h = h.detach().requires_grad_(True)
            x[i] = _gather(h, pos)
            return (h, *args[1:]) if grad and i == 0 else None
        return hook

    def down_pre(i):
        def hook(_mod, args):
            h = args[0]
            a[i] = _gather(h, pos)
            if not grad:
                return None
            # put the gathered activations back in place so that they, not only h, lie on the path to the output
            rows = torch.arange(h.shape[0], device=h.device)
            return (h.index_put((rows, h.new_full((h.shape[0],), h.shape[1] - 1, dtype=torch.long) if pos is None
                                 else pos), a[i]),)
        return hook

    def down_out(i):
        def hook(_mod, _args, out):
            f[i] = _gather(out, pos)
        return hook

    def norm_pre(_mod, args):
        x[L] = _gather(args[0], pos)

    trace = Trace()
    try:
        for i, blk in enumerate(model.blocks):
            handles.append(blk.register_forward_pre_hook(block_pre(i)))
            handles.append(blk.mlp.down.register_forward_pre_hook(down_pre(i)))
            handles.append(blk.mlp.down.register_forward_hook(down_out(i)))
        handles.append(model.norm.register_forward_pre_hook(norm_pre))
        yield trace
    finally:
        for h in handles:
            h.remove()
    if any(v is None for v in a):
        raise ConfigError("record: the model's forward did not run inside the record block")
    trace.a_graph = list(a) if grad else []
    trace.a = torch.stack([v.detach() for v in a], 1)
    trace.f = torch.stack([v.detach() for v in f], 1)
    trace.x = torch.stack([v.detach() for v in x], 1)


@dataclass
class Intervention:
    """Edits applied at every position of a forward call, per row of the batch (R rows, or 1 row broadcast).

    neurons: layer -> (index (R, k) long, mult (R, k), add (R, k)): the FFN hidden activation of neuron
    ``index[r, j]`` in row r becomes ``a * mult[r, j] + add[r, j]`` (ablate: mult 0, add 0; scale by alpha:
    mult alpha; patch to a value v: mult 0, add v). A neuron listed twice in a row gets the last edit.
    residual: layer -> (R, d_model) vector added to the block's residual input ``x[l]`` (injection
    ``x_l <- x_l + beta v``).
    """

    neurons: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    residual: dict[int, torch.Tensor] = field(default_factory=dict)

    def rows(self, idx: torch.Tensor) -> Intervention:
        """The edits of the rows ``idx`` (a broadcast row stays broadcast)."""
        def pick(t):
            return t if t.shape[0] == 1 else t[idx]
        return Intervention({l: tuple(pick(t) for t in v) for l, v in self.neurons.items()},
                            {l: pick(v) for l, v in self.residual.items()})


def neuron_edit(index: torch.Tensor, mult: float | torch.Tensor = 0.0, add: float | torch.Tensor = 0.0):
    """(index, mult, add) of :class:`Intervention` with scalar mult/add broadcast to index's shape (R, k)."""
    index = torch.as_tensor(index, dtype=torch.long)
    if index.dim() == 1:
        index = index.unsqueeze(0)
    # float64 edits: the hook casts them to the activations' dtype, so a float64 model gets exact doses
    mult = torch.broadcast_to(torch.as_tensor(mult, dtype=torch.float64), index.shape)
    add = torch.broadcast_to(torch.as_tensor(add, dtype=torch.float64), index.shape)
    return index, mult, add


@contextmanager
def intervene(model: torch.nn.Module, edit: Intervention) -> Iterator[None]:
    """Apply ``edit`` (see :class:`Intervention`) to every forward call inside the block."""
    check_probeable(model)
    L, d_ff = len(model.blocks), model.config.d_ff
    for l, (idx, mult, add) in edit.neurons.items():
        if not 0 <= l < L:
            raise ConfigError(f"intervention on layer {l}; the model has layers 0..{L - 1}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= d_ff):
            raise ConfigError(f"intervention on neuron outside 0..{d_ff - 1} in layer {l}")
        if not (idx.shape == mult.shape == add.shape):
            raise ConfigError(f"intervention on layer {l}: index, mult and add shapes differ")
    for l, v in edit.residual.items():
        if not 0 <= l < L or v.shape[-1] != model.config.d_model:
            raise ConfigError(f"residual injection at layer {l} needs 0 <= l < {L} and vectors of {model.config.d_model}")
    handles = []

    def down_pre(l):
        idx, mult, add = edit.neurons[l]

        def hook(_mod, args):
            h = args[0]
            R = max(h.shape[0], idx.shape[0])
            m = h.new_ones(R, h.shape[-1]).scatter(1, idx.expand(R, -1), mult.to(h.dtype).expand(R, -1))
            s = h.new_zeros(R, h.shape[-1]).scatter(1, idx.expand(R, -1), add.to(h.dtype).expand(R, -1))
            return (h * m[:, None, :] + s[:, None, :],)
        return hook

    def block_pre(l):
        v = edit.residual[l]

        def hook(_mod, args):
            h = args[0]
            return (h + v.to(h.dtype)[:, None, :], *args[1:])
        return hook

    try:
        for l in edit.neurons:
            handles.append(model.blocks[l].mlp.down.register_forward_pre_hook(down_pre(l)))
        for l in edit.residual:
            handles.append(model.blocks[l].register_forward_pre_hook(block_pre(l)))
        yield
    finally:
        for h in handles:
            h.remove()


class DecisionSet:
    """A set of prompts (token id lists) whose decision position is the last token, evaluated cheaply under many
    interventions: each prompt's prefix (all tokens but the last) is run once into a KV cache, and every
    evaluation reruns only the decision token, R rows at once. Edits then act at the decision position only
    (the prefix is the unedited prompt), which is where the probe measures its activations.

    ``ids``: list of P token-id lists (each >= 1 token). Memory: the caches hold P x layers x 2 x n_kv_heads x
    head_dim x prompt length floats.
    """

    def __init__(self, model: torch.nn.Module, ids: list[list[int]]):
        check_probeable(model)
        self.model = model
        self.ids = [list(map(int, t)) for t in ids]
        if not self.ids or any(len(t) == 0 for t in self.ids):
            raise ConfigError("a decision set needs at least one prompt, each of at least one token")
        longest = max(len(t) for t in self.ids)
        if longest > model.config.max_seq_len:
            raise ConfigError(f"a prompt of {longest} tokens exceeds the model's context of {model.config.max_seq_len}")
        self._caches: list[KVCache] = []
        with torch.no_grad():
            for t in self.ids:
                cache = KVCache(1, len(t))
                if len(t) > 1:
                    model(torch.tensor([t[:-1]]), cache=cache)
                self._caches.append(cache)

    def subset(self, idx) -> DecisionSet:
        """The prompts ``idx`` of this set, sharing its prefix caches (nothing is recomputed)."""
        out = DecisionSet.__new__(DecisionSet)
        out.model = self.model
        out.ids = [self.ids[int(i)] for i in idx]
        out._caches = [self._caches[int(i)] for i in idx]
        if not out.ids:
            raise ConfigError("a decision set needs at least one prompt")
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def _step_cache(self, p: int, n: int) -> KVCache:
        src = self._caches[p]
        cache = KVCache(n, src.max_len)
        cache.pos = src.pos
        cache.slots = {s: (k.expand(n, -1, -1, -1).clone(), v.expand(n, -1, -1, -1).clone())
                       for s, (k, v) in src.slots.items()}
        return cache

    def logits(self, prompt_of_row: torch.Tensor, edit: Intervention | None = None, chunk: int = 64,
               record_trace: bool = False, grad: bool = False):
        """Logits (R, V) of the decision token of prompt ``prompt_of_row[r]`` under row r of ``edit``; with
        ``record_trace``, also the :class:`Trace` (rows in the same order; with ``grad`` the logits and
        ``trace.a_graph`` stay in the graph, for one backward pass)."""
        prompt_of_row = torch.as_tensor(prompt_of_row, dtype=torch.long)
        R = prompt_of_row.shape[0]
        out = [None] * R
        traces: list[tuple[torch.Tensor, Trace]] = []
        for p in prompt_of_row.unique().tolist():
            rows_p = (prompt_of_row == p).nonzero().flatten()
            for start in range(0, len(rows_p), chunk):
                rows = rows_p[start:start + chunk]
                n = len(rows)
                tok = torch.full((n, 1), self.ids[p][-1])
                with torch.set_grad_enabled(grad), ExitStack() as stack:
                    if edit is not None:
                        stack.enter_context(intervene(self.model, edit.rows(rows)))
                    tr = stack.enter_context(record(self.model, None, grad)) if record_trace else None
                    lg, _ = self.model(tok, cache=self._step_cache(p, n))
                lg = lg[:, -1]
                for j, r in enumerate(rows.tolist()):
                    out[r] = lg[j]
                if record_trace:
                    traces.append((rows, tr))
        logits = torch.stack(out)
        if not record_trace:
            return logits
        order = torch.cat([r for r, _ in traces]).argsort()
        tr = Trace(a=torch.cat([t.a for _, t in traces])[order], x=torch.cat([t.x for _, t in traces])[order],
                   f=torch.cat([t.f for _, t in traces])[order])
        if grad:
            tr.chunks = [(rows, t.a_graph) for rows, t in traces]
        return logits, tr

