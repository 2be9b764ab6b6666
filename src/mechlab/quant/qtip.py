"""Trellis-coded quantisation of one weight matrix (QTIP-style PTQ; QTIP, arXiv 2406.11235).

W (m, n) → random Hadamard transform → one global scale so the rotated weights have RMS 0.9 (the code has unit
RMS) → 16×16 tiles, each one trellis sequence of 256 weights → Viterbi (tail-biting) → exactly k bits per weight.
With BlockLDLQ the column blocks (16 columns, one column of tiles) are coded from last to first, each aimed at
its own weights plus the already-made error of the later blocks fed back through the block LDL factor of the
(rotated) Hessian, which minimises the proxy loss tr(ΔW H ΔWᵀ) block by block.

With ``real_signs`` the codes are then frozen and the two sign vectors become real per-row and per-column scales
(the layer-wise stage of QTIP's fine-tuning, §4): Ŵ = diag(a) W₀ diag(b) with W₀ the decoded matrix, and (a, b)
minimise the layer's output error on the calibration inputs, E‖(W − Ŵ)x‖² = tr(ΔW H ΔWᵀ), exactly, by alternating
least squares (each half-step is a closed-form solve, so the loss never rises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mechlab.errors import ConfigError
from mechlab.quant import rht as rht_ops
from mechlab.quant.scalar import damped
from mechlab.quant.trellis import decode, encode

if TYPE_CHECKING:
    from mechlab.quant.methods import TrellisConfig

RMS_TARGET = 0.9  # rotated weights are scaled to 0.9 × the code's RMS


@dataclass
class TrellisCode:
    """Everything stored for one matrix: codes (n_tiles, N) with kV bits each, the start bits of each tile when
    not tail-biting, the global scale and the RHT sign vectors (None without RHT)."""

    codes: torch.Tensor
    start: torch.Tensor | None
    scale: float
    s_out: torch.Tensor | None
    s_in: torch.Tensor | None
    shape: tuple[int, int]


def to_tiles(w: torch.Tensor, t: int) -> torch.Tensor:
    """(m, n) -> (m/t · n/t, t·t), tiles in row-major order of the tile grid."""
    m, n = w.shape
    return w.reshape(m // t, t, n // t, t).permute(0, 2, 1, 3).reshape(-1, t * t)


def from_tiles(tiles: torch.Tensor, m: int, n: int, t: int) -> torch.Tensor:
    return tiles.reshape(m // t, n // t, t, t).permute(0, 2, 1, 3).reshape(m, n)


def block_ldl(h: torch.Tensor, b: int) -> torch.Tensor:
    """Unit lower block-triangular L (blocks b×b) with H = L D Lᵀ, D block diagonal (from the Cholesky factor)."""
    c = torch.linalg.cholesky(h)
    n = len(h)
    lower = c.clone()
    for i in range(0, n, b):
        lower[:, i : i + b] = torch.linalg.solve_triangular(c[i : i + b, i : i + b], c[:, i : i + b], upper=False, left=False)
    return lower


def proxy_loss(dw: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> float:
    """tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)."""
    dw, w, h = dw.double(), w.double(), h.double()
    return float(((dw @ h) * dw).sum() / ((w @ h) * w).sum().clamp(min=1e-30))


def trellis_quantize(w: torch.Tensor, cfg: TrellisConfig, h: torch.Tensor | None = None, seed: int = 0
                     ) -> tuple[TrellisCode, torch.Tensor]:
    """Code one matrix; returns the stored code and the reconstructed weights (float32, original basis)."""
    m, n = w.shape
    t = cfg.tile
    if m % t or n % t:
        raise ConfigError(f"trellis: a {m}×{n} matrix is not made of {t}×{t} tiles")
    if cfg.ldlq and h is None:
        raise ConfigError("trellis: BlockLDLQ needs a Hessian from calibration data (or set ldlq=False)")
    w = w.detach().float().cpu()
    s_out = s_in = None
    if cfg.rht:
        g = torch.Generator().manual_seed(seed)
        s_out, s_in = rht_ops.random_signs(m, g), rht_ops.random_signs(n, g)
        w_rot = rht_ops.rht_weight(w, s_out, s_in)
        h_rot = rht_ops.rht_hessian(h.float(), s_in) if h is not None else None
    else:
        w_rot, h_rot = w, h
    scale = float(w_rot.pow(2).mean().sqrt()) / RMS_TARGET or 1.0
    wn = w_rot / scale
    kw = dict(L=cfg.L, k=cfg.k, V=cfg.V, code=cfg.code, seed=cfg.seed)
    if not cfg.ldlq:
        codes, start = encode(to_tiles(wn, t), tail_biting=cfg.tail_biting, **kw)
        rec_n = from_tiles(decode(codes, start=start, **kw), m, n, t)
    else:
        lower = block_ldl(damped(h_rot, cfg.damp), t).float()
        rec_n = torch.zeros_like(wn)
        grid_codes = [None] * (n // t)
        grid_start = [None] * (n // t)
        for j in range(n // t - 1, -1, -1):
            cols = slice(j * t, (j + 1) * t)
            later = slice((j + 1) * t, n)
            target = wn[:, cols] + (wn[:, later] - rec_n[:, later]) @ lower[later, cols]
            codes_j, start_j = encode(to_tiles(target, t), tail_biting=cfg.tail_biting, **kw)  # (m/t, N)
            rec_n[:, cols] = from_tiles(decode(codes_j, start=start_j, **kw), m, t, t)
            grid_codes[j], grid_start[j] = codes_j, start_j
        # tile order (row of tiles, column of tiles), as to_tiles
        codes = torch.stack(grid_codes, 1).reshape(-1, grid_codes[0].shape[1])
        start = None if grid_start[0] is None else torch.stack(grid_start, 1).reshape(-1)
    code = TrellisCode(codes, start, scale, s_out, s_in, (m, n))
    if cfg.real_signs:
        w_hat = reconstruct(code, cfg)
        a, b = fit_row_col_scales(w, w_hat, damped(h.double(), cfg.damp) if h is not None else None)
        # stored in fp16: reconstruct from the values that are stored
        code.s_out, code.s_in = (s_out * a).half().float(), (s_in * b).half().float()
    return code, reconstruct(code, cfg)


def fit_row_col_scales(w: torch.Tensor, w0: torch.Tensor, h: torch.Tensor | None = None, iters: int = 8
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column scales (a, b) minimising tr(ΔW H ΔWᵀ), ΔW = W − diag(a) W₀ diag(b) (H = I when None).

    Alternating exact minimisation from a = b = 1: for fixed b each row's scale is a 1-D least-squares fit,
    aᵢ = (wᵢ H vᵢᵀ) / (vᵢ H vᵢᵀ) with V = W₀ diag(b); for fixed a, with U = diag(a) W₀, the loss is a quadratic in
    b with normal equations (H ∘ UᵀU) b = ((W H) ∘ U)ᵀ 1. Returned in float32."""
    w, w0 = w.double(), w0.double()
    n = w.shape[1]
    h = torch.eye(n, dtype=torch.float64) if h is None else h.double()
    wh = w @ h
    a = torch.ones(w.shape[0], dtype=torch.float64)
    b = torch.ones(n, dtype=torch.float64)
    for _ in range(iters):
        v = w0 * b
        a = (wh * v).sum(1) / ((v @ h) * v).sum(1).clamp(min=1e-30)
        u = w0 * a[:, None]
        gram = h * (u.T @ u)
        gram.diagonal().add_(1e-9 * float(gram.diagonal().mean()))
        b = torch.linalg.solve(gram, (wh * u).sum(0))
    return a.float(), b.float()


def reconstruct_rotated(code: TrellisCode, cfg: TrellisConfig) -> torch.Tensor:
    """The decoded weights in the rotated basis, times the global scale (W̃; float32)."""
    m, n = code.shape
    tiles = decode(code.codes, cfg.L, cfg.k, cfg.V, cfg.code, start=code.start, seed=cfg.seed)
    return from_tiles(tiles, m, n, cfg.tile) * code.scale


def reconstruct(code: TrellisCode, cfg: TrellisConfig) -> torch.Tensor:
    """The weights a stored code decodes to (float32, original basis)."""
    w_rot = reconstruct_rotated(code, cfg)
    if code.s_out is None:
        return w_rot
    return rht_ops.inverse_rht_weight(w_rot, code.s_out, code.s_in)
