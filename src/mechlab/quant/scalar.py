"""Scalar (integer-grid) quantisation: round-to-nearest and GPTQ, per group of input columns.

A group of g consecutive input columns of one output row shares a grid ``w ≈ scale · (q − zero)`` with
q ∈ {0, …, 2^bits − 1}: asymmetric grids span [min, max] with an integer zero point, symmetric ones ±absmax.

llama.cpp's block formats (``format``: :data:`BLOCK_FORMATS`, ggml-common.h) are such grids on groups of 32 with
the scale (and minimum) fixed by llama.cpp's reference quantiser of the block's weights (ggml-quants.c
``quantize_row_*_ref``, as the ``gguf`` package's ``gguf.quants`` reproduces it bit for bit), stored in fp16:

* Q4_0: d = v/−8 with v the block's weight of largest magnitude (signed), w ≈ (q − 8)·d, q ∈ 0..15;
* Q4_1: d = (max − min)/15, m = min, w ≈ q·d + m, q ∈ 0..15 (the minimum is a float, not an integer zero point);
* Q8_0: d = max|w|/127, w ≈ (q − 128)·d with q − 128 ∈ −127..127 (the int8 code plus 128, as a uint8).

The reference rounds each weight against the float32 d before d is stored in fp16 (and truncates x + ½, not
nearest-even); RTN with a format reproduces those codes exactly, GPTQ chooses its own codes on the stored grid.
All-zero blocks get d = 0 (and m = 0) and the code of zero (8, 0, 128).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from mechlab.quant.methods import GPTQConfig, RTNConfig


BLOCK = 32  # weights per llama.cpp block (QK4_0 = QK4_1 = QK8_0 = 32)


@dataclass(frozen=True)
class BlockFormat:
    """One llama.cpp block type as a grid of :class:`~mechlab.quant.linear.IntLinear`: ``bits`` per code, codes in
    ``qmin..qmax``; ``zero``: the fixed integer zero point of a symmetric type (w ≈ (q − zero)·d), None for Q4_1
    (w ≈ q·d + m with an fp16 minimum m per block)."""

    name: str
    bits: int
    qmin: int
    qmax: int
    zero: int | None


BLOCK_FORMATS = {"q4_0": BlockFormat("q4_0", 4, 0, 15, 8), "q4_1": BlockFormat("q4_1", 4, 0, 15, None),
                 "q8_0": BlockFormat("q8_0", 8, 1, 255, 128)}


def block_format(name: str) -> BlockFormat:
    """The :class:`BlockFormat` of a llama.cpp type name (q4_0, q4_1, q8_0); ConfigError for another name."""
    from mechlab.errors import ConfigError

    if name not in BLOCK_FORMATS:
        raise ConfigError(f"format {name!r} is not one of llama.cpp's block types {', '.join(BLOCK_FORMATS)}")
    return BLOCK_FORMATS[name]


def llama_cpp_blocks(w: torch.Tensor, fmt: BlockFormat) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """llama.cpp's reference quantisation of w (m, n), n a multiple of 32, blocks of 32 along each row: codes (m, n)
    uint8 in ``fmt``'s code range (Q8_0's int8 plus 128), d (m, n/32) and, for Q4_1, m (m, n/32) as float32 holding
    the stored fp16 values (None for the symmetric types). Computed by the ``gguf`` package's quantiser (llama.cpp's
    rounding, bit for bit) on w in float32 and read back out of its block bytes (ggml-common.h layouts:
    Q4_0 = fp16 d + 16 bytes of nibbles, low nibbles the first 16 weights; Q4_1 = fp16 d, fp16 m + nibbles;
    Q8_0 = fp16 d + 32 int8)."""
    import gguf
    from gguf.quants import quantize

    m, n = w.shape
    kind = getattr(gguf.GGMLQuantizationType, fmt.name.upper())
    raw = quantize(np.ascontiguousarray(w.detach().float().cpu().numpy()), kind).reshape(m * n // BLOCK, -1)
    d = torch.from_numpy(raw[:, :2].copy().view(np.float16).astype(np.float32)).reshape(m, -1)
    mins = None
    if fmt.zero is None:
        mins = torch.from_numpy(raw[:, 2:4].copy().view(np.float16).astype(np.float32)).reshape(m, -1)
    body = raw[:, 4 if fmt.zero is None else 2:]
    if fmt.bits == 4:
        q = np.concatenate([body & 0x0F, body >> 4], axis=1)
    else:
        q = (body.view(np.int8).astype(np.int16) + fmt.zero).astype(np.uint8)
    return torch.from_numpy(q.reshape(m, n)), d, mins


def block_bytes(q: torch.Tensor, d: torch.Tensor, mins: torch.Tensor | None, fmt: BlockFormat) -> np.ndarray:
    """The GGUF tensor data (m, n/32 · bytes per block) uint8 of codes q (m, n) with fp16-exact d (and m): the
    inverse of :func:`llama_cpp_blocks` (ConfigError when a scale is not an fp16 value, so nothing is rounded)."""
    from mechlab.errors import ConfigError

    rows, n = q.shape
    parts = [d] if mins is None else [d, mins]
    halves = []
    for t in parts:
        h = t.detach().float().cpu().numpy().astype(np.float16)
        if not np.array_equal(h.astype(np.float32), t.detach().float().cpu().numpy()):
            raise ConfigError(f"{fmt.name} block scales must be fp16 values to be written without rounding")
        halves.append(h.reshape(-1, 1).view(np.uint8))
    qb = q.cpu().numpy().astype(np.int16).reshape(-1, BLOCK)
    if fmt.bits == 4:
        body = (qb[:, :16] | (qb[:, 16:] << 4)).astype(np.uint8)
    else:
        body = (qb - fmt.zero).astype(np.int8).view(np.uint8)
    return np.concatenate([*halves, body], axis=1).reshape(rows, -1)


def block_dequantize(q: torch.Tensor, d: torch.Tensor, mins: torch.Tensor | None, fmt: BlockFormat) -> torch.Tensor:
    """The float32 weights (m, n) of codes q (m, n) on a block format's grids d (and m) (m, n/32), computed as
    llama.cpp's dequantize_row_* does: (q − zero)·d, or q·d + m (one product, exact in float32, then one sum)."""
    cols = torch.arange(q.shape[1], device=q.device) // BLOCK
    d = d.float()[:, cols]
    if fmt.zero is not None:
        return (q.float() - fmt.zero) * d
    return q.float() * d + mins.float()[:, cols]


