"""Edge of stability under gradient descent and under Adam (arXiv 2604.21691).

Predictions:

* full-batch gradient descent with step size η: the sharpness λ_max(H) rises (progressive sharpening) until it
  reaches 2/η, then hovers there while the loss keeps falling, non-monotonically (Cohen et al. 2021, "Gradient
  descent on neural networks typically occurs at the edge of stability", arXiv 2103.00065);
* full-batch Adam with learning rate η and momentum β1: the *preconditioned* sharpness λ_max(P⁻¹H), P Adam's
  diagonal preconditioner, rises to (2 + 2β1)/((1 − β1)·η) = 38/η at β1 = 0.9 and hovers there (Cohen et al. 2022,
  "Adaptive gradient methods at the edge of stability", arXiv 2207.14484); the raw sharpness stays far below 2/η.

Set-up (CPU-cheap, the shape of Cohen et al.'s fully connected tanh network on a 5k subset of CIFAR-10 with the
square loss): a tanh MLP (2 hidden layers of 64) regresses the 5 outputs of a random tanh teacher from 1000 Gaussian
inputs in 20 dimensions, loss ½·mean over points of |f(x) − y|². Every step uses the whole data set (full batch).
Arms: torch.optim.SGD without momentum (gradient descent) and torch.optim.Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8),
each at three learning rates whose thresholds lie above the initial sharpness, so the run must sharpen to reach
them; several seeds (a seed draws the data, the teacher and the initialisation). Every ``--every`` steps the
sharpness is measured with :func:`mechlab.mechanics.top_hessian_eigenvalue` and (Adam)
:func:`mechlab.mechanics.preconditioned_sharpness`, and divided by its threshold (2/η, resp.
:func:`mechlab.mechanics.adam_threshold`). At the last step of every run the power-iteration estimate is checked
against ARPACK's Lanczos (scipy ``eigsh``, tol 1e-8) on the same Hessian-vector products.

The loop is the five-line full-batch loop of these papers, not mechlab's trainer: the trainer draws fresh random
token windows each step (stochastic gradients), while the prediction is about deterministic full-batch dynamics.

Summary per arm and learning rate: for each seed, the median of sharpness/threshold over the last ``--tail`` of the
steps (default the last 30%) and its interquartile range; over seeds, their mean and min–max. The verdict rule is
:func:`mechlab.claims.registry._edge_of_stability`.

    OMP_NUM_THREADS=1 python experiments/edge_of_stability.py [--seeds 0 1 2] [--steps 3000] [--quick]

The committed run (every option at its default) writes experiments/results/edge_of_stability.{json,png}. Any other
run — ``--quick`` (200 steps, η = 0.4 for GD and 0.02 for Adam, seed 0, a measurement every 20 steps; each only
where the option is not given), fewer steps or seeds, other learning rates... — writes
edge_of_stability.quick.{json,png} beside them (benchmarks/common.py: is_reference_run, the benchmarks' rule).
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
import torch

from mechlab.claims.registry import claim
from mechlab.mechanics import adam_preconditioner, adam_threshold, preconditioned_sharpness, top_hessian_eigenvalue
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
BAND = (0.8, 1.2)  # the equilibrium ratio sharpness/threshold that counts as "at the edge"
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
QUICK = dict(steps=200, gd_lrs=[0.4], adam_lrs=[0.02], seeds=[0], every=20)  # --quick's defaults


def _benchmarks_common():
    """benchmarks/common.py, the home of the rule which runs may write the committed results (is_reference_run)."""
    path = ROOT.parent / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("_mechlab_benchmarks_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_data(seed: int, n: int, d: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n Gaussian inputs in d dimensions and the k outputs of a random tanh teacher (width 64, weights ×3), scaled
    to unit standard deviation."""
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(n, d, generator=g)
    w1, w2 = 3 * torch.randn(d, 64, generator=g) / d**0.5, 3 * torch.randn(64, k, generator=g) / 64**0.5
    y = torch.tanh(x @ w1) @ w2
    return x, y / y.std()


def make_model(seed: int, d: int, k: int, width: int, depth: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers, fan_in = [], d
    for _ in range(depth):
        layers += [torch.nn.Linear(fan_in, width), torch.nn.Tanh()]
        fan_in = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, k))


