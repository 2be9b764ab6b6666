"""benchmarks/vs_llamacpp.py's importance-matrix helpers and benchmarks/llamacpp_tools.py's build guard: the text
llama-imatrix calibrates on holds exactly mechlab's calibration windows, the alignment count, the imatrix types, and a
build that cannot run saying so in one line. No llama.cpp build and no model here: pure helpers on small inputs."""

import importlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mechlab.data.tokenizers import ByteTokenizer
from mechlab.data.tokens import TokenStream
from mechlab.quant.run import calibration_batches


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module("vs_llamacpp"), importlib.import_module("llamacpp_tools")


def _stream(text: str) -> TokenStream:
    tok = ByteTokenizer()
    return TokenStream(tok.encode_array(text), tok.token_byte_lengths())


TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * i} times.\n" for i in range(400))


def test_calibration_starts_are_the_windows_quant_calibrates_on(bench):
    vs, _ = bench
    stream = _stream(TEXT)
    for n, seq_len, seed in ((32, 64, 0), (5, 100, 3), (1, 7, 0)):
        starts = vs.calibration_starts(len(stream), n, seq_len, seed)
        windows = torch.cat(calibration_batches(stream, n, seq_len, seed)).numpy()
        assert starts.shape == (n,)
        expect = np.stack([np.asarray(stream.ids[s : s + seq_len], dtype=np.int64) for s in starts])
        np.testing.assert_array_equal(windows, expect)


def test_calibration_text_reencodes_to_the_windows_then_the_tail(bench):
    """Byte tokens round-trip exactly, so the re-encoded text is the windows back to back, position for position,
    followed by the tail. (SmolLM2's byte-level BPE may merge tokens across a join: calibration_alignment counts
    that at run time through llama.cpp's own tokenizer.)"""
    vs, _ = bench
    tok, stream = ByteTokenizer(), _stream(TEXT)
    n, seq_len, tail = 6, 50, 9
    starts = vs.calibration_starts(len(stream), n, seq_len)
    windows = torch.cat(calibration_batches(stream, n, seq_len)).numpy()
    text = vs.calibration_text(tok, stream.ids, starts, seq_len, tail=tail)
    ids = tok.encode(text)
    assert len(ids) == n * seq_len + tail
    np.testing.assert_array_equal(np.asarray(ids[: n * seq_len]), windows.reshape(-1))
    last = int(starts[-1]) + seq_len
    np.testing.assert_array_equal(np.asarray(ids[n * seq_len :]), np.asarray(stream.ids[last : last + tail]))
    info = vs.calibration_alignment(ids, windows)
    assert info == {"tokens": n * seq_len + tail, "chunks": n, "positions": n * seq_len,
                    "same position": n * seq_len, "in order": n * seq_len}


def test_calibration_alignment_counts_a_merge_at_a_join(bench):
    """Two tokens at the join of windows 0 and 1 re-encoded as one: every later position shifts by one (counted by
    'same position'), while 'in order' loses only the two merged tokens; a text one token short fills one chunk fewer."""
    vs, _ = bench
    windows = np.arange(3 * 8).reshape(3, 8)
    merged = [*range(7), 100, *range(9, 24), 200, 201]  # tokens 7 and 8 -> 100, then a 2-token tail
    info = vs.calibration_alignment(merged, windows)
    assert info["tokens"] == 25 and info["chunks"] == 3 and info["positions"] == 24
    assert info["same position"] == 7
    assert info["in order"] == 22
    short = vs.calibration_alignment([*range(7), 100, *range(9, 24)], windows)
    assert short["chunks"] == 2 and short["tokens"] == 23


def test_imatrix_types_run_by_default_and_are_llama_cpp_file_types(bench):
    vs, _ = bench
    assert set(vs.IMATRIX_TYPES) <= set(vs.TYPES)
    assert len(set(vs.TYPES)) == len(vs.TYPES)
    llama_cpp = pytest.importorskip("llama_cpp")
    for kind in vs.TYPES:
        assert hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}"), kind


def test_tools_build_says_in_one_line_why_it_cannot_run(bench, monkeypatch, tmp_path):
    _, tools = bench
    monkeypatch.setenv("MECHLAB_CACHE", str(tmp_path))
    lines = []
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    assert tools.llama_tools("0.0.1", log=lines.append) is None
    assert lines == ["llama.cpp tools: cannot build: cmake is not installed (pip install torch==2.13.0 cmake "
                     "provides one)"]
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")

    def offline(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(tools.subprocess, "run", offline)
    lines.clear()
    assert tools.llama_tools("0.0.1", log=lines.append) is None
    assert len(lines) == 2 and "no llama-cpp-python 0.0.1 sdist" in lines[-1] and "\n" not in lines[-1]
    assert not (tmp_path / "llama.cpp-tools" / "0.0.1" / "bin").exists()


def test_cached_tools_are_found_without_building(bench, monkeypatch, tmp_path):
    _, tools = bench
    monkeypatch.setenv("MECHLAB_CACHE", str(tmp_path))
    bin_dir = tools.tools_root("9.9.9") / "bin"
    assert bin_dir == tmp_path / "llama.cpp-tools" / "9.9.9" / "bin"
    assert tools.cached_tools("9.9.9") is None
    bin_dir.mkdir(parents=True)
    for name in tools.TOOLS:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(tools, "build_tools", lambda *a, **k: pytest.fail("a cached build must not rebuild"))
    found = tools.llama_tools("9.9.9")
    assert found == tools.LlamaTools(bin_dir / "llama-imatrix", bin_dir / "llama-quantize")
