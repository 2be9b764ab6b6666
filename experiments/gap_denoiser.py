"""Experiment D of the representation gap (arXiv 2605.21692): a trained denoiser on n points of S2.

A small denoiser (:class:`mechlab.geometry.denoiser.PointDenoiser`: an MLP, plain or SO(2)-equivariant about the
third axis, EDM parameterisation) is trained by the one trainer (``mechlab.train.train`` with a
:class:`mechlab.train.trainer.Task`) on n uniform points of S2 ⊂ R^3, then sampled (``--samples`` points, Heun's
method on the probability-flow ODE). Measured for every n, model and seed:

* distance to the data manifold: mean | |x| − 1 | over the samples;
* distance to the training set: mean distance of a sample to its nearest training point (equivariant model: to
  the nearest training orbit, |Δ(ρ, z)| in quotient coordinates), and the *memorised fraction*: samples closer
  than ``--mem-radius`` × the training set's own mean nearest-neighbour spacing (in the same coordinates);
* the gap of the output set: mean distance (chordal) of ``--test`` uniform test points to the nearest sample
  (equivariant: to the nearest orbit of a sample, the model's output set being SO(2)-invariant).

Prediction: while the network memorises (it then generates its training points, or their orbits), the gap follows
the memoriser's law, slope −1/2 (plain) and −1 (equivariant) in log n; once it stops memorising (the samples leave
the training points and spread over the manifold), the gap is set by the samples, not by n. The slope is fitted
over the n at which the memorised fraction (mean over seeds) is at least 0.9, with a bootstrap over seeds.

    OMP_NUM_THREADS=1 python experiments/gap_denoiser.py [--quick]

The committed run (defaults) writes experiments/results/representation_gap_denoiser.{json,png}; any other run
writes the .quick files beside them. Verdict rule: mechlab.claims.registry._gap_denoiser.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mechlab.geometry import ACTIONS, loglog_slope, manifold, point_process_gap
from mechlab.geometry.denoiser import denoiser_task, sample
from mechlab.train.trainer import TrainConfig, train
from mechlab.utils import machine_description, save_figure

from representation_gap import (  # experiments/representation_gap.py, beside this script
    int_at_least,
    parse_quick,
    positive_float,
    record_verdict,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
S2, SO2 = manifold("S2"), ACTIONS["SO2-S2"]
MODELS = ("plain", "equivariant")
PREDICTED = {"plain": -0.5, "equivariant": -1.0}
MEMORISING = 0.9  # mean memorised fraction at which an n counts as memorising
QUICK = dict(ns=[4, 16], seeds=[0], steps=200, samples=500, test=500, bootstrap=50)


def quotient_r3(x: np.ndarray) -> np.ndarray:
    """(ρ, z) of points of R^3 (on S2 or not): the distance of x to the SO(2) orbit (circle) of y is |q(x) − q(y)|."""
    return np.stack([np.hypot(x[:, 0], x[:, 1]), x[:, 2]], axis=1)


def measure(samples: np.ndarray, train_pts: np.ndarray, test: np.ndarray, equivariant: bool, mem_radius: float) -> dict:
    """The distances of one trained model's samples (see the module docstring)."""
    coords = quotient_r3 if equivariant else (lambda x: x)
    qs, qt, qx = coords(samples), coords(train_pts), coords(test)
    tree = cKDTree(qt)
    to_train = tree.query(qs)[0]
    spacing = float(tree.query(qt, k=2)[0][:, 1].mean()) if len(qt) > 1 else float("nan")
    gap = cKDTree(qs).query(qx)[0]
    memoriser_gap = tree.query(qx)[0]  # the exact memoriser (or orbit memoriser) with the same training points
    return {"to_manifold": float(np.abs(np.linalg.norm(samples, axis=1) - 1).mean()),
            "to_train": float(to_train.mean()), "train_spacing": spacing,
            "memorised_fraction": float((to_train < mem_radius * spacing).mean()),
            "gap": float(gap.mean()), "gap_sup": float(gap.max()), "memoriser_gap": float(memoriser_gap.mean())}


def run_one(n: int, model: str, seed: int, args, workdir: Path) -> dict:
    rng = np.random.default_rng([seed, n])
    train_pts, heldout, test = S2.sample(n, rng), S2.sample(2048, rng), S2.sample(args.test, rng)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seq_len=1, lr=args.lr, warmup_steps=100,
                      weight_decay=0.0, eval_every=args.steps, log_every=100, save_every=args.steps, seed=seed,
                      out_dir=str(workdir / f"{model}-n{n}-s{seed}"))
    t0 = time.perf_counter()
    task = denoiser_task(train_pts, model == "equivariant", args.width, args.depth, eval_points=heldout)
    result = train(cfg, overwrite=True, progress=False, task=task)
    final = [r for r in _metrics(Path(cfg.out_dir)) if "heldout_loss_fixed" in r][-1]
    samples = sample(result.model, args.samples, seed=seed, steps=args.sampler_steps)
    row = {"n": n, "model": model, "seed": seed, "seconds": time.perf_counter() - t0,
           "train_loss_fixed": final["train_loss_fixed"], "heldout_loss_fixed": final["heldout_loss_fixed"],
           **measure(samples, train_pts, test, model == "equivariant", args.mem_radius)}
    return row


