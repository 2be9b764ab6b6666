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
    python benchmarks/smollm2_ptq.py --methods trellis-ft --bits 2 --ft-from KEY --ft-steps 150 --ft-seq-len 2048 ...

Every model is made by the library (:func:`mechlab.quant.run.make_config` and
:func:`mechlab.quant.run.quantize_checkpoint`) and scored by :func:`mechlab.eval.evaluate_lm`.

Calibration (GPTQ, BlockLDLQ): ``--calib-sequences`` random windows of ``--calib-seq-len`` tokens from the
gutenberg train split, or with ``--calib-corpus wikitext2-valid`` from the WikiText-2 validation articles (never the
evaluation text; fine-tuning and sequential calibration read the same corpus).

One results table: benchmarks/results/smollm2_ptq.json holds a row per configuration, keyed by the configuration's
hash (:func:`config_key`: the first 12 hex digits of the sha256 of its sorted JSON); each row holds its full
configuration (``config``: the windows scored and how the model was made), its figures and the command and machine
that made it. A run computes the rows of its configurations and replaces those rows of the table, leaving the others.
Only the registered runs (``RUNS``: the commands recorded in the table; ``COMMITTED["smollm2_ptq"]`` the main one)
update smollm2_ptq.json (and the main one smollm2_ptq_finetune.png); every other run — ``--quick`` (a smoke run: 2
windows, the first of ``--bits``, 8 calibration windows, at most 5 fine-tuning steps), other methods, bits, steps,
windows... — updates smollm2_ptq.quick.json (and writes smollm2_ptq_finetune.quick.png) beside the full results.
``--fresh`` (which recomputes the same rows) and ``--name`` (deprecated, no effect) do not count.

Every computed row is cached as JSON under MECHLAB_CACHE/smollm2_ptq/rows/KEY.json, so an interrupted run resumes
where it stopped, and every fine-tuned model as a checkpoint (:func:`mechlab.checkpoint.save_checkpoint`) under
MECHLAB_CACHE/smollm2_ptq/models/MODEL_KEY (the key of the row's ``config["model"]``, shared by the rows that score
the same model on other windows); ``--fresh`` recomputes. ``--ft-from KEY`` continues fine-tuning the model of the
trellis-ft row KEY of the table (the full one, else the quick one) with the new ``--ft-*`` settings and ``--seed``
for the batches.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from mechlab.checkpoint import load_checkpoint, save_checkpoint
from mechlab.data.corpora import cache_dir, get_corpus
from mechlab.data.tokens import token_stream
from mechlab.errors import ConfigError
from mechlab.eval import evaluate_lm
from mechlab.quant.api import target_linears
from mechlab.quant.registry import method_for
from mechlab.quant.run import make_config, quantize_checkpoint, size_report
from mechlab.utils import machine_description, save_figure, write_json_atomic

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result
from smollm2_wikitext2 import REFERENCE_PPL, smollm2_checkpoint

NAME = "smollm2_ptq"
SMOOTH = 10  # steps in the running mean of the plotted KL curves
CONTEXT = 2048
_WT2 = "--calib-corpus wikitext2-valid"
_EMB = "--ft-lr 5e-3 --ft-schedule cosine --ft-embedding-lr 1e-4"
_FT300 = "93464699f0eb"  # the key of the row: trellis-ft 2 bits, wikitext2-valid, 300 cosine steps with the embedding
# --ft-from in the commands recorded before rows had keys: the row's former cache tag (key -> tag)
FORMER_TAGS = {_FT300: "trellis-ft-2-L12-calib128x512s0-wikitext2-valid-ft300x4x512lr0.005-cosine-emb0.0001",
               "edf7b4096a97": "trellis-ft-2-L12-calib128x512s0-wikitext2-valid-ft300x4x512lr0.005-cosine-emb0.0001"
                               "+ft150x1x2048lr0.002-cosine-emb0.0001-s1"}
