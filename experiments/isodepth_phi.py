"""How much is one recurrence worth at CPU scale? The iso-depth scaling law (arXiv 2604.21106 and 2604.21254)

    L(N_once, N_rec, r, D) = E + A·(N_once + r^φ·N_rec)^(−α) + B·D^(−β)

fitted to looped models, plain (Looped) and with hyper-connections (Hyperloop). Published: φ = 0.46 [0.41, 0.53]
plain, 0.65 with hyper-connections. φ = 1 would make a loop worth a unique block, φ = 0 worth nothing.

The design is checked before it is believed. φ is identified only through the loss differences between
recurrence counts at equal (N_once, N_rec), so a design with few r values, few token budgets or budgets too
short for an extra loop to pay cannot resolve it, and then a fitted interval that misses 0.46 refutes nothing.
Every results file therefore carries a design check per arm: losses drawn from the law fitted with φ pinned at
the published value, with the runs' own residual noise, at exactly the design that was run, refitted by the same
pipeline (:func:`mechlab.mechanics.fits.synthetic_recovery`). The claim's verdict uses it: a design whose check
does not recover φ within ±0.1 reads "inconclusive" (mechlab.claims.registry).

The default grid (widths 24–64, r ∈ {1, 2, 4, 8}, 200/400/800 steps: 48 runs per arm, about 1.3× the training
FLOPs of the first design's 18) came out of ``--plan``, which runs the same check for candidate grids against the
committed runs' law and noise before any training (experiments/results/isodepth_phi_plan.json): for the plain
arm it predicts an sd of φ of 0.04 (the first design: 0.34). Small widths pay because the parameter term of the
law is steepest there, r up to 8 because φ is read from r^φ; a third token budget separates B·D^(−β) from E.
With the noise of the first Hyperloop runs (trained with the loop embedding at 50× scale) the same grid gives
an sd of 0.13 for that arm: more seeds per point (``--seeds``) if the rerun's own design check asks for them.

Run, the grid did not deliver that: at 200–800 steps extra loops cost loss at every width (r = 8 is 0.03–0.17
nats/token worse than r = 1 in all 12 cells), the free fit sits at φ = −1, and the design check on the runs' own
law (a flatter parameter term, noise sd 0.014 in log-loss) gives a half-width of 1.1. ``--plan`` against those runs
finds no one-seed grid that resolves φ, budgets up to 3,200 steps included (CANDIDATES): the noise has to come down
(more validation windows, several seeds per point) before φ can be read at this scale.

Every run is an ordinary `mechlab train` run through `mechlab sweep` (resumable): layout 1→2×r→1, gutenberg with a
2048-token BPE, AdamW with the paper's ε = 1e-6, validation loss (nats/token) at the end. N_rec counts the middle
blocks' parameters, N_once every other parameter but the input embedding. The fit: Huber on log-loss, L-BFGS-B
from many restarts, bootstrap CIs, and the restricted fits φ = 0 and φ = 1 (mechlab.mechanics.fits).

    python experiments/isodepth_phi.py [--widths 24 32 48 64] [--loops 1 2 4 8] [--steps 200 400 800] [--seeds 0] [--parallel 2]
    python experiments/isodepth_phi.py --plan            # synthetic checks of candidate designs, no training
    python experiments/isodepth_phi.py --recheck         # refit the committed runs and redo their design check

Runs live in runs/isodepth_phi/; the fit goes to experiments/results/isodepth_phi.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from mechlab.mechanics.fits import fit_law, predict, synthetic_recovery
from mechlab.mechanics.sweep import SweepSpec, run_sweep
from mechlab.models import build_model, preset
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "isodepth_phi.json"
PLAN = ROOT / "results" / "isodepth_phi_plan.json"
PUBLISHED = {"looped": 0.46, "hyperloop": 0.65}  # arXiv 2604.21106
BATCH, SEQ = 8, 256
# candidate grids for --plan: widths, recurrences, steps of BATCH×SEQ tokens
CANDIDATES = {
    "first (committed runs)": ([64, 96, 128], [1, 2, 4], [200, 400]),
    "three budgets": ([64, 96, 128], [1, 2, 4], [200, 400, 800]),
    "r up to 6": ([64, 96, 128], [1, 2, 3, 4, 6], [200, 400, 800]),
    "r up to 8, four widths": ([48, 64, 96, 128], [1, 2, 4, 8], [200, 400, 800]),
    "r up to 8, five widths": ([32, 48, 64, 96, 128], [1, 2, 4, 8], [200, 400, 800]),
    "r up to 8, small widths": ([32, 48, 64, 96], [1, 2, 4, 8], [200, 400, 800]),
    "r up to 8, smaller widths": ([24, 32, 48, 64], [1, 2, 4, 8], [200, 400, 800]),
    "r up to 8, small widths, 4 budgets": ([32, 48, 64, 96], [1, 2, 4, 8], [100, 200, 400, 800]),
    # longer budgets, for a law whose parameter term is flat at 200–800 steps (the redesigned grid's own runs)
    "smaller widths, to 3200 steps": ([24, 32, 48, 64], [1, 2, 4, 8], [400, 800, 1600, 3200]),
    "smaller widths, r 1/2/4/8/16, to 3200 steps": ([24, 32, 48, 64], [1, 2, 4, 8, 16], [400, 800, 1600, 3200]),
    "widths 16–64, to 3200 steps": ([16, 24, 32, 48, 64], [1, 2, 4, 8], [400, 800, 1600, 3200]),
}


def d_ff(width: int) -> int:
    """The tiny presets' MLP ratio (2.75, as in the Hyperloop paper), rounded to a multiple of 16."""
    return 16 * round(2.75 * width / 16)


