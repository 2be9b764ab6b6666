"""The phasor memory of PMNet (Goo, Yun, Jung, "Phasor Memory Networks", arXiv 2605.13370; docs/pmnet.md).

A switch of the one model family (``ModelConfig.memory``): :class:`PhasorMemory` holds a write module for every
level h = 0 … H−1 (a write at layers 0, P, 2P, …) and a read module for every layer; the Transformer calls it
between each block's attention and MLP: ``x ← x + Attn(RMSNorm(x)); [WRITE]; x ← x + READ(x); x ← x + MLP(…)``.

Symbols of the paper and their names here (per token t; N slots, M phases, R read heads):

- S_t (N × M): the memory state a token reads, the sum of the level states along its routing path
  (``PhasorState.phase``); every token starts in group 0 of level 0 with S_t = 0.
- g: the token's group at the current level, one of N^h (``PhasorState.group``); E_h[g] (N × M): the learned
  anchor of that group (``PhasorWrite.anchor``, shape (N^h, N, M), init N(0, init_std)).
- WRITE at level h, u = RMSNorm(x): q = π·tanh(W_q u + b) ∈ R^M; φ_j = S_{t,j} + E_h[g]_j;
  k_j = π·tanh(W_k [sin φ_j; cos φ_j] + b); p_j = softmax_j(Σ_m cos(q_m − k_{j,m}) / √M);
  θ = π·tanh(W_o (W_v u + b) + b) ∈ R^M; Δ_{t,j} = p_j·θ; U_t = Σ_{s ≤ t, same sequence and group} Δ_s (inclusive),
  S_t ← S_t + (U_t mod 2π); next group g' = N·g + argmax_j p_j (hard, no gradient).
- READ at layer l (level h = ⌊l / P⌋, the token's group g at that level): q = π·tanh(W_q RMSNorm(x) + b), R heads
  of M; [K; V] = W_kv [sin φ; cos φ] + b over the N slots, φ = S_t + E_h[g], K = π·tanh(K);
  a_{r,j} = softmax_j(Σ_m cos(q_{r,m} − K_{r,j,m}) / √M); out = W_out concat_r(Σ_j a_{r,j} V_{r,j}) + b.

Σ_m cos(q_m − k_m) is computed as the dot product [cos q; sin q]·[cos k; sin k] (cos(a − b) = cos a cos b +
sin a sin b). The recurrence U is the segmented prefix sum of :func:`segmented_phase_sum` (sort by (sequence, group),
one cumulative sum, segment offsets, unsort); a :class:`~mechlab.models.transformer.KVCache` carries the last U of
every (sequence, level, group) between chunks (``KVCache.phasor``), so streaming a document in chunks gives the same
result as one pass with a memory state of Σ_h N^h·N·M numbers per sequence whatever the length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

TWO_PI = 2 * math.pi


class _SegmentedSum(torch.autograd.Function):
    """The sorted segmented prefix sum with its own backward (the reverse segmented sum), see
    :func:`segmented_phase_sum`. The float64 work runs on the transpose (D, B·T): every cumulative sum then runs along
    contiguous memory (each column is added in the same order as ``cumsum(0)`` over (B·T, D) rows would, so the
    values are the same bits, but a CPU's ``cumsum(0)`` strides through memory and is several times slower), the
    offsets are gathered per segment and the elementwise work stays contiguous; only float32 tensors are
    transposed. Gathers are ``index_select`` (autograd's backward of advanced indexing is a sort-based scatter)."""

    @staticmethod
    def forward(ctx, delta, carry, order, inverse, sk, first, seg, last_rows, scale):
        B, T, D = delta.shape
        sel = torch.index_select
        x = sel(delta.reshape(B * T, D), 0, order).t().contiguous().to(torch.float64)  # (D, B·T), sorted
        c = x.cumsum(1)
        # each segment's starting offset: the running sum before its first row (0 for the first segment)
        off = torch.cat([c.new_zeros(D, 1), sel(c, 1, first[1:] - 1)], 1)  # (D, segments)
        u = c - sel(off, 1, seg)
        if carry is not None:
            u = u + sel(carry.reshape(-1, D).t().to(torch.float64), 1, sk)
        u = torch.remainder(u, TWO_PI).to(delta.dtype)  # (D, B·T)
        ctx.save_for_backward(order, inverse, sk, first, seg, last_rows, scale)
        ctx.shape, ctx.carry_shape = delta.shape, None if carry is None else carry.shape
        last = sel(u, 1, last_rows).t()  # U of each segment's last row (segments, D)
        ctx.mark_non_differentiable(last)
        return sel(u, 1, inverse).t().contiguous().view(B, T, D), last

    @staticmethod
    def backward(ctx, grad_out, _grad_last):
        # dL/dΔ_s = Σ_{t ≥ s, same segment} dL/dU_t (the mod has derivative 1): a reverse cumulative sum over the
        # sorted rows minus, per segment, the sum after its last row (0 for the last segment); float64 as forward.
        order, inverse, sk, first, seg, last_rows, scale = ctx.saved_tensors
        B, T, D = ctx.shape
        sel = torch.index_select
        g = sel(grad_out.reshape(B * T, D), 0, order).t().contiguous().to(torch.float64)  # (D, B·T)
        r = g.flip(1).cumsum(1).flip(1)
        after = torch.cat([sel(r, 1, last_rows[:-1] + 1), r.new_zeros(D, 1)], 1)  # (D, segments)
        d = r - sel(after, 1, seg)
        grad_carry = None
        if ctx.carry_shape is not None and ctx.needs_input_grad[1]:
            n = ctx.carry_shape[0] * ctx.carry_shape[1]
            grad_carry = d.new_zeros(n, D).index_copy(0, sk[first], sel(d, 1, first).t())
            grad_carry = grad_carry.view(ctx.carry_shape).to(grad_out.dtype)
        grad = sel(d.to(grad_out.dtype), 1, inverse).t().contiguous().view(B, T, D)
        if scale is not None:
            grad = grad * scale
        return grad, grad_carry, None, None, None, None, None, None, None


def segmented_phase_sum(delta: torch.Tensor, group: torch.Tensor, n_groups: int, *, scale_grad: bool = False,
                        carry: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The inclusive segmented prefix sum of phase increments, mod 2π, computed in parallel.

    delta (B, T, D): increments Δ_t; group (B, T) int64 in [0, n_groups): the segment of each token (its group);
    returns (U, last): U (B, T, D) with U_t = (c[b, g_t] + Σ_{s ≤ t, group_s = g_t} Δ_s) mod 2π ∈ [0, 2π), and
    last (B, n_groups, D) = the new carry (U of the last token of each (sequence, group); c where a group has no
    token here). ``carry`` c (B, n_groups, D) continues a previous chunk (zeros if None).

    Method: stable sort of the keys b·n_groups + g (O(BT log BT)), one cumulative sum over the sorted rows,
    subtraction of each segment's starting offset, unsort by the inverse permutation: never a T × T loop. The sum
    runs in float64 (a float32 cumsum over B·T rows of |Δ| ≤ π would lose ~B·T·π·2⁻²⁴ radians), then mod 2π in
    float64 and a cast back to delta's dtype. Gradients flow through Δ (the mod has derivative 1); the backward pass
    is the same construction reversed (a reverse cumulative sum minus what lies after each segment), in float64.
    With ``scale_grad`` (training), the gradient reaching Δ_t is divided by max(1, √n) with n the number of tokens
    of its segment in this call; its value is unchanged (the authors' straight-through scaling).
    """
    B, T, D = delta.shape
    key = (torch.arange(B, device=delta.device).unsqueeze(1) * n_groups + group).reshape(-1)
    order = torch.sort(key, stable=True).indices
    sk = key[order]
    scale = None
    if scale_grad:
        count = torch.bincount(key, minlength=B * n_groups)[key]
        scale = count.to(delta.dtype).clamp(min=1).sqrt().reciprocal().view(B, T, 1)
    start = torch.ones_like(sk, dtype=torch.bool)
    start[1:] = sk[1:] != sk[:-1]
    seg = start.cumsum(0) - 1  # segment index of each sorted row
    end = torch.ones_like(start)
    end[:-1] = start[1:]
    first, last_rows = start.nonzero().squeeze(1), end.nonzero().squeeze(1)  # each segment's first and last row
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    out, u_last = _SegmentedSum.apply(delta, carry, order, inverse, sk, first, seg, last_rows, scale)
    base = carry.reshape(B * n_groups, D) if carry is not None else delta.new_zeros(B * n_groups, D)
    last = base.detach().to(delta.dtype).index_copy(0, sk[last_rows], u_last).view(B, n_groups, D)
    return out, last


def phase_sum_loop(delta: torch.Tensor, group: torch.Tensor, n_groups: int,
                   carry: torch.Tensor | None = None) -> torch.Tensor:
    """Token-by-token reference of :func:`segmented_phase_sum` (same shapes; no gradient scaling): a running sum
    per (sequence, group), reduced mod 2π at every token. O(B·T) Python steps: for tests at small sizes."""
    B, T, D = delta.shape
    acc = delta.new_zeros(B, n_groups, D) if carry is None else carry.clone().to(delta.dtype)
    out = []
    for t in range(T):
        rows = torch.arange(B)
        acc = acc.index_put((rows, group[:, t]), acc[rows, group[:, t]] + delta[:, t])
        out.append(torch.remainder(acc[rows, group[:, t]], TWO_PI))
    return torch.stack(out, 1)


def _phase_dot(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Σ_m cos(q_m − k_m) over the last dimension, as cos q·cos k + sin q·sin k (broadcasting)."""
    return (torch.cos(q) * torch.cos(k) + torch.sin(q) * torch.sin(k)).sum(-1)


@dataclass
class PhasorState:
    """The per-token memory state of one forward pass: ``phase`` S (B, T, N, M), ``group`` (B, T) the token's group
    at ``level``, ``choice`` (B, T) its argmax slot there (the branch to the next level), and ``features``
    [sin φ; cos φ] (B, T, N, 2M) of the current level's slots, φ = S + E_level[group], shared by that level's reads."""

    phase: torch.Tensor
    group: torch.Tensor
    choice: torch.Tensor | None = None
    level: int = -1
    features: torch.Tensor | None = None


class PhasorWrite(nn.Module):
    """The write module of level h: routing over the N slots of the token's group, the increment θ, the segmented
    sum and the hard descent to the next level (see the module docstring). ``anchor`` E_h: (N^h, N, M)."""

    def __init__(self, d_model: int, n_slots: int, dim: int, level: int, eps: float):
        super().__init__()
        self.n_slots, self.dim, self.n_groups = n_slots, dim, n_slots**level
        self.norm = nn.RMSNorm(d_model, eps=eps)
        self.q = nn.Linear(d_model, dim)
        self.k = nn.Linear(2 * dim, dim)
        self.v = nn.Linear(d_model, dim)
        self.o = nn.Linear(dim, dim)
        self.anchor = nn.Parameter(torch.empty(self.n_groups, n_slots, dim))

    def _anchor(self, group: torch.Tensor) -> torch.Tensor:
        """E_h[g] (B, T, N, M) for the groups g (B, T): a gather of rows (``index_select``, whose backward is a
        single index_add rather than the sort-based accumulation of advanced indexing)."""
        return torch.index_select(self.anchor, 0, group.reshape(-1)).view(*group.shape, *self.anchor.shape[1:])

    def forward(self, x: torch.Tensor, state: PhasorState, cumsum: bool, grad_scale: bool,
                carry: torch.Tensor | None) -> torch.Tensor | None:
        """Update ``state`` in place (phase, group, choice, features) from x (B, T, C); returns the new carry
        (B, N^h, N·M) of the streaming cache, or None when ``carry`` is None and no cache is kept."""
        B, T, _ = x.shape
        u = self.norm(x)
        q = math.pi * torch.tanh(self.q(u))  # (B, T, M)
        phi = state.phase + self._anchor(state.group)  # (B, T, N, M)
        k = math.pi * torch.tanh(self.k(torch.cat([phi.sin(), phi.cos()], -1)))
        p = F.softmax(_phase_dot(q.unsqueeze(-2), k) / math.sqrt(self.dim), dim=-1)  # (B, T, N)
        theta = math.pi * torch.tanh(self.o(self.v(u)))  # (B, T, M)
        delta = (p.unsqueeze(-1) * theta.unsqueeze(-2)).reshape(B, T, -1)  # Δ (B, T, N·M)
        new_carry = None
        if cumsum:
            U, new_carry = segmented_phase_sum(delta, state.group, self.n_groups,
                                               scale_grad=grad_scale and self.training, carry=carry)
            if carry is None:
                new_carry = None
        else:
            U = torch.remainder(delta, TWO_PI)
        state.phase = state.phase + U.view_as(state.phase)
        state.choice = p.argmax(-1)
        phi = state.phase + self._anchor(state.group)
        state.features = torch.cat([phi.sin(), phi.cos()], -1)
        return new_carry


class PhasorRead(nn.Module):
    """A read module: R heads attend over the N slots of the token's current group (module docstring)."""

    def __init__(self, d_model: int, n_slots: int, dim: int, heads: int, eps: float):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.norm = nn.RMSNorm(d_model, eps=eps)
        self.q = nn.Linear(d_model, heads * dim)
        self.kv = nn.Linear(2 * dim, 2 * heads * dim)
        self.out = nn.Linear(heads * dim, d_model)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """x (B, T, C), features [sin φ; cos φ] (B, T, N, 2M) -> the read-out (B, T, C) added to the stream."""
        B, T, _ = x.shape
        R, M = self.heads, self.dim
        q = math.pi * torch.tanh(self.q(self.norm(x))).view(B, T, R, M, 1)
        K, V = self.kv(features).view(B, T, -1, 2, R, M).unbind(3)  # (B, T, N, R, M) each
        K = math.pi * torch.tanh(K.transpose(2, 3))  # (B, T, R, N, M)
        # Σ_m cos(q_m − K_jm) = [cos K_j; sin K_j]·[cos q; sin q]: one batched matrix product per (token, head)
        score = torch.cat([K.cos(), K.sin()], -1) @ torch.cat([q.cos(), q.sin()], -2)  # (B, T, R, N, 1)
        a = F.softmax(score.squeeze(-1) / math.sqrt(M), dim=-1)  # (B, T, R, N)
        o = a.unsqueeze(-2) @ V.transpose(2, 3)  # (B, T, R, 1, M)
        return self.out(o.reshape(B, T, R * M))


class PhasorMemory(nn.Module):
    """All writes (one per level) and reads (one per layer) of a PMNet; called by the Transformer at every layer
    through :meth:`layer`. ``begin`` makes the state of a forward pass."""

    def __init__(self, cfg):
        super().__init__()
        self.n_slots, self.dim, self.every = cfg.mem_slots, cfg.mem_dim, cfg.mem_write_every
        self.cumsum, self.grad_scale = cfg.mem_cumsum, cfg.mem_grad_scale
        self.writes = nn.ModuleList(PhasorWrite(cfg.d_model, cfg.mem_slots, cfg.mem_dim, h, cfg.norm_eps)
                                    for h in range(cfg.mem_levels))
        self.reads = nn.ModuleList(PhasorRead(cfg.d_model, cfg.mem_slots, cfg.mem_dim, cfg.mem_read_heads, cfg.norm_eps)
                                   for _ in range(cfg.n_layers))

    def reset_parameters(self, std: float) -> None:
        """Linear weights and anchors N(0, std), biases 0, norms 1 (W_out ~ N(0, 0.02), bias 0 as in the paper)."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, std)

    def state_bytes(self, dtype_bytes: int = 4) -> int:
        """Bytes of the streaming memory state of one sequence: Σ_h N^h · N · M numbers."""
        return sum(w.n_groups for w in self.writes) * self.n_slots * self.dim * dtype_bytes

    def begin(self, x: torch.Tensor) -> PhasorState:
        B, T, _ = x.shape
        return PhasorState(phase=x.new_zeros(B, T, self.n_slots, self.dim),
                           group=torch.zeros(B, T, dtype=torch.long, device=x.device))

    def layer(self, x: torch.Tensor, index: int, state: PhasorState, cache=None) -> torch.Tensor:
        """[WRITE at level index // P when index % P == 0]; then x + READ(x) at layer ``index``. ``cache`` (a
        KVCache) keeps the per-(sequence, level, group) carries in ``cache.phasor``."""
        if index % self.every == 0:
            level = index // self.every
            if level > 0:
                state.group = state.group * self.n_slots + state.choice
            state.level = level
            w = self.writes[level]
            carry = None
            if cache is not None and self.cumsum:
                carry = cache.phasor.get(level)
                if carry is None:
                    carry = x.new_zeros(x.shape[0], w.n_groups, self.n_slots * self.dim)
            new = w(x, state, self.cumsum, self.grad_scale, carry)
            if new is not None:
                cache.phasor[level] = new
        return x + self.reads[index](x, state.features)
