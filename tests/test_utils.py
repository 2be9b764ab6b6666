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
