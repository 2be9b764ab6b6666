"""Generation speed at batch 1 with the KV cache: SmolLM2-135M-Instruct in fp32 against the same model with all 210
Linear layers trellis-coded at 2 bits (fused decode + matvec kernel), alternated in one run, 1 and 2 threads.

    python benchmarks/generate_speed.py [--quick] [--quantized CKPT] [--new-tokens 64] [--rounds 5]

Decode tokens/s counts the tokens after the first (the prompt's prefill is excluded). Without ``--quantized`` the
2-bit model is SmolLM2 with every Linear layer replaced by a 2-bit L=16 1MAD trellis layer holding random codes:
the kernel's work does not depend on the codes' values, so the speed is that of a quantised model (its text is
noise). With ``--quantized`` (a checkpoint from ``mechlab quantize``) the real quantised model runs.

The defaults write benchmarks/results/generate_speed.json; ``--quick`` (2 rounds of 16 tokens) or any other
option (rounds, tokens, thread counts, bits, L, a ``--quantized`` checkpoint) writes generate_speed.quick.json beside
the full results.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.quant.api import set_module, target_linears
from mechlab.quant.qtip import RMS_TARGET
from qmatvec import random_trellis

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, write_result
from smollm2_wikitext2 import smollm2_checkpoint

PROMPT = "The history of the city begins in the early middle ages, when"
NEW_TOKENS, ROUNDS, THREADS = 64, 5, [1, 2]  # the full run


def random_trellis_model(model: torch.nn.Module, bits: int, L: int) -> torch.nn.Module:
    """Every Linear layer but the head replaced by a random-coded trellis layer at the float layer's scale."""
    for i, (name, lin) in enumerate(target_linears(model).items()):
        scale = float(lin.weight.detach().pow(2).mean().sqrt()) / RMS_TARGET
        set_module(model, name, random_trellis(lin.out_features, lin.in_features, bits, L, seed=i, scale=scale))
    return model


@torch.inference_mode()
def decode_tokens_per_s(ck, ids: torch.Tensor, new_tokens: int) -> float:
    stamps = []
    ck.model.generate(ids, new_tokens, temperature=0.0, top_k=None, generator=torch.Generator().manual_seed(0),
                      eos_id=None, on_token=lambda _col: stamps.append(time.perf_counter()))
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 2 rounds of 16 new tokens", threads=THREADS)
    ap.add_argument("--quantized", default=None, help="a quantised SmolLM2 checkpoint (default: random 2-bit codes)")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes generate_speed.json."""
    return "generate_speed", not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, partial = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.rounds, args.new_tokens = min(args.rounds, 2), min(args.new_tokens, 16)
    fp32 = smollm2_checkpoint()
    if args.quantized:
        q = load_checkpoint(args.quantized)
        q_name = f"quantised ({args.quantized})"
    else:
        q = smollm2_checkpoint()
        random_trellis_model(q.model, args.bits, args.L)
        q_name = f"{args.bits}-bit trellis L={args.L}, random codes"
    models = {"fp32": fp32, q_name: q}
    for ck in models.values():
        ck.model.eval()
    ids = torch.tensor([fp32.tokenizer.encode(PROMPT)])
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for ck in models.values():
            decode_tokens_per_s(ck, ids, 4)  # warm-up: kernels built, caches planned
        speeds = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, ck in models.items():
                speeds[name].append(decode_tokens_per_s(ck, ids, args.new_tokens))
        base = statistics.median(speeds["fp32"])
        for name, s in speeds.items():
            med = statistics.median(s)
            rows.append({"model": name, "threads": threads, "tokens/s": med, "min": min(s), "max": max(s),
                         "× fp32": med / base})
    print_table(rows, f"SmolLM2-135M decode, batch 1, {args.new_tokens} new tokens, median of {args.rounds} rounds")
    path = write_result(name, {"rows": rows, "new_tokens": args.new_tokens, "rounds": args.rounds,
                                           "prompt_tokens": ids.shape[1]}, quick=partial)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
