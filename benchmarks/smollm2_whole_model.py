r"""The whole SmolLM2-135M-Instruct at 2 bits: trellis PTQ of every Linear layer with the tied embedding / LM head
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

``--finetuned KEY`` codes the table of a fine-tuned model instead of a PTQ one: the 2-bit model of smollm2_ptq's
trellis-ft row KEY (Linear codes fixed, their continuous parts and the float embedding fine-tuned; read from
MECHLAB_CACHE/smollm2_ptq/models, so that row's command must have run on this machine first), its tied table coded
after fine-tuning at each ``--embedding-bits`` against the head's input Hessian of the fine-tuned model (the same
calibration windows). Rows: float, the fine-tuned model with its table in float, and with it coded; written to
smollm2_whole_model_finetuned.json for the committed KEY (FINETUNED), else to its .quick file:

    python benchmarks/smollm2_ptq.py --methods trellis-ft --bits 2 --calib-corpus wikitext2-valid --ft-steps 100 \
        --ft-lr 5e-3 --ft-schedule cosine --ft-embedding-lr 1e-4 --windows 4     # makes and caches the model
    python benchmarks/smollm2_whole_model.py --finetuned 421926b75c1a --embedding-bits 4
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.tokens import token_stream
from mechlab.errors import ConfigError
from mechlab.eval import evaluate_lm
from mechlab.quant import TrellisConfig, collect_hessians, quantize_
from mechlab.quant.api import target_linears
from mechlab.quant.linear import QuantizedLinear
from mechlab.quant.run import calibration_batches, size_report
from mechlab.train.checkpoint import save_checkpoint

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, set_threads, write_result
from smollm2_wikitext2 import smollm2_checkpoint

NAME = "smollm2_whole_model"
# the committed --finetuned run: smollm2_ptq's row of the 2-bit model fine-tuned 100 cosine steps on WikiText-2 valid
# (the embedding too, at lr 1e-4), its table then coded at 4 bits
FINETUNED = ["--finetuned", "421926b75c1a", "--embedding-bits", "4"]


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
    ap.add_argument("--finetuned", metavar="KEY", default=None,
                    help="code the table of smollm2_ptq's fine-tuned trellis-ft row KEY instead of PTQ models (see "
                         "above)")
    return ap


def output(ap, args):
    if args.finetuned:
        return f"{NAME}_finetuned", not is_reference_run(ap, args, ignore=("threads",), reference=FINETUNED)
    return NAME, not is_reference_run(ap, args, ignore=("threads",))


def finetuned_model(key: str, bits: int, L: int):
    """(checkpoint, the row's model config) of smollm2_ptq's fine-tuned trellis-ft row ``key``, checked to be a
    ``bits``-bit, L = ``L`` code. ConfigError (one line) for an unknown row, another method or code, a model not made
    on this machine yet (the message gives the row's command), or a cached checkpoint that is not quantised."""
    from smollm2_ptq import find_row, saved_model  # benchmarks/, beside this script

    try:
        model = find_row(key)["config"]["model"]
    except ConfigError as e:
        raise ConfigError(f"--finetuned {e}") from None
    if model["method"] != "trellis-ft" or (model["bits"], model["L"]) != (bits, L):
        raise ConfigError(f"--finetuned {key}: not a trellis-ft model with {bits} bits and L={L} (--bits, --L)")
    path = saved_model(key)
    if not path.is_dir():
        raise ConfigError(f"--finetuned {key}: its model is not in {path}; make it first with the row's command "
                          f"(any --windows): {find_row(key)['command']}")
    ck = load_checkpoint(path)
    if not any(isinstance(m, QuantizedLinear) for m in ck.model.modules()):
        raise ConfigError(f"--finetuned {key}: {path} holds a float model, not the fine-tuned 2-bit one: remove it "
                          f"and make it again")
    return ck, model


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
    ap, args, name, quick = parse_benchmark_args(build_parser, output, quick_defaults={"windows": 1,
                                                                                       "calib_sequences": 4})
    for option, value, least in (("--windows", args.windows, 1), ("--calib-sequences", args.calib_sequences, 1),
                                 ("--calib-seq-len", args.calib_seq_len, 2), ("--seed", args.seed, 0)):
        if value < least:
            ap.error(f"{option} must be >= {least}, got {value}")
    try:  # every config of the run, checked before any work
        for eb in [None, *args.embedding_bits]:
            TrellisConfig(L=args.L, k=args.bits, embedding=eb is not None, embedding_bits=eb)
    except ConfigError as e:
        ap.error(f"--bits / --L / --embedding-bits: {e}")
    if args.finetuned:
        try:
            ft, ft_config = finetuned_model(args.finetuned, args.bits, args.L)
        except ConfigError as e:
            ap.error(str(e))
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    ck = smollm2_checkpoint()
    test = token_stream("wikitext2-test", "test", ck.tokenizer)
    calib = token_stream("gutenberg", "train", ck.tokenizer)
    t = time.perf_counter()
    batches = calibration_batches(calib, args.calib_sequences, args.calib_seq_len, args.seed)
    if not args.finetuned:  # (a fine-tuned model's head Hessian is measured on these batches in finetuned_rows)
        hessians = collect_hessians(ck.model, batches, list(target_linears(ck.model)), progress=True, tied_head=True)
    calib_seconds = time.perf_counter() - t
    rows = [{"model": "float32", **sizes(ck.model, ck.tokenizer), **evaluate(ck.model, test, args.windows)}]
    if args.finetuned:
        rows += finetuned_rows(args, ft, batches, test)
    for eb in [] if args.finetuned else [None, *args.embedding_bits]:
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
    path = write_result(name, {"finetuned": args.finetuned, "finetuned_config": ft_config if args.finetuned else None,
                               "windows": args.windows, "context": 2048, "bits": args.bits, "L": args.L,
                               "calibration": f"gutenberg train, {args.calib_sequences}x{args.calib_seq_len}, "
                                              f"seed {args.seed}",
                               "calibration_seconds": calib_seconds, "threads": torch.get_num_threads(),
                               "rows": rows}, quick=quick)
    print(f"wrote {path}")


def finetuned_rows(args, ft, batches, test) -> list[dict]:
    """The ``--finetuned`` rows of checkpoint ``ft`` (:func:`finetuned_model`): the fine-tuned model with its table in
    float, then coded at each --embedding-bits (the head's input Hessian measured on ``batches`` through the
    fine-tuned model; every Linear is already coded, so :func:`quantize_` codes the table alone)."""
    label = f"trellis-ft {args.bits}-bit L={args.L} (smollm2_ptq row {args.finetuned})"
    rows = [{"model": f"{label}, table float", "finetune": ft.meta.get("finetune"),
             **sizes(ft.model, ft.tokenizer), **evaluate(ft.model, test, args.windows)}]
    t = time.perf_counter()
    hessians = collect_hessians(ft.model, batches, [], progress=True, tied_head=True)
    head_seconds = time.perf_counter() - t
    for eb in args.embedding_bits:
        model = copy.deepcopy(ft.model)
        t = time.perf_counter()
        report = quantize_(model, TrellisConfig(L=args.L, k=args.bits, embedding=True, embedding_bits=eb),
                           hessians=hessians, progress=True)
        model.eval()
        rows.append({"model": f"{label}, table coded after fine-tuning at {eb} bits",
                     "quant_seconds": head_seconds + time.perf_counter() - t, "quant_summary": report.summary(),
                     **sizes(model, ft.tokenizer), **evaluate(model, test, args.windows)})
        del model
    return rows


if __name__ == "__main__":
    main()
