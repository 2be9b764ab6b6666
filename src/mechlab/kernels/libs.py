"""The compiled kernels loaded with ctypes: one wrapper class per shared library, and the one availability check
(:func:`library`) that the custom ops of :mod:`mechlab.kernels.ops` consult. Callers use the ops, not these."""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from mechlab.kernels.build import build


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as a contiguous float32 tensor (itself when it is one already: a decode step converts nothing)."""
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return t.float().contiguous()


def _trellis_args(w: torch.Tensor, table: torch.Tensor, start: torch.Tensor | None, end: torch.Tensor | None):
    """The arrays both kernels take: float32 contiguous weights (B, N, V), the code table as two columns (the
    second all zeros for V = 1, which the kernels read as such or not at all), and int64 boundary constraints."""
    V = w.shape[-1]
    tab = table.detach().float()
    tab0 = tab[:, 0].contiguous()
    tab1 = tab[:, 1].contiguous() if V == 2 else torch.zeros_like(tab0)
    start_ = start.long().contiguous() if start is not None else None
    end_ = end.long().contiguous() if end is not None else None
    return w.detach().float().contiguous(), tab0, tab1, start_, end_


class TrellisKernel:
    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        p = ctypes.c_void_p
        self.lib.viterbi_batch.argtypes = [p, ctypes.c_int, ctypes.c_int, ctypes.c_int, p, p, ctypes.c_int,
                                           ctypes.c_int, p, p, p, ctypes.c_int]
        self.lib.viterbi_batch.restype = ctypes.c_int

    def viterbi(self, w: torch.Tensor, table: torch.Tensor, L: int, kV: int, start: torch.Tensor | None = None,
                end: torch.Tensor | None = None, threads: int | None = None) -> torch.Tensor:
        """:func:`mechlab.quant.trellis.viterbi_torch`'s contract; ``threads`` defaults to torch's thread count."""
        B, N, V = w.shape
        w, tab0, tab1, start_, end_ = _trellis_args(w, table, start, end)
        path = torch.empty(B, N, dtype=torch.int64)
        rc = self.lib.viterbi_batch(_ptr(w), B, N, V, _ptr(tab0), _ptr(tab1), L, kV, _ptr(start_), _ptr(end_),
                                    _ptr(path), threads or torch.get_num_threads())
        if rc != 0:
            raise MemoryError(f"trellis kernel failed (code {rc}) for L={L}, kV={kV}")
        return path


class BCJRKernel:
    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        p, i = ctypes.c_void_p, ctypes.c_int
        self.lib.bcjr_batch.argtypes = [p, i, i, i, p, p, i, i, ctypes.c_float, p, p, p, p, i]
        self.lib.bcjr_batch.restype = i

    def soft(self, w: torch.Tensor, table: torch.Tensor, L: int, kV: int, T: float, start: torch.Tensor | None = None,
             end: torch.Tensor | None = None, grad: torch.Tensor | None = None, threads: int | None = None
             ) -> torch.Tensor:
        """Soft weights ŵ (B, N, V) of w (B, N, V) at temperature T, or with ``grad`` (= ∂loss/∂ŵ) the gradient
        ∂loss/∂w (float32; see mechlab/quant/bcjr.py)."""
        B, N, V = w.shape
        w, tab0, tab1, start_, end_ = _trellis_args(w, table, start, end)
        grad_ = grad.detach().float().contiguous() if grad is not None else None
        out = torch.empty(B, N, V, dtype=torch.float32)
        rc = self.lib.bcjr_batch(_ptr(w), B, N, V, _ptr(tab0), _ptr(tab1), L, kV, T, _ptr(start_), _ptr(end_),
                                 _ptr(grad_), _ptr(out), threads or torch.get_num_threads())
        if rc != 0:
            raise MemoryError(f"BCJR kernel could not allocate its buffers for L={L}, kV={kV}, N={N}")
        return out


class QMatvecKernel:
    """Fused decode + matrix-vector product of 1MAD trellis codes in their stored (packed) format."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        p, i = ctypes.c_void_p, ctypes.c_int
        self.lib.qmatvec_1mad.argtypes = [p, i, i, i, p, i, i, ctypes.c_float, p, p, p, i]
        self.lib.qmatvec_1mad.restype = i
        self.lib.decode_1mad.argtypes = [p, i, i, i, i, p, i]
        self.lib.decode_1mad.restype = i
        self._qmatvec = self.lib.qmatvec_1mad

    def matvec(self, x: torch.Tensor, packed: torch.Tensor, m: int, L: int, k: int, alpha: float,
               s_in: torch.Tensor | None, s_out: torch.Tensor | None, threads: int | None = None) -> torch.Tensor:
        """y (B, m) float32 = s_out ⊙ H(α · W_code · H(s_in ⊙ x)) for x (B, n) (any float dtype), ``packed``
        (tiles, 32·k) uint8 the stored codes, the signs (n,) and (m,) or None (no RHT)."""
        x, s_in, s_out = _f32(x), _f32(s_in), _f32(s_out)
        if not packed.is_contiguous():
            packed = packed.contiguous()
        B, n = x.shape
        y = torch.empty(B, m, dtype=torch.float32)
        rc = self._qmatvec(x.data_ptr(), B, m, n, packed.data_ptr(), L, k, alpha, None if s_in is None else
                           s_in.data_ptr(), None if s_out is None else s_out.data_ptr(), y.data_ptr(),
                           threads or torch.get_num_threads())
        if rc != 0:
            raise MemoryError(f"qmatvec kernel failed (code {rc}) for a {m}×{n} layer")
        return y

    def decode(self, packed: torch.Tensor, m: int, n: int, L: int, k: int, threads: int | None = None) -> torch.Tensor:
        """The rotated weights as (byte sum − 510) of every state, (m, n) float32 (multiply by α for the code)."""
        w = torch.empty(m, n, dtype=torch.float32)
        rc = self.lib.decode_1mad(_ptr(packed.contiguous()), m, n, L, k, _ptr(w), threads or torch.get_num_threads())
        if rc != 0:
            raise ValueError(f"qmatvec decode failed (code {rc}) for a {m}×{n} layer")
        return w


