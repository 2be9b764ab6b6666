"""Hyper-connections over n residual streams (mHC, Hyperloop; see papers/hyperloop.md).

One :class:`HyperConnection` is one application: from the RMS-normalised flattened streams z it computes read
weights ``pre = σ(a_pre·W_pre z + b_pre)``, write weights ``post = 2σ(a_post·W_post z + b_post)`` and a residual
mix H_res, then ``Y ← H_res(Y) + post ⊗ f(Σ_i pre_i Y_i)``. H_res is the identity, a diagonal gate
``σ(a_res·W_res z + b_res)`` (Hyperloop) or a doubly-stochastic n×n matrix from Sinkhorn–Knopp (mHC).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def sinkhorn(logits: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Doubly-stochastic matrices from exp(logits) (..., n, n): alternate row and column normalisation."""
    m = torch.exp(logits - logits.amax(dim=(-2, -1), keepdim=True))
    for _ in range(iters):
        m = m / m.sum(dim=-1, keepdim=True)
        m = m / m.sum(dim=-2, keepdim=True)
    return m


class HyperConnection(nn.Module):
    def __init__(self, n: int, d: int, hres: str = "diagonal", sinkhorn_iters: int = 20):
        super().__init__()
        self.n, self.hres, self.sinkhorn_iters = n, hres, sinkhorn_iters
        self.w_pre = nn.Linear(n * d, n, bias=False)  # default PyTorch init, as the authors' code
        self.w_post = nn.Linear(n * d, n, bias=False)
        self.a = nn.Parameter(torch.full((3,), 0.01))  # a_pre, a_post, a_res
        self.b_pre = nn.Parameter(torch.full((n,), 1.0 / n))
        self.b_post = nn.Parameter(torch.zeros(n))
        if hres == "identity":
            self.w_res, self.b_res = None, None
        elif hres == "diagonal":
            self.w_res, self.b_res = nn.Linear(n * d, n, bias=False), nn.Parameter(torch.ones(n))
        else:  # sinkhorn
            self.w_res, self.b_res = nn.Linear(n * d, n * n, bias=False), nn.Parameter(torch.zeros(n * n))

    def forward(self, y: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """y: (B, T, n, C) streams; f maps the read-out (B, T, C) to the block output (B, T, C)."""
        flat = y.flatten(-2)
        z = flat * torch.rsqrt(flat.float().pow(2).mean(-1, keepdim=True) + 1e-20).to(flat.dtype)
        pre = torch.sigmoid(self.a[0] * self.w_pre(z) + self.b_pre)
        post = 2 * torch.sigmoid(self.a[1] * self.w_post(z) + self.b_post)
        h = f(torch.einsum("btn,btnc->btc", pre, y))
        if self.hres == "identity":
            mixed = y
        elif self.hres == "diagonal":
            mixed = torch.sigmoid(self.a[2] * self.w_res(z) + self.b_res).unsqueeze(-1) * y
        else:
            raw = (self.a[2] * self.w_res(z) + self.b_res).unflatten(-1, (self.n, self.n))
            mixed = torch.einsum("btij,btjc->btic", sinkhorn(raw.float(), self.sinkhorn_iters).to(y.dtype), y)
        return mixed + post.unsqueeze(-1) * h.unsqueeze(-2)