def param_split(arch: str, width: int, loops: int, vocab: int = 2048) -> tuple[int, int]:
    """(N_once, N_rec) of a 1→2×r→1 model: middle blocks vs everything else but the input embedding."""
    with torch.device("meta"):
        model = build_model(preset(f"{arch}-tiny", d_model=width, d_ff=d_ff(width), n_loops=loops, vocab_size=vocab))
    n_mid = model.config.n_begin, model.config.n_begin + model.config.n_middle
    rec = sum(p.numel() for n, p in model.named_parameters()
              if n.startswith("blocks.") and n_mid[0] <= int(n.split(".")[1]) < n_mid[1])
    once = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embed.")) - rec
    return once, rec


def design(rows: list[dict]) -> dict[str, np.ndarray]:
    """The design of result rows (or of planned ones): N_once, D (tokens), N_rec, r."""
    return {"N": np.array([r["n_once"] for r in rows], float), "D": np.array([r["tokens"] for r in rows], float),
            "N_rec": np.array([r["n_rec"] for r in rows], float),
            "r": np.array([r["model_overrides.n_loops"] for r in rows], float)}


def fit_arm(rows: list[dict], bootstrap: int, phi: float | None = None):
    """The iso-depth law fitted to result rows (validation loss in nats/token), φ free or pinned to ``phi``."""
    d = design(rows)
    return fit_law("isodepth", [r["val_loss"] for r in rows], d["N"], d["D"], N_rec=d["N_rec"], r=d["r"], phi=phi,
                   bootstrap=bootstrap, restricted=phi is None)


def pinned_law(rows: list[dict], arch: str):
    """The law fitted to ``rows`` with φ pinned at the published value: the truth of a design check. Its residual sd
    holds the runs' noise and any misfit of the pinned law, so it is at least the free fit's: the cautious noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_arm(rows, bootstrap=0, phi=PUBLISHED[arch])


def recover(truth, rows: list[dict], n_rep: int, bootstrap: int):
    """:func:`synthetic_recovery` of φ at the design of ``rows``, losses from ``truth`` with its residual noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synthetic_recovery("isodepth", truth.params, design(rows), noise=truth.residual_sd, n_rep=n_rep,
                                  bootstrap=bootstrap)


