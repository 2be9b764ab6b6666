r"""PMNet's retrieval claim measured beyond the receptive field of its attention stack (arXiv 2605.13370).

Arms, each trained by the one trainer (``mechlab.train.train`` with the task as its data source, ``retrieval:...``:
:func:`mechlab.data.retrieval.source_task`; normal checkpoints) on single-needle retrieval (``--task needle``: ``KEY k VAL v · G
fillers · QUERY k → v``, 16 values, chance 1/16) or multi-symbol copy-paste (``--task copy``: ``p_1 … p_P DELIM · G
fillers · COPY → p_1 … p_P``, P = --payload, exact match of all P, chance 16^−P) with gaps G ~ U[0, --max-gap] in rows
of --seq-len tokens, except a fraction --far-fraction of the rows (on average) with G ~ U[--far-gap, --max-gap]
(by default the shortest gap beyond the receptive field: most rows then need the memory). The committed needle run
(the defaults): 1,000 steps of 16 × 96 tokens, G ≤ 80, no far mixture, 4 probes of the needle per training row
(``--probes``: up to 3 earlier queries inside the gap, a denser signal; scoring uses one); the committed copy-paste
run: the options of the third command below (COPY_RUN).

* ``pmnet``: PMNet-tiny (preset ``pmnet-tiny``: 4 layers, d 128, window 16, phasor memory N 4, M 64, R 2, a write at
  every layer), 1,065,600 parameters;
* ``twin``: the same model trained with the memory recurrence off (``mem_cumsum=False``: U_t = Δ_t, same parameters);
* ``full``: the same backbone with full causal attention and no memory (662,912 parameters).

Evaluated without training: ``pmnet-off-at-test`` (PMNet's weights with ``mem_cumsum=False``, the authors' LM-eval
ablation) and ``pmnet-anchors-zeroed`` (every hierarchical anchor E_h set to 0, the authors' anchor ablation).

The answer's source lies G + 2 (needle) or G + P + 1 (copy: p_1) positions before the position that predicts it;
the receptive field of the window stack is 4 × (16 − 1) = 60 positions, so needle gaps G ≥ 59 (copy: G ≥ 60 − P)
are beyond it and only the memory (or full attention) can answer.
Exact-match accuracy per gap on --eval-rows fresh rows per seed (the same rows for every arm), mean ± s.d. over
seeds and a 95% bootstrap interval (rows resampled within each seed, mean of the seed means). The gradient norm
(before clipping) is logged at every step; its max and median are reported (the "stable BPTT" claim).

    OMP_NUM_THREADS=1 python experiments/pmnet_retrieval.py [--quick]
    OMP_NUM_THREADS=1 python experiments/pmnet_retrieval.py --seeds 1   # one seed (a process each, in parallel)
    OMP_NUM_THREADS=1 python experiments/pmnet_retrieval.py --task copy --seeds 0 --payload 4 --steps 450 \
        --seq-len 80 --far-fraction 0.75 --eval-rows 64                  # the committed copy-paste run

Each seed's scores are kept in --runs/seed-S-TAG.json (TAG: a hash of the settings) and each trained arm in the run
directory --runs/ARM-sS-TAG (checkpoint, metrics, arm.json), and both are reused by a later run with the same
settings: the seeds may run as separate processes and the full command then only gathers them, a stopped seed
trains only the arms it had not finished, and runs of other settings never replace them. A damaged seed file or
run is said in one line and made again.

The committed runs write experiments/results/pmnet_retrieval.{json,png} (needle, the defaults) and
experiments/results/pmnet_copy.{json,png} (``--task copy`` with the committed copy settings, see COPY_RUN); any other
run writes the .quick files beside them. Verdict rule: mechlab.claims.registry._pmnet_retrieval (claim
pmnet-retrieval; a copy-paste result is read by the same rule, printed and stored in its JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap

from mechlab.checkpoint import load_checkpoint
from mechlab.data.retrieval import RetrievalTask, exact_match, longest_gap
from mechlab.errors import ConfigError, MechlabError
from mechlab.models import build_model, preset
from mechlab.train.trainer import TrainConfig, train
from mechlab.utils import machine_description, save_figure, write_json_atomic

from representation_gap import (  # experiments/, beside this script
    int_at_least,
    parse_quick,
    positive_float,
    record_verdict,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ARMS = {"pmnet": {}, "twin": {"mem_cumsum": False}, "full": {"memory": False, "window": None}}
VARIANTS = ("pmnet", "pmnet-off-at-test", "pmnet-anchors-zeroed", "twin", "full")
QUICK = dict(seeds=[0], steps=20, gaps=[8, 64], eval_rows=16, bootstrap=100)
# the committed copy-paste run: these options write pmnet_copy.json rather than a .quick file (75% of the training rows
# beyond the receptive field, 450 steps of 16 × 80 tokens, one seed: what the CPU budget allowed)
COPY_RUN = ["--task", "copy", "--seeds", "0", "--payload", "4", "--steps", "450", "--seq-len", "80",
            "--far-fraction", "0.75", "--eval-rows", "64"]
RF = preset("pmnet-tiny").receptive_field
MAX_SEQ_LEN = preset("pmnet-tiny").max_seq_len  # every arm's (full attention scores test rows up to this length)


def seed_settings(args) -> tuple[dict, str]:
    """The settings a seed's runs depend on, and their tag (12 hex digits of their SHA-256): each configuration's
    seed file and training runs are named by it, so runs of other settings (a --quick one included) never replace
    them."""
    settings = {k: getattr(args, k) for k in SEED_KEYS}
    return settings, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def source(args) -> str:
    """The data source (``mechlab train --data``) of the training rows: the task of these settings."""
    opts = {"max_gap": args.max_gap, "far_gap": args.far_gap, "far_fraction": args.far_fraction,
            **({"payload": args.payload} if args.task == "copy" else {"probes": args.probes})}
    return f"retrieval:{args.task}," + ",".join(f"{k}={v}" for k, v in opts.items())


ARM_LOG = ("seconds", "grad_norm_max", "grad_norm_median", "grad_norm", "final_loss", "params", "receptive_field")


def train_arm(arm: str, seed: int, args) -> tuple[torch.nn.Module, dict]:
    """Train one arm through the one trainer (preset pmnet-tiny with the arm's switches, the task as a data source,
    normal checkpoints in RUNS/ARM-sS-TAG), or load it from there when a finished run of the same settings is
    there (its ``arm.json`` written after the last step): (model, training log)."""
    out = Path(args.runs) / f"{arm}-s{seed}-{seed_settings(args)[1]}"
    done = out / "arm.json"
    if done.is_file():
        try:
            log = json.loads(done.read_text())
            missing = [k for k in ARM_LOG if k not in log] if isinstance(log, dict) else list(ARM_LOG)
            if missing:
                raise ValueError(f"arm.json lacks {', '.join(missing)}")
            model = load_checkpoint(out).model
            print(f"seed {seed} {arm}: reusing the trained run {out}", flush=True)
            return model, log
        except (json.JSONDecodeError, ValueError, MechlabError) as e:
            print(f"seed {seed} {arm}: {out} is unreadable ({e}); training again", flush=True)
    cfg = TrainConfig(model="pmnet-tiny", model_overrides={**ARMS[arm], "max_seq_len": MAX_SEQ_LEN}, data=source(args),
                      steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                      warmup_steps=min(50, args.steps // 10), weight_decay=0.0, eval_every=args.steps,
                      eval_windows=8, log_every=1, save_every=args.steps, seed=seed, out_dir=str(out))
    t0 = time.perf_counter()
    res = train(cfg, overwrite=True, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    grad = [r["grad_norm"] for r in rows if "grad_norm" in r]
    loss = [r["loss"] for r in rows if "loss" in r]
    log = {"seconds": time.perf_counter() - t0, "grad_norm_max": max(grad), "grad_norm_median": statistics.median(grad),
           "grad_norm": grad, "final_loss": statistics.fmean(loss[-20:]), "params": res.model.num_params(),
           "receptive_field": res.model.config.receptive_field}
    write_json_atomic(done, log)
    return res.model, log


def variants(models: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    """The five evaluated models of one seed: the three trained arms and PMNet's two test-time ablations."""
    pm = models["pmnet"]
    off = build_model(pm.config.replace(mem_cumsum=False))
    off.load_state_dict(pm.state_dict())
    zeroed = build_model(pm.config)
    zeroed.load_state_dict(pm.state_dict())
    with torch.no_grad():
        for w in zeroed.memory.writes:
            w.anchor.zero_()
    return {"pmnet": pm, "pmnet-off-at-test": off, "pmnet-anchors-zeroed": zeroed, "twin": models["twin"],
            "full": models["full"]}


