"""Soft trellis decoding at a temperature (BCJR; BCJR-QAT, arXiv 2605.10655) — the differentiable core.

Two implementations of the same function ŵ(w):

* :func:`soft_decode` — the one used for training: an analytic forward–backward (the custom op
  ``mechlab::bcjr_soft`` with its backward op: compiled kernel or chunked PyTorch, :mod:`mechlab.kernels.ops`)
  with bounded memory; it keeps nothing between forward and backward but w.
* :func:`log_partition` / :func:`soft_weights` — the reference: autograd through the forward recursion alone.

Every path of the bitshift trellis gets the Boltzmann weight exp(−E/T), E = Σ_t |code(s_t) − w_t|². The forward
recursion runs in the log domain without gathers (the predecessors of the 2^kV states g·P + c are the group
{p·G + g}; one log-sum-exp over the first axis of the (P, G) view serves them all) and is renormalised every step
(the running maximum is subtracted and added to log Z), so float32 stays finite at low T. The soft weights follow
from log Z alone: ŵ = w + (T/2)·∇_w log Z, so differentiating log Z once with ``create_graph=True`` gives ŵ as a
differentiable function of w, and a second backward gives the exact gradient.

Free boundaries: any start state, any end state (the published reference). ``start``/``end`` restrict them as the
tail-biting hard code does (first state's older bits, last state's newer bits equal to a given overlap).
"""

from __future__ import annotations

import math

import torch

NEG = -1e30  # "impossible" in the log domain: finite, so groups with no allowed state stay NaN-free
DEFAULT_CHUNK_BYTES = 256 << 20


def log_partition(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, T: float,
                  start: torch.Tensor | None = None, end: torch.Tensor | None = None) -> torch.Tensor:
    """log Z (B,) of sequences w (B, N, V) under the code ``table`` (2^L, V) at temperature T."""
    B, N, _ = w.shape
    S, P = 1 << L, 1 << kV
    G = S // P
    table = table.to(w.dtype)
    states = torch.arange(S, device=w.device)

    def ell(t):  # (B, S): −|code(s) − w_t|² / T
        return -((table.unsqueeze(0) - w[:, t].unsqueeze(1)) ** 2).sum(-1) / T

    log_a = ell(0)
    if start is not None:
        log_a = log_a.masked_fill((states >> kV).unsqueeze(0) != start.unsqueeze(1), NEG)
    offset = torch.zeros(B, dtype=w.dtype, device=w.device)
    for t in range(1, N):
        m = log_a.amax(1, keepdim=True)
        offset = offset + m.squeeze(1)
        group = torch.logsumexp((log_a - m).view(B, P, G), dim=1)  # (B, G)
        log_a = (group.unsqueeze(-1) + ell(t).view(B, G, P)).view(B, S)
    if end is not None:
        log_a = log_a.masked_fill((states & (G - 1)).unsqueeze(0) != end.unsqueeze(1), NEG)
    return offset + torch.logsumexp(log_a, dim=1)


def soft_weights(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, T: float,
                 start: torch.Tensor | None = None, end: torch.Tensor | None = None) -> torch.Tensor:
    """ŵ = E_P[code(s_t)] (B, N, V), differentiable in w (exact gradients through ∂ŵ/∂w = (2/T)·Cov)."""
    build_graph = torch.is_grad_enabled() and w.requires_grad  # else ŵ is a plain tensor
    x = w if w.requires_grad else w.detach().requires_grad_(True)
    with torch.enable_grad():
        log_z = log_partition(x, table, L, kV, T, start, end)
        (grad,) = torch.autograd.grad(log_z.sum(), x, create_graph=build_graph)
    return w + (T / 2) * grad


