"""How much is one recurrence worth at CPU scale? The iso-depth scaling law (papers/hyperloop.md, arXiv 2604.21106)

    L(N_once, N_rec, r, D) = E + A·(N_once + r^φ·N_rec)^(−α) + B·D^(−β)

fitted to looped models with recurrences r ∈ {1, 2, 4}, plain (Looped) and with hyper-connections (Hyperloop), at
several widths and two token budgets. Published: φ = 0.46 [0.41, 0.53] plain, 0.65 with hyper-connections. φ = 1
would make a loop worth a unique block, φ = 0 worth nothing.

Every run is an ordinary `mechlab train` run through `mechlab sweep` (resumable): layout 1→2×r→1, gutenberg with a
2048-token BPE, validation loss (nats/token) at the end. N_rec counts the middle blocks' parameters, N_once every
other parameter but the input embedding. The fit: Huber on log-loss, L-BFGS-B from a restart grid, bootstrap CIs,
and the restricted fits φ = 0 and φ = 1 (mechlab.mechanics.fits).

    python experiments/isodepth_phi.py [--widths 64 96 128] [--steps 200 400] [--parallel 2]

Runs live in runs/isodepth_phi/; the fit goes to experiments/results/isodepth_phi.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mechlab.mechanics.fits import fit_law
from mechlab.mechanics.sweep import SweepSpec, run_sweep
from mechlab.models import build_model, preset
from mechlab.utils import machine_description, write_json_atomic

ROOT = Path(__file__).resolve().parent


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


def plot(result: dict, out: Path) -> None:
    """Validation loss against the effective parameter count N_once + r^φ·N_rec at the fitted φ, one panel per
    architecture, with the fitted law at each token budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mechlab.mechanics.fits import predict

    archs = list(result["fits"])
    fig, axes = plt.subplots(1, len(archs), figsize=(5.5 * len(archs), 4.2), sharey=True)
    for ax, arch in zip(np.atleast_1d(axes), archs):
        fit = result["fits"][arch]
        phi = fit["params"]["phi"]
        runs = [r for r in result["runs"] if r["arch"] == arch]
        for steps, marker in zip(sorted({r["steps"] for r in runs}), "os^v"):
            sel = [r for r in runs if r["steps"] == steps]
            for loops, color in zip((1, 2, 4), ("C0", "C1", "C2")):
                pts = [r for r in sel if r["model_overrides.n_loops"] == loops]
                ax.scatter([r["n_once"] + loops**phi * r["n_rec"] for r in pts], [r["val_loss"] for r in pts],
                           marker=marker, color=color, label=f"r={loops}, {steps} steps")
            neff = np.geomspace(min(r["n_once"] for r in sel), max(r["n_once"] + 4 * r["n_rec"] for r in sel), 50)
            d = sel[0]["tokens"]
            ax.plot(neff, predict("isodepth", fit["params"], neff, np.full_like(neff, d), np.zeros_like(neff),
                                  np.ones_like(neff)), color="gray", lw=1)
        lo, hi = fit["ci"].get("phi", (float("nan"), float("nan")))
        ax.set_xscale("log")
        ax.set_title(f"{arch}: φ = {phi:.2f} [{lo:.2f}, {hi:.2f}]")
        ax.set_xlabel("N_once + r^φ · N_rec")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("validation loss (nats/token)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--loops", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 400])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["looped", "hyperloop"],
                    help="run and fit only these arms (the results file keeps the other arm's fit)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--out", default="runs/isodepth_phi")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from the committed results")
    args = ap.parse_args()
    result_path = ROOT / "results" / "isodepth_phi.json"
    if args.replot:
        plot(json.loads(result_path.read_text()), result_path.with_suffix(".png"))
        return
    fits, rows = {}, []
    for arch in args.archs:
        spec = SweepSpec(Path(args.out) / arch,
                         {"model": f"{arch}-tiny", "data": "gutenberg", "tokenizer": "bpe:2048", "seq_len": 256,
                          "batch_size": 8, "lr": 3e-3, "warmup_steps": 20, "eval_windows": 64, "log_every": 20,
                          "save_every": 100, "eval_every": max(args.steps)},
                         {"model_overrides": [{"d_model": w, "d_ff": d_ff(w)} for w in args.widths],
                          "model_overrides.n_loops": args.loops, "steps": args.steps})
        arch_rows = [r for r in run_sweep(spec, parallel=args.parallel) if "val_loss" in r]
        for r in arch_rows:
            r["arch"] = arch
            r["d_model"] = r["model_overrides"]["d_model"]
            r["n_once"], r["n_rec"] = param_split(arch, r["d_model"], r["model_overrides.n_loops"])
            r["tokens"] = r["steps"] * 8 * 256
        rows += arch_rows
        fit = fit_law("isodepth", [r["val_loss"] for r in arch_rows], [r["n_once"] for r in arch_rows],
                      [r["tokens"] for r in arch_rows], N_rec=[r["n_rec"] for r in arch_rows],
                      r=[r["model_overrides.n_loops"] for r in arch_rows], bootstrap=args.bootstrap)
        fits[arch] = fit.to_dict()
        print(arch, "phi", fit.params["phi"], fit.ci.get("phi"), "R2", fit.r2)
    if result_path.is_file():  # arms run separately: keep the other arm's fit and runs
        old = json.loads(result_path.read_text())
        fits = {**{a: f for a, f in old["fits"].items() if a not in fits}, **fits}
        rows = [r for r in old["runs"] if r["arch"] not in args.archs] + rows
    result = {"experiment": "isodepth_phi", "command": "python experiments/isodepth_phi.py --parallel 1",
              "machine": machine_description(),
              "prediction": "phi = 0.46 [0.41, 0.53] plain looping, 0.65 with hyper-connections",
              "settings": {**vars(args), "archs": sorted(fits)}, "fits": fits, "runs": rows}
    write_json_atomic(result_path, result)
    plot(result, result_path.with_suffix(".png"))
    print(json.dumps({a: f["params"]["phi"] for a, f in fits.items()}))


if __name__ == "__main__":
    main()