def design_check(rows: list[dict], arch: str, n_rep: int, bootstrap: int) -> dict:
    """Can this design resolve φ? Synthetic losses from :func:`pinned_law` at the design of ``rows``, refitted;
    the keys the claim's verdict rule reads."""
    truth = pinned_law(rows, arch)
    rec = recover(truth, rows, n_rep, bootstrap)
    return {"phi_true": PUBLISHED[arch], "n_rep": n_rep, "bootstrap": bootstrap, "noise_sd": truth.residual_sd,
            "law": truth.params, "bias": rec.bias, "sd": rec.sd, "ci_halfwidth_median": rec.median_ci_width / 2,
            "coverage": rec.coverage, "failed": rec.failed, "n_runs": len(rows)}


def design_rows(arch: str, widths, loops, steps) -> list[dict]:
    """Result-shaped rows (without losses) of a planned grid."""
    rows = []
    for w, r, s in itertools.product(widths, loops, steps):
        once, rec = param_split(arch, w, r)
        rows.append({"n_once": once, "n_rec": rec, "model_overrides.n_loops": r, "tokens": s * BATCH * SEQ,
                     "d_model": w, "steps": s})
    return rows


def plan(args) -> None:
    """Synthetic checks of the candidate grids against each arm's committed runs (law with φ pinned, noise)."""
    committed = json.loads(RESULTS.read_text())
    out = {"experiment": "isodepth_phi_plan", "command": "python experiments/isodepth_phi.py --plan",
           "machine": machine_description(), "n_rep": args.design_reps, "candidates": {}}
    for arch in args.archs:
        runs = [r for r in committed["runs"] if r["arch"] == arch]
        if not runs:
            continue
        truth = pinned_law(runs, arch)
        for name, (widths, loops, steps) in CANDIDATES.items():
            rows = design_rows(arch, widths, loops, steps)
            rec = recover(truth, rows, args.design_reps, bootstrap=0)
            c = design(rows)
            flops = float(np.sum(6 * (c["N"] + c["r"] * c["N_rec"]) * c["D"]))
            cell = {"widths": widths, "loops": loops, "steps": steps, "runs": len(rows), "train_flops": flops,
                    "noise_sd": truth.residual_sd, "phi_true": PUBLISHED[arch], "phi_sd": rec.sd, "bias": rec.bias,
                    "failed": rec.failed}
            out["candidates"].setdefault(arch, {})[name] = cell
            print(f"{arch:9s} {name:24s} {len(rows):3d} runs {flops:.2e} FLOPs  φ sd {rec.sd:.3f} bias {rec.bias:+.3f}")
    write_json_atomic(PLAN, out)
    print(f"wrote {PLAN}")