def lanczos_check(loss_fn, params: list[torch.Tensor], scale: list[torch.Tensor] | None) -> float:
    """λ_max of D·H·D (D = diag(scale), the identity if None) by ARPACK's Lanczos (scipy eigsh, which='LA')."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    sizes = [p.numel() for p in params]
    flat_scale = None if scale is None else torch.cat([s.reshape(-1) for s in scale])

    def matvec(v: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))
        if flat_scale is not None:
            v = v * flat_scale
        parts = [c.view_as(p) for c, p in zip(torch.split(v, sizes), params)]
        hv = torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, parts, retain_graph=True)])
        if flat_scale is not None:
            hv = hv * flat_scale
        return hv.double().numpy()

    n = sum(sizes)
    return float(eigsh(LinearOperator((n, n), matvec=matvec, dtype=np.float64), k=1, which="LA", tol=1e-8,
                       return_eigenvectors=False)[0])


def run(arm: str, lr: float, seed: int, args) -> dict:
    """One full-batch run; the series of loss and sharpness every ``args.every`` steps."""
    x, y = make_data(seed, args.n, args.dim, args.outputs)
    model = make_model(seed, args.dim, args.outputs, args.width, args.depth)
    params = list(model.parameters())
    if arm == "gd":
        opt = torch.optim.SGD(params, lr=lr)
        threshold = 2 / lr
    else:
        opt = torch.optim.Adam(params, lr=lr, betas=(BETA1, BETA2), eps=EPS)
        threshold = adam_threshold(lr, BETA1)

    def loss_fn() -> torch.Tensor:
        return 0.5 * ((model(x) - y) ** 2).sum(1).mean()

    series = {"step": [], "loss": [], "raw": [], "raw_ratio": []}
    if arm == "adam":
        series.update(precond=[], ratio=[])
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{arm} lr {lr} seed {seed}: the loss diverged at step {step}")
        loss.backward()
        opt.step()
        if step % args.every and step != args.steps:
            continue
        raw = top_hessian_eigenvalue(loss_fn, params, iters=args.iters, tol=args.tol, seed=step)
        series["step"].append(step)
        series["loss"].append(loss.item())
        series["raw"].append(raw)
        series["raw_ratio"].append(raw * lr / 2)
        if arm == "adam":
            pre = preconditioned_sharpness(loss_fn, params, opt, iters=args.iters, tol=args.tol, seed=step)
            series["precond"].append(pre)
            series["ratio"].append(pre / threshold)
    if arm == "gd":
        series["ratio"] = series["raw_ratio"]
    # the estimator against ARPACK's Lanczos at the last step
    scale = None if arm == "gd" else [p.rsqrt() for p in adam_preconditioner(opt, params)]
    exact = lanczos_check(loss_fn, params, scale)
    estimate = series["raw" if arm == "gd" else "precond"][-1]
    return {"arm": arm, "lr": lr, "seed": seed, "threshold": threshold, "seconds": time.perf_counter() - t0,
            "final_loss": series["loss"][-1], "lanczos_last": exact, "power_last": estimate,
            "power_rel_error_last": estimate / exact - 1, "series": series}


def tail_stats(ratio: list[float], tail: float) -> dict:
    """Median and interquartile range of the last ``tail`` fraction of a ratio series, its maximum over the run and
    its first value."""
    n = max(1, round(len(ratio) * tail))
    q1, med, q3 = np.quantile(ratio[-n:], [0.25, 0.5, 0.75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "max": float(max(ratio)), "first": ratio[0],
            "n_points": n}


def summarise(runs: list[dict], tail: float) -> dict:
    """arm → lr → {per_seed, mean, min, max of the tail medians}; for Adam also the raw sharpness over 2/η."""
    out: dict = {}
    for r in runs:
        cell = out.setdefault(r["arm"], {}).setdefault(f"{r['lr']:g}", {"lr": r["lr"], "per_seed": {}})
        row = tail_stats(r["series"]["ratio"], tail)
        if r["arm"] == "adam":
            row["raw_over_two_over_lr"] = tail_stats(r["series"]["raw_ratio"], tail)["median"]
        cell["per_seed"][str(r["seed"])] = row
    for cells in out.values():
        for cell in cells.values():
            meds = [s["median"] for s in cell["per_seed"].values()]
            cell.update(mean=statistics.fmean(meds), std=statistics.stdev(meds) if len(meds) > 1 else 0.0,
                        min=min(meds), max=max(meds))
    return out


def plot(runs: list[dict], png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=120)
    axes = fig.subplots(1, 2, sharey=True)
    titles = {"gd": "full-batch gradient descent: λ_max(H) / (2/η)",
              "adam": "full-batch Adam (β1 = 0.9): λ_max(P⁻¹H) / (38/η)"}
    for ax, arm in zip(axes, ("gd", "adam")):
        lrs = sorted({r["lr"] for r in runs if r["arm"] == arm})
        for i, lr in enumerate(lrs):
            for j, r in enumerate(x for x in runs if x["arm"] == arm and x["lr"] == lr):
                ax.plot(r["series"]["step"], r["series"]["ratio"], color=f"C{i}", lw=1.0, alpha=0.8,
                        label=f"η = {lr:g}" if j == 0 else None)
        ax.axhline(1.0, color="k", lw=1, ls="--")
        ax.axhspan(*BAND, color="0.9", zorder=0)
        ax.set_title(titles[arm], fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.6)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("sharpness / threshold (one line per seed)")
    fig.tight_layout()
    save_figure(fig, png)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--gd-lrs", type=float, nargs="+", default=[0.2, 0.3, 0.4])
    ap.add_argument("--adam-lrs", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--every", type=int, default=50, help="measure the sharpness every N steps")
    ap.add_argument("--iters", type=int, default=100, help="power-iteration steps per measurement (at most)")
    ap.add_argument("--tol", type=float, default=1e-5, help="relative change that ends a power iteration")
    ap.add_argument("--tail", type=float, default=0.3, help="fraction of the measurements that is 'equilibrium'")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=20)
    ap.add_argument("--outputs", type=int, default=5)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 200 steps, one lr per arm, one seed, every 20 steps (defaults: options given "
                         "still apply)")
    return ap


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, with an argparse error (exit 2), options the experiment cannot run or summarise."""
    for opt in ("steps", "every", "iters", "n", "dim", "outputs", "width", "depth"):
        if getattr(args, opt) < 1:
            ap.error(f"--{opt} {getattr(args, opt)}: must be at least 1")
    if not 0 < args.tail < 1:
        ap.error(f"--tail {args.tail}: the equilibrium fraction of the measurements must lie in (0, 1)")
    if not 0 < args.tol < math.inf:
        ap.error(f"--tol {args.tol}: must be positive")
    for opt in ("gd_lrs", "adam_lrs"):
        lrs = getattr(args, opt)
        flag = "--" + opt.replace("_", "-")
        if not lrs or any(not 0 < lr < math.inf for lr in lrs):  # also refuses nan
            ap.error(f"{flag} {' '.join(f'{lr:g}' for lr in lrs)}: learning rates must be positive and finite")
        if len(set(lrs)) != len(lrs):
            ap.error(f"{flag}: a learning rate is repeated")
    if not args.seeds:
        ap.error("--seeds: give at least one seed")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds {' '.join(map(str, args.seeds))}: seeds must be distinct and non-negative")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, bool]:
    """(arguments, quick): ``--quick`` supplies QUICK's values only for the options not given; quick is True for
    every run that is not the committed configuration (every option at its default), which writes
    edge_of_stability.quick.{json,png}."""
    ap, args, quick = _benchmarks_common().parse_quick(build_parser, QUICK, argv)
    validate(ap, args)
    return args, quick


