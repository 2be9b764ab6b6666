"""DELEGATE-52 environments (arXiv 2604.15597): a folder holding seed documents, distractor documents and
invertible edit tasks.

    ENV/environment.json   {"domain": "json", "name": "...", "tasks": [{"name", "forward", "backward", "op",
                            "forward_files"}, ...], "metadata": {...}}
    ENV/seed/...           the documents the relay starts from (and must return to)
    ENV/distractors/...    unrelated documents of the domain, shown every step, to come back untouched (optional)
    ENV/states/TASK/...    the documents of a task's forward state, where known (optional; the oracle answers
                           with them when the task has no ``op``)
    ENV/tests/...          python environments only (optional): a test suite, never shown to the model, whose
                           entry file (``testing.py``, or environment.json's ``"tests": {"entry": ...}``) defines
                           ``run_tests(state)``; ``state`` is the id of the state to test (``"tests": {"state":
                           ...}``, default ``seed``). Each scored state is then judged by its output and by the
                           suite (mechlab.delegate.domains.documents.PythonDomain); a task's ``state_id`` names
                           its forward state for the suite, whose pass rate there goes to the trace

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
    state_id: str = ""  # the forward state's id for a test suite's run_tests (official environments: its state_id)


@dataclass
class Environment:
    root: Path
    domain: str
    name: str
    seed: dict[str, str]
    distractors: dict[str, str]
    tasks: list[EditTask]
    metadata: dict[str, Any] = field(default_factory=dict)
    tests: Any = None  # a mechlab.delegate.domains.documents.PythonTestSuite for python environments that carry one

    def forward_tests(self, task: EditTask, files: dict[str, str]) -> float | None:
        """The test suite's pass rate on a forward state (``run_tests(task.state_id)``), or None where the
        environment has no suite or the task names no state."""
        if self.tests is None or not task.state_id:
            return None
        from dataclasses import replace

        from mechlab.delegate.domains import DOMAINS

        return DOMAINS[self.domain].test_score(replace(self.tests, state=task.state_id), files)

    def similarity(self, files: dict[str, str]) -> float:
        """The domain's similarity of ``files`` to the seed, the environment's test suite included where it has
        one."""
        from mechlab.delegate.domains import DOMAINS

        domain = DOMAINS[self.domain]
        return domain.similarity(self.seed, files, self.tests) if self.tests is not None else \
            domain.similarity(self.seed, files)


def _load_tests(root: Path, spec: dict, spec_path: Path):
    """The environment's test suite (``ENV/tests``), or None; EnvironmentError_ for a malformed one."""
    import ast

    from mechlab.delegate.domains.documents import PythonTestSuite

    files = _read_files(root / "tests")
    conf = spec.get("tests", {})
    if not files:
        if conf:
            raise EnvironmentError_(f"{spec_path} configures 'tests' but {root}/tests holds no files")
        return None
    if spec["domain"] != "python":
        raise EnvironmentError_(f"{root}/tests: only python environments carry a test suite (this one is "
                                f"{spec['domain']})")
    if not isinstance(conf, dict) or not all(isinstance(conf.get(k, ""), str) for k in ("entry", "state")):
        raise EnvironmentError_(f"{spec_path}: 'tests' must be an object with string 'entry' and 'state'")
    entry, state = conf.get("entry") or "testing.py", conf.get("state") or "seed"
    if entry not in files:
        raise EnvironmentError_(f"{root}/tests has no {entry} (the file defining run_tests)")
    try:
        tree = ast.parse(files[entry])
    except SyntaxError as e:
        raise EnvironmentError_(f"{root}/tests/{entry} is not valid Python: {e}") from e
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run_tests" for n in tree.body):
        raise EnvironmentError_(f"{root}/tests/{entry} defines no run_tests(state) function")
    return PythonTestSuite(tuple(sorted(files.items())), entry, state)


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
        if not isinstance(t.get("state_id", ""), str):
            raise EnvironmentError_(f"{spec_path}: task {t['name']!r}: 'state_id' must be a string")
        tasks.append(EditTask(t["name"], t["forward"], t["backward"], dict(t.get("op", {})), tuple(files), state,
                              t.get("state_id", "")))
    if not tasks:
        raise EnvironmentError_(f"{spec_path}: no edit tasks")
    domain = DOMAINS[spec["domain"]]
    for name, text in seed.items():
        problem = domain.check(name, text)
        if problem:
            raise EnvironmentError_(f"{root}/seed/{name}: {problem}")
    return Environment(root, spec["domain"], spec["name"], seed, distractors, tasks, dict(spec.get("metadata", {})),
                       _load_tests(root, spec, spec_path))
