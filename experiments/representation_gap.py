"""The representation gap on manifolds of known dimension (arXiv 2605.21692): experiments A, B and C.

A. Memorising predictors. For each manifold M of intrinsic dimension d (S1, S2, S3, T2, T3, S1×S2), embedded in
   R^D by a Haar-random rotation, n training points are drawn uniformly and the predictor's output set is the set of
   training points. The gap is the mean distance (r = 1) of ``--test`` uniform test points to their nearest
   training point, chordal (in R^D) and geodesic (product-sphere metric); the sup version is the largest of those
   distances. Prediction (point-process law, :func:`mechlab.geometry.point_process_gap`):
   E[δ] ~ Γ(1 + 1/d)·(n·V_d / Vol)^(−1/d), so log-gap against log n has slope −1/d and the ratio measured /
   predicted tends to 1. The sup decays as (log n / n)^(1/d).
B. Equivariance. The same training points, with the output set the union of their orbits under a one-dimensional
   group (SO(2) about an axis of S2, one circle of T2, the S1 factor of S1×S2, the Hopf U(1) on S3), orbit
   distances exact in quotient coordinates (:mod:`mechlab.geometry.predictors`): slope −1/(d − dim G).
C. Intrinsic dimension: TWO-NN and MLE (k = 20; scikit-dimension through
   :func:`mechlab.geometry.intrinsic_dimension`) on ``--id-n`` uniform points embedded in R^D, against d and
   against the dimension read off A's slope, −1/slope.

Seeds: seed s draws the rotation, the test points and every training set of the seed. Test points are shared by
the n of one seed (common random numbers), training sets are drawn independently for every n. Intervals: a
two-level bootstrap (seeds resampled with replacement, then the test points of each drawn seed, the same
indices at every n), ``--bootstrap`` replicates, 95% percentile intervals of the pooled slope (fitted to the mean
over seeds of the gap at each n) and of the constant ratio (measured / predicted, averaged over n ≥ ``--const-from``).

    OMP_NUM_THREADS=1 python experiments/representation_gap.py [--quick]

The committed run (every option at its default) writes experiments/results/representation_gap.{json,png}; any
other run writes representation_gap.quick.{json,png} beside them. The verdict rules are
mechlab.claims.registry._gap_memoriser, _gap_equivariance and _gap_intrinsic_dimension.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from mechlab.geometry import (
    ACTIONS,
    MANIFOLDS,
    EquivariantMemoriser,
    Memoriser,
    intrinsic_dimension,
    loglog_slope,
    point_process_gap,
    random_embedding,
)
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DEFAULT_NS = [250 * 2**k for k in range(9)]  # 250 … 64,000
QUICK = dict(ns=[250, 500, 1000, 2000, 4000], seeds=[0, 1], test=1000, bootstrap=100, id_n=1000, const_from=1000)
ESTIMATORS = ("twonn", "mle")


def int_at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum`` (else the usual 'invalid value' error, exit 2)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} is below the minimum {minimum}")
        return v
    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0 (NaN and infinities refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number > 0")
    return v


def parse_quick(build_parser, quick_defaults: dict, argv: list[str] | None,
                ignore: tuple[str, ...] = ()) -> tuple[argparse.ArgumentParser, argparse.Namespace, bool]:
    """benchmarks/common.py's parse_quick (the benchmarks' rule for --quick and the committed configuration), for
    the representation-gap experiments (this one, gap_denoiser.py, hidden_id.py)."""
    path = ROOT.parent / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("_mechlab_benchmarks_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.parse_quick(build_parser, quick_defaults, argv, ignore)


def record_verdict(result: dict, claim_id: str, stem: Path, quick: bool, plot) -> dict:
    """The tail every claim experiment shares: the claim's own rule (mechlab.claims.registry) applied to ``result``,
    its verdict stored in it, STEM[.quick].json written atomically (``stem``: a path without suffix, in the caller's
    results folder) and ``plot(result, png)`` drawn beside it, the rows and the verdict printed. Returns ``result``."""
    from mechlab.claims.registry import claim

    m = claim(claim_id).evaluate([result])
    result["verdict"] = {"verdict": m.verdict, "rows": m.rows, "reason": m.reason}
    base = f"{stem}{'.quick' if quick else ''}"
    write_json_atomic(Path(base + ".json"), result)
    plot(result, Path(base + ".png"))
    for q, v in m.rows:
        print(f"{q}: {v}")
    print(f"verdict: {m.verdict} ({m.reason}); {result['seconds']:.0f} s")
    return result


def bootstrap(dist: np.ndarray, ns: np.ndarray, predicted: np.ndarray, const_mask: np.ndarray, reps: int,
              rng: np.random.Generator) -> dict:
    """Pooled slope and constant ratio of the mean gap, with two-level bootstrap intervals.

    ``dist`` (seeds, len(ns), test): distances of the test points to the output set; ``predicted`` (len(ns),):
    the law's mean gap; ``const_mask``: the n over which the ratio measured / predicted is averaged."""
    S, _, N = dist.shape

    def stats(curve: np.ndarray) -> tuple[float, float]:
        return loglog_slope(ns, curve)[0], float(np.mean(curve[const_mask] / predicted[const_mask]))

    slope, ratio = stats(dist.mean(axis=(0, 2)))
    boot = np.empty((reps, 2))
    for b in range(reps):
        seeds = rng.integers(0, S, S)
        idx = rng.integers(0, N, (S, N))
        means = np.take_along_axis(dist[seeds], idx[:, None, :], axis=2).mean(axis=2)  # (S, len(ns))
        boot[b] = stats(means.mean(axis=0))
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
    return {"slope": slope, "slope_ci": [float(lo[0]), float(hi[0])], "ratio": ratio,
            "ratio_ci": [float(lo[1]), float(hi[1])]}


