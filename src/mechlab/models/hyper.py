"""Hyper-connections over n residual streams (mHC, arXiv 2512.24880; Hyperloop, arXiv 2604.21254).

One :class:`HyperConnection` is one application: from the RMS-normalised flattened streams z it computes read
weights ``pre = σ(a_pre·W_pre z + b_pre)``, write weights ``post = 2σ(a_post·W_post z + b_post)`` and a residual
mix H_res, then ``Y ← H_res(Y) + post ⊗ f(Σ_i pre_i Y_i)``. H_res is the identity, a diagonal gate
``σ(a_res·W_res z + b_res)`` (Hyperloop) or a doubly-stochastic n×n matrix from Sinkhorn–Knopp (mHC).
"""

from __future__ import annotations

from collections.abc import Callable

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
        self.n_res = {"identity": 0, "diagonal": n, "sinkhorn": n * n}[hres]
        # W_pre, W_post and W_res stacked into one matrix (one matmul); default PyTorch init, as the authors' code.
        self.w = nn.Linear(n * d, 2 * n + self.n_res, bias=False)
        self.a = nn.Parameter(torch.full((3,), 0.01))  # a_pre, a_post, a_res
        self.b_pre = nn.Parameter(torch.full((n,), 1.0 / n))
        self.b_post = nn.Parameter(torch.zeros(n))
        # mHC's Sinkhorn bias is an n×n matrix: stored as one, it falls in the weight-decayed group (every tensor
        # of two or more dimensions) like the authors' n×n bias; the diagonal gate's bias is a vector, not decayed.
        self.b_res = nn.Parameter(torch.ones(n) if hres == "diagonal" else torch.zeros(n, n)) if self.n_res else None
        self._register_load_state_dict_pre_hook(self._flat_sinkhorn_bias)

    def _flat_sinkhorn_bias(self, state_dict, prefix, *args) -> None:
        """Checkpoints written before the Sinkhorn bias was stored as n×n hold it flat (n²,): reshape on load."""
        key = prefix + "b_res"
        if self.hres == "sinkhorn" and key in state_dict and state_dict[key].dim() == 1:
            state_dict[key] = state_dict[key].view(self.n, self.n)

    def forward(self, y: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """y: (B, T, n, C) streams; f maps the read-out (B, T, C) to the block output (B, T, C)."""
        flat = y.flatten(-2)
        # W·(flat / rms(flat)) = (W·flat) / rms(flat): normalise the few outputs, not the n·C inputs.
        rms = torch.linalg.vector_norm(flat.float(), dim=-1, keepdim=True) / flat.shape[-1] ** 0.5
        proj = self.w(flat) / (rms + 1e-20).to(flat.dtype)
        w_pre, w_post, w_res = proj.split([self.n, self.n, self.n_res], dim=-1)
        pre = torch.sigmoid(self.a[0] * w_pre + self.b_pre)
        post = 2 * torch.sigmoid(self.a[1] * w_post + self.b_post)
        # n is small (4): broadcast-and-sum beats einsum, which lowers to a bmm of B·T tiny matrices on the CPU.
        h = f((pre.unsqueeze(-1) * y).sum(-2))
        if self.hres == "identity":
            mixed = y
        elif self.hres == "diagonal":
            mixed = torch.sigmoid(self.a[2] * w_res + self.b_res).unsqueeze(-1) * y
        else:
            raw = self.a[2] * w_res.unflatten(-1, (self.n, self.n)) + self.b_res
            h_res = sinkhorn(raw.float(), self.sinkhorn_iters).to(y.dtype)
            mixed = (h_res.unsqueeze(-1) * y.unsqueeze(-3)).sum(-2)
        return torch.addcmul(mixed, post.unsqueeze(-1), h.unsqueeze(-2))
