"""Sweeps: a grid of training configs, run one after another or in parallel processes, resumable after a kill,
gathered into one table.

A sweep spec is a JSON file::

    {"out": "runs/lr-width",
     "base": {"model": "tiny", "data": "tinyshakespeare", "steps": 400, ...},      # TrainConfig fields
     "grid": {"lr": [1e-3, 3e-3, 1e-2], "model_overrides.d_model": [64, 128]}}    # dotted keys reach into dicts;
                                                                                  # a dict value sets several at once

Every point of the grid's Cartesian product is one ordinary run of the one training loop (``mechlab train`` in a
child process) in ``out/NAME``, NAME made of the point's values. Running a sweep again skips finished points,
resumes interrupted ones from their last checkpoint and starts the rest; each point's row (its values and the
final validation figures from its metrics log) goes to ``out/results.json``.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechlab.errors import ConfigError
from mechlab.train.trainer import METRICS, TrainConfig
from mechlab.utils import write_json_atomic


@dataclass
class Point:
    name: str
    values: dict[str, Any]
    config: TrainConfig


@dataclass
class SweepSpec:
    out: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read sweep spec {path}: {e}") from e
        unknown = set(raw) - {"out", "base", "grid"}
        if unknown or "grid" not in raw:
            raise ConfigError(f"sweep spec {path}: needs 'grid' (and 'base', 'out'); unknown keys {sorted(unknown)}")
        grid = raw["grid"]
        if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"sweep spec {path}: 'grid' maps keys to non-empty lists of values")
        return cls(Path(raw.get("out", "runs/sweep")), dict(raw.get("base", {})), grid)

    def points(self) -> list[Point]:
        keys = list(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = copy.deepcopy(dict(zip(keys, combo)))  # grid values are never shared between points
            cfg = copy.deepcopy(self.base)
            for key, v in copy.deepcopy(values).items():
                target, *path = key.split(".")
                if path:
                    cfg.setdefault(target, {})
                    node = cfg[target]
                    for p in path[:-1]:
                        node = node.setdefault(p, {})
                    node[path[-1]] = v
                else:
                    cfg[target] = v
            name = "-".join(f"{kk}={vv}" for k, v in values.items()
                            for kk, vv in (v.items() if isinstance(v, dict) else [(k.rsplit(".", 1)[-1], v)]))
            name = name.replace("/", "_")
            cfg["out_dir"] = str(self.out / name)
            tc = TrainConfig.from_dict(cfg)
            tc.validate()
            out.append(Point(name, values, tc))
        return out


def point_state(point: Point) -> str:
    """'done' (a validation record at the last step), 'partial' (a checkpoint to resume from) or 'new'."""
    out = Path(point.config.out_dir)
    metrics = out / METRICS
    if metrics.is_file():
        recs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        if any(r.get("step") == point.config.steps and "val_bpb" in r for r in recs):
            return "done"
    return "partial" if (out / "latest").is_file() else "new"


def _command(point: Point, state: str, spec_dir: Path) -> list[str]:
    cfg_path = spec_dir / f"{point.name}.json"
    write_json_atomic(cfg_path, point.config.to_dict())
    cmd = [sys.executable, "-m", "mechlab", "train", "--out", point.config.out_dir]
    if state == "partial":
        return cmd + ["--resume"]
    return cmd + ["--config", str(cfg_path), "--overwrite"]


def run_sweep(spec: SweepSpec, parallel: int = 1, log=print) -> list[dict]:
    """Run every unfinished point (``parallel`` child processes at a time, the cores shared between them, or
    OMP_NUM_THREADS threads each when it is set) and return the gathered table."""
    if parallel < 1:
        raise ConfigError("parallel must be >= 1")
    points = spec.points()
    spec_dir = spec.out / "configs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    todo = [(p, s) for p in points if (s := point_state(p)) != "done"]
    log(f"sweep {spec.out}: {len(points)} points, {len(points) - len(todo)} done, {len(todo)} to run")
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // parallel))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    running: list[tuple[Point, subprocess.Popen, Any]] = []
    failed = []
    while todo or running:
        while todo and len(running) < parallel:
            point, state = todo.pop(0)
            Path(point.config.out_dir).mkdir(parents=True, exist_ok=True)
            logf = open(Path(point.config.out_dir) / "sweep.log", "a")
            log(f"  {'resume' if state == 'partial' else 'start '} {point.name}")
            running.append((point, subprocess.Popen(_command(point, state, spec_dir), stdout=logf,
                                                    stderr=subprocess.STDOUT, env=env), logf))
        time.sleep(0.2)
        for item in list(running):
            point, proc, logf = item
            if proc.poll() is not None:
                logf.close()
                running.remove(item)
                if proc.returncode != 0:
                    failed.append(point.name)
                log(f"  {'done  ' if proc.returncode == 0 else 'FAILED'} {point.name}")
    rows = gather(spec)
    if failed:
        raise ConfigError(f"{len(failed)} sweep points failed (see their sweep.log): {', '.join(failed)}")
    return rows


def gather(spec: SweepSpec) -> list[dict]:
    """One row per point: its grid values, state, and the last validation record of its metrics log."""
    rows = []
    for point in spec.points():
        row: dict[str, Any] = {"name": point.name, **point.values, "state": point_state(point)}
        metrics = Path(point.config.out_dir) / METRICS
        if metrics.is_file():
            recs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            val = [r for r in recs if "val_bpb" in r]
            train = [r for r in recs if "loss" in r]
            if val:
                row.update(step=val[-1]["step"], val_loss=val[-1]["val_loss"], val_bpb=val[-1]["val_bpb"])
            if train:
                row["train_loss"] = train[-1]["loss"]
        rows.append(row)
    write_json_atomic(spec.out / "results.json", {"grid": spec.grid, "base": spec.base, "rows": rows})
    return rows


__all__ = ["Point", "SweepSpec", "gather", "point_state", "run_sweep"]
