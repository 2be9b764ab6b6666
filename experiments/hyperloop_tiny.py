"""The Hyperloop claim at CPU scale (Hyperloop Transformers, arXiv 2604.21254, Table 1).

Transformer, mHC, Looped and Hyperloop tiny presets (width 128, unrolled depth 8; Looped and Hyperloop 1→2×3→1)
train on the same tokens of the gutenberg corpus (a byte-level BPE of 2048 tokens trained on its train split):
seed s fixes both the initialisation and the data order, so every architecture of seed s sees the same batches.
Each run is scored on the same 256 validation windows. The paper predicts Hyperloop, at about 55% of the
Transformer's parameters, at or below the Transformer and mHC in loss.

    python experiments/hyperloop_tiny.py [--seeds 0 1 2] [--steps 500] [--quick]

Runs go to runs/hyperloop_tiny/ARCH-sSEED (checkpoints; a finished run is not trained again), the summary to
experiments/results/hyperloop_tiny.json and the plot to experiments/results/hyperloop_tiny.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.plots import plot_arch_comparison, read_metrics
from mechlab.train import TrainConfig, load_checkpoint, load_train_config, train
from mechlab.utils import machine_description, write_json_atomic

ARCHS = ("transformer", "mhc", "looped", "hyperloop")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def run_one(arch: str, seed: int, args) -> dict:
    out = Path(args.runs) / f"{arch}-s{seed}"
    summary = out / "summary.json"
    cfg = TrainConfig(model=f"{arch}-tiny", data="gutenberg", tokenizer=f"bpe:{args.vocab}", data_dir=args.data_dir,
                      seq_len=args.seq_len, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                      eps=args.adam_eps, warmup_steps=max(args.steps // 10, 1), eval_every=max(args.steps // 5, 1),
                      eval_windows=32, log_every=10, save_every=args.steps, keep_checkpoints=1, seed=seed, out_dir=str(out))
    if (out / "train_config.json").exists():  # a run is reused only if it was made with these settings
        saved = load_train_config(out).to_dict()
        differ = sorted(k for k, v in cfg.to_dict().items() if k not in ("out_dir", "data_dir") and saved.get(k) != v)
        if differ:
            sys.exit(f"{out} holds a run with other settings ("
                     + ", ".join(f"{k}: {saved.get(k)!r} there, {getattr(cfg, k)!r} asked" for k in differ)
                     + "); give another --runs directory or delete it")
    if summary.exists():
        return json.loads(summary.read_text())
    result = train(cfg, resume=(out / "latest").exists(), overwrite=not (out / "latest").exists(), progress=True)
    ck = load_checkpoint(out)
    val = token_stream("gutenberg", "validation", ck.tokenizer, args.data_dir)
    ev = evaluate_lm(ck.model, val, context=args.seq_len, max_windows=args.eval_windows, spread=True, batch_size=16)
    metrics = read_metrics(out / "metrics.jsonl")
    tps = [r["tokens_per_s"] for r in metrics if "tokens_per_s" in r][1:]  # the first interval includes start-up
    last_val = [r for r in metrics if "val_bpb" in r][-1]
    row = {"arch": arch, "seed": seed, "params": ck.model.num_params(), "val_bpb": ev.bits_per_byte,
           "val_loss": ev.loss, "eval_tokens": ev.n_tokens, "tokens_per_s": statistics.median(tps) if tps else None,
           "train_tokens": result.step * args.seq_len * args.batch_size,
           "loop_cos": last_val.get("loop_cos"), "lens_loss": last_val.get("lens_loss")}
    write_json_atomic(summary, row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS,
                    help="train only these architectures (to share the runs between processes); the summary needs all")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--adam-eps", type=float, default=1e-6, help="AdamW epsilon (the paper's recipe: 1e-6)")
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--data-dir", default=None, help="where gutenberg/ lies (default: MECHLAB_DATA or download)")
    ap.add_argument("--runs", default="runs/hyperloop_tiny")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20 steps, one seed, results in the runs folder")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.seeds, args.eval_windows, args.runs = 20, args.seeds[:1], 16, args.runs + "-quick"

    rows = [run_one(arch, seed, args) for seed in args.seeds for arch in args.archs]
    if set(args.archs) != set(ARCHS):
        print("trained", ", ".join(f"{r['arch']}-s{r['seed']}" for r in rows), "; run again with every arch for the summary")
        return
    summary = {}
    for arch in ARCHS:
        mine = [r for r in rows if r["arch"] == arch]
        bpb = [r["val_bpb"] for r in mine]
        summary[arch] = {"params": mine[0]["params"], "val_bpb_mean": statistics.mean(bpb),
                         "val_bpb_std": statistics.stdev(bpb) if len(bpb) > 1 else 0.0, "n_seeds": len(bpb),
                         "tokens_per_s_mean": statistics.mean(r["tokens_per_s"] for r in mine)}
    for arch in ARCHS:
        loops = [r for r in rows if r["arch"] == arch and r["loop_cos"]]
        if loops:  # loop observables at the end of training, mean over seeds
            summary[arch]["loop_cos_mean"] = [statistics.mean(v) for v in zip(*(r["loop_cos"] for r in loops))]
            summary[arch]["lens_loss_mean"] = [statistics.mean(v) for v in zip(*(r["lens_loss"] for r in loops))]
    for arch, s in summary.items():
        print(f"{arch:12s} {s['params']:>10,} params  val bits/byte {s['val_bpb_mean']:.4f} ± {s['val_bpb_std']:.4f} "
              f"(n={s['n_seeds']})  {s['tokens_per_s_mean']:,.0f} tok/s")
    results = Path(args.runs) if args.quick else RESULTS
    h, t, m = (summary[a]["val_bpb_mean"] for a in ("hyperloop", "transformer", "mhc"))
    # Seed s gives every architecture the same batches, so differences within a seed are paired.
    paired = {}
    for other in ("transformer", "mhc", "looped"):
        d = [next(r["val_bpb"] for r in rows if r["arch"] == "hyperloop" and r["seed"] == s)
             - next(r["val_bpb"] for r in rows if r["arch"] == other and r["seed"] == s) for s in args.seeds]
        paired[f"hyperloop_minus_{other}"] = {"per_seed": d, "mean": statistics.mean(d),
                                             "std": statistics.stdev(d) if len(d) > 1 else 0.0}
        print(f"hyperloop − {other}: {statistics.mean(d):+.4f} ± {paired[f'hyperloop_minus_{other}']['std']:.4f} "
              f"(paired by seed: {', '.join(f'{x:+.4f}' for x in d)})")
    out = {"experiment": "hyperloop_tiny", "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
           "settings": {k: v for k, v in vars(args).items() if k not in ("runs", "data_dir", "quick", "archs")},
           "summary": summary, "runs": rows,
           "prediction": "Hyperloop val bits/byte <= Transformer and <= mHC at ~55% of the Transformer's parameters",
           "hyperloop_minus_transformer": h - t, "hyperloop_minus_mhc": h - m, "paired_differences": paired,
           "threads_per_run": torch.get_num_threads(),
           "note": "tokens_per_s of the runs are indicative only (runs shared the machine with other jobs); side-by-side "
                   "throughput is benchmarks/results/arch_throughput.json",
           "param_ratio_hyperloop_over_transformer": summary["hyperloop"]["params"] / summary["transformer"]["params"]}
    write_json_atomic(results / "hyperloop_tiny.json", out)
    curves = {arch: [read_metrics(Path(args.runs) / f"{arch}-s{s}" / "metrics.jsonl") for s in args.seeds] for arch in ARCHS}
    plot_arch_comparison(curves, summary, results / "hyperloop_tiny.png",
                         title=f"tiny presets on gutenberg (BPE {args.vocab}), {len(args.seeds)} seeds")
    print(f"wrote {results / 'hyperloop_tiny.json'} and the plot beside it")


if __name__ == "__main__":
    main()
