"""Running DELEGATE-52 relays (arXiv 2604.15597) and reporting them: the bundled environments, the settings check,
the agents by backend name, the relay runs with their traces and results, and the RS@k report and plot."""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from importlib import resources
from pathlib import Path

from mechlab.delegate.domains import DOMAINS
from mechlab.delegate.env import load_environment
from mechlab.delegate.relay import REPORTED_K, NoisyAgent, OracleAgent, RelayResult, rs_at, run_relay
from mechlab.errors import ConfigError
from mechlab.utils import save_figure, write_json_atomic


def bundled_environments(domain: str | None = None) -> list[Path]:
    """The environments shipped with mechlab (documents written for the project), optionally of one domain."""
    root = Path(str(resources.files("mechlab.delegate").joinpath("environments")))
    envs = sorted(p for p in root.iterdir() if (p / "environment.json").is_file())
    if domain is not None:
        envs = [p for p in envs if json.loads((p / "environment.json").read_text())["domain"] == domain]
        if not envs:
            raise ConfigError(f"no bundled environment of domain {domain!r} (domains: {', '.join(sorted(DOMAINS))})")
    return envs


def check_settings(backend: str, base_url: str | None = None, timeout: float = 120.0,
                   round_trips: int | None = None) -> None:
    """Raise ConfigError for a setting no relay can use: a noisy rate that is not a finite number in [0, 1], an
    empty model or checkpoint name, a timeout that is not a finite number > 0, a base URL that is not http(s)://,
    fewer than one round trip, or an unknown backend."""
    if not isinstance(backend, str):
        raise ConfigError(f"backend must be a string such as oracle or noisy:0.1 (got {backend!r})")
    kind, _, arg = backend.partition(":")
    if kind == "noisy":
        try:
            rate = float(arg)
        except ValueError:
            raise ConfigError(f"noisy backend needs a rate, e.g. noisy:0.1 (got {backend!r})") from None
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ConfigError(f"noisy backend's rate must be a finite number in [0, 1], e.g. noisy:0.1 (got {backend!r})")
    elif kind in ("openai", "local"):
        if not arg.strip():
            what = "a model name, e.g. openai:gpt-4o-mini" if kind == "openai" else "a checkpoint, e.g. local:runs/smollm2"
            raise ConfigError(f"{kind} backend needs {what} (got {backend!r})")
    elif backend != "oracle":
        raise ConfigError(f"unknown backend {backend!r}; choose oracle, noisy:RATE, openai:MODEL or local:CHECKPOINT")
    try:
        ok = math.isfinite(float(timeout)) and float(timeout) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"timeout must be a finite number of seconds > 0 (got {timeout!r})")
    if base_url is not None and not (isinstance(base_url, str) and base_url.lower().startswith(("http://", "https://"))
                                     and base_url.split("://", 1)[1].strip("/")):
        raise ConfigError(f"base URL must start with http:// or https:// and name a host, e.g. "
                          f"http://localhost:8000/v1 (got {base_url!r})")
    if round_trips is not None and (isinstance(round_trips, bool) or not isinstance(round_trips, int)
                                    or round_trips < 1):
        raise ConfigError(f"round trips must be a whole number >= 1 (got {round_trips!r})")


def make_agent(backend: str, seed: int = 0, base_url: str | None = None, timeout: float = 120.0,
               max_new_tokens: int | None = None, budget_factor: float | None = None):
    """'oracle' or 'noisy:RATE' (the calibration agents, RATE a number in [0, 1]), 'openai:MODEL' (an
    OpenAI-compatible endpoint at ``base_url`` or $OPENAI_BASE_URL, key in $OPENAI_API_KEY) or 'local:CHECKPOINT'
    (a mechlab chat model). ``max_new_tokens``: the longest reply of a model backend (local default 2048; openai:
    the server's default); ``budget_factor``: the local backend's reply budget (relay.reply_budget; the openai
    backend would need the served model's tokenizer). Raises ConfigError for a setting :func:`check_settings` or
    the agents refuse, and for a budget factor given to another backend than local."""
    from mechlab.delegate.backends import LocalModelAgent, OpenAIChatAgent

    check_settings(backend, base_url, timeout)
    if budget_factor is not None and not backend.startswith("local:"):
        raise ConfigError("--budget-factor applies to the local backend (it counts reply tokens with the model's "
                          "own tokenizer); use --max-new-tokens for openai")
    if max_new_tokens is not None and not backend.startswith(("local:", "openai:")):
        raise ConfigError("--max-new-tokens applies to the model backends (local, openai)")
    if backend.startswith("openai:"):
        agent = OpenAIChatAgent(backend.split(":", 1)[1], timeout=float(timeout), max_tokens=max_new_tokens)
        if base_url:
            agent.base_url = base_url
        return agent
    if backend.startswith("local:"):
        return LocalModelAgent(backend.split(":", 1)[1], max_new_tokens=2048 if max_new_tokens is None
                               else max_new_tokens, budget_factor=budget_factor)
    if backend == "oracle":
        return OracleAgent()
    return NoisyAgent(float(backend.split(":", 1)[1]), seed)


