"""Trellis encode speed: weights/s on ONE core for the full tail-biting encode (two Viterbi passes) at L=16, k=2,
V=1 and V=2, alternated round by round. Target: >= 300k weights/s per core at V=1. The compiled kernel is compared
with the plain vectorised PyTorch loop (mechlab.quant.trellis.viterbi_torch) at the same settings.

    python benchmarks/trellis_encode.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import print_table, write_result
from mechlab.kernels import trellis_kernel
from mechlab.quant import trellis


def encode_rate(n_seq: int, L: int, V: int, code: str, torch_only: bool) -> float:
    w = torch.randn(n_seq, 256, generator=torch.Generator().manual_seed(1))
    saved = trellis.viterbi
    if torch_only:
        trellis.viterbi = trellis.viterbi_torch
    try:
        t = time.perf_counter()
        trellis.encode(w, L, 2, V, code, tail_biting=True)
        return w.numel() / (time.perf_counter() - t)
    finally:
        trellis.viterbi = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the kernel runs on torch's thread count
    if trellis_kernel() is None:
        raise SystemExit("the compiled kernel did not build (no C compiler?)")
    rounds, n_seq = (1, 2) if args.quick else (3, 8)
    cases = [("kernel", 16, 1, "1mad"), ("kernel", 16, 2, "hyb"), ("kernel", 12, 1, "1mad"), ("torch", 16, 1, "1mad")]
    for c in cases:  # warm-up (tables, kernel build)
        encode_rate(1, c[1], c[2], c[3], c[0] == "torch")
    rates = {c: [] for c in cases}
    for _ in range(rounds):
        for c in cases:
            rates[c].append(encode_rate(n_seq if c[0] == "kernel" else 1, c[1], c[2], c[3], c[0] == "torch"))
    rows = [{"impl": i, "L": L, "V": V, "code": code, "weights/s (one core)": statistics.median(rates[(i, L, V, code)])}
            for i, L, V, code in cases]
    print_table(rows, "tail-biting trellis encode (two Viterbi passes), k=2, one thread")
    v1 = statistics.median(rates[cases[0]])
    print(f"L=16 V=1: {v1:,.0f} weights/s per core (target >= 300,000); "
          f"{v1 / statistics.median(rates[cases[3]]):.1f}x the PyTorch loop")
    path = write_result("trellis_encode", {
        "rounds": rounds, "sequences": n_seq, "quick": args.quick,
        **{f"weights_per_s_{i}_L{L}_V{V}_{code}": statistics.median(rates[(i, L, V, code)]) for i, L, V, code in cases},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