def per_seed(curves: np.ndarray, ns: np.ndarray) -> dict:
    """Slope of every seed's curve (seeds, len(ns)), with their mean and standard deviation."""
    slopes = [loglog_slope(ns, c)[0] for c in curves]
    return {"per_seed": slopes, "mean": statistics.fmean(slopes),
            "std": statistics.stdev(slopes) if len(slopes) > 1 else 0.0}


def run_manifold(name: str, args, actions: list[str]) -> dict:
    """Experiment A (and B for the actions on this manifold) on one manifold, every seed."""
    M = MANIFOLDS[name]
    ns = np.array(args.ns, dtype=np.float64)
    S, K, N = len(args.seeds), len(args.ns), args.test
    arms = ["chordal", "geodesic"] + [f"{a}:{m}" for a in actions for m in ("chordal", "geodesic")]
    dist = {arm: np.empty((S, K, N)) for arm in arms}
    for i, seed in enumerate(args.seeds):
        rng = np.random.default_rng([seed, list(MANIFOLDS).index(name)])
        E = random_embedding(M.coord_dim, args.D, rng)
        test = M.sample(N, rng)
        for j, n in enumerate(args.ns):
            train = M.sample(n, rng)
            dist["chordal"][i, j] = Memoriser(train @ E).distances(test @ E, "chordal")
            dist["geodesic"][i, j] = Memoriser(train, M).distances(test, "geodesic")
            for a in actions:
                eq = EquivariantMemoriser(train, ACTIONS[a])
                for metric in ("chordal", "geodesic"):
                    dist[f"{a}:{metric}"][i, j] = eq.distances(test, metric)
    const_mask = ns >= args.const_from
    brng = np.random.default_rng([10_000, list(MANIFOLDS).index(name)])
    law = point_process_gap(ns, M.dim, M.volume, 1.0)
    out = {"d": M.dim, "volume": M.volume, "coord_dim": M.coord_dim, "predicted_slope": -1 / M.dim,
           "predicted_mean": law.tolist()}
    for metric in ("chordal", "geodesic"):
        means = dist[metric].mean(axis=2)
        sups = dist[metric].max(axis=2)
        out[metric] = {"mean_gap": means.mean(axis=0).tolist(), "mean_gap_per_seed": means.tolist(),
                       "sup_gap": sups.mean(axis=0).tolist(), "sup_gap_per_seed": sups.tolist(),
                       "slope_per_seed": per_seed(means, ns),
                       "sup_slope_per_seed": per_seed(sups, ns),
                       # the sup against log(n / log n): the (log n / n)^(1/d) rate gives slope −1/d here
                       "sup_slope_vs_n_over_log_n": per_seed(sups, ns / np.log(ns)),
                       **bootstrap(dist[metric], ns, law, const_mask, args.bootstrap, brng)}
    out["equivariant"] = {}
    for a in actions:
        act = ACTIONS[a]
        q_law = act.predicted_gap(ns, 1.0)
        row = {"group_dim": act.group_dim, "quotient_dim": act.quotient_dim, "free": act.free,
               "quotient_volume": act.quotient_volume, "predicted_slope": -1 / act.quotient_dim,
               "predicted_mean": q_law.tolist()}
        for metric in ("chordal", "geodesic"):
            means = dist[f"{a}:{metric}"].mean(axis=2)
            row[metric] = {"mean_gap": means.mean(axis=0).tolist(), "mean_gap_per_seed": means.tolist(),
                           "slope_per_seed": per_seed(means, ns),
                           **bootstrap(dist[f"{a}:{metric}"], ns, q_law, const_mask, args.bootstrap, brng)}
        out["equivariant"][a] = row
    return out


