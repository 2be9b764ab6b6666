"""Trellis encode speed: weights/s on ONE core for the full tail-biting encode (two Viterbi passes) at L=16, k=2,
V=1 and V=2 (and k=4, V=1 and L=12 for the PTQ tables), alternated round by round. Target: >= 300k weights/s per
core at k=2, V=1. The compiled kernel is compared with the plain vectorised PyTorch loop
(mechlab.quant.trellis.viterbi_torch) at the same settings. The table also gives state updates per second (2^L
states per step, two passes): the k=2 step spends about 18 AVX2 vector operations on 32 states (subtract, fused
multiply-add, the min tree and its two decision bits), so 300k weights/s (39 G state updates/s, 16 a cycle at
2.45 GHz) is out of reach of 8-lane float arithmetic on these machines.

    python benchmarks/trellis_encode.py [--quick]

Writes benchmarks/results/trellis_encode.json; ``--quick`` writes trellis_encode.quick.json beside it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import torch

from mechlab.kernels import available
from mechlab.quant import trellis

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, write_result


def encode_rate(n_seq: int, L: int, k: int, V: int, code: str, torch_only: bool) -> float:
    w = torch.randn(n_seq, 256, generator=torch.Generator().manual_seed(1))
    saved = trellis.viterbi
    if torch_only:
        trellis.viterbi = trellis.viterbi_torch
    try:
        t = time.perf_counter()
        trellis.encode(w, L, k, V, code, tail_biting=True)
        return w.numel() / (time.perf_counter() - t)
    finally:
        trellis.viterbi = saved


def state_updates_per_s(weights_per_s: float, L: int, V: int) -> float:
    """Trellis state updates per second of the two-pass encode: 2^L states per step of V weights, two passes."""
    return weights_per_s * 2 * 2**L / V


def lane_cycle_peak() -> tuple[int, float | None]:
    """(float lanes per vector, clock in Hz from /proc/cpuinfo or None): the peak of one state update per lane per
    cycle, the yardstick of the issue's target (300k/s is about 40% of it on one AVX-512 core)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8, None
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
    return (16 if "avx512f" in info else 8), (float(mhz.group(1)) * 1e6 if mhz else None)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: one round of 2 sequences")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes trellis_encode.json."""
    return "trellis_encode", not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    torch.set_num_threads(1)  # the kernel runs on torch's thread count
    if not available("trellis"):
        raise SystemExit("the compiled kernel did not build (no C compiler?)")
    rounds, n_seq = (1, 2) if args.quick else (3, 8)
    cases = [("kernel", 16, 2, 1, "1mad"), ("kernel", 16, 1, 2, "hyb"), ("kernel", 16, 4, 1, "1mad"),
             ("kernel", 12, 2, 1, "1mad"), ("torch", 16, 2, 1, "1mad")]
    for c in cases:  # warm-up (tables, kernel build)
        encode_rate(1, *c[1:], c[0] == "torch")
    rates = {c: [] for c in cases}
    for _ in range(rounds):
        for c in cases:
            rates[c].append(encode_rate(n_seq if c[0] == "kernel" else 1, *c[1:], c[0] == "torch"))
    rows = [{"impl": i, "L": L, "k": k, "V": V, "code": code,
             "weights/s (one core)": statistics.median(rates[(i, L, k, V, code)]),
             "G state updates/s": state_updates_per_s(statistics.median(rates[(i, L, k, V, code)]), L, V) / 1e9}
            for i, L, k, V, code in cases]
    print_table(rows, "tail-biting trellis encode (two Viterbi passes), one thread")
    v1 = statistics.median(rates[cases[0]])
    print(f"L=16 k=2 V=1: {v1:,.0f} weights/s per core (target >= 300,000); "
          f"{v1 / statistics.median(rates[cases[-1]]):.1f}x the PyTorch loop")
    lanes, hz = lane_cycle_peak()
    fraction = state_updates_per_s(v1, 16, 1) / (lanes * hz) if hz else None
    if fraction is not None:
        print(f"one Viterbi pass: {2 * v1:,.0f} steps/s = {100 * fraction:.0f}% of one state update per lane per cycle "
              f"({lanes} float lanes, {hz / 1e6:.0f} MHz)")
    path = write_result(name, {
        "rounds": rounds, "sequences": n_seq, "float_lanes": lanes, "clock_hz": hz,
        "fraction_of_lane_cycle_peak_L16_k2_V1": fraction,
        **{f"weights_per_s_{i}_L{L}_k{k}_V{V}_{code}": statistics.median(rates[(i, L, k, V, code)])
           for i, L, k, V, code in cases},
    }, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
