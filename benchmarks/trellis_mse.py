"""Trellis quantisation quality: MSE per weight on i.i.d. N(0,1) at k=2 bits, tail-biting (exactly 2.000 bits per
weight), for L in {8, 10, 12, 14, 16} and every code. Reference (QTIP, arXiv 2406.11235): QTIP ≈ 0.069 at
L=16; distortion-rate bound 0.063; scalar Lloyd-Max 2-bit 0.118. Target here: <= 0.069 at L=16.

    python benchmarks/trellis_mse.py [--quick] [--sequences 256] [--k 2]

The full run (the defaults: 256 sequences, k=2; the claim page's figures) writes benchmarks/results/trellis_mse.json;
``--quick`` or another number of sequences (fewer or more) write trellis_mse.quick.json beside it; another ``--k``
writes trellis_mse_kK.quick.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from mechlab.quant.trellis import decode, encode, pack_codes

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, write_result

CODES = (("lut", 1), ("1mad", 1), ("3inst", 1), ("hyb", 2))
FULL_SEQUENCES = 256  # the committed run
K_RANGE = (1, 3)  # bits per weight: a trellis step shifts in kV <= 8 bits, fewer than L (L=8 with hyb's V=2: k <= 3)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "L in {8, 10, 12} and 16 sequences")
    ap.add_argument("--sequences", type=int, default=FULL_SEQUENCES,
                    help="256-weight sequences per cell (other than 256: written beside the full results, .quick)")
    ap.add_argument("--k", type=int, default=2, help=f"bits per weight, {K_RANGE[0]} to {K_RANGE[1]}")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes trellis_mse.json."""
    name = "trellis_mse" if args.k == 2 else f"trellis_mse_k{args.k}"
    return name, not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.sequences < 1:
        ap.error(f"--sequences {args.sequences}: give at least 1 sequence of 256 weights")
    if not K_RANGE[0] <= args.k <= K_RANGE[1]:
        ap.error(f"--k {args.k}: bits per weight must be {K_RANGE[0]} to {K_RANGE[1]} (the codes run at L down to 8, hyb "
                 "with V=2 weights a step, and a trellis step shifts in k·V bits, fewer than L and at most 8)")
    Ls = (8, 10, 12) if args.quick else (8, 10, 12, 14, 16)
    n_seq = 16 if args.quick else args.sequences
    w = torch.randn(n_seq, 256, generator=torch.Generator().manual_seed(0))
    rows, figures = [], {}
    for L in Ls:
        row = {"L": L}
        for code, V in CODES:
            t = time.perf_counter()
            codes, start = encode(w, L, args.k, V, code, tail_biting=True)
            rec = decode(codes, L, args.k, V, code, start)
            bits = pack_codes(codes, args.k * V).numel() * 8 / w.numel()
            assert start is None and bits == args.k
            mse = float((rec - w).pow(2).mean())
            row[f"{code} (V={V})"] = mse
            figures[f"mse_L{L}_{code}"] = mse
            figures[f"seconds_L{L}_{code}"] = time.perf_counter() - t
        rows.append(row)
    print_table(rows, f"MSE per weight, i.i.d. N(0,1), k={args.k}, tail-biting ({args.k}.000 bits/weight), "
                      f"{n_seq}×256 weights")
    if 16 in Ls:
        best = min(figures[f"mse_L16_{c}"] for c, _ in CODES)
        print(f"best at L=16: {best:.4f} (target <= 0.069; bound 0.063)")
        figures["best_mse_L16"] = best
    path = write_result(name, {"k": args.k, "sequences": n_seq, "weights": w.numel(), **figures}, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
