"""Where in the context window a quantised SmolLM2 loses: the excess NLL over the float model (nats per token) by
position in the window, WikiText-2 test, context 2048, ``--windows`` full windows spread evenly over the test set.

    python benchmarks/smollm2_position_gap.py --models TAG [TAG ...] [--quick] [--windows 12] [--bucket 256]

TAG is the key of a fine-tuned row of benchmarks/results/smollm2_ptq.json (or the former cache tag of such a row,
``smollm2_ptq.FORMER_TAGS``), whose model benchmarks/smollm2_ptq.py saved as a checkpoint when it ran that row. Fine-tuning reads windows of ``--ft-seq-len`` tokens, 512 by default,
while the evaluation scores positions up to 2047; this shows whether the positions past the training length lose
more. The committed run (the models, windows and buckets in ``COMMITTED``) writes
benchmarks/results/smollm2_position_gap.json and a plot next to it; ``--name`` picks another name, whose committed
run has the default windows and buckets. ``--quick`` (2 windows) or any other options (models, windows, buckets)
write NAME.quick.json and NAME.quick.png beside the full results.
"""

from __future__ import annotations

import argparse
import re

import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.utils import save_figure

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result
from smollm2_ptq import saved_model
from smollm2_wikitext2 import smollm2_checkpoint

WINDOWS = 12  # the full run
_FT300 = "trellis-ft-2-L12-calib128x512s0-wikitext2-valid-ft300x4x512lr0.005-cosine-emb0.0001"
COMMITTED = {  # result name -> the arguments of its committed run (the "command" recorded in it)
    "smollm2_position_gap": f"--models {_FT300} {_FT300}+ft150x1x2048lr0.002-cosine-emb0.0001-s1",
}


def position_loss(model, stream, windows: int) -> torch.Tensor:
    """Mean NLL at each predicted position (2047 values) over ``windows`` full windows spread over ``stream``."""
    r = evaluate_lm(model, stream, context=2048, max_windows=windows, spread=True, progress=True, by_position=True)
    return torch.tensor(r.position_nll, dtype=torch.float64) / r.position_windows


def buckets(n: int, size: int) -> list[range]:
    """Positions 0..n-1 in runs of ``size`` (the last one shorter where ``size`` does not divide n)."""
    return [range(b, min(b + size, n)) for b in range(0, n, size)]


def plot(excess: dict[str, torch.Tensor], bucket: int, png) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for tag, e in excess.items():
        runs = buckets(len(e), bucket)
        label = m[0][1:] if (m := re.search(r"-ft\d.*", tag)) else tag
        ax.plot([(r.start + r.stop) / 2 for r in runs], [float(e[r.start : r.stop].mean()) for r in runs],
                marker="o", label=label)
    ax.set_xlabel("position in the 2048-token window")
    ax.set_ylabel("NLL − float NLL (nats/token)")
    ax.set_title(f"SmolLM2 quantised: excess loss by position (means over {bucket} positions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 2 windows", name="smollm2_position_gap")
    ap.add_argument("--models", nargs="+", required=True, help="keys of fine-tuned rows of smollm2_ptq.json")
    ap.add_argument("--windows", type=int, default=WINDOWS, help="full 2048-token windows, spread over the test set")
    ap.add_argument("--bucket", type=int, default=256, help="positions per row of the table")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the committed configuration of the name writes NAME.json (--name only names)."""
    return args.name, not is_reference_run(ap, args, ignore=("name",), reference=COMMITTED.get(args.name, ()))


def main() -> None:
    ap, args, name, partial = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.windows = min(args.windows, 2)

    ck = smollm2_checkpoint()
    stream = token_stream("wikitext2-test", "test", ck.tokenizer)
    ref = position_loss(ck.model, stream, args.windows)
    excess = {}
    for tag in args.models:
        path = saved_model(tag)
        if not path.is_dir():
            raise SystemExit(f"no saved model {path}: run the command of row {tag} of smollm2_ptq.json first")
        model = load_checkpoint(path).model
        excess[tag] = position_loss(model, stream, args.windows) - ref
        del model
    runs = [(f"{r.start}–{r.stop - 1}", slice(r.start, r.stop)) for r in buckets(len(ref), args.bucket)]
    table = [{"positions": name, "float NLL": float(ref[sel].mean()),
              **{f"excess {i}": float(e[sel].mean()) for i, e in enumerate(excess.values())}}
             for name, sel in runs + [("all", slice(None))]]
    for i, tag in enumerate(excess):
        print(f"excess {i}: {tag}")
    print_table(table, f"SmolLM2 excess NLL by position, {args.windows} WikiText-2 test windows of 2048")
    path = write_result(name, {"windows": args.windows, "bucket": args.bucket, "models": list(excess),
                                    "table": table, "float_nll": ref.tolist(),
                                    "excess": {tag: e.tolist() for tag, e in excess.items()}}, quick=partial)
    print(f"wrote {path}")
    plot(excess, args.bucket, result_path(name, partial, ".png"))


if __name__ == "__main__":
    main()
