"""Random Hadamard transform (incoherence processing; papers/trellis-quantization.md §3).

``W̃ = H_m diag(s_m) W diag(s_n) H_nᵀ`` with random signs s and normalised Hadamard matrices H applied by the fast
Walsh–Hadamard transform (O(n log n)). A size that is not a power of two is split by its binary expansion into
power-of-two blocks (352 = 256 + 64 + 32) and H is block-diagonal: still orthogonal and symmetric, so the inverse
is exact, but mixing happens only inside each block (QTIP instead uses K·2^j Hadamard matrices for special K).
"""

from __future__ import annotations

import math

import torch


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Normalised fast Walsh–Hadamard transform over the last dimension (a power of two); H = Hᵀ = H⁻¹."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two size, got {n}")
    shape = x.shape
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2)
        h *= 2
    return (y.reshape(shape) / math.sqrt(n)).to(x.dtype)


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
