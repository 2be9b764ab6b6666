"""Whole-model PTQ of SmolLM2-135M-Instruct: every one of its 210 Linear layers (106,168,320 weights; the tied
embedding / LM head stays in float) at 2, 3 and 4 bits with trellis (QTIP-style: RHT, BlockLDLQ, tail-biting,
1MAD), GPTQ with and without act-order, and RTN (groups of 128 input columns, fp16 scale and zero point per
group), and trellis followed by fine-tuning of its continuous parts with the codes frozen (``trellis-ft``: sign
vectors as real scales fitted layer-wise, then trained end to end with the norms against KL to the float model on
calibration windows). Reports WikiText-2 raw test perplexity (context 2048, non-overlapping windows, the first
``--windows`` of them, the float model on the same windows) and the bytes of the quantised layers and of the whole
model.

    python benchmarks/smollm2_ptq.py [--quick] [--windows 16] [--bits 2 3 4] [--methods rtn gptq gptq-act trellis] [--L 12]
    python benchmarks/smollm2_ptq.py --methods ... trellis-ft --ft-bits 2 4 --ft-steps 80
    python benchmarks/smollm2_ptq.py --methods trellis-ft --bits 2 --ft-from TAG --ft-steps 150 --ft-seq-len 2048 ...

``--ft-from TAG`` continues fine-tuning a model an earlier trellis-ft row saved (TAG: its cache tag, the file name
before -model.pt) with the new ``--ft-*`` settings and ``--seed`` for the batches; the row's tag is TAG+ft....

Calibration (GPTQ, BlockLDLQ): ``--calib-sequences`` random windows of ``--calib-seq-len`` tokens from the
gutenberg train split, or with ``--calib-corpus wikitext2-valid`` from the WikiText-2 validation articles (never the
evaluation text; fine-tuning and sequential calibration read the same corpus), Hessians computed once from the float
model and cached. Every configuration's row is cached too (MECHLAB_CACHE/smollm2_ptq/), so an interrupted run resumes
where it stopped; ``--fresh`` recomputes. The table goes to benchmarks/results/smollm2_ptq.json (smollm2_ptq_L16.json
etc. for another trellis L; _3inst, _hybV2, _sequential, _wikitext2_valid, _cosine, _emb, _w149 suffixes for those
options; ``--name`` sets another). Only the committed configuration of NAME writes NAME.json: for the committed
results, exactly the arguments recorded in them (``COMMITTED`` below; ``smollm2_ptq.json`` itself was made with
``--methods rtn gptq gptq-act trellis trellis-ft --ft-bits 2 4 --ft-steps 40``), for any other name the defaults.
Every other run — ``--quick`` (a smoke run: 2 windows, the first of ``--bits``, 8 calibration windows, at most 5
fine-tuning steps), other methods, bits, steps, windows... — writes NAME.quick.json and NAME_finetune.quick.png
beside the full results. ``--name`` and ``--fresh`` (which recomputes the same rows) do not count.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import torch

from mechlab.data.corpora import cache_dir, get_corpus
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.quant import collect_hessians, quantize_
from mechlab.quant.api import target_linears
from mechlab.quant.finetune import finetune_
from mechlab.quant.run import calibration_batches, make_config, size_report
from mechlab.utils import save_figure, write_json_atomic

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result
from smollm2_wikitext2 import REFERENCE_PPL, smollm2_checkpoint

SMOOTH = 10  # steps in the running mean of the plotted KL curves
_WT2 = "--calib-corpus wikitext2-valid"
_EMB = "--ft-lr 5e-3 --ft-schedule cosine --ft-embedding-lr 1e-4"
_PLUS150 = (f"--methods trellis-ft --bits 2 {_WT2} --ft-from "
            "trellis-ft-2-L12-calib128x512s0-wikitext2-valid-ft300x4x512lr0.005-cosine-emb0.0001 --ft-steps 150 "
            "--ft-batch-size 1 --ft-seq-len 2048 --ft-lr 2e-3 --ft-schedule cosine --ft-embedding-lr 1e-4 --seed 1")
# result name -> the arguments of its committed run (the "command" recorded in benchmarks/results/NAME.json)
COMMITTED = {
    "smollm2_ptq": "--methods rtn gptq gptq-act trellis trellis-ft --ft-bits 2 4 --ft-steps 40",
    "smollm2_ptq_L16": "--methods trellis --L 16 --bits 4 2",
    "smollm2_ptq_3inst": "--methods trellis --bits 4 --code 3inst",
    "smollm2_ptq_hybV2": "--methods trellis --bits 4 2 --code hyb --V 2",
    "smollm2_ptq_sequential": "--methods trellis --bits 2 --sequential",
    "smollm2_ptq_cosine": "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 2e-3 --ft-schedule cosine",
    "smollm2_ptq_cosine_w149": "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 2e-3 "
                               "--ft-schedule cosine --windows 149",
    "smollm2_ptq_cosine_emb": f"--methods trellis-ft --ft-bits 2 --ft-steps 40 {_EMB}",
    "smollm2_ptq_sequential_cosine": "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 1e-3 "
                                     "--ft-schedule cosine --sequential",
    "smollm2_ptq_wikitext2_valid_cosine": f"--methods trellis trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 "
                                          "--ft-schedule cosine",
    "smollm2_ptq_wikitext2_valid_cosine_w149": f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 "
                                               "--ft-schedule cosine --windows 149",
    "smollm2_ptq_wikitext2_valid_cosine_emb": f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 40 {_EMB}",
    "smollm2_ptq_2bit_wikitext2_valid_emb": f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 100 {_EMB} "
                                            "--name smollm2_ptq_2bit_wikitext2_valid_emb",
    "smollm2_ptq_2bit_wikitext2_valid_emb_w149": f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 100 {_EMB} "
                                                 "--windows 149 --name smollm2_ptq_2bit_wikitext2_valid_emb_w149",
    "smollm2_ptq_2bit_wikitext2_valid_emb300": f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 300 {_EMB} "
                                               "--name smollm2_ptq_2bit_wikitext2_valid_emb300",
    "smollm2_ptq_2bit_wikitext2_valid_emb300_w149": f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 300 {_EMB} "
                                                    "--windows 149 --name smollm2_ptq_2bit_wikitext2_valid_emb300_w149",
    "smollm2_ptq_2bit_wikitext2_valid_emb300_plus150x2048":
        f"{_PLUS150} --name smollm2_ptq_2bit_wikitext2_valid_emb300_plus150x2048",
    "smollm2_ptq_2bit_wikitext2_valid_emb300_plus150x2048_w149":
        f"{_PLUS150} --windows 149 --name smollm2_ptq_2bit_wikitext2_valid_emb300_plus150x2048_w149",
    "smollm2_ptq_2bit_hyb_ft40": f"--methods trellis-ft --bits 2 --code hyb --V 2 {_WT2} --ft-steps 40 {_EMB} "
                                 "--name smollm2_ptq_2bit_hyb_ft40",
    "smollm2_ptq_4bit_wikitext2_valid_emb": f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 --ft-schedule cosine "
                                            "--ft-embedding-lr 1e-4 --name smollm2_ptq_4bit_wikitext2_valid_emb",
    "smollm2_ptq_4bit_wikitext2_valid_emb_w149": f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 "
                                                 "--ft-schedule cosine --ft-embedding-lr 1e-4 --windows 149 "
                                                 "--name smollm2_ptq_4bit_wikitext2_valid_emb_w149",
}
IGNORE = ("name", "fresh")  # --name only names the file; --fresh recomputes the same cached rows


def calibration_stream(corpus: str, tok):
    """The training split of ``corpus`` (its only split where it has no training split, as wikitext2-valid)."""
    splits = get_corpus(corpus).splits
    return token_stream(corpus, "train" if "train" in splits else splits[0], tok)


def hessians(ck, corpus: str, n_seq: int, seq_len: int, seed: int, fresh: bool) -> dict[str, torch.Tensor]:
    path = cache_dir() / "smollm2_ptq" / f"hessians-{corpus}-{n_seq}x{seq_len}-s{seed}.pt"
    if path.is_file() and not fresh:
        return {k: v.double() for k, v in torch.load(path).items()}
    stream = calibration_stream(corpus, ck.tokenizer)
    batches = calibration_batches(stream, n_seq, seq_len, seed)
    h = collect_hessians(ck.model, batches, list(target_linears(ck.model)), progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.float() for k, v in h.items()}, path)
    return h


def evaluate(model, stream, windows: int) -> dict:
    t = time.perf_counter()
    r = evaluate_lm(model, stream, context=2048, max_windows=windows, progress=True)
    return {"perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte, "scored_tokens": r.n_tokens,
            "eval_seconds": time.perf_counter() - t}


def plot_finetune(rows: list[dict], png, corpus: str) -> None:
    """The training KL of every fine-tuned row against its step (log scale): each batch's value faint, its running
    mean over ``SMOOTH`` steps solid (one batch's KL varies by ±20% with its text)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for r in rows:
        kl = torch.tensor(r["finetune"]["kl_curve"])
        mean = kl.cumsum(0)
        mean[SMOOTH:] -= mean[:-SMOOTH].clone()
        mean /= torch.arange(1, len(kl) + 1).clamp(max=SMOOTH)
        line, = ax.plot(mean, label=f"{r['bits']} bits: perplexity {r['perplexity']:.2f}")
        ax.plot(kl, color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_yscale("log")
    ft = rows[0]["finetune"]
    ax.set_xlabel(f"fine-tuning step ({ft['batch_size']} × {ft['seq_len']} {corpus} tokens)")
    ax.set_ylabel("KL(float ‖ quantised), nats/token")
    ax.set_title("SmolLM2 trellis: sign vectors and norms trained, codes frozen")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 2 windows, the first bits only, 8 calibration windows, <= 5 fine-tuning "
                          "steps", name=None,
                          name_help="result file stem under benchmarks/results (default: derived from the options)")
    ap.add_argument("--windows", type=int, default=16, help="WikiText-2 test windows of 2048 tokens (all: 149)")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--methods", nargs="+", default=["rtn", "gptq", "gptq-act", "trellis"],
                    help="rtn, gptq, gptq-act (GPTQ with act-order), trellis and trellis-ft")
    ap.add_argument("--L", type=int, default=12, help="trellis state bits (see the README for why 12)")
    ap.add_argument("--code", default="1mad", help="trellis code: 1mad, 3inst (V=1), hyb (V=2) or lut")
    ap.add_argument("--V", type=int, default=1, help="trellis weights per step (hyb: 2)")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--calib-corpus", default="gutenberg",
                    help="text for the Hessians, sequential calibration and fine-tuning (never the evaluation text): "
                         "gutenberg (train split) or wikitext2-valid (other Wikipedia articles than the test split)")
    ap.add_argument("--calib-sequences", type=int, default=128)
    ap.add_argument("--calib-seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ft-bits", type=int, nargs="+", help="trellis-ft: bits to run (default: --bits)")
    ap.add_argument("--ft-steps", type=int, default=100, help="trellis-ft: Adam steps (0: the layer-wise fit only)")
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--ft-batch-size", type=int, default=4)
    ap.add_argument("--ft-seq-len", type=int, default=512)
    ap.add_argument("--ft-schedule", default="constant", help="trellis-ft: learning-rate schedule, constant or cosine")
    ap.add_argument("--ft-embedding-lr", type=float, default=0.0,
                    help="trellis-ft: train the (float, tied) token embedding too, at this rate (0: frozen)")
    ap.add_argument("--ft-from", metavar="TAG",
                    help="trellis-ft: continue fine-tuning the cached model of an earlier trellis-ft row (its cache "
                         "tag, the file name before -model.pt) instead of quantising afresh")
    ap.add_argument("--sequential", action="store_true",
                    help="gptq/trellis: calibrate block by block on the partly quantised model, towards the float "
                         "outputs (mechlab.quant.sequential), from the same calibration windows")
    ap.add_argument("--fresh", action="store_true", help="recompute cached rows and Hessians")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): the name from --name or the options as given (before --quick shrinks them); only the
    committed configuration of that name (``COMMITTED``, else the defaults) writes NAME.json."""
    code_tag = "" if args.code == "1mad" else f"-{args.code}" + ("" if args.V == 1 else f"V{args.V}")
    name = "smollm2_ptq" + ("" if args.L == 12 else f"_L{args.L}") + code_tag.replace("-", "_")
    name += "_sequential" if args.sequential else ""
    name += "" if args.calib_corpus == "gutenberg" else "_" + args.calib_corpus.replace("-", "_")
    name += "" if args.ft_schedule == "constant" else f"_{args.ft_schedule}"
    name += "_emb" if args.ft_embedding_lr else ""
    name += "" if args.windows == 16 else f"_w{args.windows}"
    name = args.name or name
    return name, not is_reference_run(ap, args, ignore=IGNORE, reference=COMMITTED.get(name, ()))


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.windows, args.bits, args.calib_sequences = 2, args.bits[:1], min(args.calib_sequences, 8)
        args.ft_bits, args.ft_steps = (args.ft_bits or args.bits)[:1], min(args.ft_steps, 5)

    rows_dir = cache_dir() / "smollm2_ptq"
    rows_dir.mkdir(parents=True, exist_ok=True)
    ck = smollm2_checkpoint()
    stream = token_stream("wikitext2-test", "test", ck.tokenizer)
    float_bytes = size_report(ck.model)
    float_linear_bytes = sum(m.weight.numel() * m.weight.element_size() for m in target_linears(ck.model).values())

    def cached(tag: str, make) -> dict:
        path = rows_dir / f"{tag}-w{args.windows}.json"
        if path.is_file() and not args.fresh:
            return json.loads(path.read_text())
        row = make()
        write_json_atomic(path, row)
        return row

    rows = [{"method": "float32", "bits": 32, **cached("float", lambda: {
        **evaluate(ck.model, stream, args.windows), "linear_bytes": float_linear_bytes,
        "model_bytes": float_bytes["total_bytes"]})}]
    code_tag = "" if args.code == "1mad" else f"-{args.code}" + ("" if args.V == 1 else f"V{args.V}")
    code_label = ("" if args.code == "1mad" else f" {args.code}") + (f" V={args.V}" if args.V > 1 else "")
    trellis_label = f"trellis L={args.L}{code_label}"
    h = None
    for method in args.methods:
        for bits in args.ft_bits or args.bits if method == "trellis-ft" else args.bits:
            ft = method == "trellis-ft"
            train = dict(steps=args.ft_steps, lr=args.ft_lr, batch_size=args.ft_batch_size, seq_len=args.ft_seq_len,
                         schedule=args.ft_schedule, embedding_lr=args.ft_embedding_lr, seed=args.seed) if ft else {}
            cfg = make_config(method.removesuffix("-act"), bits, group_size=args.group_size, L=args.L,
                              V=args.V, code=args.code, act_order=method == "gptq-act", **train)
            tag = f"{method}-{bits}-" + (f"L{args.L}{code_tag}" if method.startswith("trellis") else f"g{args.group_size}")
            quant_tag = tag  # what a --ft-from model must have been quantised as
            seq = args.sequential and cfg.needs_hessian
            if cfg.needs_hessian:
                tag += f"-calib{args.calib_sequences}x{args.calib_seq_len}s{args.seed}" + ("-seq" if seq else "")
                tag += "" if args.calib_corpus == "gutenberg" else f"-{args.calib_corpus}"
            if ft:
                ft_tag = f"ft{args.ft_steps}x{args.ft_batch_size}x{args.ft_seq_len}lr{args.ft_lr:g}"
                ft_tag += "" if args.ft_schedule == "constant" else f"-{args.ft_schedule}"
                ft_tag += f"-emb{args.ft_embedding_lr:g}" if args.ft_embedding_lr else ""
                if args.ft_from:
                    if not args.ft_from.startswith(f"{quant_tag}-calib"):
                        raise SystemExit(f"--ft-from {args.ft_from}: not a trellis-ft model with {bits} bits, L={args.L}"
                                         f"{code_label}")
                    tag = f"{args.ft_from}+{ft_tag}-s{args.seed}"
                else:
                    tag += f"-{ft_tag}"

            def run():
                nonlocal h
                q = smollm2_checkpoint()
                saved = rows_dir / f"{tag}-model.pt"  # a fine-tuned model outlives a failed evaluation
                if ft and saved.is_file() and not args.fresh:
                    q.model, report, seconds = torch.load(saved, weights_only=False)
                elif ft and args.ft_from:
                    q.model, report, seconds = torch.load(rows_dir / f"{args.ft_from}-model.pt", weights_only=False)
                    t = time.perf_counter()
                    report.qat = {**finetune_(q.model, smollm2_checkpoint().model, cfg,
                                              calibration_stream(args.calib_corpus, q.tokenizer)),
                                  "continued_from": args.ft_from, "before": report.qat}
                    seconds += time.perf_counter() - t
                    torch.save((q.model, report, seconds), saved)
                else:
                    if cfg.needs_hessian and h is None and not seq:
                        h = hessians(ck, args.calib_corpus, args.calib_sequences, args.calib_seq_len, args.seed,
                                     args.fresh)
                    t = time.perf_counter()
                    ptq = cfg.trellis if ft else cfg
                    calib = calibration_stream(args.calib_corpus, q.tokenizer) if seq or ft else None
                    if seq:
                        windows = calibration_batches(calib, args.calib_sequences, args.calib_seq_len, args.seed)
                        report = quantize_(q.model, ptq, calibration=windows, sequential=True, progress=True)
                    else:
                        report = quantize_(q.model, ptq, hessians=h if cfg.needs_hessian else None, progress=True)
                    if ft:
                        report.qat = finetune_(q.model, smollm2_checkpoint().model, cfg, calib)
                    seconds = time.perf_counter() - t
                    if ft:
                        torch.save((q.model, report, seconds), saved)
                size = size_report(q.model)
                summary = report.summary()
                return {**evaluate(q.model, stream, args.windows), "quant_seconds": seconds,
                        "layers": summary["layers"], "weights": summary["weights"], "rel_mse": summary["rel_mse"],
                        "proxy_loss": summary["proxy_loss"],
                        "linear_bytes": size["bytes"]["quantized codes"] + size["bytes"]["quantized side info"],
                        "bits_per_weight": size["bits_per_quantized_weight"], "model_bytes": size["total_bytes"],
                        "threads": torch.get_num_threads(), **({"finetune": report.qat} if ft else {})}

            label = {"trellis": trellis_label, "gptq-act": "gptq act-order",
                     "trellis-ft": f"{trellis_label} + fine-tune ({args.ft_steps} steps"
                                   + ("" if args.ft_schedule == "constant" else f", {args.ft_schedule}")
                                   + (", embedding too" if args.ft_embedding_lr else "") + ")"}.get(method, method)
            if args.ft_from:
                before = re.search(r"-ft(\d+)x", args.ft_from)[1]
                label = f"{trellis_label} + fine-tune ({before} steps) + " \
                        f"{args.ft_steps} more ({args.ft_batch_size}×{args.ft_seq_len}, lr {args.ft_lr:g}, {args.ft_schedule})"
            label += ", sequential" if seq else ""
            label += f", {args.calib_corpus} calibration" if cfg.needs_hessian and args.calib_corpus != "gutenberg" else ""
            rows.append({"method": label, "bits": bits,
                         **cached(tag, run)})
            print(f"{tag}: perplexity {rows[-1]['perplexity']:.2f}", flush=True)

    ref = rows[0]["perplexity"]
    table = [{"method": r["method"], "bits": r["bits"], "bits/weight": r.get("bits_per_weight", 32.0),
              "perplexity": r["perplexity"], "× float": r["perplexity"] / ref,
              "linear MB": r["linear_bytes"] / 1e6, "model MB": r["model_bytes"] / 1e6} for r in rows]
    print_table(table, f"SmolLM2-135M-Instruct whole-model PTQ, WikiText-2 test, first {args.windows} windows of 2048")
    path = write_result(name, {"windows": args.windows, "scored_tokens": rows[0]["scored_tokens"],
                               "trellis_L": args.L, "group_size": args.group_size,
                               "calibration": f"{args.calib_corpus}, {args.calib_sequences}×{args.calib_seq_len}",
                               "full_test_reference_perplexity": REFERENCE_PPL, "rows": rows}, quick=quick)
    print(f"wrote {path}")
    tuned = [r for r in rows if "finetune" in r]
    if tuned:
        plot_finetune(tuned, result_path(name + "_finetune", quick, ".png"), args.calib_corpus)


if __name__ == "__main__":
    main()