SEED_KEYS = ("task", "payload", "probes", "steps", "batch_size", "seq_len", "max_gap", "far_gap", "far_fraction", "lr",
             "gaps", "eval_rows")


def run_seed(seed: int, args, task: RetrievalTask) -> tuple[dict, dict]:
    """Train the three arms of one seed and score the five variants: (hits[variant][gap] bool arrays,
    training[arm]). Kept in RUNS/seed-S-TAG.json (with the settings it was made with), so that seeds can run as
    separate processes (``--seeds 1``) and a later run with every seed reuses them instead of training again."""
    path = seed_file(seed, args)
    saved = read_seed(path, seed_settings(args)[0])
    if saved is not None:
        print(f"seed {seed}: reusing {path}", flush=True)
        return saved
    models, training = {}, {}
    for arm in ARMS:
        models[arm], training[arm] = train_arm(arm, seed, args)
        tr = training[arm]
        print(f"seed {seed} {arm:5s}: final loss {tr['final_loss']:.3f}, grad norm max {tr['grad_norm_max']:.2f} "
              f"median {tr['grad_norm_median']:.2f}, {tr['seconds']:.0f} s", flush=True)
    hits = {}
    for v, m in variants(models).items():
        hits[v] = {g: exact_match(m, task, g, args.eval_rows, seed=seed) for g in args.gaps}
        print(f"seed {seed} {v:21s}: " + " ".join(f"G{g} {hits[v][g].mean():.2f}" for g in args.gaps), flush=True)
    write_json_atomic(path, {"settings": seed_settings(args)[0], "training": training,
                             "hits": {v: {str(g): h.tolist() for g, h in hv.items()} for v, hv in hits.items()}})
    return hits, training


