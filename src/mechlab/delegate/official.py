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

Rows are skipped, each with its reason, when: the row lacks a field of the schema, its domain has no mechlab
domain, a file is binary (``base64:``), the start state or its folder is missing, a seed file does not pass the
mechlab domain's strict reader, a seed file is also a distractor, or no task has a way back to the start state.
A task whose target state has no prompt back is dropped and said. Python environments are scored by the output of
their seed scripts (mechlab's Python domain); the official ``testing.py`` suites are not run.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mechlab.errors import ConfigError

# the official domain (sample_type) -> the mechlab domain; "json" holds both JSON and YAML documents
DOMAIN_MAP = {"json": "json", "spreadsheet": "csv", "subtitles": "srt", "calendar": "ics", "chess": "pgn",
              "translation": "po", "treebank": "conllu", "dbschema": "sql", "geodata": "geojson", "geotrack": "gpx",
              "python": "python"}
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


def _environment(row: dict, notes: list[str]) -> tuple[str, dict, dict[str, str], dict[str, str], dict[str, dict]]:
    """(domain, environment.json, seed, distractors, forward states by task name) of one row; raises _Skip."""
    from mechlab.delegate.domains import DOMAINS

    for key in ("sample_id", "sample_type", "states", "files"):
        if key not in row:
            raise _Skip(f"not a DELEGATE-52 row: lacks {key!r}")
    sid, kind, files = str(row["sample_id"]), row["sample_type"], row["files"]
    if kind not in DOMAIN_MAP:
        raise _Skip(f"domain {kind!r} has no mechlab domain (converted: {', '.join(sorted(DOMAIN_MAP))})")
    binary = [p for p, t in files.items() if not isinstance(t, str) or t.startswith("base64:")]
    if binary:
        raise _Skip(f"binary file {binary[0]}")
    meta = dict(row.get("metadata") or {})
    states = {s["state_id"]: s for s in row["states"]}
    start = meta.get("start_state") or row.get("start_state")
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
                      "forward_files": list(states[target].get("context") or sorted(seed))})
        forward_states[name] = _under(files, states[target].get("solution_folder", target))
    if not tasks:
        raise _Skip("no task with a way back to the start state")
    spec = {"domain": domain, "name": sid, "tasks": tasks,
            "metadata": {"source": f"DELEGATE-52 (microsoft/delegate52), sample {sid}: {row.get('sample_name', '')}",
                         "license": meta.get("license", "see the DELEGATE-52 dataset card (CDLA-Permissive-2.0)"),
                         "official_domain": kind, "start_state": start,
                         **{k: meta[k] for k in ("origin", "origin_url", "ok_to_redistribute") if k in meta}}}
    return domain, spec, seed, distractors, forward_states


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:
            raise _Skip(f"file name {name!r} leaves its folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def convert_official(jsonl: str | Path, out: str | Path, domains: set[str] | None = None) -> Conversion:
    """Convert the rows of the official JSONL at ``jsonl`` into environment folders ``out/SAMPLE_ID`` (the module
    docstring's mapping), only of the official domains in ``domains`` when given. An existing folder of the same
    name is replaced. Raises ConfigError when ``jsonl`` is not a readable file or a line is not JSON; every other
    problem skips its row with the reason."""
    jsonl, out = Path(jsonl), Path(out)
    if not jsonl.is_file():
        raise ConfigError(f"{jsonl} is not a file: give the path of the DELEGATE-52 JSONL (delegate52.jsonl)")
    result = Conversion()
    with open(jsonl, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{jsonl}:{number} is not JSON ({e})") from e
            sid = str(row.get("sample_id", f"line {number}")) if isinstance(row, dict) else f"line {number}"
            if domains is not None and isinstance(row, dict) and row.get("sample_type") not in domains:
                continue
            target = out / _safe(sid)
            try:
                if not isinstance(row, dict):
                    raise _Skip("not a JSON object")
                domain, spec, seed, distractors, states = _environment(row, result.notes)
                if target.exists():
                    shutil.rmtree(target)
                _write(target / "seed", seed)
                _write(target / "distractors", distractors)
                for name, files in states.items():
                    _write(target / "states" / name, files)
                (target / "environment.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
                result.written.append(target)
            except _Skip as e:
                if target.exists() and target not in result.written:
                    shutil.rmtree(target)
                result.skipped.append((sid, str(e)))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m mechlab.delegate.official DELEGATE52.jsonl OUT [DOMAIN ...]``: convert, print what was written
    and what was skipped, and why."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(main.__doc__)
        return 2
    r = convert_official(args[0], args[1], set(args[2:]) or None)
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
