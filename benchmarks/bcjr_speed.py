"""Soft trellis decoding speed: forward + backward weights/s at L ∈ {8, 10, 12} (k=2, V=1, 1MAD, 16×16 tiles of
256 weights, T=0.1), alternated round by round in one run, for

* ``mechlab``   — mechlab.quant.bcjr.soft_decode: analytic forward–backward, gather-free, chunked;
* ``autograd``  — mechlab.quant.bcjr.soft_weights: gather-free forward under double autograd (the test reference);
* ``gather``    — a plain log-domain PyTorch forward–backward that gathers the 2^kV predecessors (and successors)
                  of every state with an index tensor, marginals, ŵ, and autograd for the gradient: the baseline.

Target: mechlab >= 5x the gathering reference.

    python benchmarks/bcjr_speed.py [--quick] [--threads N]

Writes benchmarks/results/bcjr_speed.json with the defaults (all of torch's threads); ``--quick`` or another
thread count writes bcjr_speed.quick.json beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mechlab.quant.bcjr import soft_decode, soft_weights
from mechlab.quant.codes import code_table

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, set_threads, write_result

K, V, T = 2, 1, 0.1


def gather_reference(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, temp: float) -> torch.Tensor:
    """ŵ by explicit forward–backward with gathered predecessor/successor indices (B, N, V)."""
    B, N, _ = w.shape
    S, P = 1 << L, 1 << kV
    states = torch.arange(S)
    pred = (torch.arange(P).unsqueeze(0) << (L - kV)) | (states >> kV).unsqueeze(1)  # (S, P)
    succ = ((states << kV) & (S - 1)).unsqueeze(1) | torch.arange(P).unsqueeze(0)  # (S, P)
    ell = -((table.unsqueeze(0).unsqueeze(0) - w.unsqueeze(2)) ** 2).sum(-1) / temp  # (B, N, S)
    log_a = [ell[:, 0]]
    for t in range(1, N):
        log_a.append(ell[:, t] + torch.logsumexp(log_a[-1][:, pred], dim=2))
    log_b = [torch.zeros(B, S)]
    for t in range(N - 1, 0, -1):
        log_b.append(torch.logsumexp((ell[:, t] + log_b[-1])[:, succ], dim=2))
    log_b.reverse()
    post = torch.softmax(torch.stack(log_a, 1) + torch.stack(log_b, 1), dim=2)  # (B, N, S)
    return post @ table


def rate(impl: str, w: torch.Tensor, probe: torch.Tensor, table: torch.Tensor, L: int) -> float:
    x = w.clone().requires_grad_(True)
    t = time.perf_counter()
    if impl == "mechlab":
        out = soft_decode(x, table, L, K * V, T)
    elif impl == "autograd":
        out = soft_weights(x, table, L, K * V, T)
    else:
        out = gather_reference(x, table, L, K * V, T)
    (out * probe).sum().backward()
    return x.numel() / (time.perf_counter() - t)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: one round, L in {8, 10}",
                          threads=torch.get_num_threads(),
                          threads_help="torch threads (default: torch's own count, %(default)s here)")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes bcjr_speed.json."""
    return "bcjr_speed", not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    set_threads(args.threads)
    rounds = 1 if args.quick else 3
    impls = ("mechlab", "autograd", "gather")
    Ls = (8, 10) if args.quick else (8, 10, 12)
    n_seq = {8: 64, 10: 16, 12: 4}
    g = torch.Generator().manual_seed(0)
    data = {L: (torch.randn(n_seq[L], 256, V, generator=g) * 0.9, torch.randn(n_seq[L], 256, V, generator=g),
                code_table("1mad", L, V)) for L in Ls}
    for L in Ls:  # warm-up
        for impl in impls:
            rate(impl, data[L][0][:1], data[L][1][:1], data[L][2], L)
    rates = {(i, L): [] for L in Ls for i in impls}
    for _ in range(rounds):
        for L in Ls:
            for impl in impls:
                rates[(impl, L)].append(rate(impl, *data[L], L))
    med = {key: statistics.median(v) for key, v in rates.items()}
    rows = [{"L": L, "sequences": n_seq[L], **{f"{i} w/s": med[(i, L)] for i in impls},
             "mechlab / gather": med[("mechlab", L)] / med[("gather", L)],
             "mechlab / autograd": med[("mechlab", L)] / med[("autograd", L)]} for L in Ls]
    print_table(rows, f"soft trellis decode, forward + backward, k={K} V={V} T={T}, {args.threads} thread(s)")
    path = write_result(name, {"rounds": rounds, "threads": args.threads,
                                       **{f"weights_per_s_{i}_L{L}": med[(i, L)] for i, L in med},
                                       **{f"speedup_vs_gather_L{L}": med[("mechlab", L)] / med[("gather", L)] for L in Ls}},
                        quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
