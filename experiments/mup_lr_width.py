"""Does the best learning rate move with width? Standard parameterisation against μP (papers/learning-mechanics.md (d)).

Prediction (Yang et al., μTransfer): under SP the loss-optimal Adam learning rate shrinks as the model widens;
under μP (mechlab's ``parametrization="mup"``, base width 64) it stays within one step of the grid.

A learning-rate grid × widths {64, 128, 256} × {SP, μP} of the tiny Transformer (4 layers, 4 heads, untied head),
each an ordinary ``mechlab train`` run through ``mechlab sweep`` (resumable), on tinyshakespeare with byte tokens;
final validation bits/byte per point; the best lr per width and parameterisation, and a plot of the curves.

    python experiments/mup_lr_width.py [--steps 300] [--seeds 0] [--parallel 2] [--quick]

Runs live in runs/mup_lr_width/; the summary goes to experiments/results/mup_lr_width.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mechlab.mechanics.sweep import SweepSpec, run_sweep
from mechlab.utils import machine_description, write_json_atomic

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
    summary = {}
    for param in ("sp", "mup"):
        rows = run_sweep(spec(param, args), parallel=args.parallel)
        curves = {}
        for r in rows:
            if "val_bpb" in r:
                curves.setdefault(r["model_overrides.d_model"], {}).setdefault(r["lr"], []).append(r["val_bpb"])
        summary[param] = {str(w): {"lr": sorted(c), "val_bpb": [sum(c[lr]) / len(c[lr]) for lr in sorted(c)],
                                   "best_lr": min(c, key=lambda lr: sum(c[lr]) / len(c[lr]))} for w, c in sorted(curves.items())}
        print(param, {w: s["best_lr"] for w, s in summary[param].items()})
    moves = {p: math.log10(max(s["best_lr"] for s in summary[p].values()) / min(s["best_lr"] for s in summary[p].values()))
             for p in summary}
    name = "mup_lr_width" + ("_quick" if args.quick else "")
    write_json_atomic(ROOT / "results" / f"{name}.json", {
        "experiment": name, "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "prediction": "best lr moves with width under SP, stays within one grid step under μP",
        "settings": {k: v for k, v in vars(args).items() if k != "quick"}, "curves": summary,
        "best_lr_spread_decades": moves})
    plot(summary, ROOT / "results" / f"{name}.png")
    print(json.dumps(moves))


def plot(summary: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (param, curves) in zip(axes, summary.items()):
        for w, c in curves.items():
            ax.plot(c["lr"], c["val_bpb"], "o-", label=f"width {w} (best {c['best_lr']:g})")
        ax.set_xscale("log")
        ax.set_xlabel("Adam learning rate")
        ax.set_title({"sp": "standard parameterisation", "mup": "μP (base width 64)"}[param])
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("validation bits/byte")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