KERNELS = {"bcjr": BCJRKernel, "trellis": TrellisKernel, "qmatvec": QMatvecKernel}
_ACTIVE_FLAGS: tuple[str, ...] | None = ()  # extra flags of the build the ops run (() native; None: none, fallbacks)


@functools.cache
def kernel_build(name: str, extra_flags: tuple[str, ...] = ()) -> BCJRKernel | TrellisKernel | QMatvecKernel | None:
    """Kernel NAME (bcjr, trellis, qmatvec) compiled with ``extra_flags`` (see
    :func:`mechlab.kernels.build.kernel_builds`); None when it does not build."""
    if name not in KERNELS:
        raise ValueError(f"no compiled kernel {name!r} (known: {', '.join(KERNELS)})")
    path = build(name, tuple(extra_flags))
    return KERNELS[name](path) if path is not None else None


def library(name: str) -> BCJRKernel | TrellisKernel | QMatvecKernel | None:
    """The build of kernel NAME that the custom ops run (native unless :func:`use_build` says otherwise); None
    when it does not build (no compiler, ``MECHLAB_NO_KERNELS=1``) or is switched off: the ops then run their
    PyTorch fallbacks. The one availability check of the package."""
    return None if _ACTIVE_FLAGS is None else kernel_build(name, _ACTIVE_FLAGS)


def available(name: str) -> bool:
    """Whether the custom ops run compiled kernel NAME (else their PyTorch fallbacks)."""
    return library(name) is not None


@contextlib.contextmanager
def use_build(extra_flags: tuple[str, ...] | None) -> Iterator[None]:
    """Run the custom ops on the build with ``extra_flags`` (e.g. ``("-march=x86-64-v3",)``, see
    :func:`mechlab.kernels.build.kernel_builds`; None: on their PyTorch fallbacks) inside the block: tests compare
    every build, and the fallbacks, with float64 references."""
    global _ACTIVE_FLAGS
    previous, _ACTIVE_FLAGS = _ACTIVE_FLAGS, None if extra_flags is None else tuple(extra_flags)
    try:
        yield
    finally:
        _ACTIVE_FLAGS = previous