_PLUS150 = (f"--methods trellis-ft --bits 2 {_WT2} --ft-from {FORMER_TAGS[_FT300]} --ft-steps 150 --ft-batch-size 1 "
            "--ft-seq-len 2048 --ft-lr 2e-3 --ft-schedule cosine --ft-embedding-lr 1e-4 --seed 1")
MAIN = "--methods rtn gptq gptq-act trellis trellis-ft --ft-bits 2 4 --ft-steps 40"
COMMITTED = {NAME: MAIN}  # the main run (its command is the table's and it draws smollm2_ptq_finetune.png)
# the arguments of every run whose rows the committed table holds (a row's "command" is one of these)
RUNS = (
    MAIN,
    "--methods trellis --L 16 --bits 4 2",
    "--methods trellis --bits 4 --code 3inst",
    "--methods trellis --bits 4 2 --code hyb --V 2",
    "--methods trellis --bits 2 --sequential",
    "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 2e-3 --ft-schedule cosine",
    "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 2e-3 --ft-schedule cosine --windows 149",
    f"--methods trellis-ft --ft-bits 2 --ft-steps 40 {_EMB}",
    "--methods trellis-ft --ft-bits 4 --bits 4 --ft-steps 100 --ft-lr 1e-3 --ft-schedule cosine --sequential",
    f"--methods trellis trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 --ft-schedule cosine",
    f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 --ft-schedule cosine --windows 149",
    f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 40 {_EMB}",
    f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 100 {_EMB}",
    f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 100 {_EMB} --windows 149",
    f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 300 {_EMB}",
    f"--methods trellis-ft --bits 2 {_WT2} --ft-steps 300 {_EMB} --windows 149",
    _PLUS150,
    f"{_PLUS150} --windows 149",
    f"--methods trellis-ft --bits 2 --code hyb --V 2 {_WT2} --ft-steps 40 {_EMB}",
    f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 --ft-schedule cosine --ft-embedding-lr 1e-4",
    f"--methods trellis-ft --bits 4 {_WT2} --ft-lr 2e-3 --ft-schedule cosine --ft-embedding-lr 1e-4 --windows 149",
)
IGNORE = ("name", "fresh")  # --name is a deprecated no-op; --fresh recomputes the same rows


