"""Running model-written code contained (the DELEGATE-52 Python domain, arXiv 2604.15597, scores a program by
running it).

:func:`run_contained` runs a command in a subprocess with

- a cleared environment (a fixed PATH, locale and HOME; no API keys or tokens of the caller),
- stdin closed (``/dev/null``),
- resource limits set in the child before it execs the command (``setrlimit(2)``, by a small Python trampoline
  rather than ``preexec_fn``, which can deadlock a process that runs threads): CPU seconds (``RLIMIT_CPU``: SIGXCPU, then SIGKILL), address
  space (``RLIMIT_AS``: allocations fail with MemoryError), the size of any file written, stdout and stderr
  included (``RLIMIT_FSIZE``: SIGXFSZ; the output is read back truncated), open files and core dumps,
- a wall-clock timeout (the whole process group is killed), in a new session,
- no network where the machine allows: the command runs in a new network namespace through ``bwrap
  --unshare-net`` (bubblewrap) or ``unshare -rn`` (util-linux), whichever works, detected once at run time; where
  neither works (no user namespaces, a container that forbids them) it runs without, and
  :func:`network_isolation` and every result say so (``isolation == "none"``).

Linux and other POSIX systems only (``resource``).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}


@dataclass(frozen=True)
class Limits:
    """What a contained run may use: CPU seconds, address space in bytes, bytes of stdout (and of stderr, and of
    any file written), wall-clock seconds, open files."""

    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    wall_seconds: float = 20.0
    open_files: int = 256


@dataclass(frozen=True)
class Contained:
    """A contained run: exit status (negative: the signal that ended it), stdout and stderr (at most
    ``Limits.output_bytes`` each, decoded as UTF-8 with replacement), whether the wall clock ran out, whether
    the output was cut at the limit, and the network isolation used ("bwrap", "unshare" or "none")."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    isolation: str


def _works(prefix: list[str]) -> bool:
    try:
        return subprocess.run([*prefix, "true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                              env=SAFE_ENV).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[str, tuple[str, ...]]:
    """(the isolation available here, the command prefix that gives it): bubblewrap with a new network namespace,
    else ``unshare -rn`` (a user namespace mapped to root, holding a new network namespace with only a loopback
    device that is down), else ("none", ()) with a RuntimeWarning when the machine allows neither. Detected once
    per process by running ``true`` under each."""
    bwrap = shutil.which("bwrap")
    if bwrap:
        prefix = (bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--")
        if _works(list(prefix)):
            return "bwrap", prefix
    unshare = shutil.which("unshare")
    if unshare:
        prefix = (unshare, "-rn", "--")
        if _works(list(prefix)):
            return "unshare", prefix
    warnings.warn("model-written code runs without network isolation here: neither bwrap --unshare-net nor "
                  "unshare -rn works on this machine (user namespaces unavailable)", RuntimeWarning, stacklevel=2)
    return "none", ()


# Sets the limits in the child, then execs the command: no preexec_fn, which is unsafe in a process with threads
# (a torch backend, an HTTP server).
_TRAMPOLINE = (
    "import os, resource, sys\n"
    "cpu, mem, out, files = (int(x) for x in sys.argv[1:5])\n"
    "for limit, value, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),\n"
    "                           (resource.RLIMIT_FSIZE, out, out), (resource.RLIMIT_NOFILE, files, files),\n"
    "                           (resource.RLIMIT_CORE, 0, 0)):\n"
    "    resource.setrlimit(limit, (value, hard))\n"
    "os.execv(sys.argv[5], sys.argv[5:])\n"
)


def _limited(argv: list[str], limits: Limits) -> list[str]:
    """``argv`` run under ``limits``: a Python trampoline sets them with setrlimit(2) and execs ``argv``."""
    import sys

    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if exe is None or not os.path.exists(exe):
        raise FileNotFoundError(f"no such program: {argv[0]}")
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(limits.cpu_seconds), str(limits.memory_bytes),
            str(limits.output_bytes), str(limits.open_files), exe, *argv[1:]]


def run_contained(argv: list[str], cwd: str | Path, limits: Limits = Limits(), network: bool = False) -> Contained:
    """Run ``argv`` in ``cwd`` under the module docstring's containment; ``network=True`` skips only the network
    namespace. Never raises for what the command does; raises FileNotFoundError when ``argv[0]`` does not exist
    and ValueError for an empty ``argv``."""
    if not argv:
        raise ValueError("run_contained needs a command")
    isolation, prefix = ("none", ()) if network else network_isolation()
    env = {**SAFE_ENV, "HOME": str(cwd), "TMPDIR": str(cwd)}
    with tempfile.TemporaryDirectory(prefix="mechlab-contained-") as out:
        out_path, err_path = Path(out) / "stdout", Path(out) / "stderr"
        with open(out_path, "wb") as so, open(err_path, "wb") as se:
            proc = subprocess.Popen([*prefix, *_limited(argv, limits)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=so, stderr=se, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

        def read(path: Path) -> tuple[str, bool]:
            with open(path, "rb") as f:
                data = f.read(limits.output_bytes + 1)
            return data[: limits.output_bytes].decode("utf-8", "replace"), len(data) >= limits.output_bytes

        (stdout, cut_out), (stderr, cut_err) = read(out_path), read(err_path)
    return Contained(proc.returncode, stdout, stderr, timed_out, cut_out or cut_err, isolation)
