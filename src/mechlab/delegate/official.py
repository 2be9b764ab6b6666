"""Converting the official DELEGATE-52 release (arXiv 2604.15597; the Hugging Face dataset microsoft/delegate52,
one JSONL file, CDLA-Permissive-2.0) into mechlab environment folders, for the domains both have.

Nothing is downloaded: give the path of a JSONL file you have. Each row is one environment::

    {"sample_id": "spreadsheet1", "sample_type": "spreadsheet", "sample_name": "...",
     "metadata": {"start_state": "basic_state", ...},
     "states": [{"state_id": "basic_state", "context": ["moons.csv"], "solution_folder": "basic_state",
                 "prompts": [{"target_state": "split_state", "prompt": "Split ..."}]}, ...],
     "files": {"basic_state/moons.csv": "...", "split_state/moons_*.csv": "...",
               "distractor_context/other.csv": "..."}}

The start state's files become ``seed/``, ``distractor_context/`` becomes ``distractors/``, and every prompt of
the start state is a task: its forward instruction, the backward instruction of its target state (the prompt that
leads back to the start state), the target state's file list as ``forward_files`` (wildcards kept), and the
target state's documents as ``states/TASK/`` (so the oracle can answer and check the environment). Tasks carry no
``op``: official environments are for model backends and the oracle; the noisy agent corrupts the oracle's
answers as usual.

Rows are skipped, each with its reason, when: the line is not JSON (or not UTF-8), the row lacks a field of the
schema or has one of the wrong shape (``states`` not a list of objects with a ``state_id``, ``files`` not an
object, a prompt without ``target_state``), its ``sample_id`` repeats an earlier row's, its domain has no mechlab
domain, a file is binary (``base64:``), the start state or its folder is missing, a seed file does not pass the
mechlab domain's strict reader, a seed file is also a distractor, or no task has a way back to the start state.
A task whose target state has no prompt back is dropped and said. Python environments are scored by the output of
their seed scripts (mechlab's Python domain) and, where the row holds one, by its test suite: a file named
``testing.py`` (defining ``run_tests(state_id)``) and the other files outside every state's folder and the
distractor folder become the environment's ``tests/`` (a ``testing.py`` inside a state's folder is taken out of
that state), run on every scored state with the start state's id (``"tests": {"entry", "state"}`` in
environment.json) and on every forward state with its own id (each task's ``state_id``; the pass rate goes to the
trace). A Python row whose files include no ``testing.py`` defining ``run_tests`` is scored by output alone, and said.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mechlab.errors import ConfigError
from mechlab.utils import atomic_path

# the official domain (sample_type) -> the mechlab domain; "json" holds both JSON and YAML documents
DOMAIN_MAP = {"json": "json", "spreadsheet": "csv", "subtitles": "srt", "calendar": "ics", "chess": "pgn",
              "translation": "po", "treebank": "conllu", "dbschema": "sql", "geodata": "geojson", "geotrack": "gpx",
              "python": "python", "dns": "zone", "docker": "dockerfile", "graphviz": "dot", "infra": "terraform",
              "robotics": "urdf", "satellite": "tle", "starcatalog": "votable", "vector": "svg", "landmarks": "kml",
              "playlist": "xspf", "transit": "gtfs"}  # emails are mbox files there, not mechlab's one-message .eml
DISTRACTOR_FOLDER = "distractor_context"


@dataclass
class Conversion:
    """What :func:`convert_official` did: the environment folders written, the rows skipped (sample id, reason),
    and notes (tasks dropped)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Skip(Exception):
    pass


def _under(files: dict[str, str], folder: str) -> dict[str, str]:
    prefix = folder.strip("/") + "/"
    return {path[len(prefix):]: text for path, text in files.items() if path.startswith(prefix)}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "task"


def _test_suite(files: dict[str, str], states: dict[str, dict], start: str, seed: dict[str, str]) -> dict[str, str]:
    """The files of a Python row's test suite (the module docstring), taking a ``testing.py`` out of ``seed``."""
    import ast

    folders = {str(st.get("solution_folder", sid)).strip("/") + "/" for sid, st in states.items()}
    folders.add(DISTRACTOR_FOLDER + "/")
    tests = {path: text for path, text in files.items() if not any(path.startswith(f) for f in folders)}
    for name in [n for n in seed if n.rsplit("/", 1)[-1] == "testing.py"]:
        tests.setdefault(name, seed.pop(name))

    def defines_run_tests(text: str) -> bool:
        try:
            return any(isinstance(n, ast.FunctionDef) and n.name == "run_tests" for n in ast.parse(text).body)
        except SyntaxError:
            return False

    return tests if any(p.rsplit("/", 1)[-1] == "testing.py" and defines_run_tests(t) for p, t in tests.items()) else {}


