"""The cost of PMNet's phasor memory (arXiv 2605.13370): training speed and the size of the streaming state.

1. Training tokens/s (forward, backward, AdamW step, float32, CPU) of PMNet-tiny against the same model with the
   memory recurrence off (``mem_cumsum=False``: same parameters, the segmented sum skipped) and the plain
   sliding-window model without memory (preset ``window-tiny``), on the same random batches, alternated round by
   round (:func:`common.train_throughput`); reported as ratios to PMNet. The row ``pmnet_autograd_sum`` is the
   same PMNet with the segmented sum and the anchor gather of the earlier implementation (:func:`autograd_phase_sum`:
   autograd through advanced indexing and ``cumsum(0)`` over (B·T, D) rows; the same values), measured in the same
   rounds: the speed-up of :class:`mechlab.models.phasor._SegmentedSum`, before against after, side by side; and the
   segmented sum alone (forward and backward, with the gradient scale, on a (16, 256, 256) batch of increments
   routed to 1, 16 and 64 groups), the two implementations alternated round by round.
2. Bytes of the state a model carries per sequence after T tokens, T = 1K, 8K, 64K: the KV cache of full causal
   attention (2 · layers · kv heads · head size · T floats) against PMNet's constant state (its window KV cache,
   2 · layers · kv heads · head size · (W − 1) floats, plus the phasor state Σ_h N^h · N · M floats), for the tiny
   model and the authors' released configuration (``pmnet-paper``). For PMNet-tiny the state is also measured: a
   sequence of T tokens is streamed through :meth:`Transformer.forward_chunked`-style chunks and the bytes held by
   the :class:`KVCache` counted.

    OMP_NUM_THREADS=1 python benchmarks/pmnet_throughput.py [--quick] [--threads N]

Writes benchmarks/results/pmnet_throughput.json with the defaults; any other options write the .quick file.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

import mechlab.models.phasor as phasor
from mechlab.models import KVCache, build_model, preset

from common import (
    benchmark_parser,
    is_reference_run,
    parse_benchmark_args,
    print_table,
    set_threads,
    train_throughput,
    write_result,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
from representation_gap import int_at_least  # noqa: E402  (experiments/: the one checked integer option type)

LENGTHS = (1024, 8192, 65536)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "fewer rounds, shorter streams (a smoke run)",
                          threads=1, threads_help="torch threads (1: the committed run, on a shared CPU)")
    ap.add_argument("--batch", type=int_at_least(1), default=16)
    ap.add_argument("--seq", type=int_at_least(2), default=256)
    return ap


def autograd_phase_sum(delta, group, n_groups, *, scale_grad=False, carry=None):
    """The earlier implementation of :func:`mechlab.models.phasor.segmented_phase_sum` (same values): sort, gather
    with advanced indexing, ``cumsum(0)`` over (B·T, D) float64 rows, offsets, unsort, all differentiated by autograd,
    with the straight-through scale as x.detach() + (x − x.detach())·s. Kept here for the before/after row."""
    B, T, D = delta.shape
    key = (torch.arange(B).unsqueeze(1) * n_groups + group).reshape(-1)
    order = torch.sort(key, stable=True).indices
    sk = key[order]
    if scale_grad:
        count = torch.bincount(key, minlength=B * n_groups)[key]
        scale = count.to(delta.dtype).clamp(min=1).sqrt().reciprocal().view(B, T, 1)
        d = delta.detach()
        delta = d + (delta - d) * scale
    c = delta.reshape(B * T, D)[order].to(torch.float64).cumsum(0)
    start = torch.ones_like(sk, dtype=torch.bool)
    start[1:] = sk[1:] != sk[:-1]
    u = c - torch.cat([c.new_zeros(1, D), c[:-1]])[start][start.cumsum(0) - 1]
    if carry is not None:
        u = u + carry.reshape(B * n_groups, D).to(torch.float64)[sk]
    u = torch.remainder(u, 2 * math.pi).to(delta.dtype)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    end = torch.ones_like(start)
    end[:-1] = start[1:]
    base = carry.reshape(B * n_groups, D) if carry is not None else delta.new_zeros(B * n_groups, D)
    last = base.detach().to(delta.dtype).index_copy(0, sk[end], u[end].detach()).view(B, n_groups, D)
    return u[inverse].view(B, T, D), last


class WithAutogradSum(torch.nn.Module):
    """A PMNet whose forward passes run :func:`autograd_phase_sum` and the advanced-indexing anchor gather."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        fast_sum, fast_anchor = phasor.segmented_phase_sum, phasor.PhasorWrite._anchor
        phasor.segmented_phase_sum = autograd_phase_sum
        phasor.PhasorWrite._anchor = lambda self, group: self.anchor[group]
        try:
            return self.model(*args, **kwargs)
        finally:
            phasor.segmented_phase_sum, phasor.PhasorWrite._anchor = fast_sum, fast_anchor


def full_kv_bytes(cfg, tokens: int) -> int:
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * tokens * 4


def pmnet_state_bytes(cfg, tokens: int) -> int:
    window_kv = full_kv_bytes(cfg, min(tokens, cfg.window - 1))
    phasor = sum(cfg.mem_slots**h for h in range(cfg.mem_levels)) * cfg.mem_slots * cfg.mem_dim * 4
    return window_kv + phasor