# ---------------------------------------------------------------------------------------------------------------
# Analytic forward–backward.
#
# States g·P + c (P = 2^kV successors of the group g) have the predecessors {p·G + g}; a state p·G + g has the
# successors {g·P + c}. So with log α viewed as (P, G) one log-sum-exp over P gives every group's incoming mass,
# and with (ℓ + log β) viewed as (G, P) one log-sum-exp over P gives every state's outgoing mass: no gathers.
#
# Gradient. With G(path) = Σ_t g_t·code(s_t) for the incoming gradient g = ∂loss/∂ŵ,
#     ∂loss/∂w_u = (2/T)·Cov_P(G, code(s_u)) = (2/T)·Σ_s γ_u(s)·(code(s) − ŵ_u)·E[G | s_u = s],
# and E[G | s_u = s] = a_u(s) + b_u(s) splits into the expected prefix (a) and suffix (b) given the state:
#     a_t(s) = g_t·code(s) + Σ_p π_fwd(p | s)·a_{t−1}(p),   π_fwd(p | s) ∝ α_{t−1}(p) over the predecessors,
#     b_t(s) = Σ_q π_bwd(q | s)·(g_{t+1}·code(q) + b_{t+1}(q)),   π_bwd(q | s) ∝ exp ℓ_{t+1}(q)·β_{t+1}(q).
# Since Σ_s γ_u(s)(code(s) − ŵ_u) = 0, a constant added to a_t or b_t changes nothing; both are re-centred
# every step, which keeps float32 free of the cancellation an uncentred E[GX] − E[G]E[X] would suffer.
# Cost: the forward of the Function is two sweeps (α, then β with the marginals); its backward is two more (α
# with a, then β with b and the covariances): four sweeps of O(2^L) work per step, no second-order autograd.
# ---------------------------------------------------------------------------------------------------------------


def _step_logits(table: torch.Tensor, tsq: torch.Tensor, w_t: torch.Tensor, T: float) -> torch.Tensor:
    """ℓ_t(s) = −|code(s) − w_t|²/T for w_t (B, V) -> (B, S), as a matmul (no (B, S, V) intermediate)."""
    return (2 * w_t @ table.T - tsq - (w_t * w_t).sum(-1, keepdim=True)) / T


def _forward_sweep(w, table, tsq, L, kV, T, start, grad=None):
    """log α_t, renormalised per step (N, B, S); with ``grad`` also the centred prefix expectations a_t."""
    B, N, _ = w.shape
    S, P = 1 << L, 1 << kV
    G = S // P
    la = w.new_empty(N, B, S)
    a = w.new_empty(N, B, S) if grad is not None else None
    cur = _step_logits(table, tsq, w[:, 0], T)
    if start is not None:
        states = torch.arange(S, device=w.device)
        cur = cur.masked_fill((states >> kV).unsqueeze(0) != start.unsqueeze(1), NEG)
    la[0] = cur - cur.amax(1, keepdim=True)
    if grad is not None:
        a[0] = grad[:, 0] @ table.T
    for t in range(1, N):
        prev = la[t - 1].view(B, P, G)
        m = prev.amax(1, keepdim=True)
        e = (prev - m).exp_()
        tot = e.sum(1)  # (B, G)
        cur = (tot.log() + m.squeeze(1)).unsqueeze(-1) + _step_logits(table, tsq, w[:, t], T).view(B, G, P)
        cur = cur.view(B, S)
        la[t] = cur - cur.amax(1, keepdim=True)
        if grad is not None:
            inc = (e * a[t - 1].view(B, P, G)).sum(1) / tot  # (B, G): E[prefix | group]
            at = (inc.unsqueeze(-1) + (grad[:, t] @ table.T).view(B, G, P)).view(B, S)
            at -= (at * torch.softmax(la[t], 1)).sum(1, keepdim=True)
            a[t] = at
    return la, a


