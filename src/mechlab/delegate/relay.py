"""The round-trip relay (papers/delegate52.md): forward edits drawn in shuffled full cycles over an environment's
tasks, each followed by its backward edit back to the seed state; every call a fresh single-turn prompt with all
current files (and the distractors, shuffled), the files the answer must contain, and the instruction.

A step's answer is parsed into files from fenced blocks labelled with their filenames. A required file missing
from the answer is an error step and the file is gone from the state (deletion is damage the score must see);
distractors are merged back from the environment unchanged. After round trip k the state is scored against the
seed with the domain's structural similarity: RS@k. Every step goes to a JSON-lines trace.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mechlab.delegate.domains import DOMAINS, Domain, Files
from mechlab.delegate.env import EditTask, Environment

FENCE = re.compile(r"^```[ \t]*([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Step:
    """What a calibration agent may look at (a model sees only the prompt)."""

    task: EditTask
    direction: str  # "forward" | "backward"
    files: Files  # the current state (required files)
    required: list[str]
    domain: Domain


@dataclass
class Reply:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # a transport failure (timeout, HTTP error) after retries


class Agent(Protocol):
    name: str

    def respond(self, prompt: str, step: Step) -> Reply: ...


def build_prompt(files: Files, required: list[str], instruction: str) -> str:
    blocks = format_files(files).rstrip("\n")
    return (f"You are editing a set of documents.\n\nCurrent files:\n\n{blocks}\n\nInstruction: {instruction}\n\n"
            f"Answer with the complete new content of each of these files, one fenced code block per file whose "
            f"opening fence is labelled with the filename (```FILENAME): {', '.join(required)}. Change nothing "
            f"the instruction does not ask for.")


def parse_files(text: str, known: set[str] | None = None) -> Files:
    """Files from fenced blocks ``` ```NAME ``` ``` (a label 'lang NAME' also works when NAME is known)."""
    out = {}
    for label, body in FENCE.findall(text or ""):
        label = label.strip()
        name = label
        if known is not None and label not in known:
            parts = [p for p in label.split() if p in known]
            name = parts[-1] if parts else label
        if name:
            out[name] = body
    return out


def format_files(files: Files) -> str:
    return "\n\n".join(f"```{name}\n{text.rstrip()}\n```" for name, text in files.items()) + "\n"


@dataclass
class RelayResult:
    env: str
    domain: str
    agent: str
    rs: list[float]  # RS after round trip 1..k
    errors: int
    steps: int
    seconds: float
    tokens: int = 0
    trace: str | None = None

    def at(self, k: int) -> float | None:
        return self.rs[k - 1] if 0 < k <= len(self.rs) else None

    def to_dict(self) -> dict:
        return {"env": self.env, "domain": self.domain, "agent": self.agent, "rs": self.rs, "errors": self.errors,
                "steps": self.steps, "seconds": self.seconds, "tokens": self.tokens, "trace": self.trace,
                **{f"rs@{k}": self.at(k) for k in (2, 10, 20) if self.at(k) is not None}}


def run_relay(env: Environment, agent: Agent, round_trips: int = 10, distractors: bool = True, seed: int = 0,
              trace: str | Path | None = None) -> RelayResult:
    """Relay ``round_trips`` forward/backward pairs through ``agent``; RS after each round trip."""
    domain = DOMAINS[env.domain]
    rng = random.Random(seed)
    state: Files = dict(env.seed)
    required = sorted(env.seed)
    known = set(env.seed) | set(env.distractors)
    cycle: list[EditTask] = []
    rs, errors, tokens, n = [], 0, 0, 0
    t_start = time.perf_counter()
    out = open(trace, "w", encoding="utf-8") if trace else None
    try:
        for k in range(1, round_trips + 1):
            if not cycle:
                cycle = rng.sample(env.tasks, len(env.tasks))
            task = cycle.pop()
            for direction in ("forward", "backward"):
                context = {**state, **(env.distractors if distractors else {})}
                names = list(context)
                rng.shuffle(names)
                instruction = task.forward if direction == "forward" else task.backward
                prompt = build_prompt({f: context[f] for f in names}, required, instruction)
                t0 = time.perf_counter()
                try:
                    reply = agent.respond(prompt, Step(task, direction, dict(state), required, domain))
                except Exception as e:  # a backend that raises is an error step, never a crashed relay
                    reply = Reply("", error=f"{type(e).__name__}: {e}")
                seconds = time.perf_counter() - t0
                parsed = parse_files(reply.text, known)
                missing = [f for f in required if f not in parsed]
                state = {f: parsed[f] for f in required if f in parsed}
                error = reply.error or (f"missing {', '.join(missing)}" if missing else None)
                errors += error is not None
                n += 1
                used = (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)
                tokens += used
                score = domain.similarity(env.seed, state) if direction == "backward" else None
                if out:
                    out.write(json.dumps({"round_trip": k, "direction": direction, "task": task.name,
                                          "instruction": instruction, "prompt": prompt, "response": reply.text,
                                          "parsed_files": sorted(parsed), "error": error, "rs": score,
                                          "seconds": seconds, "prompt_tokens": reply.prompt_tokens,
                                          "completion_tokens": reply.completion_tokens}) + "\n")
            rs.append(score)
    finally:
        if out:
            out.close()
    return RelayResult(env.name, env.domain, getattr(agent, "name", type(agent).__name__), rs, errors, n,
                       time.perf_counter() - t_start, tokens, str(trace) if trace else None)


# ---- calibration agents --------------------------------------------------------------------------------------

@dataclass
class OracleAgent:
    """Applies every edit exactly by code (the task's ``op``; its inverse for backward steps): must score 1.0."""

    name: str = "oracle"

    def respond(self, prompt: str, step: Step) -> Reply:
        op = step.task.op if step.direction == "forward" else step.domain.invert(step.task.op)
        return Reply(format_files(step.domain.apply(op, step.files)))


@dataclass
class NoisyAgent:
    """The oracle, plus one corruption (the domain's: a dropped field, a dropped row) with probability ``rate``
    per call."""

    rate: float
    seed: int = 0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"noisy:{self.rate:g}"
        self.rng = random.Random(self.seed)

    def respond(self, prompt: str, step: Step) -> Reply:
        op = step.task.op if step.direction == "forward" else step.domain.invert(step.task.op)
        files = step.domain.apply(op, step.files)
        if self.rng.random() < self.rate:
            files = step.domain.corrupt(files, self.rng)
        return Reply(format_files(files))


def predicted_noisy_rs(env: Environment, rate: float, round_trips: int, samples: int = 20, seed: int = 0) -> list[float]:
    """What the noisy agent should score. Each call corrupts with probability ``rate``, so after k round trips
    the number of corruptions c is Binomial(2k, rate); f(c), the similarity to the seed after c successive
    corruptions of it, is estimated over ``samples`` draws; RS@k = Σ_c P(c)·f(c)."""
    from math import comb, sqrt

    domain = DOMAINS[env.domain]
    rng = random.Random(seed)
    n = 2 * round_trips
    c_max = min(n, int(n * rate + 6 * sqrt(n * rate * (1 - rate)) + 2))
    f = [0.0] * (c_max + 1)
    for _ in range(samples):
        files = dict(env.seed)
        f[0] += 1.0
        for c in range(1, c_max + 1):
            files = domain.corrupt(files, rng)
            f[c] += domain.similarity(env.seed, files)
    f = [x / samples for x in f]
    out = []
    for k in range(1, round_trips + 1):
        m = 2 * k
        out.append(sum(comb(m, c) * rate**c * (1 - rate) ** (m - c) * f[min(c, c_max)] for c in range(m + 1)))
    return out
