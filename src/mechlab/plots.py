"""Plots people would rather look at than read (matplotlib, no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_training(metrics_path: str | Path, png_path: str | Path, title: str = "training") -> Path:
    """Training-batch and validation bits-per-byte against tokens seen (log scale)."""
    recs = read_metrics(metrics_path)
    train = [r for r in recs if "loss" in r]
    val = [r for r in recs if "val_bpb" in r]
    tokens_per_step = train[-1]["tokens"] / train[-1]["step"] if train else 1
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot([r["tokens"] for r in train], [r["train_bpb"] for r in train], color="tab:blue", lw=1.0, alpha=0.8,
            label="train batch")
    ax.plot([r["step"] * tokens_per_step for r in val], [r["val_bpb"] for r in val], "o-", color="tab:red",
            label="validation")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("bits per byte")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