def _backward_sweep(w, table, tsq, L, kV, T, end, la, a=None, grad=None):
    """Marginals → ŵ (B, N, V); with ``grad`` (and the prefix expectations ``a``) the gradient ∂loss/∂w instead."""
    B, N, V = w.shape
    S, P = 1 << L, 1 << kV
    G = S // P
    out = w.new_empty(B, N, V)
    lb = w.new_zeros(B, S)
    if end is not None:
        states = torch.arange(S, device=w.device)
        lb = lb.masked_fill((states & (G - 1)).unsqueeze(0) != end.unsqueeze(1), NEG)
    b = w.new_zeros(B, S) if grad is not None else None
    for t in range(N - 1, -1, -1):
        gamma = torch.softmax(la[t] + lb, 1)  # (B, S)
        w_hat = gamma @ table  # (B, V)
        if grad is None:
            out[:, t] = w_hat
        else:
            cond = a[t] + b  # E[G | s_t = s] up to a constant
            out[:, t] = (2 / T) * ((gamma * cond) @ table - w_hat * (gamma * cond).sum(1, keepdim=True))
        if t == 0:
            break
        x = (_step_logits(table, tsq, w[:, t], T) + lb).view(B, G, P)
        m = x.amax(2, keepdim=True)
        e = (x - m).exp_()
        tot = e.sum(2)  # (B, G)
        if grad is not None:
            u = (grad[:, t] @ table.T).view(B, G, P)
            nxt = (e * (u + b.view(B, G, P))).sum(2) / tot  # (B, G): E[suffix | low bits g]
            b = nxt.unsqueeze(1).expand(B, P, G).reshape(B, S)
        lbg = tot.log() + m.squeeze(2)
        lb = lbg.unsqueeze(1).expand(B, P, G).reshape(B, S)
        lb = lb - lb.amax(1, keepdim=True)
        if grad is not None:
            b = b - (b * torch.softmax(la[t - 1] + lb, 1)).sum(1, keepdim=True)
    return out


def _chunks(B: int, N: int, S: int, itemsize: int, max_bytes: int, stored: int):
    per_seq = max(1, stored * N * S * itemsize)
    step = max(1, min(B, max_bytes // per_seq))
    return range(0, B, step), step


def soft_sweeps(w, table, L, kV, T, start, end, max_bytes, grad=None) -> torch.Tensor:
    """ŵ, or with ``grad`` (= ∂loss/∂ŵ) the gradient ∂loss/∂w, by the PyTorch sweeps over chunks of sequences (the
    backward stores two recursions per sequence, the forward one): the path of ``mechlab::bcjr_soft`` (and its
    backward) when the compiled kernel does not apply (:mod:`mechlab.kernels.ops`)."""
    tsq = (table * table).sum(-1)
    B, N, _ = w.shape
    out = torch.empty_like(w)
    starts, step = _chunks(B, N, 1 << L, w.element_size(), max_bytes, 1 if grad is None else 2)
    for i in starts:
        sl = slice(i, i + step)
        st, en = (None if start is None else start[sl]), (None if end is None else end[sl])
        g = None if grad is None else grad[sl]
        la, a = _forward_sweep(w[sl], table, tsq, L, kV, T, st, g)
        out[sl] = _backward_sweep(w[sl], table, tsq, L, kV, T, en, la, a, g)
    return out


def soft_decode(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, T: float,
                start: torch.Tensor | None = None, end: torch.Tensor | None = None,
                max_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """Soft weights ŵ_t = Σ_s P_T(s_t = s)·code(s) for sequences w (B, N, V), differentiable in w.

    The analytic forward–backward of this module: on float32 CPU tensors the compiled kernel
    (mechlab/kernels/bcjr.c: per-group messages, N·2^(L−kV) floats per thread), else PyTorch with sequences in
    chunks so that the stored recursions (N·2^L floats per sequence, two of them in the backward) stay under
    ``max_bytes``. ``start``/``end`` (B,)
    fix the tail-biting overlap as in :func:`log_partition`."""
    if not T > 0 or not math.isfinite(T):
        raise ValueError(f"temperature must be positive and finite (got {T})")
    from mechlab.kernels import bcjr_soft

    table = table.to(device=w.device, dtype=w.dtype)
    return bcjr_soft(w.contiguous(), table, L, kV, float(T), start, end, int(max_bytes))
