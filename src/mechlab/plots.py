"""Plots people would rather look at than read (matplotlib's Figure API: no display, no pyplot state)."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from mechlab.utils import save_figure


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _bpb_against_tokens(ax, ylabel: str, title: str) -> None:
    """Axes of bits per byte (log scale, plain tick labels) against training tokens."""
    ax.set_xlabel("training tokens")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title)


def plot_training(metrics_path: str | Path, png_path: str | Path, title: str = "training") -> Path:
    """Training-batch and validation bits-per-byte against tokens seen (log scale)."""
    recs = read_metrics(metrics_path)
    train = [r for r in recs if "loss" in r]
    val = [r for r in recs if "val_bpb" in r]
    tokens_per_step = train[-1]["tokens"] / train[-1]["step"] if train else 1
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    ax.plot([r["tokens"] for r in train], [r["train_bpb"] for r in train], color="tab:blue", lw=1.0, alpha=0.8,
            label="train batch")
    ax.plot([r["step"] * tokens_per_step for r in val], [r["val_bpb"] for r in val], "o-", color="tab:red",
            label="validation")
    _bpb_against_tokens(ax, "bits per byte", title)
    fig.tight_layout()
    return save_figure(fig, png_path)


def plot_arch_comparison(curves: dict[str, list[list[dict]]], summary: dict[str, dict], png_path: str | Path,
                         title: str = "architectures") -> Path:
    """Left: validation bits/byte against training tokens, mean over seeds with a min–max band, one colour per
    architecture. Right: final bits/byte (mean ± std over seeds) against parameter count."""
    fig = Figure(figsize=(11, 4.2), dpi=120)
    ax, bx = fig.subplots(1, 2)
    for i, (arch, runs) in enumerate(curves.items()):
        color = f"C{i}"
        per_run = []
        for recs in runs:
            train = [r for r in recs if "tokens" in r]
            tps = train[-1]["tokens"] / train[-1]["step"]
            per_run.append([(r["step"] * tps, r["val_bpb"]) for r in recs if "val_bpb" in r and r["step"] > 0])
        n = min(len(p) for p in per_run)
        xs = [per_run[0][j][0] for j in range(n)]
        ys = [[p[j][1] for p in per_run] for j in range(n)]
        ax.plot(xs, [sum(y) / len(y) for y in ys], "o-", color=color, label=arch, ms=3)
        ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=color, alpha=0.2)
        s = summary[arch]
        bx.errorbar(s["params"], s["val_bpb_mean"], yerr=s["val_bpb_std"], fmt="o", color=color, capsize=4, label=arch)
    _bpb_against_tokens(ax, "validation bits per byte", title)
    bx.set_xlabel("parameters (input embedding excluded)")
    bx.set_ylabel("final validation bits per byte")
    bx.grid(alpha=0.3)
    bx.legend()
    bx.set_title("final: mean ± std over seeds")
    fig.tight_layout()
    return save_figure(fig, png_path)