def seed_file(seed: int, args) -> Path:
    """RUNS/seed-S-TAG.json: where a seed's results of these settings are kept."""
    return Path(args.runs) / f"seed-{seed}-{seed_settings(args)[1]}.json"


def read_seed(path: Path, settings: dict) -> tuple[dict, dict] | None:
    """A seed file's (hits, training) when it holds these settings and every variant and gap, else None (a damaged
    file is said in one line and run again)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved["settings"] != settings:
            return None
        hits = {v: {g: np.array(saved["hits"][v][str(g)], dtype=bool) for g in settings["gaps"]} for v in VARIANTS}
        return hits, {arm: saved["training"][arm] for arm in ARMS}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        print(f"{path} is damaged ({type(e).__name__}: {e}); running the seed again", flush=True)
        return None


def summarise(hits: dict, args) -> dict:
    """Per variant and gap: mean and s.d. over seeds of the exact-match accuracy, per-seed values and a 95%
    bootstrap interval (rows resampled within each seed; statistic: the mean of the seed means)."""
    out = {}
    for v in VARIANTS:
        out[v] = {}
        for g in args.gaps:
            samples = [hits[v][g][s].astype(float) for s in args.seeds]
            per_seed = [float(x.mean()) for x in samples]
            mean = statistics.fmean(per_seed)
            if all(x.min() == x.max() for x in samples) and len(set(per_seed)) == 1:
                ci = [mean, mean]  # every row of every seed alike: no resampling spread
            else:
                stat = lambda *xs, axis=-1: np.mean([x.mean(axis=axis) for x in xs], axis=0)  # noqa: E731
                b = bootstrap(tuple(samples), stat, n_resamples=args.bootstrap, confidence_level=0.95,
                              method="percentile", vectorized=True, rng=np.random.default_rng(g))
                ci = [float(b.confidence_interval.low), float(b.confidence_interval.high)]
            out[v][str(g)] = {"mean": mean, "std": statistics.pstdev(per_seed) if len(per_seed) > 1 else 0.0,
                              "per_seed": per_seed, "ci": ci}
    return out


def plot(result: dict, png: Path) -> None:
    from matplotlib.figure import Figure

    s = result["settings"]
    gaps = np.array(s["gaps"], dtype=float)
    fig = Figure(figsize=(12, 4.2), dpi=110)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    for i, v in enumerate(VARIANTS):
        cells = [result["accuracy"][v][str(int(g))] for g in gaps]
        m = np.array([c["mean"] for c in cells])
        lo, hi = np.array([c["ci"][0] for c in cells]), np.array([c["ci"][1] for c in cells])
        ax.semilogx(gaps, m, "o-", color=f"C{i}", label=v)
        ax.fill_between(gaps, lo, hi, color=f"C{i}", alpha=0.15)
    ax.axhline(result["chance"], color="k", ls=":", lw=0.8, label=f"chance ({result['chance']:.3g})")
    ax.axvline(result["beyond_receptive_field_from"], color="k", lw=0.8, ls="--",
               label=f"beyond the receptive field (4×15 = {result['receptive_field']}) from G = "
                     f"{result['beyond_receptive_field_from']}")
    ax.axvline(s["max_gap"], color="grey", lw=0.8, ls="-.", label=f"longest training gap {s['max_gap']}")
    ax.set_xlabel("gap G (filler symbols between the needle and the query, or the payload and COPY)")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    for _i, arm in enumerate(ARMS):
        for j, seed in enumerate(s["seeds"]):
            g = result["training"][arm][str(seed)]["grad_norm"]
            ax2.semilogy(np.arange(1, len(g) + 1), g, color=f"C{VARIANTS.index(arm)}", lw=0.6, alpha=0.7,
                         label=arm if j == 0 else None)
    ax2.set_xlabel("optimiser step")
    ax2.set_ylabel("gradient norm (before clipping)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    what = "needle retrieval" if result["task"] == "needle" else f"copy-paste of {s['payload']} symbols"
    training = [f"{s['far_fraction']:.0%} of rows G ≥ {s['far_gap']}"] if s["far_fraction"] else []
    training += [f"{s['probes']} probes a row"] if s.get("probes", 1) > 1 else []
    fig.suptitle(f"{what} beyond the receptive field: PMNet-tiny, {s['steps']} steps of {s['batch_size']}×"
                 f"{s['seq_len']}, G ≤ {s['max_gap']} in training{' (' + ', '.join(training) + ')' if training else ''}, "
                 f"{len(s['seeds'])} seed(s)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, png)


def fraction(text: str) -> float:
    """An argparse ``type``: a number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number in [0, 1]")
    return v


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in its help (options whose default depends on
    others say it in their own words)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    ap.add_argument("--task", choices=("needle", "copy"), default="needle",
                    help="single-needle retrieval, or multi-symbol copy-paste")
    ap.add_argument("--payload", type=int_at_least(1), default=8, help="symbols to copy (--task copy)")
    ap.add_argument("--probes", type=int_at_least(1), default=None,
                    help="queries of the needle per training row (--task needle; a denser signal: the extra ones "
                         "inside the gap, see mechlab.data.retrieval; default 4, and 1 for --task copy); scoring "
                         "always uses one")
    ap.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0, 1, 2],
                    help="training and test seeds (one process may run one seed: --seeds S; see above)")
    ap.add_argument("--steps", type=int_at_least(1), default=1000, help="optimiser steps per arm")
    ap.add_argument("--batch-size", type=int_at_least(1), default=16, help="training rows per step")
    ap.add_argument("--seq-len", type=int_at_least(8), default=96, help="tokens per training row")
    ap.add_argument("--max-gap", type=int_at_least(0), default=None,
                    help="longest training gap (default: 80, or the longest a row of --seq-len holds if shorter)")
    ap.add_argument("--far-gap", type=int_at_least(0), default=None,
                    help="shortest gap of the far rows (default: the shortest gap beyond the receptive field)")
    ap.add_argument("--far-fraction", type=fraction, default=0.0, help="fraction of training rows with far gaps")
    ap.add_argument("--lr", type=positive_float, default=3e-3, help="AdamW peak learning rate (cosine, no decay)")
    ap.add_argument("--gaps", type=int_at_least(0), nargs="+", default=[8, 32, 64, 128, 256, 512, 1024],
                    help="test gaps G")
    ap.add_argument("--eval-rows", type=int_at_least(1), default=128, help="test rows per gap and seed")
    ap.add_argument("--bootstrap", type=int_at_least(10), default=2000, help="bootstrap resamples per interval")
    ap.add_argument("--runs", default="runs/pmnet_retrieval",
                    help="directory for the arms' training runs (ARM-sS-TAG, checkpoints reused by a later run of the "
                         "same settings) and each seed's results (seed-S-TAG.json, reused likewise)")
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--partial", action="store_true",
                    help="gather the committed configuration with only some of its seeds (those finished): written "
                         "to the committed file, marked partial, with the seeds planned; refused where the committed "
                         "file holds every seed")
    return ap


