"""Trellis PTQ vs STE-QAT vs BCJR-QAT at 2 bits on the trained tiny models (issue: BCJR-QAT, item 5).

Prediction (BCJR-QAT, arXiv 2605.10655): at matched step budgets, validation loss orders
BCJR-QAT < trellis PTQ < STE-trellis QAT (from the PTQ initialisation).

For every model trained by experiments/hyperloop_tiny.py (gutenberg, BPE 2048; Transformer, Looped, Hyperloop,
seeds 0-2): trellis PTQ of every Linear but the LM head (k=2, 1MAD, RHT, BlockLDLQ, tail-biting: exactly 2 bits
per weight; 64 calibration windows), then from that same PTQ state each QAT arm: the same optimiser steps, the
same batches, the same Adam learning rate (chosen per arm by ``--tune`` on held-out train windows), KL to the
float model as the loss, hardened by a full Viterbi re-encode. Scored on the 256 validation windows of the
training experiment. L=8 rather than 16: one soft-decoding step of the whole model costs 2^L state updates per
weight, several seconds per step at L=8 on two cores, and 256 times that at L=16; the comparison is between
methods at one L.

    python experiments/qat_tiny.py --tune            # learning rate per arm (transformer, seed 0)
    python experiments/qat_tiny.py [--seeds 0 1 2] [--lr-bcjr X --lr-ste Y]

Per-model rows are kept in runs/qat_tiny/ (a finished model is not redone); the summary goes to
experiments/results/qat_tiny.json and the plot to experiments/results/qat_tiny.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.batches import batch_offsets, get_batch
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.quant import TrellisConfig, quantize_
from mechlab.quant.qat import QATConfig, kl_teacher_student, qat_
from mechlab.quant.run import calibration_batches
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
ARCHS = ("transformer", "looped", "hyperloop")
ARMS = ("ptq", "ste", "bcjr")


def prepare(run: Path, L: int, seed: int, data_dir: str | None):
    """(float teacher, PTQ model, checkpoint) for one trained model."""
    ck = load_checkpoint(run)
    train = token_stream("gutenberg", "train", ck.tokenizer, data_dir)
    teacher = copy.deepcopy(ck.model).eval()
    seq_len = ck.meta["train_config"]["seq_len"]
    quantize_(ck.model, TrellisConfig(L=L, k=2, V=1, code="1mad"), calibration=calibration_batches(train, 64, seq_len, seed))
    return teacher, ck, train


def held_out_kl(teacher, model, train, seq_len: int, n: int = 32) -> float:
    """KL(teacher ‖ model) on n train windows that no QAT step draws (offsets from another seed)."""
    x, _ = get_batch(np.asarray(train.ids), batch_offsets(10**6, 0, n, len(train.ids), seq_len), seq_len)
    with torch.no_grad():
        return float(kl_teacher_student(teacher(x)[0], model(x)[0]))


def qat_config(args, estimator: str, lr: float, seq_len: int, seed: int) -> QATConfig:
    return QATConfig(trellis=TrellisConfig(L=args.L, k=2, V=1, code="1mad"), estimator=estimator, steps=args.steps,
                     lr=lr, batch_size=args.batch_size, seq_len=seq_len, seed=seed)


def tune(args) -> None:
    teacher, ck, train = prepare(Path(args.runs) / "transformer-s0", args.L, 0, args.data_dir)
    seq_len = ck.meta["train_config"]["seq_len"]
    rows = [{"estimator": "ptq", "lr": 0.0, "held_out_kl": held_out_kl(teacher, ck.model, train, seq_len)}]
    print(rows[-1], flush=True)
    for lr in args.lrs:
        for est in ("ste", "bcjr"):
            model = copy.deepcopy(ck.model)
            rep = qat_(model, teacher, qat_config(args, est, lr, seq_len, 0), train, progress=False).summary()
            rows.append({"estimator": est, "lr": lr, "held_out_kl": held_out_kl(teacher, model, train, seq_len),
                         "fraction_codes_changed": rep["fraction_codes_changed"], "kl_last": rep["kl_last"],
                         "seconds": rep["seconds"]})
            print(rows[-1], flush=True)
    best = {est: min((r for r in rows if r["estimator"] == est), key=lambda r: r["held_out_kl"])["lr"]
            for est in ("ste", "bcjr")}
    write_json_atomic(ROOT / "results" / "qat_tiny_tune.json", {
        "experiment": "qat_tiny --tune", "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "settings": {"model": "transformer-s0", "L": args.L, "steps": args.steps, "batch_size": args.batch_size},
        "best_lr": best, "rows": rows})
    print(f"best lr: {best}; wrote {ROOT / 'results' / 'qat_tiny_tune.json'}")


def run_model(args, arch: str, seed: int) -> list[dict]:
    run = Path(args.runs) / f"{arch}-s{seed}"
    teacher, ck, train = prepare(run, args.L, seed, args.data_dir)
    seq_len = ck.meta["train_config"]["seq_len"]
    val = token_stream("gutenberg", "validation", ck.tokenizer, args.data_dir)

    def score(model):
        return evaluate_lm(model, val, context=seq_len, max_windows=args.eval_windows, spread=True,
                           batch_size=16).bits_per_byte

    base = {"arch": arch, "seed": seed, "L": args.L}
    rows = [{**base, "method": "float", "val_bpb": score(teacher)},
            {**base, "method": "ptq", "val_bpb": score(ck.model), "held_out_kl": held_out_kl(teacher, ck.model, train, seq_len)}]
    print(rows[-2], rows[-1], flush=True)
    for est, lr in (("ste", args.lr_ste), ("bcjr", args.lr_bcjr)):
        model = copy.deepcopy(ck.model)
        rep = qat_(model, teacher, qat_config(args, est, lr, seq_len, seed), train, progress=False).summary()
        rows.append({**base, "method": est, "val_bpb": score(model), "held_out_kl": held_out_kl(teacher, model, train, seq_len),
                     "lr": lr, "steps": args.steps, "kl_curve": rep.pop("kl_curve"),
                     **{k: v for k, v in rep.items() if k not in ("changed_per_layer", "method")}})
        print({k: v for k, v in rows[-1].items() if k != "kl_curve"}, flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for arch in ARCHS:
        cell = {}
        for m in ("float", *ARMS):
            v = [r["val_bpb"] for r in rows if r["arch"] == arch and r["method"] == m]
            if v:
                cell[m] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
        for m in ("ste", "bcjr"):
            d = [a["val_bpb"] - b["val_bpb"] for a in rows for b in rows if a["arch"] == b["arch"] == arch
                 and a["seed"] == b["seed"] and a["method"] == m and b["method"] == "ptq"]
            if d:
                cell[f"{m}_minus_ptq"] = {"mean": statistics.mean(d), "std": statistics.stdev(d) if len(d) > 1 else 0.0,
                                          "per_seed": d}
        if cell:
            out[arch] = cell
    return out


def plot(rows: list[dict], summary: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax, bx = fig.subplots(1, 2)
    archs = list(summary)
    colors = {"ste": "tab:orange", "bcjr": "tab:blue"}
    for j, m in enumerate(("ste", "bcjr")):
        for i, arch in enumerate(archs):
            cell = summary[arch].get(f"{m}_minus_ptq")
            if not cell:
                continue
            x = i + (j - 0.5) * 0.3
            ax.errorbar([x], [cell["mean"]], yerr=[cell["std"]], fmt="o", color=colors[m], capsize=4,
                        label=f"{m.upper()}-QAT − PTQ" if i == 0 else None)
            ax.scatter([x] * len(cell["per_seed"]), cell["per_seed"], color=colors[m], alpha=0.35, s=14)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(archs)), archs)
    ax.set_ylabel("Δ validation bits/byte vs trellis PTQ")
    ax.set_title("2-bit trellis: QAT against PTQ (mean ± std, dots: seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    for m in ("ste", "bcjr"):
        curves = [r["kl_curve"] for r in rows if r["method"] == m and r["arch"] == archs[0]]
        if curves:
            mean = np.mean(np.array(curves), 0)
            bx.plot(range(len(mean)), mean, color=colors[m], label=f"{m.upper()}-QAT ({archs[0]})")
    ptq = [r["held_out_kl"] for r in rows if r["method"] == "ptq" and r["arch"] == archs[0]]
    if ptq:
        bx.axhline(statistics.mean(ptq), color="gray", ls="--", label="PTQ (held-out)")
    bx.set_xlabel("QAT step")
    bx.set_ylabel("KL(teacher ‖ student), nats/token")
    bx.set_title("training KL (BCJR: soft weights at T; STE: hard)")
    bx.legend()
    bx.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr-bcjr", type=float, default=1e-3)
    ap.add_argument("--lr-ste", type=float, default=1e-3)
    ap.add_argument("--tune", action="store_true", help="sweep the learning rate of each arm instead")
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    ap.add_argument("--runs", default="runs/hyperloop_tiny")
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/qat_tiny", help="where per-model rows are kept")
    args = ap.parse_args()
    if args.tune:
        tune(args)
        return
    rows = []
    for seed in args.seeds:
        for arch in args.archs:
            done = Path(args.out) / f"{arch}-s{seed}-L{args.L}-n{args.steps}.json"
            if not done.is_file():
                write_json_atomic(done, run_model(args, arch, seed))
            rows.extend(json.loads(done.read_text()))
    for r in rows:  # the QAT summaries call the arms "ste-qat" and "bcjr-qat"
        r["method"] = r["method"].removesuffix("-qat")
    summary = summarise(rows)
    for arch, cell in summary.items():
        print(f"{arch:12s}" + "".join(f"  {m} {cell[m]['mean']:.4f} ± {cell[m]['std']:.4f}" for m in ("float", *ARMS) if m in cell))
        print(f"{'':12s}" + "".join(f"  {m}−ptq {cell[k]['mean']:+.4f} ± {cell[k]['std']:.4f}"
                                    for m in ("ste", "bcjr") if (k := f"{m}_minus_ptq") in cell))
    results = ROOT / "results"
    write_json_atomic(results / "qat_tiny.json", {
        "experiment": "qat_tiny", "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "prediction": "val bpb: BCJR-QAT < trellis PTQ < STE-QAT at matched step budgets",
        "settings": {k: v for k, v in vars(args).items() if k not in ("tune", "lrs", "out", "data_dir")},
        "val_bpb": summary, "runs": rows})
    plot(rows, summary, results / "qat_tiny.png")
    print(f"wrote {results / 'qat_tiny.json'} and the plot beside it")


if __name__ == "__main__":
    main()
