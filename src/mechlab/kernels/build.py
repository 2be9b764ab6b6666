"""The gcc build of the compiled CPU kernels (mechlab/kernels/*.c) and its cache.

The shared library is cached in ``MECHLAB_CACHE/kernels`` under a key made of the source's hash, the compiler
flags and the CPU's feature flags (``-march=native``). If no compiler is found or the build fails, :func:`build`
returns None and the custom ops (:mod:`mechlab.kernels.ops`) run their pure-PyTorch fallbacks (a logged warning,
never a wrong answer). ``MECHLAB_NO_KERNELS=1`` forces the fallback.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from importlib import resources
from pathlib import Path

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