def output_paths(quick: bool) -> tuple[Path, Path]:
    """The results JSON and plot: edge_of_stability.{json,png}, or edge_of_stability.quick.{json,png} beside them."""
    stem = "edge_of_stability" + (".quick" if quick else "")
    return ROOT / "results" / f"{stem}.json", ROOT / "results" / f"{stem}.png"


def main() -> None:
    args, quick = parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = []
    for arm, lrs in (("gd", args.gd_lrs), ("adam", args.adam_lrs)):
        for lr in lrs:
            for seed in args.seeds:
                r = run(arm, lr, seed, args)
                runs.append(r)
                med = tail_stats(r["series"]["ratio"], args.tail)["median"]
                print(f"{arm:4s} lr {lr:<6g} seed {seed}: tail median ratio {med:.3f}, "
                      f"final loss {r['final_loss']:.4f}, power/Lanczos − 1 = {r['power_rel_error_last']:+.1e}, "
                      f"{r['seconds']:.0f} s", flush=True)
    summary = summarise(runs, args.tail)
    result = {
        "experiment": "edge_of_stability", "command": " ".join(["python", *sys.argv]),
        "machine": machine_description(), "quick": quick, "seconds": time.perf_counter() - t0,
        "prediction": "full-batch GD: λ_max(H) → 2/η and hovers; full-batch Adam: λ_max(P⁻¹H) → (2+2β1)/((1−β1)η) "
                      "= 38/η and hovers (arXiv 2103.00065, 2207.14484)",
        "settings": {**{k: v for k, v in vars(args).items() if k != "quick"}, "beta1": BETA1, "beta2": BETA2,
                     "eps": EPS, "band": list(BAND), "loss": "0.5 * mean_i |f(x_i) - y_i|^2, full batch",
                     "model": f"tanh MLP {args.dim}-{'-'.join([str(args.width)] * args.depth)}-{args.outputs}"},
        "power_iteration_check": {"max_abs_rel_error_vs_lanczos": max(abs(r["power_rel_error_last"]) for r in runs)},
        "summary": summary,
        "runs": [{**r, "series": {k: [float(f"{x:.5g}") for x in v] for k, v in r["series"].items()}} for r in runs],
    }
    m = claim("edge-of-stability").evaluate([result])
    verdict, rows, reason = m.verdict, m.rows, m.reason
    result["verdict"] = {"verdict": verdict, "rows": rows, "reason": reason}
    json_path, png_path = output_paths(quick)
    write_json_atomic(json_path, result)
    plot(runs, png_path)
    for q, v in rows:
        print(f"{q}: {v}")
    print(f"verdict: {verdict} ({reason}); {result['seconds']:.0f} s; wrote {json_path}")


if __name__ == "__main__":
    main()