def resolve(ap: argparse.ArgumentParser, args: argparse.Namespace) -> RetrievalTask:
    """Fill the defaults that depend on other options (--probes, --max-gap, --far-gap), put --seeds and --gaps in
    order, and check what argparse cannot (exit 2 naming the option): the task these settings train on."""
    for name in ("seeds", "gaps"):
        if len(set(getattr(args, name))) != len(getattr(args, name)):
            ap.error(f"--{name} must be distinct, got {getattr(args, name)}")
        setattr(args, name, sorted(getattr(args, name)))
    defaults = build_parser()
    if args.task == "needle" and args.payload != defaults.get_default("payload"):
        ap.error("--payload applies to --task copy")
    if args.far_gap is not None and args.far_fraction == 0:
        ap.error("--far-gap applies only with --far-fraction above 0 (no far rows are drawn otherwise)")
    probes_given = args.probes is not None
    if args.probes is None:
        args.probes = 4 if args.task == "needle" else 1
    if args.max_gap is None:
        longest = longest_gap(args.task, args.seq_len, args.payload)
        if longest < 0:
            ap.error(f"--seq-len {args.seq_len} cannot hold a {args.task} row"
                     + (f" with --payload {args.payload}" if args.task == "copy" else "") + ": raise --seq-len")
        args.max_gap = min(80, longest)
    if args.far_gap is None:  # the shortest gap whose answer lies beyond the receptive field
        shape = RetrievalTask(args.task, payload=args.payload, seq_len=10_000, max_gap=0)  # kind and payload only
        args.far_gap = min(shape.first_gap_beyond(RF), args.max_gap)
    if not args.runs or Path(args.runs).exists() and not Path(args.runs).is_dir():
        ap.error(f"--runs must name a directory, got {args.runs!r}")
    options = dict(seq_len=args.seq_len, max_gap=args.max_gap, payload=args.payload, far_gap=args.far_gap,
                   far_fraction=args.far_fraction)
    try:
        RetrievalTask(args.task, **options)
    except ConfigError as e:  # a combination of options the task cannot use: one line naming them
        ap.error(f"--seq-len / --max-gap / --far-gap / --payload: {e}")
    try:
        task = RetrievalTask(args.task, probes=args.probes, **options)
    except ConfigError as e:
        ap.error(f"--probes {args.probes}{'' if probes_given else ' (the default)'}: {e}")
    start = task.first_gap_beyond(RF)
    if not args.gaps[0] < start <= args.gaps[-1]:
        ap.error(f"--gaps must hold gaps both inside (G < {start}) and beyond the receptive field (G >= {start}): the "
                 f"verdict compares them, got {args.gaps}")
    longest = task.test_length(args.gaps[-1])
    if longest > MAX_SEQ_LEN:
        ap.error(f"--gaps: gap {args.gaps[-1]} makes test rows of {longest} tokens, beyond the {MAX_SEQ_LEN} the "
                 f"full-attention arm takes")
    return task


