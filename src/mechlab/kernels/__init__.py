"""Compiled CPU kernels, built on first use with the system C compiler and loaded with ctypes.

The shared library is cached in ``MECHLAB_CACHE/kernels`` under a key made of the source's hash, the compiler
flags and the CPU's feature flags (``-march=native``). If no compiler is found or the build fails, callers fall
back to the pure-PyTorch implementations (a logged warning, never a wrong answer). ``MECHLAB_NO_KERNELS=1``
forces the fallback.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-std=c11"]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


PORTABLE_MARCH = "x86-64-v3"  # AVX2 + FMA + BMI2 (Haswell, Zen 1 and later): the portable vector build


@functools.lru_cache(maxsize=1)
def native_march() -> str | None:
    """What ``-march=native`` resolves to on this CPU (gcc's ``-Q --help=target``: e.g. znver3, cooperlake);
    None when the compiler does not say (clang, no compiler)."""
    cc = _compiler()
    if cc is None:
        return None
    try:
        out = subprocess.run([cc, "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "-march=":
            return parts[1]
    return None


def _runs_x86_64_v3() -> bool:
    flags = set(_cpu_flags().split())
    return platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe",
                                                          "abm"} <= flags


def kernel_builds() -> dict[str, tuple[str, ...]]:
    """The builds of the kernels that tests compare with their float64 references, as label -> ``extra_flags`` of
    :func:`build`: the portable AVX2 one (``-march=x86-64-v3``, where this CPU runs it) and the native one (the
    runtime default) when ``-march=native`` is something else (znver3, cooperlake: other vector widths and
    summation orders)."""
    builds: dict[str, tuple[str, ...]] = {}
    if _runs_x86_64_v3():
        builds[PORTABLE_MARCH] = (f"-march={PORTABLE_MARCH}",)
    if native_march() != PORTABLE_MARCH or not builds:
        builds["native"] = ()
    return builds


def build(name: str, extra_flags: tuple[str, ...] = ()) -> Path | None:
    """Compile ``mechlab/kernels/NAME.c`` into a cached shared library; None when that is not possible.
    ``extra_flags`` go after the default ones (``("-mno-avx2",)`` builds the portable paths, for tests); a
    ``-march=`` among them replaces ``-march=native`` (whose explicit ISA flags would otherwise stay on)."""
    from mechlab.data.corpora import cache_dir

    if os.environ.get("MECHLAB_NO_KERNELS") == "1":
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found; using the slower PyTorch path for %s", name)
        return None
    src = resources.files("mechlab.kernels").joinpath(f"{name}.c").read_bytes()
    own_march = any(f.startswith("-march=") for f in extra_flags)
    flags = [*(f for f in FLAGS if not (own_march and f.startswith("-march="))), *extra_flags]
    key = hashlib.sha256(src + " ".join(flags).encode() + _cpu_flags().encode() + platform.machine().encode()).hexdigest()[:16]
    out = cache_dir() / "kernels" / f"{name}-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_c = out.with_suffix(f".{os.getpid()}.c")
    tmp_so = out.with_suffix(f".{os.getpid()}.so")
    tmp_c.write_bytes(src)
    try:
        subprocess.run([cc, *flags, str(tmp_c), "-o", str(tmp_so), "-lm"], check=True, capture_output=True, text=True)
        os.replace(tmp_so, out)
    except (subprocess.CalledProcessError, OSError) as e:
        log.warning("building the %s kernel failed (%s); using the slower PyTorch path", name, getattr(e, "stderr", e))
        return None
    finally:
        tmp_c.unlink(missing_ok=True)
        tmp_so.unlink(missing_ok=True)
    return out


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


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

    def plan(self, packed: torch.Tensor, m: int, n: int, L: int, k: int, alpha: float,
             s_in: torch.Tensor | None, s_out: torch.Tensor | None):
        """A call ``run(x, threads) -> y`` of one layer: y (B, m) = s_out ⊙ H(α · W_code · H(s_in ⊙ x)) for
        x (B, n) float32, ``packed`` (tiles, 32·k) uint8 the stored codes. The layer's arrays are held and their
        addresses resolved once, so a call costs one ctypes dispatch."""
        packed = packed.contiguous()
        s_in = None if s_in is None else s_in.float().contiguous()
        s_out = None if s_out is None else s_out.float().contiguous()
        fn, p_codes, p_in, p_out = self.lib.qmatvec_1mad, _ptr(packed), _ptr(s_in), _ptr(s_out)

        def run(x: torch.Tensor, threads: int = 1) -> torch.Tensor:
            x = x.contiguous()
            y = torch.empty(x.shape[0], m, dtype=torch.float32)
            rc = fn(x.data_ptr(), x.shape[0], m, n, p_codes, L, k, alpha, p_in, p_out, y.data_ptr(), threads)
            if rc != 0:
                raise MemoryError(f"qmatvec kernel failed (code {rc}) for a {m}×{n} layer")
            return y

        run.arrays = (packed, s_in, s_out)  # kept alive with the call
        return run

    def matvec(self, x: torch.Tensor, packed: torch.Tensor, m: int, L: int, k: int, alpha: float,
               s_in: torch.Tensor | None, s_out: torch.Tensor | None, threads: int | None = None) -> torch.Tensor:
        """One call of :meth:`plan` (x (B, n), any float dtype)."""
        x = x.detach().float()
        return self.plan(packed, m, x.shape[1], L, k, alpha, s_in, s_out)(x, threads or torch.get_num_threads())

    def decode(self, packed: torch.Tensor, m: int, n: int, L: int, k: int, threads: int | None = None) -> torch.Tensor:
        """The rotated weights as (byte sum − 510) of every state, (m, n) float32 (multiply by α for the code)."""
        w = torch.empty(m, n, dtype=torch.float32)
        rc = self.lib.decode_1mad(_ptr(packed.contiguous()), m, n, L, k, _ptr(w), threads or torch.get_num_threads())
        if rc != 0:
            raise ValueError(f"qmatvec decode failed (code {rc}) for a {m}×{n} layer")
        return w


KERNELS = {"bcjr": BCJRKernel, "trellis": TrellisKernel, "qmatvec": QMatvecKernel}


@functools.lru_cache(maxsize=None)
def kernel_build(name: str, extra_flags: tuple[str, ...] = ()) -> BCJRKernel | TrellisKernel | QMatvecKernel | None:
    """Kernel NAME (bcjr, trellis, qmatvec) compiled with ``extra_flags`` (see :func:`kernel_builds`); None when
    it does not build. The runtime uses the default build (:func:`bcjr_kernel` and the like)."""
    path = build(name, tuple(extra_flags))
    return KERNELS[name](path) if path is not None else None


def qmatvec_kernel() -> QMatvecKernel | None:
    """The fused 2-bit decode + matvec kernel of the runtime (native) build; None when it does not build."""
    return kernel_build("qmatvec")


def bcjr_kernel() -> BCJRKernel | None:
    """The soft (BCJR) trellis decoding kernel of the runtime (native) build; None when it does not build."""
    return kernel_build("bcjr")


def trellis_kernel() -> TrellisKernel | None:
    """The Viterbi encode kernel of the runtime (native) build; None when it does not build."""
    return kernel_build("trellis")
