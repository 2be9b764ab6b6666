"""mechlab sweep: a grid of runs, in parallel processes, resumable, gathered into one table."""

import json

import pytest

from mechlab.errors import ConfigError
from mechlab.mechanics.sweep import SweepSpec, gather, point_state, run_sweep
from mechlab.train import train


def spec_file(tmp_path, grid=None):
    spec = {"out": str(tmp_path / "sweep"),
            "base": {"model": "nano", "data": "tinyshakespeare", "seq_len": 32, "batch_size": 4, "steps": 4,
                     "warmup_steps": 1, "eval_every": 4, "eval_windows": 2, "log_every": 2, "save_every": 2},
            "grid": grid or {"lr": [1e-3, 3e-3], "model_overrides.d_model": [32]}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_points_expand_the_grid_with_dotted_keys(tmp_path):
    spec = SweepSpec.load(spec_file(tmp_path))
    points = spec.points()
    assert [p.name for p in points] == ["lr=0.001-d_model=32", "lr=0.003-d_model=32"]
    assert points[1].config.lr == 3e-3 and points[1].config.model_overrides == {"d_model": 32}
    spec = SweepSpec(tmp_path, {"model": "nano"}, {"model_overrides": [{"d_model": 32, "d_ff": 96}],
                                                    "model_overrides.n_layers": [1, 2]})
    a, b = spec.points()  # a dict value sets several keys; later dotted keys add to it without aliasing
    assert a.name == "d_model=32-d_ff=96-n_layers=1" and a.config.model_overrides == {"d_model": 32, "d_ff": 96, "n_layers": 1}
    assert b.config.model_overrides["n_layers"] == 2
    with pytest.raises(ConfigError, match="grid"):
        SweepSpec.load(spec_file(tmp_path, grid={"lr": []}))


@pytest.mark.slow
def test_sweep_runs_in_parallel_resumes_and_gathers(tmp_path):
    spec = SweepSpec.load(spec_file(tmp_path))
    first, second = spec.points()
    train(first.config, progress=False, stop_after=2)  # an interrupted point: a checkpoint at step 2
    assert point_state(first) == "partial" and point_state(second) == "new"
    logs = []
    rows = run_sweep(spec, parallel=2, log=logs.append)
    assert any("resume lr=0.001" in x for x in logs) and any("start  lr=0.003" in x for x in logs)
    assert [r["state"] for r in rows] == ["done", "done"] and all(r["step"] == 4 and r["val_bpb"] > 0 for r in rows)
    logs.clear()
    assert run_sweep(spec, log=logs.append) == gather(spec)  # nothing left to run
    assert "0 to run" in logs[0]
    assert json.loads((spec.out / "results.json").read_text())["rows"] == rows


def test_children_share_the_cores_unless_omp_threads_are_set(tmp_path, monkeypatch):
    import os
    import subprocess

    seen = []

    class Done:  # a child that has finished (its point stays unfinished, so every call runs every point)
        returncode = 0

        def __init__(self, cmd, env, **_):
            seen.append(env["OMP_NUM_THREADS"])

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = SweepSpec.load(spec_file(tmp_path))
    run_sweep(spec, parallel=2, log=lambda *_: None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_sweep(spec, parallel=1, log=lambda *_: None)
    assert seen == ["2", "2", "1", "1"]
