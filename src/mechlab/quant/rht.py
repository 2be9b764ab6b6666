"""Random Hadamard transform (incoherence processing; QTIP, arXiv 2406.11235).

``W̃ = H_m diag(s_m) W diag(s_n) H_nᵀ`` with random signs s and normalised Hadamard matrices H applied by the fast
Walsh–Hadamard transform (O(n log n)). A size that is not a power of two is split by its binary expansion into
power-of-two blocks (352 = 256 + 64 + 32) and H is block-diagonal: still orthogonal and symmetric, so the inverse
is exact, but mixing happens only inside each block (QTIP instead uses K·2^j Hadamard matrices for special K).
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=32)
def _sylvester(m: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The unnormalised Sylvester Hadamard matrix of size m (a power of two), entries ±1."""
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < m:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Normalised fast Walsh–Hadamard transform over the last dimension (a power of two); H = Hᵀ = H⁻¹.

    H_{2^p} = H_{2^a} ⊗ H_{2^b} ⊗ …, so the vector is viewed as a small tensor with one axis per factor (factors of
    at most 64) and each axis is multiplied by its dense ±1 matrix: a few matmuls instead of p butterfly passes."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two size, got {n}")
    p = n.bit_length() - 1
    parts = -(-p // 6)
    sizes = [1 << (p // parts + (i < p % parts)) for i in range(parts)] if p else []
    y = x.reshape(-1, *sizes) if sizes else x.reshape(-1, 1)
    for axis, m in enumerate(sizes, start=1):
        h = _sylvester(m, y.dtype, str(y.device))
        y = torch.movedim(torch.movedim(y, axis, -1) @ h, -1, axis)
    return (y.reshape(x.shape) / math.sqrt(n)).to(x.dtype)


def blocks(n: int) -> list[int]:
    """Power-of-two block sizes of the binary expansion of n, largest first."""
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """The (block-diagonal) normalised Hadamard transform over the last dimension; its own inverse."""
    sizes = blocks(x.shape[-1])
    if len(sizes) == 1:
        return fwht(x)
    return torch.cat([fwht(part) for part in x.split(sizes, dim=-1)], dim=-1)


def random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1


def rht_weight(w: torch.Tensor, s_out: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
    """W̃ = H_m diag(s_out) W diag(s_in) H_n for W (m, n)."""
    return hadamard(hadamard(w * s_in).T * s_out).T


def inverse_rht_weight(wt: torch.Tensor, s_out: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
    """W from W̃ (the inverse of :func:`rht_weight`)."""
    return hadamard(hadamard(wt).T).T * s_out[:, None] * s_in


def rht_hessian(h: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
    """H̃ = H_n diag(s_in) H diag(s_in) H_n, the input-side Hessian in the rotated basis."""
    return hadamard(hadamard(h * s_in * s_in[:, None]).T)