def config_key(config: dict) -> str:
    """The key of a configuration (a JSON-able dict): the first 12 hex digits of the sha256 of its JSON with sorted
    keys and no spaces; the same configuration always has the same key, on every machine."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_config(args: argparse.Namespace, method: str, bits: int, parent: dict | None = None) -> dict:
    """How one model of a run is made (the part of a row's configuration that does not depend on the windows scored):
    the method (``float32``, ``rtn``, ``gptq``, ``gptq-act``, ``trellis``, ``trellis-ft``) and bits, and only the
    options that method reads: the group size (RTN, GPTQ), the trellis ``L``, ``code`` and ``V``, the calibration
    (corpus, windows, window length, seed; sequential or not) where the method calibrates, the fine-tuning settings
    of trellis-ft, and for a continued fine-tuning (``--ft-from``) the model config it starts from (``parent``)."""
    if method == "float32":
        return {"method": "float32", "bits": 32}
    cfg: dict = {"method": method, "bits": bits}
    if method in ("rtn", "gptq", "gptq-act"):
        cfg["group_size"] = args.group_size
    else:
        cfg.update(L=args.L, code=args.code, V=args.V)
    ft = method == "trellis-ft"
    if method != "rtn" and not (ft and parent):
        cfg["calibration"] = {"corpus": args.calib_corpus, "sequences": args.calib_sequences,
                              "seq_len": args.calib_seq_len, "seed": args.seed, "sequential": args.sequential}
    if ft:
        cfg["finetune"] = {"corpus": args.calib_corpus, "steps": args.ft_steps, "lr": args.ft_lr,
                           "batch_size": args.ft_batch_size, "seq_len": args.ft_seq_len, "schedule": args.ft_schedule,
                           "embedding_lr": args.ft_embedding_lr, "seed": args.seed}
        if parent:
            cfg["from"] = parent
    return cfg


def row_config(model: dict, windows: int) -> dict:
    """A row's full configuration: the model (:func:`model_config`) and the WikiText-2 test windows it is scored on."""
    return {"model": model, "eval": {"corpus": "wikitext2-test", "context": CONTEXT, "windows": windows}}


def row_label(args: argparse.Namespace, method: str, parent: dict | None = None) -> str:
    """The row's name in the printed table and the docs (``trellis L=12 + fine-tune (40 steps)``...)."""
    code_label = ("" if args.code == "1mad" else f" {args.code}") + (f" V={args.V}" if args.V > 1 else "")
    trellis = f"trellis L={args.L}{code_label}"
    label = {"trellis": trellis, "gptq-act": "gptq act-order",
             "trellis-ft": f"{trellis} + fine-tune ({args.ft_steps} steps"
                           + ("" if args.ft_schedule == "constant" else f", {args.ft_schedule}")
                           + (", embedding too" if args.ft_embedding_lr else "") + ")"}.get(method, method)
    if parent:
        label = f"{trellis} + fine-tune ({parent['finetune']['steps']} steps) + {args.ft_steps} more " \
                f"({args.ft_batch_size}×{args.ft_seq_len}, lr {args.ft_lr:g}, {args.ft_schedule})"
    calibrates = method not in ("float32", "rtn")
    label += ", sequential" if args.sequential and calibrates else ""
    label += f", {args.calib_corpus} calibration" if calibrates and args.calib_corpus != "gutenberg" else ""
    return label


def run_methods(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(method, bits) of every quantised row of a run, in order (trellis-ft over ``--ft-bits``, else ``--bits``)."""
    return [(m, b) for m in args.methods for b in (args.ft_bits or args.bits if m == "trellis-ft" else args.bits)]


def read_table(quick: bool) -> dict:
    """The rows (key -> row) of the committed table, or of the quick one; empty where there is none."""
    path = result_path(NAME, quick)
    return json.loads(path.read_text())["rows"] if path.is_file() else {}


def evaluate(model, stream, windows: int) -> dict:
    t = time.perf_counter()
    r = evaluate_lm(model, stream, context=CONTEXT, max_windows=windows, progress=True)
    return {"perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte, "scored_tokens": r.n_tokens,
            "eval_seconds": time.perf_counter() - t}


def plot_finetune(rows: list[dict], png) -> None:
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
    corpus = rows[0]["config"]["model"]["finetune"]["corpus"]
    ax.set_xlabel(f"fine-tuning step ({ft['batch_size']} × {ft['seq_len']} {corpus} tokens)")
    ax.set_ylabel("KL(float ‖ quantised), nats/token")
    ax.set_title("SmolLM2 trellis: sign vectors and norms trained, codes frozen")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 2 windows, the first bits only, 8 calibration windows, <= 5 fine-tuning "
                          "steps", name=None, name_help="deprecated, no effect: every row goes to the one table "
                          "smollm2_ptq.json, keyed by its configuration")
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
    ap.add_argument("--ft-from", metavar="KEY",
                    help="trellis-ft: continue fine-tuning the model of the trellis-ft row KEY of the table (its "
                         "config key, or the former cache tag a recorded command names) instead of quantising afresh")
    ap.add_argument("--sequential", action="store_true",
                    help="gptq/trellis: calibrate block by block on the partly quantised model, towards the float "
                         "outputs (mechlab.quant.sequential), from the same calibration windows")
    ap.add_argument("--fresh", action="store_true", help="recompute cached rows and models")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): always the one table ``smollm2_ptq``; quick unless the options as given (before --quick
    shrinks them) are one of the registered runs (``RUNS``)."""
    registered = any(is_reference_run(ap, args, ignore=IGNORE, reference=run) for run in RUNS)
    return NAME, not registered


def find_row(key: str) -> dict:
    """The row ``key`` (a config key, or a former cache tag of ``FORMER_TAGS``) of the table, else of the quick table;
    ConfigError where neither holds it."""
    key = {tag: k for k, tag in FORMER_TAGS.items()}.get(key, key)
    row = read_table(False).get(key) or read_table(True).get(key)
    if row is None:
        raise ConfigError(f"{key}: no row with that key in {result_path(NAME, False).name} or its quick table")
    return row


def saved_model(key: str) -> Path:
    """The checkpoint directory of the fine-tuned model of row ``key`` (see :func:`find_row`): where this script saves
    it, MECHLAB_CACHE/smollm2_ptq/models/MODEL_KEY (it exists once the row's command has run on this machine)."""
    return cache_dir() / NAME / "models" / config_key(find_row(key)["config"]["model"])


def parent_config(key: str, args: argparse.Namespace, bits: int) -> dict:
    """The model config of the trellis-ft row ``key`` (``--ft-from``), checked against this run's bits and code."""
    try:
        parent = find_row(key)["config"]["model"]
    except ConfigError as e:
        raise ConfigError(f"--ft-from {e}") from None
    if parent["method"] != "trellis-ft" or (parent["bits"], parent["L"], parent["code"], parent["V"]) != (
            bits, args.L, args.code, args.V):
        raise ConfigError(f"--ft-from {key}: not a trellis-ft model with {bits} bits, L={args.L}, code {args.code}, "
                          f"V={args.V}")
    return parent


def make_model(ck, method: str, bits: int, model_cfg: dict, args: argparse.Namespace, fresh: bool):
    """(quantised model, report summary, fine-tuning summary or None, seconds) of one row, through the library:
    :func:`make_config` and :func:`quantize_checkpoint` (a fine-tuned model is saved as a checkpoint under
    MECHLAB_CACHE/smollm2_ptq/models/MODEL_KEY, so that a failed evaluation or a continuation does not redo it)."""
    ft = method == "trellis-ft"
    train = dict(steps=args.ft_steps, lr=args.ft_lr, batch_size=args.ft_batch_size, seq_len=args.ft_seq_len,
                 schedule=args.ft_schedule, embedding_lr=args.ft_embedding_lr, seed=args.seed) if ft else {}
    cfg = make_config(method.removesuffix("-act"), bits, group_size=args.group_size, L=args.L, V=args.V,
                      code=args.code, act_order=method == "gptq-act", **train)
    saved = cache_dir() / NAME / "models" / config_key(model_cfg)
    if ft and saved.is_dir() and not fresh:
        q = load_checkpoint(saved)
        return q.model, q.meta["quant_summary"], q.meta["finetune"], q.meta["quant_seconds"]
    if ft and "from" in model_cfg:
        before = cache_dir() / NAME / "models" / config_key(model_cfg["from"])
        if not before.is_dir():
            raise ConfigError(f"--ft-from {args.ft_from}: its fine-tuned model is not in {before}; run its command "
                              "first")
        q = load_checkpoint(before)
        stream = token_stream(args.calib_corpus, calibration_split(args.calib_corpus), q.tokenizer)
        t = time.perf_counter()
        summary = method_for(cfg).train(q.model, copy.deepcopy(ck.model), cfg, stream, progress=True)
        finetune = {**summary, "continued_from": args.ft_from, "before": q.meta["finetune"]}
        seconds = q.meta["quant_seconds"] + time.perf_counter() - t
        report = q.meta["quant_summary"]
    else:
        t = time.perf_counter()
        q, rep, _ = quantize_checkpoint(ck.path, cfg, data=args.calib_corpus, calib_sequences=args.calib_sequences,
                                        calib_seq_len=args.calib_seq_len, seed=args.seed,
                                        sequential=args.sequential and method != "rtn", progress=True)
        report, finetune = rep.summary(), rep.qat if ft else None
        seconds = time.perf_counter() - t  # loading, calibration, quantisation and fine-tuning
    if ft:
        save_checkpoint(saved, q.model, q.tokenizer, meta={"quant_summary": report, "finetune": finetune,
                                                           "quant_seconds": seconds, "config": model_cfg})
    return q.model, report, finetune, seconds


def calibration_split(corpus: str) -> str:
    """The training split of ``corpus`` (its only split where it has no training split, as wikitext2-valid)."""
    splits = get_corpus(corpus).splits
    return "train" if "train" in splits else splits[0]


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    if args.quick:
        args.windows, args.bits, args.calib_sequences = 2, args.bits[:1], min(args.calib_sequences, 8)
        args.ft_bits, args.ft_steps = (args.ft_bits or args.bits)[:1], min(args.ft_steps, 5)

    rows_dir = cache_dir() / NAME / "rows"
    ck = smollm2_checkpoint()
    stream = token_stream("wikitext2-test", "test", ck.tokenizer)
    command, machine = shlex.join(["python", *sys.argv]), machine_description()

    def row(method: str, bits: int, make) -> tuple[str, dict]:
        parent = parent_config(args.ft_from, args, bits) if method == "trellis-ft" and args.ft_from else None
        config = row_config(model_config(args, method, bits, parent), args.windows)
        key = config_key(config)
        path = rows_dir / f"{key}.json"
        if path.is_file() and not args.fresh:
            figures = json.loads(path.read_text())
        else:
            figures = {"method": row_label(args, method, parent), "bits": bits, **make(config["model"]),
                       "command": command, "machine": machine}
            write_json_atomic(path, figures)
        print(f"{key} {figures['method']}, {bits} bits: perplexity {figures['perplexity']:.2f}", flush=True)
        return key, {**figures, "config": config}

    def float_row(_) -> dict:
        size = size_report(ck.model)
        linear = sum(m.weight.numel() * m.weight.element_size() for m in target_linears(ck.model).values())
        return {**evaluate(ck.model, stream, args.windows), "linear_bytes": linear, "model_bytes": size["total_bytes"]}

    def quantised_row(method: str, bits: int):
        def make(model_cfg: dict) -> dict:
            model, summary, finetune, seconds = make_model(ck, method, bits, model_cfg, args, args.fresh)
            size = size_report(model)
            return {**evaluate(model, stream, args.windows), "quant_seconds": seconds,
                    "layers": summary["layers"], "weights": summary["weights"], "rel_mse": summary["rel_mse"],
                    "proxy_loss": summary["proxy_loss"],
                    "linear_bytes": size["bytes"]["quantized codes"] + size["bytes"]["quantized side info"],
                    "bits_per_weight": size["bits_per_quantized_weight"], "model_bytes": size["total_bytes"],
                    "threads": torch.get_num_threads(), **({"finetune": finetune} if finetune else {})}
        return make

    rows = dict([row("float32", 32, float_row)])
    for method, bits in run_methods(args):
        key, r = row(method, bits, quantised_row(method, bits))
        rows[key] = r

    ref = next(iter(rows.values()))["perplexity"]
    table = [{"key": k, "method": r["method"], "bits": r["bits"], "bits/weight": r.get("bits_per_weight", 32.0),
              "perplexity": r["perplexity"], "× float": r["perplexity"] / ref,
              "linear MB": r["linear_bytes"] / 1e6, "model MB": r["model_bytes"] / 1e6} for k, r in rows.items()]
    print_table(table, f"SmolLM2-135M-Instruct whole-model PTQ, WikiText-2 test, first {args.windows} windows of 2048")
    path = write_result(name, table_figures({**read_table(quick), **rows}), quick=quick)
    print(f"wrote {len(rows)} rows of {path}")
    tuned = [r for r in rows.values() if "finetune" in r]
    if tuned:
        main_run = not quick and is_reference_run(ap, args, ignore=IGNORE, reference=MAIN)
        plot_finetune(tuned, result_path(name + "_finetune", not main_run, ".png"))


def table_figures(rows: dict[str, dict]) -> dict:
    """The table file's figures: the rows (key -> row, each with its ``config``, ``command`` and ``machine``) and
    what they share."""
    return {"benchmark": "SmolLM2-135M-Instruct whole-model PTQ, WikiText-2 raw test perplexity",
            "key": "config_key(row['config']): sha256 of the sorted config JSON, first 12 hex digits",
            "full_test_reference_perplexity": REFERENCE_PPL, "rows": rows}


if __name__ == "__main__":
    main()
