"""Scalar (integer-grid) quantisation: round-to-nearest and GPTQ, per group of input columns.

A group of g consecutive input columns of one output row shares a grid ``w ≈ scale · (q − zero)`` with
q ∈ {0, …, 2^bits − 1}: asymmetric grids span [min, max] with an integer zero point, symmetric ones ±absmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mechlab.quant.methods import GPTQConfig, RTNConfig


def grid(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) of each row of w (rows, g)."""
    qmax = (1 << bits) - 1
    if symmetric:
        scale = (w.abs().amax(-1) * 2 / qmax).clamp(min=1e-12)
        zero = torch.full_like(scale, qmax / 2)
    else:
        lo, hi = w.amin(-1).clamp(max=0), w.amax(-1).clamp(min=0)
        scale = ((hi - lo) / qmax).clamp(min=1e-12)
        zero = torch.round(-lo / scale)
    return scale, zero


def round_to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes of w (rows, ...) on per-row grids (rows,) or broadcastable."""
    return torch.clamp(torch.round(w / scale + zero), 0, (1 << bits) - 1)


def n_groups(n: int, group_size: int) -> int:
    """Groups of ``group_size`` columns over n inputs; the last one is shorter when the size does not divide n."""
    return -(-n // group_size)


def rtn_quantize(w: torch.Tensor, cfg: RTNConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes (m, n), scales (m, n_groups), zeros (m, n_groups) by round-to-nearest."""
    w = w.float()
    parts = [(grid(wg, cfg.bits, cfg.symmetric), wg) for wg in w.split(cfg.group_size, dim=1)]
    q = torch.cat([round_to_grid(wg, s.unsqueeze(1), z.unsqueeze(1), cfg.bits) for (s, z), wg in parts], dim=1)
    return q.to(torch.uint8), torch.stack([s for (s, _), _ in parts], 1), torch.stack([z for (_, z), _ in parts], 1)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int) -> torch.Tensor:
    cols = torch.arange(q.shape[1], device=q.device) // group_size
    return (q.float() - zero.float()[:, cols]) * scale.float()[:, cols]


def damped(h: torch.Tensor, damp: float) -> torch.Tensor:
    """H + damp·mean(diag H)·I, with dead inputs (zero diagonal) given a unit diagonal."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype)
    return h


def gptq_quantize(w: torch.Tensor, h: torch.Tensor, cfg: GPTQConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ (Frantar et al. 2023): quantise columns one at a time, spreading each column's error over the columns
    not yet quantised through the upper Cholesky factor of H⁻¹ (lazy block updates). Columns go left to right
    with each group's grid set from the updated weights when the group is reached, or, with ``cfg.act_order``, in
    order of decreasing Hessian diagonal (the inputs with the most energy first, while the most columns remain to
    absorb their error) on "static" grids set from the original weights beforehand, so a group's columns can be
    visited in any order and the stored format (consecutive groups of columns) does not change. Returns codes,
    scales, zeros as :func:`rtn_quantize`.

    A dead input (zero Hessian diagonal: the calibration never excited it) has a zero row and column in H, so
    no error feedback flows into or out of its column: it keeps its round-to-nearest value (GPTQ's reference
    code zeroes such columns instead, which silently deletes weights that other inputs may excite)."""
    m, n = w.shape
    ng, g = n_groups(n, cfg.group_size), cfg.group_size
    W = w.double().clone()
    scales = torch.zeros(m, ng, dtype=torch.float64)
    zeros = torch.zeros(m, ng, dtype=torch.float64)
    if cfg.act_order:
        order = torch.argsort(torch.diag(h), descending=True, stable=True)
        for j, wg in enumerate(W.split(g, dim=1)):
            scales[:, j], zeros[:, j] = grid(wg, cfg.bits, symmetric=False)
    else:
        order = torch.arange(n)
    H = damped(h, cfg.damp)[order][:, order]
    W = W[:, order]
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros(m, n, dtype=torch.uint8)
    block = g if g < n and not cfg.act_order else cfg.block_size  # in column order a group never straddles blocks
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(order[i1 + i])
            if not cfg.act_order and col % g == 0:
                scales[:, col // g], zeros[:, col // g] = grid(W1[:, i : i + g], cfg.bits, symmetric=False)
            scale, zero = scales[:, col // g], zeros[:, col // g]
            q = round_to_grid(W1[:, i], scale, zero, cfg.bits)
            Q[:, col] = q.to(torch.uint8)
            err = (W1[:, i] - (q - zero) * scale) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
    return Q, scales.float(), zeros.float()


def int_table(config):
    """The config coding an embedding table for a scalar-grid method (RTN, GPTQ): an IntLinear of the same grid at
    ``embedding_bits`` (groups along d, so a row decodes alone); with the registry's (config, rotate, row_scales)
    both False (no rotation, no row scales: the grid has its own scales)."""
    import dataclasses

    return dataclasses.replace(config, embedding=False, embedding_bits=None,
                               bits=config.embedding_bits or config.bits), False, False


def int_head(config):
    """The config of an untied LM head for a scalar-grid method: a Linear layer of the method at the table's bits."""
    import dataclasses

    return dataclasses.replace(config, embedding=False, embedding_bits=None, bits=config.embedding_bits or config.bits)