def is_committed(args: argparse.Namespace, committed_argv: list[str], ignore: tuple[str, ...]) -> bool:
    """Whether ``args`` (resolved) are the settings of the committed run ``committed_argv`` (resolved the same way),
    every option but those in ``ignore`` compared: defaults typed out, or seeds and gaps in another order, count."""
    ap = build_parser()
    ref = ap.parse_args(committed_argv)
    resolve(ap, ref)
    return all(v == getattr(ref, k) for k, v in vars(args).items() if k not in ignore)


def main(argv: list[str] | None = None) -> dict:
    # --partial: the committed configuration gathered with only the seeds that finished (seeds then not compared)
    ap, args, _ = parse_quick(build_parser, QUICK, argv)
    planned = build_parser().get_default("seeds")
    if args.partial and (args.quick or not set(args.seeds) < set(planned)):
        ap.error(f"--partial gathers a strict subset of the planned seeds {planned}, without --quick")
    task = resolve(ap, args)
    ignore = ("runs", "partial", "quick", "seeds") if args.partial else ("runs", "partial", "quick")
    quick = args.quick or not any(is_committed(args, run, ignore) for run in ([], COPY_RUN))
    stem = RESULTS / ("pmnet_retrieval" if args.task == "needle" else "pmnet_copy")
    if args.partial and quick:
        ap.error("--partial gathers the committed configuration only (the default options, or the copy-paste run's)")
    if args.partial and stem.with_suffix(".json").is_file():
        if not json.loads(stem.with_suffix(".json").read_text()).get("partial", False):
            ap.error(f"--partial: {stem.with_suffix('.json')} holds every planned seed, and a partial gather would "
                     f"replace it")
    if args.partial:
        missing = [s for s in args.seeds if read_seed(seed_file(s, args), seed_settings(args)[0]) is None]
        if missing:
            ap.error(f"--partial gathers finished seeds only; no results for seed(s) {missing} in {args.runs} (run "
                     f"each with --seeds S first)")
    t0 = time.perf_counter()
    hits = {v: {g: {} for g in args.gaps} for v in VARIANTS}
    training: dict = {arm: {} for arm in ARMS}
    for seed in args.seeds:
        seed_hits, seed_training = run_seed(seed, args, task)
        for v in VARIANTS:
            for g in args.gaps:
                hits[v][g][seed] = seed_hits[v][g]
        for arm in ARMS:
            training[arm][str(seed)] = seed_training[arm]
    rf = RF
    result = {"experiment": "pmnet_retrieval",
              "command": " ".join(["python", *(sys.argv if argv is None else ["experiments/pmnet_retrieval.py", *argv])]),
              "machine": machine_description(), "quick": quick, "seconds": time.perf_counter() - t0,
              "prediction": "memory off (trained twin, or switched off at test) is at chance beyond the receptive "
                            "field; PMNet stays near its in-window accuracy far beyond it (arXiv 2605.13370, abstract)",
              "settings": {k: v for k, v in vars(args).items() if k not in ("quick", "partial")},
              "partial": bool(args.partial), "seeds_planned": planned,
              "recipe": "AdamW, cosine schedule to 0.1 × lr after min(50, steps // 10) warmup steps, gradient clip 1.0, "
                        "no weight decay (mechlab.train.TrainConfig defaults otherwise)",
              "task": args.task, "chance": task.chance, "receptive_field": rf,
              "beyond_receptive_field_from": task.first_gap_beyond(rf),
              "params": {arm: training[arm][str(args.seeds[0])]["params"] for arm in ARMS},
              "training_seconds": sum(t["seconds"] for arm in training.values() for t in arm.values()),
              "accuracy": summarise(hits, args), "training": training}
    return record_verdict(result, "pmnet-retrieval", stem, quick, plot)  # the same rule reads a copy-paste result


if __name__ == "__main__":
    main()
