"""Fused decode + matvec of trellis-coded weights (mechlab/kernels/qmatvec.c) against torch's fp32 and bf16
F.linear, at batch 1 (and small batches), with 1 and 2 threads: 4096×4096 and SmolLM2-135M's layer shapes.

    python benchmarks/qmatvec.py [--quick] [--bits 2] [--batch 1] [--rounds 7] [--shapes 4096x4096 ...]

As in generation, where every layer's weights are read once per token, each kernel cycles through enough distinct
copies of the layer that the fp32 copies fill ``--working-set`` MB (default 256, beyond the 32 MB L3 cache): the
compressed copies are 1/16 as large, which is the point of them. ``--working-set 0`` times one cache-hot copy.
Every configuration of a shape and thread count is timed in alternation, ``--rounds`` rounds of at least
``--seconds`` each, and the median is kept, so the ratios are measured side by side. The codes are drawn at random
(the kernel's work does not depend on their values); the layer is the full stored format, RHT included (the two
Hadamard transforms of x and y are part of every call).

The defaults write benchmarks/results/qmatvec.json. ``--quick`` (two small shapes, 2 short rounds, a 32 MB working
set), or any other option (shapes, bits, thread counts, rounds, seconds), writes qmatvec.quick.json beside the full
results; another batch, L or working set writes qmatvec_bN.quick.json, _LN, _wsN likewise.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from mechlab.kernels import available
from mechlab.quant import TrellisConfig
from mechlab.quant.linear import TrellisLinear

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, write_result

SHAPES = ["4096x4096", "576x576", "192x576", "1536x576", "576x1536"]  # out × in: 4096², SmolLM2's q/o, k/v, up, down
BITS, THREADS, ROUNDS, SECONDS, WORKING_SET_MB = [2], [1, 2], 7, 0.3, 256.0  # the full run


def random_trellis(m: int, n: int, bits: int, L: int, seed: int = 0, scale: float = 0.02) -> TrellisLinear:
    """An m×n 1MAD trellis layer holding random codes and RHT signs (the kernel's work does not depend on them)."""
    g = torch.Generator().manual_seed(seed)
    layer = TrellisLinear(n, m, False, TrellisConfig(L=L, k=bits, code="1mad"))
    for buf in (layer.packed, layer.s_in, layer.s_out):
        buf.copy_(torch.randint(0, 256, buf.shape, generator=g, dtype=torch.uint8))
    layer.scale.fill_(scale)
    return layer


def cycle(fn, items):
    """A call that applies ``fn`` to the next of ``items``, round-robin."""
    state = {"i": 0}

    def call():
        fn(items[state["i"]])
        state["i"] = (state["i"] + 1) % len(items)

    return call


def seconds_per_call(fn, budget: float) -> float:
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= budget:
            return elapsed / calls


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: two small shapes, 2 short rounds, 32 MB", threads=THREADS)
    ap.add_argument("--shapes", nargs="+", default=SHAPES)
    ap.add_argument("--bits", type=int, nargs="+", default=BITS)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--working-set", type=float, default=WORKING_SET_MB, help="MB of fp32 copies cycled through; 0: one")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes qmatvec.json (the name as the options were given,
    before --quick shrinks them)."""
    name = "qmatvec" + (f"_b{args.batch}" if args.batch != 1 else "") + (f"_L{args.L}" if args.L != 16 else "")
    name += "" if args.working_set == WORKING_SET_MB else f"_ws{args.working_set:g}"
    return name, not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, partial = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.shapes = [s for s in args.shapes if s in ("576x576", "192x576")] or args.shapes[:1]
        args.rounds, args.seconds = min(args.rounds, 2), min(args.seconds, 0.05)
        args.working_set = min(args.working_set, 32.0)
    for shape in args.shapes:
        parts = shape.split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            ap.error(f"--shapes: {shape!r} is not OUTxIN with positive integers (e.g. 576x576)")
        if int(parts[0]) % 16 or int(parts[1]) % 16:
            ap.error(f"--shapes: {shape}: the fused kernel takes whole 16 x 16 trellis tiles (both sizes multiples "
                     f"of 16)")
    if any(b not in (2, 3, 4) for b in args.bits):
        ap.error(f"--bits: the fused kernel decodes 2, 3 or 4 bits per weight, got {args.bits}")
    if not 8 <= args.L <= 16:
        ap.error(f"--L must be in 8..16, got {args.L}")
    for option in ("batch", "rounds"):
        if getattr(args, option) < 1:
            ap.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.seconds <= 0 or args.working_set < 0:
        ap.error("--seconds must be positive and --working-set at least 0")
    if not available("qmatvec"):
        raise SystemExit("the qmatvec kernel did not build (no C compiler?)")
    rows = []
    for shape in args.shapes:
        m, n = map(int, shape.split("x"))
        copies = max(1, math.ceil(args.working_set * 1e6 / (4 * m * n)))
        x = torch.randn(args.batch, n)
        x16 = x.bfloat16()
        w = [torch.randn(m, n) / n**0.5 for _ in range(copies)]
        w16 = [t.bfloat16() for t in w]
        fns = {"fp32": cycle(lambda t: F.linear(x, t), w), "bf16": cycle(lambda t: F.linear(x16, t), w16)}
        for bits in args.bits:
            layers = [random_trellis(m, n, bits, args.L, seed=i) for i in range(copies)]
            fns[f"{bits}-bit fused"] = cycle(lambda lay: lay(x), layers)
        with torch.inference_mode():
            for threads in args.threads:
                torch.set_num_threads(threads)
                times = {k: [] for k in fns}
                for fn in fns.values():
                    fn()
                for _ in range(args.rounds):
                    for kernel, fn in fns.items():
                        times[kernel].append(seconds_per_call(fn, args.seconds))
                fp32 = statistics.median(times["fp32"])
                for kernel, ts in times.items():
                    t = statistics.median(ts)
                    rows.append({"shape": shape, "copies": copies, "batch": args.batch, "threads": threads, "kernel": kernel,
                                 "µs": t * 1e6, "weights/ns": m * n * args.batch / t / 1e9, "× fp32": fp32 / t})
    print_table(rows, f"matvec, batch {args.batch}, trellis L={args.L} 1MAD (median of {args.rounds} alternated rounds)")
    path = write_result(name, {"rows": rows, "L": args.L, "batch": args.batch, "rounds": args.rounds,
                               "working_set_mb": args.working_set}, quick=partial)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