def block_round(w: torch.Tensor, d: torch.Tensor, mins: torch.Tensor | None, fmt: BlockFormat) -> torch.Tensor:
    """Nearest codes of w (rows,) on grids d (and m) (rows,) of a block format, clamped to its range; a block with
    d = 0 gets the code of its only value (zero, or m)."""
    x = w / d + fmt.zero if fmt.zero is not None else (w - mins) / d
    x = torch.where(d == 0, torch.full_like(x, fmt.zero if fmt.zero is not None else 0), x)
    return torch.clamp(torch.round(x), fmt.qmin, fmt.qmax)


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
    """Codes (m, n), scales (m, n_groups), zeros (m, n_groups) by round-to-nearest. With ``cfg.format`` (a llama.cpp
    block type) llama.cpp's own reference quantisation, bit for bit: codes, d and (Q4_1) the minima m in place of
    the zeros (None for the symmetric types; :func:`llama_cpp_blocks`)."""
    if cfg.format is not None:
        return llama_cpp_blocks(w, block_format(cfg.format))
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
    code zeroes such columns instead, which silently deletes weights that other inputs may excite).

    With ``cfg.format`` (a llama.cpp block type) the groups are llama.cpp's blocks of 32 with d (and m) those of
    llama.cpp's reference quantiser of the weights as given (static grids, fp16 as stored; :func:`llama_cpp_blocks`),
    and GPTQ chooses each code as the nearest point of that stored grid to the error-compensated weight; returns
    codes, d and the minima (Q4_1) or None in place of the zeros."""
    if cfg.format is not None:
        return _gptq_blocks(w, h, cfg, block_format(cfg.format))
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


def _gptq_blocks(w: torch.Tensor, h: torch.Tensor, cfg: GPTQConfig, fmt: BlockFormat):
    """GPTQ onto a llama.cpp block format's static grids (see :func:`gptq_quantize`)."""
    m, n = w.shape
    _, d, mins = llama_cpp_blocks(w, fmt)
    d64, m64 = d.double(), None if mins is None else mins.double()
    W = w.double().clone()
    order = torch.argsort(torch.diag(h), descending=True, stable=True) if cfg.act_order else torch.arange(n)
    H = damped(h, cfg.damp)[order][:, order]
    W = W[:, order]
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros(m, n, dtype=torch.uint8)
    for i1 in range(0, n, cfg.block_size):
        i2 = min(i1 + cfg.block_size, n)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(order[i1 + i])
            b = col // BLOCK
            db, mb = d64[:, b], None if m64 is None else m64[:, b]
            q = block_round(W1[:, i], db, mb, fmt)
            Q[:, col] = q.to(torch.uint8)
            w_hat = (q - fmt.zero) * db if fmt.zero is not None else q * db + mb
            err = (W1[:, i] - w_hat) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
    return Q, d, mins


def check_format(cfg, what: str) -> None:
    """Validate a scalar config's llama.cpp ``format`` (RTN, GPTQ ``__post_init__``) and set its bits and group size
    to the format's (4 or 8, and 32). ConfigError for an unknown type, bits or group_size other than the default or
    the format's own, a symmetric RTN grid (the format sets the grid) or ``embedding`` / ``embedding_bits`` (the
    token table is exported by requantisation to the file's type instead)."""
    from mechlab.errors import ConfigError

    if cfg.format is None:
        return
    fmt = block_format(str(cfg.format).lower())
    object.__setattr__(cfg, "format", fmt.name)
    if cfg.bits not in (4, fmt.bits) or cfg.group_size not in (128, BLOCK):
        raise ConfigError(f"{what}: format {fmt.name} fixes bits = {fmt.bits} and group_size = {BLOCK} (got bits "
                          f"{cfg.bits}, group_size {cfg.group_size})")
    if getattr(cfg, "symmetric", False):
        raise ConfigError(f"{what}: format {fmt.name} sets its own grid; leave symmetric off")
    if cfg.embedding or cfg.embedding_bits is not None:
        raise ConfigError(f"{what}: format {fmt.name} codes the Linear layers only; the token embedding / LM head are "
                          f"written by `mechlab export gguf --type {fmt.name}` from their float weights "
                          f"(leave embedding and embedding_bits off)")
    object.__setattr__(cfg, "bits", fmt.bits)
    object.__setattr__(cfg, "group_size", BLOCK)


def format_unsupported(linear, config) -> str | None:
    """Why a Linear layer cannot take a llama.cpp block format: its rows are not whole blocks of 32."""
    if getattr(config, "format", None) is not None and linear.in_features % BLOCK:
        return f"{linear.in_features} inputs are not whole {config.format} blocks of {BLOCK}"
    return None


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
