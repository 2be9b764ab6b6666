"""The whole SmolLM2-135M-Instruct at 2 bits: trellis PTQ of every Linear layer with the tied embedding / LM head
left in float (the Linear-only model) and with it coded too at ``--embedding-bits`` bits per weight (``embedding=True``: one trellis code
serves the lookup and the head; mechlab.quant.embedding; one row per value), side by side with the float model. Reports the whole-file bytes of each
saved checkpoint (model.safetensors), bits per parameter over ALL parameters, per-component bytes, and WikiText-2
raw test perplexity (context 2048, non-overlapping windows, the first ``--windows``; the same windows for all
three models) and its ratio to float.

    python benchmarks/smollm2_whole_model.py [--quick] [--windows 4] [--bits 2] [--L 12] [--embedding-bits 2 4] [--calib-sequences 32]

Calibration: ``--calib-sequences`` random windows of ``--calib-seq-len`` tokens of the gutenberg train split (seed
``--seed``), one pass of the float model giving every Linear's proxy Hessian and the tied head's input Hessian;
both quantised models are coded from those. ``--quick``: 1 window, 4 calibration windows (a smoke run, written to
smollm2_whole_model.quick.json). One process; set OMP_NUM_THREADS / ``--threads`` for the thread count.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.quant import TrellisConfig, collect_hessians, quantize_
from mechlab.quant.api import target_linears
from mechlab.quant.run import calibration_batches, size_report
from mechlab.train.checkpoint import save_checkpoint

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, set_threads, write_result
from smollm2_wikitext2 import smollm2_checkpoint

NAME = "smollm2_whole_model"


def build_parser():
    ap = benchmark_parser(__doc__, "a smoke run: 1 window, 4 calibration windows", threads=None)
    ap.add_argument("--windows", type=int, default=4, help="WikiText-2 test windows of 2048 tokens scored")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--L", type=int, default=12, help="trellis state bits (encode time grows as 2^L)")
    ap.add_argument("--embedding-bits", type=int, nargs="+", default=[2, 4],
                    help="bits per weight of the embedding / head table, one row each")
    ap.add_argument("--calib-sequences", type=int, default=32)
    ap.add_argument("--calib-seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def output(ap, args):
    return NAME, not is_reference_run(ap, args, ignore=("threads",))


def evaluate(model, stream, windows: int) -> dict:
    t = time.perf_counter()
    r = evaluate_lm(model, stream, context=2048, max_windows=windows, batch_size=1, progress=True)
    return {"perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte, "scored_tokens": r.n_tokens,
            "eval_seconds": time.perf_counter() - t}


def sizes(model, tokenizer) -> dict:
    """size_report of the model saved as a checkpoint (its model.safetensors measured on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ck", model, tokenizer)
        rep = size_report(model, path / "model.safetensors")
    return {"file_bytes": rep["file_bytes"], "file_MB": rep["file_bytes"] / 1e6,
            "bits_per_parameter": rep["file_bits_per_parameter"], "parameters": rep["parameters"],
            "components": rep["components"]}


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.windows, args.calib_sequences = 1, 4
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    ck = smollm2_checkpoint()
    test = token_stream("wikitext2-test", "test", ck.tokenizer)
    calib = token_stream("gutenberg", "train", ck.tokenizer)
    t = time.perf_counter()
    batches = calibration_batches(calib, args.calib_sequences, args.calib_seq_len, args.seed)
    hessians = collect_hessians(ck.model, batches, list(target_linears(ck.model)), progress=True, tied_head=True)
    calib_seconds = time.perf_counter() - t
    rows = [{"model": "float32", **sizes(ck.model, ck.tokenizer), **evaluate(ck.model, test, args.windows)}]
    for eb in [None, *args.embedding_bits]:
        embedding = eb is not None
        cfg = TrellisConfig(L=args.L, k=args.bits, embedding=embedding, embedding_bits=eb)
        model = copy.deepcopy(ck.model)
        t = time.perf_counter()
        report = quantize_(model, cfg, hessians=hessians, progress=True)
        seconds = time.perf_counter() - t
        model.eval()
        label = f"trellis {args.bits}-bit L={args.L}, " + (f"embedding + head at {eb} bits" if embedding else "Linear only")
        rows.append({"model": label, "quant_seconds": seconds, "quant_summary": report.summary(),
                     **sizes(model, ck.tokenizer), **evaluate(model, test, args.windows)})
        del model
    for r in rows:
        r["perplexity_ratio"] = r["perplexity"] / rows[0]["perplexity"]
    print_table([{k: r[k] for k in ("model", "file_MB", "bits_per_parameter", "perplexity", "perplexity_ratio")}
                 for r in rows], f"SmolLM2-135M-Instruct, WikiText-2 test, {args.windows} windows of 2048")
    path = write_result(name, {"windows": args.windows, "context": 2048, "bits": args.bits, "L": args.L,
                               "calibration": f"gutenberg train, {args.calib_sequences}x{args.calib_seq_len}, "
                                              f"seed {args.seed}",
                               "calibration_seconds": calib_seconds, "threads": torch.get_num_threads(),
                               "rows": rows}, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
