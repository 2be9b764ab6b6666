"""The cost of PMNet's phasor memory (arXiv 2605.13370): training speed and the size of the streaming state.

1. Training tokens/s (forward, backward, AdamW step, float32, CPU) of PMNet-tiny against the same model with the
   memory recurrence off (``mem_cumsum=False``: same parameters, the segmented sum skipped) and the plain
   sliding-window model without memory (preset ``window-tiny``), on the same random batches, alternated round by
   round (:func:`common.train_throughput`); reported as ratios to PMNet.
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

import torch

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

LENGTHS = (1024, 8192, 65536)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "fewer rounds, shorter streams (a smoke run)",
                          threads=1, threads_help="torch threads (1: the committed run, on a shared CPU)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    return ap


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
    x = torch.randint(0, 48, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))
    tps = train_throughput(models, x, rounds, steps)
    figures = {f"train_tokens_per_s_{k}": v for k, v in tps.items()}
    figures["memory_off_over_pmnet"] = tps["memory_off"] / tps["pmnet"]
    figures["window_over_pmnet"] = tps["window"] / tps["pmnet"]
    figures["params_pmnet"] = models["pmnet"].num_params()
    figures["params_window"] = models["window"].num_params()
    print_table([{"model": k, "tokens/s": v, "vs PMNet": v / tps["pmnet"]} for k, v in tps.items()],
                f"training throughput, batch {args.batch}×{args.seq}, {torch.get_num_threads()} threads")

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