@torch.no_grad()
def measured_state_bytes(model, tokens: int, chunk: int = 1024) -> int:
    """Bytes held by the KVCache (window keys/values and phasor carries) after streaming ``tokens`` random tokens."""
    cache = KVCache(1, tokens, window=model.config.window)
    gen = torch.Generator().manual_seed(0)
    for i in range(0, tokens, chunk):
        model(torch.randint(0, model.config.vocab_size, (1, min(chunk, tokens - i)), generator=gen), cache=cache)
    kv = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cache.slots.values())
    return kv + sum(c.numel() * c.element_size() for c in cache.phasor.values())


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes pmnet_throughput.json."""
    return "pmnet_throughput", not is_reference_run(ap, args)


def sum_speed(rounds: int, steps: int) -> dict[str, float]:
    """Milliseconds per forward + backward of the segmented sum, earlier (autograd) against current, per group count:
    the implementations alternated round by round, median over rounds."""
    import statistics
    import time

    gen = torch.Generator().manual_seed(0)
    out = {}
    for groups in (1, 16, 64):
        delta = ((torch.rand(16, 256, 256, generator=gen) * 2 - 1) * math.pi).requires_grad_()
        group = torch.randint(0, groups, (16, 256), generator=gen)
        w = torch.randn(16, 256, 256, generator=gen)
        fns = {"autograd_sum": autograd_phase_sum, "segmented_sum": phasor.segmented_phase_sum}
        times = {k: [] for k in fns}
        for _ in range(rounds):
            for k, f in fns.items():
                t = time.perf_counter()
                for _ in range(steps):
                    torch.autograd.grad((f(delta, group, groups, scale_grad=True)[0] * w).sum(), delta)
                times[k].append((time.perf_counter() - t) / steps * 1e3)
        for k, v in times.items():
            out[f"sum_ms_{k}_G{groups}"] = statistics.median(v)
    return out


def main() -> None:
    ap, args, _, quick = parse_benchmark_args(build_parser, output)
    set_threads(args.threads)
    rounds, steps = (2, 1) if args.quick else (5, 3)
    cfgs = {"pmnet": preset("pmnet-tiny"), "memory_off": preset("pmnet-tiny", mem_cumsum=False),
            "window": preset("window-tiny")}
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        models[name] = build_model(cfg).train()
    torch.manual_seed(0)
    models["pmnet_autograd_sum"] = WithAutogradSum(build_model(cfgs["pmnet"]).train())
    x = torch.randint(0, 48, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))
    tps = train_throughput(models, x, rounds, steps)
    figures = {f"train_tokens_per_s_{k}": v for k, v in tps.items()}
    figures["memory_off_over_pmnet"] = tps["memory_off"] / tps["pmnet"]
    figures["window_over_pmnet"] = tps["window"] / tps["pmnet"]
    figures["pmnet_over_autograd_sum"] = tps["pmnet"] / tps["pmnet_autograd_sum"]
    figures["params_pmnet"] = models["pmnet"].num_params()
    figures["params_window"] = models["window"].num_params()
    print_table([{"model": k, "tokens/s": v, "vs PMNet": v / tps["pmnet"]} for k, v in tps.items()],
                f"training throughput, batch {args.batch}×{args.seq}, {torch.get_num_threads()} threads")
    sums = sum_speed(*((2, 1) if args.quick else (8, 3)))
    figures.update(sums)
    print_table([{"groups": g, "autograd sum ms": sums[f"sum_ms_autograd_sum_G{g}"],
                  "segmented sum ms": sums[f"sum_ms_segmented_sum_G{g}"],
                  "speed-up": sums[f"sum_ms_autograd_sum_G{g}"] / sums[f"sum_ms_segmented_sum_G{g}"]}
                 for g in (1, 16, 64)], "segmented sum, forward + backward, (16, 256, 256) float32")

    rows = []
    lengths = LENGTHS[:1] if args.quick else LENGTHS
    for size in ("tiny", "paper"):
        cfg = preset(f"pmnet-{size}")
        for T in lengths:
            full, pm = full_kv_bytes(cfg, T), pmnet_state_bytes(cfg, T)
            figures[f"state_bytes_{size}_full_kv_T{T}"] = full
            figures[f"state_bytes_{size}_pmnet_T{T}"] = pm
            row = {"model": f"pmnet-{size}", "tokens": T, "full-attention KV bytes": full, "PMNet state bytes": pm,
                   "ratio": full / pm}
            if size == "tiny":
                measured = measured_state_bytes(models["pmnet"].eval(), T)
                figures[f"state_bytes_tiny_pmnet_measured_T{T}"] = measured
                row["PMNet measured"] = measured
            rows.append(row)
    for r in rows:
        r.setdefault("PMNet measured", "-")
    print_table(rows, "state per sequence (float32)")
    figures.update(batch=args.batch, seq=args.seq, threads=torch.get_num_threads())
    print(f"wrote {write_result('pmnet_throughput', figures, quick=quick)}")


if __name__ == "__main__":
    main()
