"""DELEGATE-52's round-trip relay (arXiv 2604.15597): environments, domains with parser-based similarity, the
relay runner, reading files from replies as models write them, calibration agents, and reports. RS@k counts
model interactions, as the paper does: RS@20 is the score after 10 round trips."""

from __future__ import annotations

import json
import statistics
from importlib import resources
from pathlib import Path

from mechlab.delegate.domains import DOMAINS, Domain
from mechlab.delegate.env import EditTask, Environment, load_environment
from mechlab.delegate.relay import (
    REPLY_SHAPES,
    REPORTED_K,
    NoisyAgent,
    OracleAgent,
    RelayResult,
    Reply,
    Step,
    build_prompt,
    parse_files,
    predicted_noisy_rs,
    rs_at,
    run_relay,
    shaped_reply,
)
from mechlab.delegate.replies import ParsedReply, format_files, parse_reply
from mechlab.errors import ConfigError
from mechlab.utils import write_json_atomic


def bundled_environments(domain: str | None = None) -> list[Path]:
    """The environments shipped with mechlab (documents written for the project), optionally of one domain."""
    root = Path(str(resources.files("mechlab.delegate").joinpath("environments")))
    envs = sorted(p for p in root.iterdir() if (p / "environment.json").is_file())
    if domain is not None:
        envs = [p for p in envs if json.loads((p / "environment.json").read_text())["domain"] == domain]
        if not envs:
            raise ConfigError(f"no bundled environment of domain {domain!r} (domains: {', '.join(sorted(DOMAINS))})")
    return envs


def make_agent(backend: str, seed: int = 0, base_url: str | None = None, timeout: float = 120.0):
    """'oracle' or 'noisy:RATE' (the calibration agents), 'openai:MODEL' (an OpenAI-compatible endpoint at
    ``base_url`` or $OPENAI_BASE_URL, key in $OPENAI_API_KEY) or 'local:CHECKPOINT' (a mechlab chat model)."""
    from mechlab.delegate.backends import LocalModelAgent, OpenAIChatAgent

    if backend.startswith("openai:"):
        agent = OpenAIChatAgent(backend.split(":", 1)[1], timeout=timeout)
        if base_url:
            agent.base_url = base_url
        return agent
    if backend.startswith("local:"):
        return LocalModelAgent(backend.split(":", 1)[1])
    if backend == "oracle":
        return OracleAgent()
    if backend.startswith("noisy:"):
        try:
            rate = float(backend.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"noisy backend needs a rate, e.g. noisy:0.1 (got {backend!r})") from None
        return NoisyAgent(rate, seed)
    raise ConfigError(f"unknown backend {backend!r}; choose oracle, noisy:RATE, openai:MODEL or local:CHECKPOINT")


def run(envs: list[Path], backend: str, round_trips: int = 10, distractors: bool = True, seed: int = 0,
        out: str | Path = "runs/delegate", base_url: str | None = None, timeout: float = 120.0) -> list[RelayResult]:
    """Relay every environment with the backend; a trace (JSON lines) and a result file per relay under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in envs:
        env = load_environment(path)
        agent = make_agent(backend, seed, base_url, timeout)
        tag = f"{env.name}-{agent.name.replace(':', '').replace('/', '_')}-s{seed}"
        results.append(run_relay(env, agent, round_trips, distractors, seed, trace=out / f"{tag}.jsonl"))
        write_json_atomic(out / f"{tag}.json", results[-1].to_dict())
    return results


def plot_report(runs: str | Path, png: str | Path) -> Path:
    """RS against interactions k (2 per round trip; only the backward steps are scored), mean over the relays of
    each (domain, agent) in ``runs``, drawn to the file ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[str, str], list[list[float]]] = {}
    for f in sorted(Path(runs).glob("*.json")):
        d = json.loads(f.read_text())
        if "rs" in d:
            curves.setdefault((d["domain"], d["agent"]), []).append(d["rs"])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for (domain, agent), rs in sorted(curves.items()):
        k = min(len(r) for r in rs)
        ax.plot(range(2, 2 * k + 1, 2), [statistics.mean(r[i] for r in rs) for i in range(k)], "o-", ms=3,
                label=f"{domain} ({agent}, {len(rs)} relays)")
    ax.set_xlabel("interactions k (two per round trip)")
    ax.set_ylabel("reconstruction score RS@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def report(runs: str | Path) -> list[dict]:
    """Per (domain, agent): mean RS@2 / RS@10 / RS@20 over the result files in ``runs``, k counting interactions
    (RS@2 after the first round trip, RS@20 after the tenth; None where no relay was that long)."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for f in sorted(Path(runs).glob("*.json")):
        d = json.loads(f.read_text())
        if "rs" in d:
            rows.setdefault((d["domain"], d["agent"]), []).append(d)
    table = []
    for (domain, agent), ds in sorted(rows.items()):
        row = {"domain": domain, "agent": agent, "runs": len(ds)}
        for k in REPORTED_K:
            vals = [v for v in (rs_at(d["rs"], k) for d in ds) if v is not None]
            row[f"RS@{k}"] = statistics.mean(vals) if vals else None
        row["error steps"] = sum(d["errors"] for d in ds)
        table.append(row)
    return table


__all__ = ["DOMAINS", "REPLY_SHAPES", "REPORTED_K", "Domain", "EditTask", "Environment", "NoisyAgent",
           "OracleAgent", "ParsedReply", "RelayResult", "Reply", "Step", "build_prompt", "bundled_environments",
           "format_files",
           "load_environment", "make_agent", "parse_files", "parse_reply", "plot_report", "predicted_noisy_rs",
           "report", "rs_at", "run", "run_relay", "shaped_reply"]
