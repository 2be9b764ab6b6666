"""Atomic writes: the target appears whole or not at all, with the mode an ordinary write would give it."""

import os
import stat

import pytest

from mechlab.utils import _umask, atomic_path, write_json_atomic


def test_atomic_json_gets_the_ordinary_file_mode(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o666 & ~_umask()
    with atomic_path(tmp_path / "d", is_dir=True) as d:
        (d / "f").write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o777 & ~_umask()


def test_a_failed_block_leaves_the_target_untouched(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert (tmp_path / "r.json").read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


def test_save_figure_writes_a_png_atomically(tmp_path):
    from matplotlib.figure import Figure

    from mechlab.utils import save_figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "plot.png", dpi=50)
    assert path == tmp_path / "sub" / "plot.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()
    before = path.read_bytes()
    with pytest.raises(ValueError):  # an unknown format fails while rendering: the old file stays, no temporary
        save_figure(fig, path, format="no-such-format")
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["plot.png"]


def test_no_module_switches_the_matplotlib_backend_or_uses_pyplot():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    files = [p for d in ("src", "experiments", "benchmarks") for p in (repo / d).rglob("*.py")]
    assert files
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text, p
