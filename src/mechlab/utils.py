"""Small shared helpers: atomic writes (files, JSON, figures), hashing, machine description."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere the usual 0o022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def file_on_path(path: str | Path) -> Path | None:
    """The first folder on the way to ``path`` that exists as a file (so ``path`` cannot be created), or None."""
    return next((p for p in reversed(Path(path).parents) if p.exists() and not p.is_dir()), None)


@contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only if the block succeeds.

    A crash or exception inside the block leaves ``target`` untouched and removes the temporary.
    Directories replace an existing target by rename-aside-then-rename, files by ``os.replace``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp / mkdtemp create 0600 / 0700: give the result the mode an ordinary open() or mkdir() would
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
        if is_dir:
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Write the matplotlib Figure ``fig`` to ``path`` atomically: rendered in memory, then moved into place (as
    :func:`atomic_path`), so a crash never leaves half a PNG. The format comes from the suffix (PNG where there is
    none); ``savefig`` are Figure.savefig options (dpi, bbox_inches...). Build figures with
    ``matplotlib.figure.Figure`` (no pyplot, no global backend). Returns ``Path(path)``."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, **{"format": path.suffix.lstrip(".") or "png", **savefig})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def machine_description() -> dict[str, Any]:
    """What a benchmark result was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