def run_id(name: str, args) -> dict:
    """Experiment C on one manifold: TWO-NN and MLE on ``args.id_n`` points embedded in R^D, every seed."""
    M = MANIFOLDS[name]
    est = {m: [] for m in ESTIMATORS}
    for seed in args.seeds:
        rng = np.random.default_rng([seed, list(MANIFOLDS).index(name), 7])
        x = M.sample(args.id_n, rng) @ random_embedding(M.coord_dim, args.D, rng)
        for m in ESTIMATORS:
            est[m].append(intrinsic_dimension(x, m, n_neighbors=args.k))
    brng = np.random.default_rng([20_000, list(MANIFOLDS).index(name)])
    out = {}
    for m, v in est.items():
        boot = [statistics.fmean(brng.choice(v, len(v))) for _ in range(args.bootstrap)]
        out[m] = {"per_seed": v, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                  "ci": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]}
    return out


def plot(result: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    names = list(result["manifolds"])
    actions = [(m, a) for m in names for a in result["manifolds"][m]["equivariant"]]
    panels = [(m, None) for m in names] + actions
    cols = 5
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    ns = np.array(result["settings"]["ns"], dtype=float)
    for ax, (m, a) in zip(axes, panels):
        cell = result["manifolds"][m]
        if a is None:
            ax.loglog(ns, cell["chordal"]["mean_gap"], "o", ms=4, color="C0", label="mean gap (chordal)")
            ax.loglog(ns, cell["predicted_mean"], "-", color="C0", lw=1, label=f"law, slope −1/{cell['d']}")
            ax.loglog(ns, cell["chordal"]["sup_gap"], "s", ms=3, color="C3", alpha=0.6, label="sup gap")
            ax.set_title(f"{m} (d = {cell['d']}): slope {cell['chordal']['slope']:+.3f}", fontsize=9)
        else:
            eq = cell["equivariant"][a]
            ax.loglog(ns, cell["geodesic"]["mean_gap"], "o", ms=4, color="C0", label="memoriser")
            ax.loglog(ns, cell["predicted_mean"], "-", color="C0", lw=1, label=f"slope −1/{cell['d']}")
            ax.loglog(ns, eq["geodesic"]["mean_gap"], "^", ms=4, color="C2", label=f"{a} orbits")
            ax.loglog(ns, eq["predicted_mean"], "-", color="C2", lw=1, label=f"slope −1/{eq['quotient_dim']}")
            ax.set_title(f"{a}: slope {eq['geodesic']['slope']:+.3f} (geodesic)", fontsize=9)
        ax.set_xlabel("n (training points)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="lower left")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].set_ylabel("distance to the output set")
    fig.suptitle(f"representation gap of memorising predictors, {len(result['settings']['seeds'])} seeds, "
                 f"{result['settings']['test']} test points, in R^{result['settings']['D']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, png)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifolds", nargs="+", default=list(MANIFOLDS), choices=list(MANIFOLDS))
    ap.add_argument("--actions", nargs="+", default=None, choices=list(ACTIONS),
                    help="group actions for experiment B, each on its own manifold, which --manifolds must include "
                         "(default: every action whose manifold is run)")
    ap.add_argument("--ns", type=int, nargs="+", default=DEFAULT_NS, help="training-set sizes")
    ap.add_argument("--test", type=int, default=4000, help="test points per seed")
    ap.add_argument("--D", type=int, default=16, help="ambient dimension of the embedding")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--const-from", type=int, default=4000, help="average the constant ratio over n >= this")
    ap.add_argument("--id-n", type=int, default=4000, help="points for the intrinsic-dimension estimators (C)")
    ap.add_argument("--k", type=int, default=20, help="neighbours of the MLE estimator")
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run (options given still apply)")
    return ap


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, bool]:
    """(arguments, quick): quick is True for every run that is not the committed configuration."""
    ap, args, quick = parse_quick(build_parser, QUICK, argv)
    if len(set(args.ns)) < 2 or min(args.ns) < 2:
        ap.error("--ns: give at least two distinct sizes, each >= 2")
    if args.test < 2 or args.bootstrap < 10 or args.id_n < args.k + 1 or args.k < 2:
        ap.error("--test >= 2, --bootstrap >= 10, --k >= 2 and --id-n > --k are needed")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error("--seeds: give distinct non-negative seeds")
    if args.D < max(MANIFOLDS[m].coord_dim for m in args.manifolds):
        ap.error(f"--D {args.D}: smaller than a manifold's coordinate dimension")
    if not any(args.const_from <= n for n in args.ns):
        ap.error("--const-from: no training-set size at or above it")
    if args.actions is None:
        args.actions = [a for a in ACTIONS if ACTIONS[a].manifold_name in args.manifolds]
    else:
        off = [a for a in args.actions if ACTIONS[a].manifold_name not in args.manifolds]
        if off:
            ap.error("--actions " + ", ".join(f"{a} acts on {ACTIONS[a].manifold_name}" for a in off) +
                     ", which --manifolds does not include; add it to --manifolds or drop the action")
    args.ns = sorted(set(args.ns))
    return args, quick


def output_paths(quick: bool) -> tuple[Path, Path]:
    stem = "representation_gap" + (".quick" if quick else "")
    return RESULTS / f"{stem}.json", RESULTS / f"{stem}.png"


def main(argv: list[str] | None = None) -> dict:
    args, quick = parse_args(argv)
    t0 = time.perf_counter()
    manifolds = {}
    for name in args.manifolds:
        actions = [a for a in args.actions if ACTIONS[a].manifold_name == name]
        cell = run_manifold(name, args, actions)
        cell["intrinsic_dimension"] = run_id(name, args)
        slope, (lo, hi) = cell["chordal"]["slope"], cell["chordal"]["slope_ci"]
        cell["d_from_slope"] = {"value": -1 / slope, "ci": [-1 / lo, -1 / hi]}
        manifolds[name] = cell
        ids = cell["intrinsic_dimension"]
        print(f"{name:6s} d={cell['d']}: slope {slope:+.4f} [{lo:+.4f}, {hi:+.4f}] (−1/d = {-1 / cell['d']:+.4f}), "
              f"constant ratio {cell['chordal']['ratio']:.4f}; TwoNN {ids['twonn']['mean']:.3f} ± "
              f"{ids['twonn']['std']:.3f}, MLE {ids['mle']['mean']:.3f} ± {ids['mle']['std']:.3f}", flush=True)
        for a, eq in cell["equivariant"].items():
            g = eq["geodesic"]
            print(f"  {a}: slope {g['slope']:+.4f} [{g['slope_ci'][0]:+.4f}, {g['slope_ci'][1]:+.4f}] "
                  f"(−1/(d − dim G) = {eq['predicted_slope']:+.4f}), ratio {g['ratio']:.4f}", flush=True)
    argv_used = sys.argv if argv is None else ["experiments/representation_gap.py", *argv]
    result = {"experiment": "representation_gap", "command": " ".join(["python", *argv_used]),
              "machine": machine_description(), "quick": quick, "seconds": time.perf_counter() - t0,
              "prediction": "memoriser: mean gap ~ Γ(1+1/d)(n V_d/Vol)^(-1/d), slope -1/d; G-equivariant memoriser: "
                            "slope -1/(d - dim G); TWO-NN and MLE recover d (arXiv 2605.21692)",
              "settings": {k: v for k, v in vars(args).items() if k != "quick"}, "manifolds": manifolds}
    from mechlab.claims.registry import claim

    result["verdicts"] = {}
    for name in ("gap-memoriser", "gap-equivariance", "gap-intrinsic-dimension"):
        m = claim(name).evaluate([result])
        result["verdicts"][name] = {"verdict": m.verdict, "rows": m.rows, "reason": m.reason}
        print(f"{name}: {m.verdict} ({m.reason})")
    json_path, png_path = output_paths(quick)
    write_json_atomic(json_path, result)
    plot(result, png_path)
    print(f"{result['seconds']:.0f} s; wrote {json_path} and {png_path.name}")
    return result


if __name__ == "__main__":
    main()
