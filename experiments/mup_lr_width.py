"""Does the best learning rate move with width? Standard parameterisation against μP (arXiv 2604.21691).

Prediction (Yang et al., μTransfer): under SP the loss-optimal Adam learning rate shrinks as the model widens;
under μP (mechlab's ``parametrization="mup"``, base width 64) it stays within one step of the grid.

A learning-rate grid × widths {64, 128, 256} × {SP, μP} of the tiny Transformer (4 layers, 4 heads, untied head),
each an ordinary ``mechlab train`` run through ``mechlab sweep`` (resumable), on tinyshakespeare with byte tokens;
final validation bits/byte per point (mean ± sd over ``--seeds``); the best lr per width and parameterisation, of the
mean curve and of each seed, and a plot of the curves.

    python experiments/mup_lr_width.py [--steps 300] [--seeds 0] [--parallel 2] [--quick]

Runs live in runs/mup_lr_width/; the summary goes to experiments/results/mup_lr_width.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from mechlab.mechanics.sweep import SweepSpec, run_sweep
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent


def spec(param: str, args) -> SweepSpec:
    base = {"model": "tiny", "data": "tinyshakespeare", "tokenizer": "byte", "seq_len": 128, "batch_size": 16,
            "steps": args.steps, "warmup_steps": max(args.steps // 10, 1), "eval_every": args.steps,
            "eval_windows": 64, "log_every": max(args.steps // 10, 1), "save_every": max(args.steps // 3, 1),
            "model_overrides": {"tie_embeddings": False, "n_kv_heads": 4, "parametrization": param, "mup_base_width": 64}}
    return SweepSpec(Path(args.out) / param, base,
                     {"model_overrides.d_model": args.widths, "lr": args.lrs, "seed": args.seeds})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", default="runs/mup_lr_width")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 steps, two widths, two lrs")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.widths, args.lrs, args.out = 4, [64, 128], [1e-3, 1e-2], args.out + "-quick"
    summary, per_seed = {}, {}
    for param in ("sp", "mup"):
        rows = run_sweep(spec(param, args), parallel=args.parallel)
        curves = {}  # width -> lr -> seed -> val bits/byte
        for r in rows:
            if "val_bpb" in r:
                curves.setdefault(r["model_overrides.d_model"], {}).setdefault(r["lr"], {})[r["seed"]] = r["val_bpb"]
        summary[param] = {str(w): curve_summary(c) for w, c in sorted(curves.items())}
        per_seed[param] = [spread(list(best)) for best in zip(*(c["best_lr_per_seed"] for c in summary[param].values()))]
        print(param, {w: s["best_lr"] for w, s in summary[param].items()})
    moves = {p: spread([s["best_lr"] for s in summary[p].values()]) for p in summary}
    name = "mup_lr_width" + ("_quick" if args.quick else "")
    write_json_atomic(ROOT / "results" / f"{name}.json", {
        "experiment": name, "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "prediction": "best lr moves with width under SP, stays within one grid step under μP",
        "settings": {k: v for k, v in vars(args).items() if k != "quick"}, "curves": summary,
        "best_lr_spread_decades": moves, "best_lr_spread_decades_per_seed": per_seed})
    plot(summary, ROOT / "results" / f"{name}.png")
    print(json.dumps(moves))


def spread(best_lrs: list[float]) -> float:
    """How far the best learning rate moves across widths, in decades."""
    return math.log10(max(best_lrs) / min(best_lrs))


def curve_summary(c: dict[float, dict[int, float]]) -> dict:
    """One width's curve over the lr grid: mean and standard deviation over seeds; the best lr of the mean curve and
    of each seed."""
    lrs = sorted(c)
    mean = [statistics.fmean(c[lr].values()) for lr in lrs]
    seeds = sorted({s for by_seed in c.values() for s in by_seed})
    return {"lr": lrs, "val_bpb": mean, "val_bpb_std": [statistics.pstdev(c[lr].values()) for lr in lrs],
            "seeds": seeds, "best_lr": lrs[mean.index(min(mean))],
            "best_lr_per_seed": [min(lrs, key=lambda lr: c[lr].get(s, math.inf)) for s in seeds]}


def plot(summary: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (param, curves) in zip(axes, summary.items()):
        for w, c in curves.items():
            ax.errorbar(c["lr"], c["val_bpb"], yerr=c.get("val_bpb_std"), fmt="o-", capsize=3,
                        label=f"width {w} (best {c['best_lr']:g})")
        ax.set_xscale("log")
        ax.set_xlabel("Adam learning rate")
        ax.set_title({"sp": "standard parameterisation", "mup": "μP (base width 64)"}[param])
        ax.grid(alpha=0.3)
        ax.legend()
    seeds = len(next(iter(next(iter(summary.values())).values())).get("seeds", [0]))
    axes[0].set_ylabel("validation bits/byte" + (f" (mean ± sd of {seeds} seeds)" if seeds > 1 else ""))
    fig.tight_layout()
    save_figure(fig, png, dpi=120)


if __name__ == "__main__":
    main()
