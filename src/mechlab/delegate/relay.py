"""The round-trip relay of DELEGATE-52 (arXiv 2604.15597): forward edits drawn in shuffled full cycles over an
environment's tasks, each followed by its backward edit back to the seed state; every call a fresh single-turn
prompt with all current files (and the distractors, shuffled), the files the answer must contain, and the
instruction.

A step's answer is read into files by :func:`mechlab.delegate.replies.parse_reply` (fenced blocks labelled with
their filenames, in the shapes real models write them). As in the official release, each step's required files
are those of its target state (a task's ``forward_files``, wildcards allowed, or the seed's), and the whole
parsed reply, new files included, becomes the next state, so an edit may split, merge, rename or convert files.
A required file missing from the answer is an error step and the file is gone from the state (deletion is damage
the score must see); distractors are merged back from the environment unchanged. Only backward steps (those
returning to the seed state) are scored: the state is compared with the seed by the domain's structural
similarity. RS@k counts interactions, as the paper does: RS@k is the score after k model calls, i.e. after k/2
round trips (RS@2 after the first round trip, RS@20 after the tenth). Every step goes to a JSON-lines trace; in a
Python environment with a test suite whose tasks name their forward state (``state_id``), a forward step's trace
line also holds the suite's pass rate on that state (``forward_tests``: recorded, not part of RS), as the official
release tests forward states too.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mechlab.delegate.domains import DOMAINS, Domain, Files
from mechlab.delegate.env import EditTask, Environment
from mechlab.delegate.replies import fence_for, format_files, normalise, parse_reply


@dataclass
class Step:
    """What a calibration agent may look at (a model sees only the prompt)."""

    task: EditTask
    direction: str  # "forward" | "backward"
    files: Files  # the current state (every file carried forward, distractors excluded)
    required: list[str]  # the target state's files (patterns)
    domain: Domain
    target: Files | None = None  # the target state's documents where known (the seed for backward steps)


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
    """The single-turn prompt of one relay step: the current files (each in a fence longer than any backtick run
    inside it), the instruction, and the files the answer must contain."""
    blocks = format_files(files).rstrip("\n")
    return (f"You are editing a set of documents.\n\nCurrent files:\n\n{blocks}\n\nInstruction: {instruction}\n\n"
            f"Answer with the complete new content of each of these files, one fenced code block per file whose "
            f"opening fence is labelled with the filename (```FILENAME, or a longer fence when the file holds "
            f"backticks): {', '.join(required)}. Change nothing the instruction does not ask for.")


def check_budget_factor(factor: float | None) -> None:
    """Raise ValueError unless ``factor`` is None or a finite number >= 1 (a smaller budget cuts complete answers)."""
    if factor is None:
        return
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise ValueError(f"a reply budget factor must be a finite number >= 1 (a smaller budget cuts complete "
                         f"answers); got {factor!r}")


def reply_budget(step: Step | None, count_tokens: Callable[[str], int], factor: float | None, cap: int) -> int:
    """The longest reply (tokens) worth generating at ``step``: ``factor`` × the tokens of the step's target files
    written as a reply writes them (fenced, labelled) + 256, never above ``cap``; where the target is not written
    out (a bundled environment's forward state, made by the edit itself), the current files stand in for it (an
    edit changes a document's size by far less than the factor). A reply that long already holds the answer twice
    over, so cutting it there changes no score a complete answer could earn, and a small model that loops (it
    repeats a line until the context is full) costs minutes less per step. ``cap`` alone when ``factor`` is None or
    the step is not known. Raises ValueError for a factor that is not a finite number >= 1."""
    if factor is None or step is None:
        return cap
    check_budget_factor(factor)
    return min(cap, math.ceil(factor * count_tokens(format_files(step.target or step.files))) + 256)


def missing_files(required: list[str], files: Files) -> list[str]:
    """The required names (shell wildcards allowed, as in the official release's state contexts) that no file
    of ``files`` matches."""
    from fnmatch import fnmatchcase

    return [p for p in required if p not in files and not any(fnmatchcase(f, p) for f in files)]


def apply_op(domain: Domain, op: dict, files: Files) -> Files:
    """The oracle's edit: ``rename_file`` ({"old", "new"}) in any domain, anything else by the domain's
    ``apply``. Raises KeyError when the file to rename is missing."""
    if op.get("kind") == "rename_file":
        out = {k: v for k, v in files.items() if k != op["old"]}
        out[op["new"]] = files[op["old"]]
        return out
    return domain.apply(op, files)


def invert_op(domain: Domain, op: dict) -> dict:
    """The inverse of :func:`apply_op`'s edit."""
    if op.get("kind") == "rename_file":
        return {**op, "old": op["new"], "new": op["old"]}
    return domain.invert(op)


def parse_files(text: str, known: set[str] | None = None) -> Files:
    """The files of a reply (:func:`mechlab.delegate.replies.parse_reply` without required files or a domain)."""
    return parse_reply(text, known=known).files


REPORTED_K = (2, 10, 20)  # RS@k reported, k = model interactions (the paper's RS@2, RS@10, RS@20)


def rs_at(rs: list[float], k: int) -> float | None:
    """RS@k from the scores after round trips 1, 2, …: k counts model interactions (two per round trip) and only
    backward steps are scored, so RS@k is the score after round trip k/2; None when the relay was shorter.
    Raises ValueError for an odd or non-positive k (no scored state)."""
    if k <= 0 or k % 2:
        raise ValueError(f"RS@k needs an even k >= 2 (k counts interactions, two per round trip); got {k}")
    return rs[k // 2 - 1] if k // 2 <= len(rs) else None


@dataclass
class RelayResult:
    """A relay's outcome: ``rs[i]`` is the score after round trip i + 1 (interaction 2(i + 1))."""

    env: str
    domain: str
    agent: str
    rs: list[float]  # RS after round trip 1..n, i.e. RS@2, RS@4, ..., RS@2n
    errors: int
    steps: int
    seconds: float
    tokens: int = 0
    trace: str | None = None
    failed: str | None = None  # why no step reached the model (every step a transport error): not a score

    def at(self, k: int) -> float | None:
        """RS@k, k = interactions (see :func:`rs_at`)."""
        return rs_at(self.rs, k)

    def to_dict(self) -> dict:
        return {"env": self.env, "domain": self.domain, "agent": self.agent, "rs": self.rs, "errors": self.errors,
                "steps": self.steps, "seconds": self.seconds, "tokens": self.tokens, "trace": self.trace,
                **({"failed": True, "failure": self.failed} if self.failed else {}),
                "interactions": [2 * (i + 1) for i in range(len(self.rs))],
                **{f"rs@{k}": self.at(k) for k in REPORTED_K if self.at(k) is not None}}


def run_relay(env: Environment, agent: Agent, round_trips: int = 10, distractors: bool = True, seed: int = 0,
              trace: str | Path | None = None) -> RelayResult:
    """Relay ``round_trips`` forward/backward pairs (2 × ``round_trips`` interactions) through ``agent``; RS after
    each round trip. The trace gets one line per interaction, with the reply's parse notes. A relay in which every
    step was a transport error (the backend never answered: connection refused, timeouts, HTTP errors) is marked
    ``failed`` with the last error, and its scores are not a measurement. Raises ValueError for fewer than one
    round trip."""
    relay = _relay(env, getattr(agent, "name", type(agent).__name__), round_trips, distractors, seed, trace)
    request = next(relay)
    while True:
        t0 = time.perf_counter()
        reply = _ask(agent.respond, *request)
        try:
            request = relay.send((reply, time.perf_counter() - t0))
        except StopIteration as done:
            return done.value


def run_relays(jobs: list[tuple[Environment, str | Path | None]], agent, round_trips: int = 10,
               distractors: bool = True, seed: int = 0, progress: bool = False) -> list[RelayResult]:
    """Several relays (environment, trace path) in lockstep: at each interaction every unfinished relay's prompt
    goes to ``agent.respond_batch(requests)`` (a list of (prompt, Step) -> a list of Reply; e.g. one batched
    generation of a local model), or one by one to ``agent.respond`` for an agent without it. Each relay is the
    same as :func:`run_relay`'s (the same prompts, scores and trace lines); a batched call's seconds are shared
    evenly among its steps. ``progress``: a bar over the interactions. Raises ValueError for fewer than one round
    trip, two relays given one trace file, or a ``respond_batch`` that does not answer every request."""
    from tqdm import tqdm

    traces = [str(trace) for _, trace in jobs if trace]
    if len(set(traces)) < len(traces):
        raise ValueError("two relays would write the same trace file; give each relay its own")
    name = getattr(agent, "name", type(agent).__name__)
    relays = [_relay(env, name, round_trips, distractors, seed, trace) for env, trace in jobs]
    pending = {i: next(r) for i, r in enumerate(relays)}
    results: list[RelayResult | None] = [None] * len(relays)
    batch = getattr(agent, "respond_batch", None)
    bar = tqdm(total=2 * round_trips, desc=f"{len(jobs)} relays in lockstep", unit="interaction", disable=not progress)
    while pending:
        bar.update()
        ids = list(pending)
        t0 = time.perf_counter()
        if batch is None:
            replies = [_ask(agent.respond, *pending[i]) for i in ids]
        else:
            try:
                replies = batch([pending[i] for i in ids])
            except Exception as e:  # a backend that raises makes error steps, never crashed relays
                replies = [Reply("", error=f"{type(e).__name__}: {e}") for _ in ids]
        if len(replies) != len(ids):
            raise ValueError(f"{type(agent).__name__}.respond_batch answered {len(replies)} of {len(ids)} requests")
        share = (time.perf_counter() - t0) / len(ids)
        for i, reply in zip(ids, replies):
            try:
                pending[i] = relays[i].send((reply, share))
            except StopIteration as done:
                results[i] = done.value
                del pending[i]
    bar.close()
    return results


def _ask(respond, prompt: str, step: Step) -> Reply:
    try:
        return respond(prompt, step)
    except Exception as e:  # a backend that raises is an error step, never a crashed relay
        return Reply("", error=f"{type(e).__name__}: {e}")


def _relay(env: Environment, agent_name: str, round_trips: int, distractors: bool, seed: int,
           trace: str | Path | None):
    """One relay as a generator: yields each step's (prompt, Step), receives (Reply, seconds the model took),
    returns the :class:`RelayResult` (its ``seconds``: the model's time summed over the steps)."""
    if isinstance(round_trips, bool) or not isinstance(round_trips, int) or round_trips < 1:
        raise ValueError(f"round_trips must be a whole number >= 1 (got {round_trips!r})")
    domain = DOMAINS[env.domain]
    rng = random.Random(seed)
    state: Files = dict(env.seed)
    seed_files = sorted(env.seed)
    known = set(env.seed) | set(env.distractors)
    cycle: list[EditTask] = []
    rs, errors, tokens, n, transport, last_error, total = [], 0, 0, 0, 0, None, 0.0
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
                required = list(task.forward_files or seed_files) if direction == "forward" else seed_files
                target = task.forward_state if direction == "forward" else dict(env.seed)
                prompt = build_prompt({f: context[f] for f in names}, required, instruction)
                reply, seconds = yield prompt, Step(task, direction, dict(state), required, domain, target)
                total += seconds
                reading = parse_reply(reply.text, required, known | set(state),
                                      lambda name, text: domain.check(name, text) is None)
                parsed = reading.files
                missing = missing_files(required, parsed)
                # the whole reply, new files included, is the next state; distractors come back from the environment
                state = {f: t for f, t in parsed.items() if f not in env.distractors}
                error = reply.error or (f"missing {', '.join(missing)}" if missing else None)
                errors += error is not None
                transport += reply.error is not None
                last_error = reply.error or last_error
                n += 1
                used = (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)
                tokens += used
                score = env.similarity(state) if direction == "backward" else None
                forward_tests = env.forward_tests(task, state) if direction == "forward" else None
                if out:
                    out.write(json.dumps({"round_trip": k, "interaction": n, "direction": direction, "task": task.name,
                                          "instruction": instruction, "prompt": prompt, "response": reply.text,
                                          "parsed_files": sorted(parsed), "parse_notes": reading.notes,
                                          "error": error, "rs": score,
                                          **({"forward_tests": forward_tests} if forward_tests is not None else {}),
                                          "seconds": seconds, "prompt_tokens": reply.prompt_tokens,
                                          "completion_tokens": reply.completion_tokens}) + "\n")
                    out.flush()
            rs.append(score)
    finally:
        if out:
            out.close()
    failed = f"every step failed: {last_error}" if n and transport == n else None
    return RelayResult(env.name, env.domain, agent_name, rs, errors, n, total, tokens, str(trace) if trace else None,
                       failed)


# ---- calibration agents --------------------------------------------------------------------------------------

@dataclass
class OracleAgent:
    """Applies every edit exactly by code (the task's ``op``; its inverse for backward steps), or, for a task
    without ``op``, answers with the target state's documents (the forward state's where the environment has
    them, the seed for backward steps): must score 1.0. Raises ValueError for a task it cannot answer."""

    name: str = "oracle"

    def respond(self, prompt: str, step: Step) -> Reply:
        return Reply(format_files(oracle_files(step)))


def oracle_files(step: Step) -> Files:
    """The exact answer to a step (see :class:`OracleAgent`)."""
    if step.task.op:
        op = step.task.op if step.direction == "forward" else invert_op(step.domain, step.task.op)
        return apply_op(step.domain, op, step.files)
    if step.target is None:
        raise ValueError(f"task {step.task.name!r} has neither an op nor the documents of its forward state")
    return dict(step.target)


_LANG = {"json": "json", "geojson": "json", "yaml": "yaml", "yml": "yaml", "csv": "csv", "py": "python",
         "srt": "srt", "ics": "ics", "gpx": "xml", "pgn": "pgn", "po": "po", "conllu": "conllu", "sql": "sql"}

_BLOCK_SHAPES = {  # one file's block per shape: fence, name, body, language tag, a two-line excerpt
    "plain": "{fence}{name}\n{body}\n{fence}",
    "bold_name": "**{name}**\n{fence}{lang}\n{body}\n{fence}",
    "name_inside": "{fence}\n{name}\n{body}\n{fence}",
    "long_fence": "{fence}`{name}\n{body}\n{fence}`",
    "tilde": "{fence}{name}\n{body}\n{fence}",
    "heading": "### {name}\n\n{fence}{lang}\n{body}\n{fence}",
    "file_colon": "File: {name}\n{fence}\n{body}\n{fence}",
    "lang_and_name": "{fence}{lang} {name}\n{body}\n{fence}",
    "trailing_spaces": "{fence}{name}   \n{body}\n{fence}  \t",
    "excerpt_repeat": "{fence}{name}\n{body}\n{fence}\n\nThe changed part:\n\n{fence}{name}\n{excerpt}\n{fence}",
    "backticked_name": "`{name}`:\n{fence}{lang}\n{body}\n{fence}",
    "file_name_tag": "<file_name>{name}</file_name>\n{fence}\n{body}\n{fence}",
    "unnamed_single": "{fence}{lang}\n{body}\n{fence}",
}

REPLY_SHAPES = ("plain", "bold_name", "name_inside", "long_fence", "crlf", "old_mac", "tilde", "heading",
                "file_colon", "lang_and_name", "trailing_spaces", "prose_around", "think_draft", "excerpt_repeat",
                "bom", "backticked_name", "file_name_tag", "indented", "unnamed_single")


def shaped_reply(files: Files, shape: str) -> str:
    """``files`` written as a reply of one of the shapes real models use (``REPLY_SHAPES``): the name in bold, a
    heading, ``File:``, backticks or a ``<file_name>`` tag on the line before the fence, alone on the first line
    inside it, or after a language tag in the info string; 4-backtick or tilde fences, trailing spaces after a
    fence, an indented block; CRLF or CR line endings, a byte-order mark; prose around the blocks, a
    ``<think>`` draft before them, a changed excerpt repeated after a file; one unnamed block for a single file.
    :func:`mechlab.delegate.replies.parse_reply` reads every shape back to ``files`` (as written by
    :func:`format_files`). Raises ValueError for an unknown shape."""
    if shape not in REPLY_SHAPES:
        raise ValueError(f"unknown reply shape {shape!r} (known: {', '.join(REPLY_SHAPES)})")
    if shape == "crlf":
        return format_files(files).replace("\n", "\r\n")
    if shape == "old_mac":
        return format_files(files).replace("\n", "\r")
    if shape == "bom":
        return "\ufeff" + format_files(files)
    if shape == "prose_around":
        return f"Here are the updated files.\n\n{format_files(files)}\nLet me know if anything else should change.\n"
    if shape == "think_draft":
        draft = {name: text[: len(text) // 2] for name, text in files.items()}
        return f"<think>\nA first draft:\n{format_files(draft)}</think>\n\n{format_files(files)}"
    blocks = []
    for name, text in files.items():
        body, lang = text.rstrip(), _LANG.get(name.rsplit(".", 1)[-1], "")
        fence = fence_for(body)
        if shape == "tilde":
            fence = "~" * max(3, max((len(x) for x in normalise(body).split("\n") if set(x) == {"~"}), default=0) + 1)
        if shape == "unnamed_single" and len(files) > 1:
            shape = "plain"
        block = _BLOCK_SHAPES.get(shape, _BLOCK_SHAPES["plain"]).format(
            fence=fence, name=name, body=body, lang=lang, excerpt="\n".join(body.split("\n")[:2]))
        blocks.append("\n".join("  " + x if x else x for x in block.split("\n")) if shape == "indented" else block)
    return "\n\n".join(blocks) + "\n"


@dataclass
class NoisyAgent:
    """The oracle, plus one corruption (the domain's: a dropped field, a dropped row) with probability ``rate``
    per call; every reply in one of the shapes of :func:`shaped_reply`, drawn from a second seeded stream, so the
    relay's reply parsing is calibrated too."""

    rate: float
    seed: int = 0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"noisy:{self.rate:g}"
        self.rng = random.Random(self.seed)
        self.shapes = random.Random(f"reply-shapes-{self.seed}")

    def respond(self, prompt: str, step: Step) -> Reply:
        files = oracle_files(step)
        if self.rng.random() < self.rate:
            files = step.domain.corrupt(files, self.rng)
        return Reply(shaped_reply(files, self.shapes.choice(REPLY_SHAPES)))


def predicted_noisy_rs(env: Environment, rate: float, round_trips: int, samples: int = 20, seed: int = 0) -> list[float]:
    """What the noisy agent should score after each of ``round_trips`` round trips. Each call corrupts with
    probability ``rate``, so after r round trips (2r interactions) the number of corruptions c is
    Binomial(2r, rate); f(c), the similarity to the seed after c successive corruptions of it, is estimated over
    ``samples`` draws; RS@2r = Σ_c P(c)·f(c)."""
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
            f[c] += env.similarity(files)
    f = [x / samples for x in f]
    out = []
    for k in range(1, round_trips + 1):
        m = 2 * k
        out.append(sum(comb(m, c) * rate**c * (1 - rate) ** (m - c) * f[min(c, c_max)] for c in range(m + 1)))
    return out
