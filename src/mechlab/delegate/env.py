"""DELEGATE-52 environments (arXiv 2604.15597): a folder holding seed documents, distractor documents and
invertible edit tasks.

    ENV/environment.json   {"domain": "json", "name": "...", "tasks": [{"name", "forward", "backward", "op",
                            "forward_files"}, ...], "metadata": {...}}
    ENV/seed/...           the documents the relay starts from (and must return to)
    ENV/distractors/...    unrelated documents of the domain, shown every step, to come back untouched (optional)
    ENV/states/TASK/...    the documents of a task's forward state, where known (optional; the oracle answers
                           with them when the task has no ``op``)

A task is a pair of instructions (forward σ, backward σ⁻¹) and, for the calibration agents, ``op``: the same edit
as data that the domain applies by code (``{"kind": ..., ...}``; see each domain's ``apply``; ``rename_file``
works in every domain). ``forward_files`` lists the files of the forward state, as in the official release's
state contexts (shell wildcards such as ``part_*.csv`` allowed); it defaults to the seed's files, so an edit may
split, merge, rename or convert files. The backward state's files are always the seed's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mechlab.errors import ConfigError

ENV_FILE = "environment.json"


class EnvironmentError_(ConfigError):
    """A malformed DELEGATE environment."""


@dataclass(frozen=True)
class EditTask:
    """One invertible edit: the instructions, the edit as data for the oracle (``op``, may be empty), the files
    of the forward state (patterns; empty: the seed's files) and the forward state's documents where known."""

    name: str
    forward: str
    backward: str
    op: dict[str, Any] = field(default_factory=dict)
    forward_files: tuple[str, ...] = ()
    forward_state: dict[str, str] | None = field(default=None, compare=False, hash=False)


@dataclass
class Environment:
    root: Path
    domain: str
    name: str
    seed: dict[str, str]
    distractors: dict[str, str]
    tasks: list[EditTask]
    metadata: dict[str, Any] = field(default_factory=dict)


def _read_files(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            try:
                out[p.relative_to(folder).as_posix()] = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise EnvironmentError_(f"{p} is not UTF-8 text ({e})") from e
    return out


def load_environment(root: str | Path) -> Environment:
    """Load and check an environment folder; every problem is a specific error naming the file."""
    from mechlab.delegate.domains import DOMAINS

    root = Path(root)
    spec_path = root / ENV_FILE
    if not spec_path.is_file():
        raise EnvironmentError_(f"{root} has no {ENV_FILE} (not a DELEGATE environment)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EnvironmentError_(f"{spec_path} is not valid JSON: {e}") from e
    for key in ("domain", "name", "tasks"):
        if key not in spec:
            raise EnvironmentError_(f"{spec_path} lacks '{key}'")
    if spec["domain"] not in DOMAINS:
        raise EnvironmentError_(f"{spec_path}: unknown domain {spec['domain']!r} (known: {', '.join(sorted(DOMAINS))})")
    seed = _read_files(root / "seed")
    if not seed:
        raise EnvironmentError_(f"{root}/seed holds no documents")
    distractors = _read_files(root / "distractors")
    clash = set(seed) & set(distractors)
    if clash:
        raise EnvironmentError_(f"{root}: {sorted(clash)[0]} is both a seed file and a distractor")
    tasks, names = [], set()
    for i, t in enumerate(spec["tasks"]):
        if not isinstance(t, dict) or not all(isinstance(t.get(k), str) and t[k].strip() for k in ("name", "forward", "backward")):
            raise EnvironmentError_(f"{spec_path}: task {i} needs non-empty 'name', 'forward' and 'backward' strings")
        if t["name"] in names:
            raise EnvironmentError_(f"{spec_path}: two tasks are named {t['name']!r}")
        names.add(t["name"])
        files = t.get("forward_files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) and f.strip() for f in files):
            raise EnvironmentError_(f"{spec_path}: task {t['name']!r}: 'forward_files' must be a list of file names")
        state = _read_files(root / "states" / t["name"]) or None
        tasks.append(EditTask(t["name"], t["forward"], t["backward"], dict(t.get("op", {})), tuple(files), state))
    if not tasks:
        raise EnvironmentError_(f"{spec_path}: no edit tasks")
    domain = DOMAINS[spec["domain"]]
    for name, text in seed.items():
        problem = domain.check(name, text)
        if problem:
            raise EnvironmentError_(f"{root}/seed/{name}: {problem}")
    return Environment(root, spec["domain"], spec["name"], seed, distractors, tasks, dict(spec.get("metadata", {})))