def _metrics(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def summarise(rows: list[dict], args) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    for model in MODELS:
        cells = {}
        for n in args.ns:
            mine = [r for r in rows if r["model"] == model and r["n"] == n]
            cells[str(n)] = {k: statistics.fmean(r[k] for r in mine)
                             for k in ("to_manifold", "to_train", "train_spacing", "memorised_fraction", "gap",
                                       "memoriser_gap", "train_loss_fixed", "heldout_loss_fixed")}
        memorising = [n for n in args.ns if cells[str(n)]["memorised_fraction"] >= MEMORISING]
        stops = next((n for n in args.ns if cells[str(n)]["memorised_fraction"] < 0.5), None)
        fit = None
        if len(memorising) >= 2:
            seeds = sorted({r["seed"] for r in rows})
            table = np.array([[next(r["gap"] for r in rows if r["model"] == model and r["n"] == n and r["seed"] == s)
                               for n in memorising] for s in seeds])
            ns = np.array(memorising, dtype=float)
            slope = loglog_slope(ns, table.mean(0))[0]
            boot = [loglog_slope(ns, table[rng.integers(0, len(seeds), len(seeds))].mean(0))[0]
                    for _ in range(args.bootstrap)]
            fit = {"ns": memorising, "slope": slope, "slope_ci": [float(np.quantile(boot, 0.025)),
                                                                 float(np.quantile(boot, 0.975))],
                   "per_seed": [loglog_slope(ns, t)[0] for t in table] if len(seeds) > 1 else [slope]}
        out[model] = {"cells": cells, "memorising_ns": memorising, "stops_memorising_at": stops,
                      "predicted_slope": PREDICTED[model], "memorising_fit": fit,
                      "all_n_slope": loglog_slope(np.array(args.ns, float),
                                                  np.array([cells[str(n)]["gap"] for n in args.ns]))[0]}
    return out


def plot(result: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    ns = np.array(result["settings"]["ns"], dtype=float)
    fig = Figure(figsize=(11, 4), dpi=110)
    axes = fig.subplots(1, 2)
    for i, model in enumerate(MODELS):
        s = result["summary"][model]
        cells = [s["cells"][str(int(n))] for n in ns]
        axes[0].loglog(ns, [c["gap"] for c in cells], "o-", color=f"C{i}", label=f"{model}: gap of samples")
        axes[0].loglog(ns, [c["memoriser_gap"] for c in cells], "x:", color=f"C{i}", label=f"{model}: exact memoriser")
        axes[0].loglog(ns, [c["to_train"] for c in cells], "s--", ms=3, color=f"C{i}", alpha=0.6,
                       label=f"{model}: samples → training set")
        axes[1].semilogx(ns, [c["memorised_fraction"] for c in cells], "o-", color=f"C{i}", label=model)
    law = point_process_gap(ns, 2, S2.volume)
    axes[0].loglog(ns, law, "k-", lw=0.8, label="law, slope −1/2")
    axes[0].loglog(ns, SO2.predicted_gap(ns), "k--", lw=0.8, label="orbits, slope −1")
    axes[0].set_xlabel("n (training points on S2)")
    axes[0].set_ylabel("mean distance")
    axes[0].legend(fontsize=6)
    axes[1].axhline(MEMORISING, color="k", lw=0.8, ls=":")
    axes[1].set_xlabel("n")
    axes[1].set_ylabel("memorised fraction of samples")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"trained denoisers on S2 ({result['settings']['steps']} steps, width {result['settings']['width']}, "
                 f"{len(result['settings']['seeds'])} seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, png)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", type=int_at_least(2), nargs="+", default=[4, 8, 16, 32, 128, 1024])
    ap.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int_at_least(1), default=12000)
    ap.add_argument("--batch-size", type=int_at_least(1), default=256)
    ap.add_argument("--lr", type=positive_float, default=2e-3)
    ap.add_argument("--width", type=int_at_least(1), default=256)
    ap.add_argument("--depth", type=int_at_least(1), default=3)
    ap.add_argument("--samples", type=int_at_least(1), default=4000)
    ap.add_argument("--sampler-steps", type=int_at_least(2), default=40)
    ap.add_argument("--test", type=int_at_least(1), default=2000)
    ap.add_argument("--mem-radius", type=positive_float, default=0.25,
                    help="a sample is memorised when closer to a training point (orbit) than this × the spacing")
    ap.add_argument("--bootstrap", type=int_at_least(1), default=1000)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    return ap


def main(argv: list[str] | None = None) -> dict:
    ap, args, quick = parse_quick(build_parser, QUICK, argv, ignore=())
    if len(set(args.ns)) < 2 or min(args.ns) < 2 or not args.seeds or len(set(args.seeds)) != len(args.seeds):
        ap.error("--ns: at least two distinct sizes >= 2; --seeds: at least one, all distinct")
    args.ns = sorted(set(args.ns))
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gap_denoiser-") as tmp:
        for n in args.ns:
            for model in MODELS:
                for seed in args.seeds:
                    r = run_one(n, model, seed, args, Path(tmp))
                    rows.append(r)
                    print(f"n {n:5d} {model:11s} seed {seed}: memorised {r['memorised_fraction']:.2f}, gap "
                          f"{r['gap']:.4f} (memoriser {r['memoriser_gap']:.4f}), to train {r['to_train']:.4f}, to "
                          f"manifold {r['to_manifold']:.4f}, {r['seconds']:.0f} s", flush=True)
    summary = summarise(rows, args)
    result = {"experiment": "representation_gap_denoiser",
              "command": " ".join(["python", *(sys.argv if argv is None else ["experiments/gap_denoiser.py", *argv])]),
              "machine": machine_description(), "quick": quick, "seconds": time.perf_counter() - t0,
              "prediction": "while the denoiser memorises, the gap of its samples falls as n^(-1/2) (plain) and "
                            "n^(-1) (SO(2)-equivariant, orbits); it stops memorising at some n (arXiv 2605.21692)",
              "settings": {k: v for k, v in vars(args).items() if k != "quick"}, "summary": summary, "runs": rows}
    return record_verdict(result, "gap-denoiser", RESULTS / "representation_gap_denoiser", quick, plot)


if __name__ == "__main__":
    main()