def plot(result: dict, out: Path) -> None:
    """Validation loss against the effective parameter count N_once + r^φ·N_rec at the fitted φ, one panel per
    architecture, with the fitted law at each token budget."""
    from matplotlib.figure import Figure

    archs = list(result["fits"])
    fig = Figure(figsize=(5.5 * len(archs), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(archs), sharey=True))
    for ax, arch in zip(axes, archs):
        fit = result["fits"][arch]
        phi = fit["params"]["phi"]
        runs = [r for r in result["runs"] if r["arch"] == arch]
        all_loops = sorted({r["model_overrides.n_loops"] for r in runs})
        for steps, marker in zip(sorted({r["steps"] for r in runs}), "os^vD"):
            sel = [r for r in runs if r["steps"] == steps]
            for loops in all_loops:
                pts = [r for r in sel if r["model_overrides.n_loops"] == loops]
                ax.scatter([r["n_once"] + loops**phi * r["n_rec"] for r in pts], [r["val_loss"] for r in pts],
                           marker=marker, color=f"C{all_loops.index(loops)}", label=f"r={loops}, {steps} steps")
            neff = np.geomspace(min(r["n_once"] for r in sel), max(r["n_once"] + max(all_loops) * r["n_rec"] for r in sel), 50)
            ax.plot(neff, predict("isodepth", fit["params"], neff, np.full_like(neff, sel[0]["tokens"]),
                                  np.zeros_like(neff), np.ones_like(neff)), color="gray", lw=1)
        lo, hi = fit["ci"].get("phi", (float("nan"), float("nan")))
        check = result.get("design_check", {}).get(arch)
        resolved = "" if check is None else f"\ndesign check: ±{check['ci_halfwidth_median']:.2f} at φ = {check['phi_true']}"
        ax.set_xscale("log")
        ax.set_title(f"{arch}: φ = {phi:.2f} [{lo:.2f}, {hi:.2f}]{resolved}", fontsize=10)
        ax.set_xlabel("N_once + r^φ · N_rec")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss (nats/token)")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[24, 32, 48, 64])
    ap.add_argument("--loops", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 400, 800])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per grid point (more lower the noise)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["looped", "hyperloop"], choices=list(PUBLISHED),
                    help="run and fit only these arms (the results file keeps the other arm's fit)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--design-reps", type=int, default=20, help="synthetic replicates of the design check")
    ap.add_argument("--out", default="runs/isodepth_phi")
    ap.add_argument("--plan", action="store_true", help="only the synthetic checks of candidate designs")
    ap.add_argument("--recheck", action="store_true", help="refit the committed runs and redo their design check")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from the committed results")
    args = ap.parse_args()
    if args.plan:
        return plan(args)
    if args.replot:
        return plot(json.loads(RESULTS.read_text()), RESULTS.with_suffix(".png"))
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"fits": {}, "runs": [], "design_check": {}}
    fits, checks, rows = {}, {}, []
    for arch in args.archs:
        if args.recheck:
            arch_rows = [r for r in old["runs"] if r["arch"] == arch]
            if not arch_rows:
                continue
        else:
            spec = SweepSpec(Path(args.out) / arch,
                             {"model": f"{arch}-tiny", "data": "gutenberg", "tokenizer": "bpe:2048", "seq_len": SEQ,
                              "batch_size": BATCH, "lr": 3e-3, "eps": 1e-6, "warmup_steps": 20, "eval_windows": 64,
                              "log_every": 20, "save_every": 100, "eval_every": max(args.steps)},
                             {"model_overrides": [{"d_model": w, "d_ff": d_ff(w)} for w in args.widths],
                              "model_overrides.n_loops": args.loops, "steps": args.steps, "seed": args.seeds})
            arch_rows = [r for r in run_sweep(spec, parallel=args.parallel) if "val_loss" in r]
            for r in arch_rows:
                r["arch"] = arch
                r["d_model"] = r["model_overrides"]["d_model"]
                r["n_once"], r["n_rec"] = param_split(arch, r["d_model"], r["model_overrides.n_loops"])
                r["tokens"] = r["steps"] * BATCH * SEQ
        rows += arch_rows
        fit = fit_arm(arch_rows, args.bootstrap)
        fits[arch] = fit.to_dict()
        checks[arch] = design_check(arch_rows, arch, args.design_reps, bootstrap=50)
        print(arch, "phi", fit.params["phi"], fit.ci.get("phi"), "R2", fit.r2, "design check ±",
              checks[arch]["ci_halfwidth_median"])
    # arms run separately: keep the other arm's fit, check and runs
    fits = {**{a: f for a, f in old["fits"].items() if a not in fits}, **fits}
    checks = {**{a: c for a, c in old.get("design_check", {}).items() if a not in checks}, **checks}
    rows = [r for r in old["runs"] if r["arch"] not in {r["arch"] for r in rows}] + rows
    command = old.get("command", "") if args.recheck else " ".join(["python", *sys.argv])
    result = {"experiment": "isodepth_phi", "command": command, "machine": machine_description(),
              "prediction": "phi = 0.46 [0.41, 0.53] plain looping, 0.65 with hyper-connections",
              "settings": old.get("settings", {}) if args.recheck else {**vars(args), "archs": sorted(fits)},
              "fits": fits, "design_check": checks, "runs": rows}
    if args.recheck:
        result["recheck"] = "python experiments/isodepth_phi.py --recheck"
    write_json_atomic(RESULTS, result)
    plot(result, RESULTS.with_suffix(".png"))
    print(json.dumps({a: f["params"]["phi"] for a, f in fits.items()}))


if __name__ == "__main__":
    main()
