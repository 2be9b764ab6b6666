"""The benchmark scripts' conventions: every one takes --quick, and a quick run writes beside the committed
results (NAME.quick.json, NAME.quick.png), never over them. In-process and cheap: no benchmark is timed here."""

import ast
import contextlib
import importlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "common")


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The benchmarks folder importable, with results redirected to tmp_path/results."""
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    return common


def test_result_path_puts_quick_runs_beside_full_ones(bench, tmp_path):
    res = tmp_path / "results"
    assert bench.result_path("trellis_mse", quick=False) == res / "trellis_mse.json"
    assert bench.result_path("trellis_mse", quick=True) == res / "trellis_mse.quick.json"
    assert bench.result_path("gap", quick=True, suffix=".png") == res / "gap.quick.png"
    for bad in ("", "../x", "a/b", "x.quick"):
        with pytest.raises(ValueError):
            bench.result_path(bad, quick=False)
    full = bench.write_result("demo", {"a": 1.0}, quick=False)
    before = full.read_bytes()
    quick = bench.write_result("demo", {"a": 2.0}, quick=True)
    assert full.read_bytes() == before
    assert quick == res / "demo.quick.json"
    assert json.loads(quick.read_text())["quick"] is True and json.loads(before)["quick"] is False
    with pytest.raises(TypeError):  # every caller must say whether its run is the full one
        bench.write_result("demo", {"a": 3.0})


def test_quick_run_of_trellis_mse_leaves_the_full_results_alone(bench, tmp_path, monkeypatch):
    res = tmp_path / "results"
    res.mkdir()
    committed = BENCH / "results" / "trellis_mse.json"
    shutil.copy2(committed, res / "trellis_mse.json")
    before, repo_before = (res / "trellis_mse.json").read_bytes(), committed.read_bytes()
    mod = importlib.import_module("trellis_mse")
    # the script's own code path, with a stand-in codec: the trellis kernel's first build alone takes a minute
    monkeypatch.setattr(mod, "encode", lambda w, L, k, V, code, tail_biting: (w[:, ::V], None))
    monkeypatch.setattr(mod, "decode", lambda codes, L, k, V, code, start: codes.repeat_interleave(V, dim=1))
    monkeypatch.setattr(mod, "pack_codes", lambda codes, bits: torch.empty(codes.numel() * bits // 8, dtype=torch.uint8))
    monkeypatch.setattr(sys, "argv", ["benchmarks/trellis_mse.py", "--quick"])
    with contextlib.redirect_stdout(io.StringIO()):
        mod.main()
    assert (res / "trellis_mse.json").read_bytes() == before
    assert committed.read_bytes() == repo_before
    quick = json.loads((res / "trellis_mse.quick.json").read_text())
    assert quick["quick"] is True and quick["sequences"] == 16 and "mse_L12_lut" in quick
    assert not (BENCH / "results" / "trellis_mse.quick.json").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_takes_quick(bench, script, monkeypatch):
    mod = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{script}.py", "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        mod.main()
    assert exit_.value.code == 0
    assert "--quick" in out.getvalue()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_writes_through_result_path(script):
    """Output paths come from common.result_path / write_result(..., quick=...), never built by hand."""
    tree = ast.parse((BENCH / f"{script}.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    writes = [c for c in calls if c.func.id == "write_result"]
    assert writes, f"{script} writes no result"
    assert all(any(k.arg == "quick" for k in c.keywords) for c in writes)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(tree)
                                                                          if isinstance(n, ast.Attribute)}
    assert "RESULTS" not in names and "with_suffix" not in names and "with_name" not in names
