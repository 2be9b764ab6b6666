"""Trellis codes: the value(s) each L-bit state decodes to (QTIP, arXiv 2406.11235).

Every code is returned as a (2^L, V) float32 table scaled to unit RMS over the states, so one scale rule serves
all codes. 1MAD and 3INST are computed from the state with a few integer instructions (no table needed at decode
time on a GPU); HYB looks up a 2^Q × 2 table indexed by a hash of the state; the pure LUT is a table of Gaussian
draws. Tables are cached per process.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

HYB_Q = 9
HYB_STD = 0.9682
MAD_DIVISOR = 147.800537109375  # 1MAD: (byte sum − 510) / this


def one_mad(states: np.ndarray) -> np.ndarray:
    """1MAD: x = (s·34038481 + 76625530) mod 2^32; (sum of the 4 bytes of x − 510) / 147.800537109375."""
    x = (states.astype(np.uint64) * 34038481 + 76625530) & 0xFFFFFFFF
    total = sum((x >> np.uint64(8 * i)) & np.uint64(0xFF) for i in range(4)).astype(np.float64)
    return ((total - 510.0) / MAD_DIVISOR)[:, None]


@functools.lru_cache(maxsize=32)
def one_mad_unit(L: int) -> float:
    """c with ``code_table("1mad", L, 1)[s] = (bytesum(s·34038481 + 76625530) − 510) · c``: the unit-RMS code as an
    integer times one constant (what the fused kernel computes)."""
    vals = one_mad(np.arange(1 << L, dtype=np.int64))
    return float(1.0 / (MAD_DIVISOR * np.sqrt(np.mean(vals**2))))


def three_inst(states: np.ndarray) -> np.ndarray:
    """3INST: x = (s·89226354 + 64248484) mod 2^32; r = (x AND 0x8FFF8FFF) XOR 0x3B603B60; value = the two
    halves of r read as fp16 and added."""
    x = (states.astype(np.uint64) * 89226354 + 64248484) & 0xFFFFFFFF
    r = ((x & 0x8FFF8FFF) ^ 0x3B603B60).astype(np.uint32)
    hi = (r >> 16).astype(np.uint16).view(np.float16).astype(np.float64)
    lo = (r & 0xFFFF).astype(np.uint16).view(np.float16).astype(np.float64)
    return (hi + lo)[:, None]


@functools.lru_cache(maxsize=4)
def hyb_lut(q: int = HYB_Q, seed: int = 0) -> np.ndarray:
    """k-means (Lloyd, 30 iterations) of 2^q centroids on 2^17 samples of 2-D N(0, I), rescaled to std 0.9682.
    Computed once (seconds) and cached in MECHLAB_CACHE."""
    from mechlab.data.corpora import cache_dir
    from mechlab.utils import atomic_path

    path = cache_dir() / "codes" / f"hyb-q{q}-s{seed}.npy"
    if path.is_file():
        return np.load(path)
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(1 << 17, 2, generator=g, dtype=torch.float64)
    cent = pts[torch.randperm(len(pts), generator=g)[: 1 << q]].clone()
    for _ in range(30):
        assign = torch.cdist(pts, cent).argmin(1)
        sums = torch.zeros_like(cent).index_add_(0, assign, pts)
        counts = torch.bincount(assign, minlength=len(cent)).unsqueeze(1)
        cent = torch.where(counts > 0, sums / counts.clamp(min=1), cent)
    cent = (cent * (HYB_STD / cent.std())).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, cent)
    return cent


def hyb(states: np.ndarray, q: int = HYB_Q) -> np.ndarray:
    """HYB (V=2): x = s·(s+1) mod 2^32; idx = (x >> (15 − Q)) AND (2^Q − 1); lut[idx], with bit 15 of x
    flipping the sign of the first component."""
    s = states.astype(np.uint64)
    x = (s * (s + 1)) & 0xFFFFFFFF
    idx = ((x >> np.uint64(15 - q)) & np.uint64((1 << q) - 1)).astype(np.int64)
    vals = hyb_lut(q)[idx].copy()
    flip = ((x >> np.uint64(15)) & np.uint64(1)).astype(bool)
    vals[flip, 0] *= -1
    return vals


def gaussian_lut(L: int, V: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, L, V]).standard_normal((1 << L, V))


@functools.lru_cache(maxsize=32)
def code_table(code: str, L: int, V: int, seed: int = 0) -> torch.Tensor:
    """(2^L, V) float32 table of the code's values, unit RMS."""
    states = np.arange(1 << L, dtype=np.int64)
    table = {"1mad": one_mad, "3inst": three_inst, "hyb": hyb}.get(code)
    vals = gaussian_lut(L, V, seed) if code == "lut" else table(states)
    if vals.shape[1] != V:
        raise ValueError(f"code {code} gives {vals.shape[1]} values per state, not V={V}")
    vals = vals / np.sqrt(np.mean(vals**2))
    return torch.from_numpy(vals.astype(np.float32))
