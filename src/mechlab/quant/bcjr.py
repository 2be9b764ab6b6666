"""Soft trellis decoding at a temperature (BCJR; papers/trellis-quantization.md §5) — the differentiable core.

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

import torch


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
        log_a = log_a.masked_fill((states >> kV).unsqueeze(0) != start.unsqueeze(1), -torch.inf)
    offset = torch.zeros(B, dtype=w.dtype, device=w.device)
    for t in range(1, N):
        m = log_a.amax(1, keepdim=True)
        offset = offset + m.squeeze(1)
        group = torch.logsumexp((log_a - m).view(B, P, G), dim=1)  # (B, G)
        log_a = (group.unsqueeze(-1) + ell(t).view(B, G, P)).view(B, S)
    if end is not None:
        log_a = log_a.masked_fill((states & (G - 1)).unsqueeze(0) != end.unsqueeze(1), -torch.inf)
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
