"""Training throughput of the four architectures of arXiv 2604.21254 (Hyperloop), side by side in one run.

Each tiny preset (Transformer, mHC, Looped, Hyperloop; matched width and unrolled depth) trains (forward,
backward, AdamW step) on the same random batches in float32 on the CPU; the architectures are alternated round by
round and the median seconds per step gives tokens/s. Paper ratios (8×H100): Hyperloop/Looped 0.95,
mHC/Transformer 0.65. Target here: Hyperloop >= 0.9 × Looped.

    python benchmarks/arch_throughput.py [--quick] [--scale tiny] [--d-model 512] [--vocab 2048] [--threads N]

The hyper-connections cost O(n·C) elementwise work per token against the blocks' O(C²) matmuls, so their share
shrinks as the width grows; --d-model widens the tiny layout (d_ff = 2.75·C, heads of 32) to show it.

Writes benchmarks/results/arch_throughput.json with the defaults, arch_throughput_c512.json with exactly
``--d-model 512 --batch 8`` (its committed run); any other options (``--quick``, another batch, sequence length,
vocabulary, width or thread count) write NAME.quick.json beside them (NAME: arch_throughput_cC with --d-model C).
"""

from __future__ import annotations

import argparse

import torch

from mechlab.models import build_model, preset

from common import (
    benchmark_parser,
    is_reference_run,
    parse_benchmark_args,
    print_table,
    set_threads,
    train_throughput,
    write_result,
)

ARCHS = ("transformer", "mhc", "looped", "hyperloop")
COMMITTED = {"arch_throughput_c512": "--d-model 512 --batch 8"}  # results committed with other than the defaults


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "fewer rounds (a smoke run)", threads=None)
    ap.add_argument("--scale", default="tiny", help="preset suffix: tiny, or paper-small etc. on a big machine")
    ap.add_argument("--d-model", type=int, default=None, help="override the width (d_ff = 2.75·C, C/32 heads)")
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary (the BPE size of the tiny experiment)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the committed configuration of the name writes NAME.json."""
    name = "arch_throughput" if args.d_model is None else f"arch_throughput_c{args.d_model}"
    return name, not is_reference_run(ap, args, reference=COMMITTED.get(name, ()))


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    set_threads(args.threads)
    rounds, steps = (2, 2) if args.quick else (6, 6)

    models = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        width = {} if args.d_model is None else dict(d_model=args.d_model, d_ff=int(2.75 * args.d_model),
                                                       n_heads=args.d_model // 32)
        models[arch] = build_model(preset(f"{arch}-{args.scale}", vocab_size=args.vocab, max_seq_len=args.seq, **width))
    x = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))

    tps = train_throughput(models, x, rounds, steps)
    rows = [{"arch": a, "params (paper count)": f"{models[a].num_params():,}", "tokens/s": tps[a],
             "vs transformer": tps[a] / tps["transformer"]} for a in ARCHS]
    print_table(rows, f"training throughput, {args.scale} presets (C={models['transformer'].config.d_model}), vocab {args.vocab}, batch {args.batch}×{args.seq}, "
                      f"{torch.get_num_threads()} threads")
    hl, mt = tps["hyperloop"] / tps["looped"], tps["mhc"] / tps["transformer"]
    print(f"Hyperloop / Looped: {hl:.3f} (paper 0.95, target >= 0.9);  mHC / Transformer: {mt:.3f} (paper 0.65)")
    path = write_result(name, {
        "scale": args.scale, "d_model": models["transformer"].config.d_model, "vocab": args.vocab, "batch": args.batch, "seq_len": args.seq,
        "threads": torch.get_num_threads(), "rounds": rounds, "steps_per_round": steps,
        **{f"tokens_per_s_{a}": tps[a] for a in ARCHS}, **{f"params_{a}": models[a].num_params() for a in ARCHS},
        "ratio_hyperloop_over_looped": hl, "ratio_mhc_over_transformer": mt,
    }, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