def run(envs: list[Path], backend: str, round_trips: int = 10, distractors: bool = True, seed: int = 0,
        out: str | Path = "runs/delegate", base_url: str | None = None, timeout: float = 120.0,
        max_new_tokens: int | None = None, budget_factor: float | None = None) -> list[RelayResult]:
    """Relay every environment with the backend; a trace (JSON lines) and a result file per relay under ``out``.
    Every setting is checked before the first relay (:func:`check_settings`; ConfigError), and so is ``out`` (a
    directory that can be created and written). A relay in which every step was an error (an unreachable endpoint)
    is marked ``failed`` with the reason, not scored."""
    check_settings(backend, base_url, timeout, round_trips)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory: give a directory for the traces and results")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mechlab-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the relay results to {out}: {e.strerror or e}") from e
    from tqdm import tqdm

    model = make_agent(backend, seed, base_url, timeout, max_new_tokens, budget_factor) \
        if backend.startswith(("local:", "openai:")) else None  # a model is loaded once; calibration agents per relay
    results = []
    for path in tqdm(envs, desc="relays", unit="relay", disable=len(envs) < 2):
        env = load_environment(path)
        agent = model or make_agent(backend, seed, base_url, timeout)
        tag = f"{env.name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', agent.name.replace(':', ''))}-s{seed}"
        results.append(run_relay(env, agent, round_trips, distractors, seed, trace=out / f"{tag}.jsonl"))
        write_json_atomic(out / f"{tag}.json", results[-1].to_dict())
    return results


def plot_report(runs: str | Path, png: str | Path) -> Path:
    """RS against interactions k (2 per round trip; only the backward steps are scored), mean over the relays of
    each (domain, agent) in ``runs``, drawn to the file ``png``."""
    from matplotlib.figure import Figure

    curves: dict[tuple[str, str], list[list[float]]] = {}
    for d in load_results(runs, lambda msg: None):  # report() has warned already
        if d["rs"] and not d.get("failed"):
            curves.setdefault((d["domain"], d["agent"]), []).append(d["rs"])
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    for (domain, agent), rs in sorted(curves.items()):
        k = min(len(r) for r in rs)
        ax.plot(range(2, 2 * k + 1, 2), [statistics.mean(r[i] for r in rs) for i in range(k)], "o-", ms=3,
                label=f"{domain} ({agent}, {len(rs)} relays)")
    ax.set_xlabel("interactions k (two per round trip)")
    ax.set_ylabel("reconstruction score RS@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png)


def _is_score(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_results(runs: str | Path, warn=None) -> list[dict]:
    """The relay results (``*.json``) in ``runs``, sorted by file name. A file that is not JSON or not a result's
    shape (``domain`` and ``agent`` strings, ``rs`` a list of numbers, ``errors`` a whole number) is skipped and
    ``warn(message)`` told which and why (default: a line on stderr)."""
    if warn is None:
        def warn(msg):
            print(f"warning: {msg}", file=sys.stderr)
    out = []
    for f in sorted(Path(runs).glob("*.json")):
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warn(f"skipped {f}: not a readable JSON file ({e})")
            continue
        if not isinstance(d, dict) or "rs" not in d:
            warn(f"skipped {f}: not a relay result (no 'rs')")
            continue
        if not (isinstance(d.get("domain"), str) and isinstance(d.get("agent"), str)
                and isinstance(d["rs"], list) and all(_is_score(x) for x in d["rs"])
                and isinstance(d.get("errors", 0), int) and not isinstance(d.get("errors", 0), bool)):
            warn(f"skipped {f}: not a relay result's shape (domain, agent, rs a list of numbers, errors)")
            continue
        out.append(d)
    return out


def report(runs: str | Path, warn=None) -> list[dict]:
    """Per (domain, agent): mean RS@2 / RS@10 / RS@20 over the result files in ``runs``, k counting interactions
    (RS@2 after the first round trip, RS@20 after the tenth). "runs" counts the relays every mean is over: the
    scored ones, and RS@k is their mean only where every one of them reached k interactions (None otherwise, never
    a mean over a subset).
    Relays marked ``failed`` (every step an error) are left out of the means and counted as "failed"; malformed
    result files are skipped with a warning (:func:`load_results`)."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for d in load_results(runs, warn):
        rows.setdefault((d["domain"], d["agent"]), []).append(d)
    table = []
    for (domain, agent), all_ds in sorted(rows.items()):
        ds = [d for d in all_ds if not d.get("failed")]
        row = {"domain": domain, "agent": agent, "runs": len(ds), "failed": len(all_ds) - len(ds)}
        for k in REPORTED_K:
            vals = [rs_at(d["rs"], k) for d in ds]
            row[f"RS@{k}"] = statistics.mean(vals) if vals and None not in vals else None
        row["error steps"] = sum(d.get("errors", 0) for d in ds)
        table.append(row)
    return table