def _environment(row: dict, notes: list[str]) -> tuple[str, dict, dict[str, str], dict[str, str], dict[str, dict],
                                                   dict[str, str]]:
    """(domain, environment.json, seed, distractors, forward states by task name, test suite files) of one row;
    raises _Skip."""
    from mechlab.delegate.domains import DOMAINS

    for key in ("sample_id", "sample_type", "states", "files"):
        if key not in row:
            raise _Skip(f"not a DELEGATE-52 row: lacks {key!r}")
    sid, kind, files = str(row["sample_id"]), row["sample_type"], row["files"]
    if not isinstance(kind, str) or kind not in DOMAIN_MAP:
        raise _Skip(f"domain {kind!r} has no mechlab domain (converted: {', '.join(sorted(DOMAIN_MAP))})")
    if not isinstance(files, dict):
        raise _Skip(f"malformed row: 'files' is a {type(files).__name__}, not an object of path -> text")
    binary = [p for p, t in files.items() if not isinstance(t, str) or t.startswith("base64:")]
    if binary:
        raise _Skip(f"binary file {binary[0]}")
    if not isinstance(row.get("metadata") or {}, dict):
        raise _Skip("malformed row: 'metadata' is not an object")
    meta = dict(row.get("metadata") or {})
    if not isinstance(row["states"], list) or not all(isinstance(st, dict) for st in row["states"]):
        raise _Skip("malformed row: 'states' is not a list of objects")
    for st in row["states"]:
        if not isinstance(st.get("state_id"), str):
            raise _Skip(f"malformed row: a state without a state_id ({sorted(st)[:4]})")
        if not isinstance(st.get("prompts", []), list) or not all(
                isinstance(q, dict) and isinstance(q.get("target_state"), str) and isinstance(q.get("prompt"), str)
                for q in st.get("prompts", [])):
            raise _Skip(f"malformed row: state {st['state_id']!r} has a prompt without a target_state and prompt text")
        if not isinstance(st.get("context") or [], list) or not isinstance(st.get("solution_folder", ""), str):
            raise _Skip(f"malformed row: state {st['state_id']!r} has a context that is not a list of names or a "
                        "solution_folder that is not a name")
    states = {s["state_id"]: s for s in row["states"]}
    start = meta.get("start_state") or row.get("start_state")
    if not isinstance(start, str):
        raise _Skip(f"malformed row: start_state {start!r} is not a state name")
    if start not in states:
        raise _Skip(f"start state {start!r} is not among the states")
    seed = _under(files, states[start].get("solution_folder", start))
    if not seed:
        raise _Skip(f"no files under the start state's folder {states[start].get('solution_folder', start)!r}")
    domain = DOMAIN_MAP[kind]
    if domain == "json":
        exts = {Path(name).suffix.lower() for name in seed}
        if exts <= {".yaml", ".yml"}:
            domain = "yaml"
        elif not exts <= {".json"}:
            raise _Skip(f"json environment mixes file types {sorted(exts)}")
    tests = _test_suite(files, states, start, seed) if domain == "python" else {}
    if domain == "python" and not tests:
        notes.append(f"{sid}: no testing.py in the row; scored by the output of its scripts alone")
    if not seed:
        raise _Skip("the start state holds only its test suite")
    distractors = _under(files, DISTRACTOR_FOLDER)
    if set(seed) & set(distractors):
        raise _Skip(f"{sorted(set(seed) & set(distractors))[0]} is both a seed file and a distractor")
    for name, text in seed.items():
        problem = DOMAINS[domain].check(name, text)
        if problem:
            raise _Skip(f"seed file {name}: {problem}")
    tasks, forward_states = [], {}
    for prompt in states[start].get("prompts", []):
        target = prompt["target_state"]
        back = [q for q in states.get(target, {}).get("prompts", []) if q.get("target_state") == start]
        if target not in states or not back:
            notes.append(f"{sid}: task {target!r} dropped (no prompt from it back to {start!r})")
            continue
        name = _safe(target)
        tasks.append({"name": name, "forward": prompt["prompt"], "backward": back[0]["prompt"],
                      "forward_files": list(states[target].get("context") or sorted(seed)), "state_id": target})
        forward_states[name] = {k: v for k, v in _under(files, states[target].get("solution_folder", target)).items()
                                if k.rsplit("/", 1)[-1] != "testing.py"}
    if not tasks:
        raise _Skip("no task with a way back to the start state")
    spec = {"domain": domain, "name": sid, "tasks": tasks,
            "metadata": {"source": f"DELEGATE-52 (microsoft/delegate52), sample {sid}: {row.get('sample_name', '')}",
                         "license": meta.get("license", "see the DELEGATE-52 dataset card (CDLA-Permissive-2.0)"),
                         "official_domain": kind, "start_state": start,
                         **{k: meta[k] for k in ("origin", "origin_url", "ok_to_redistribute") if k in meta}}}
    if tests:
        entry = min((p for p in tests if p.rsplit("/", 1)[-1] == "testing.py" and "def run_tests" in tests[p]),
                    key=lambda p: (p.count("/"), p))
        spec["tests"] = {"entry": entry, "state": start}
    return domain, spec, seed, distractors, forward_states, tests


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:
            raise _Skip(f"file name {name!r} leaves its folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def official_domains(domains: set[str] | None) -> set[str] | None:
    """The official domain names (``sample_type``) for ``domains``: official names kept, a mechlab domain name
    (``csv``) mapped to its official one (``spreadsheet``); ConfigError, listing the valid names, for any other."""
    if domains is None:
        return None
    by_mechlab: dict[str, list[str]] = {}
    for official, mine in DOMAIN_MAP.items():
        by_mechlab.setdefault(mine, []).append(official)
    by_mechlab.setdefault("yaml", []).append("json")
    out, bad = set(), []
    for d in domains:
        if d in DOMAIN_MAP:
            out.add(d)
        elif d in by_mechlab:
            out.update(by_mechlab[d])
        else:
            bad.append(d)
    if bad:
        raise ConfigError(f"unknown domain {', '.join(map(repr, sorted(bad)))}: give official DELEGATE-52 domain "
                          f"names ({_mapping()})")
    return out


def _mapping() -> str:
    return ", ".join(f"{k} (mechlab {v})" for k, v in sorted(DOMAIN_MAP.items()))


def convert_official(jsonl: str | Path, out: str | Path, domains: set[str] | None = None) -> Conversion:
    """Convert the rows of the official JSONL at ``jsonl`` into environment folders ``out/SAMPLE_ID`` (the module
    docstring's mapping), only of the domains in ``domains`` when given (official names, or mechlab names mapped
    to them: :func:`official_domains`). An environment is written to a temporary folder and only then replaces an
    existing folder of the same name, so a skipped row leaves an earlier conversion in place. Raises ConfigError
    when ``jsonl`` is not a readable file or a domain is unknown; every other problem (a line that is not JSON or
    not UTF-8, a malformed row, a sample_id already converted from this file) skips its row with the reason."""
    jsonl, out = Path(jsonl), Path(out)
    if not jsonl.is_file():
        raise ConfigError(f"{jsonl} is not a file: give the path of the DELEGATE-52 JSONL (delegate52.jsonl)")
    domains = official_domains(domains)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory: give a folder for the environments")
    result = Conversion()
    seen: dict[str, str] = {}  # folder name -> sample id that took it
    try:
        f = open(jsonl, "rb")
    except OSError as e:
        raise ConfigError(f"cannot read {jsonl}: {e.strerror or e}") from e
    with f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                result.skipped.append((f"line {number}", f"not UTF-8 text ({e.reason} at byte {e.start})"))
                continue
            except json.JSONDecodeError as e:
                result.skipped.append((f"line {number}", f"not JSON ({e})"))
                continue
            sid = str(row.get("sample_id", f"line {number}")) if isinstance(row, dict) else f"line {number}"
            if (domains is not None and isinstance(row, dict) and isinstance(row.get("sample_type"), str)
                    and row["sample_type"] not in domains):
                continue
            target = out / _safe(sid)
            try:
                if not isinstance(row, dict):
                    raise _Skip("not a JSON object")
                if target.name in seen:
                    raise _Skip(f"duplicate sample_id: line {number} repeats {seen[target.name]!r}, converted from "
                                "an earlier line; this one is skipped")
                _, spec, seed, distractors, states, tests = _environment(row, result.notes)
                with atomic_path(target, is_dir=True) as tmp:  # a skipped row leaves an earlier conversion in place
                    _write(tmp / "seed", seed)
                    _write(tmp / "distractors", distractors)
                    _write(tmp / "tests", tests)
                    for name, files in states.items():
                        _write(tmp / "states" / name, files)
                    (tmp / "environment.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n",
                                                          encoding="utf-8")
                seen[target.name] = sid
                result.written.append(target)
            except _Skip as e:
                result.skipped.append((sid, str(e)))
            except (KeyError, TypeError, AttributeError, ValueError) as e:  # a row of a shape not checked above
                result.skipped.append((sid, f"malformed row ({type(e).__name__}: {e})"))
            except OSError as e:
                raise ConfigError(f"cannot write the environment {target}: {e.strerror or e}") from e
    return result


USAGE = f"""usage: python -m mechlab.delegate.official DELEGATE52.jsonl OUT [DOMAIN ...]

Convert the official DELEGATE-52 release (one JSONL file you have; nothing is downloaded) into mechlab environment
folders OUT/SAMPLE_ID, printing what was written and what was skipped, and why. DOMAIN limits the conversion to
those official domain names (the rows' sample_type); a mechlab domain name is mapped to its official one. The
official names, with their mechlab domains: {_mapping()}."""


def main(argv: list[str] | None = None) -> int:
    """``python -m mechlab.delegate.official DELEGATE52.jsonl OUT [DOMAIN ...]``: convert, print what was written
    and what was skipped, and why. Errors a user can cause are one line on stderr and exit 2."""
    import sys

    from mechlab.errors import MechlabError

    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    if len(args) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        r = convert_official(args[0], args[1], set(args[2:]) or None)
    except MechlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in r.written:
        print(f"wrote {path}")
    for sid, reason in r.skipped:
        print(f"skipped {sid}: {reason}")
    for note in r.notes:
        print(note)
    print(f"{len(r.written)} environments written, {len(r.skipped)} skipped")
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
