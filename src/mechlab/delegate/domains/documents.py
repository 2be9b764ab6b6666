"""Document domains: JSON, YAML, CSV, SubRip subtitles, Python programs, GeoJSON."""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import random
import re
import tokenize
from typing import Any

from mechlab.delegate.domains.base import Domain, Files, _best_matching, _kept_order


# ---- JSON --------------------------------------------------------------------------------------------------

def _leaves(x: Any, path: tuple = ()) -> dict[tuple, Any]:
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_leaves(v, path + (k,)))
        return out or {path: {}}
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(_leaves(v, path + (i,)))
        return out or {path: []}
    return {path: x}


def _rename(x: Any, old: str, new: str) -> Any:
    if isinstance(x, dict):
        return {(new if k == old else k): _rename(v, old, new) for k, v in x.items()}
    if isinstance(x, list):
        return [_rename(v, old, new) for v in x]
    return x


class JSONDomain(Domain):
    """JSON documents. Similarity: 0.35 × Jaccard overlap of the leaf paths + 0.65 × the fraction of the seed's
    leaves with an identical value at the same path (key order and formatting do not count).
    Oracle edits: rename_key (everywhere), nest (the whole document under a key), add_field (top level),
    reverse_list (a top-level list), indent (formatting only)."""

    name = "json"

    def parse(self, text: str) -> Any:
        return json.loads(text)

    def file_similarity(self, seed: Any, got: Any) -> float:
        a, b = _leaves(seed), _leaves(got)
        jaccard = len(a.keys() & b.keys()) / max(len(a.keys() | b.keys()), 1)
        same = sum(1 for p, v in a.items() if p in b and b[p] == v and type(b[p]) is type(v)) / max(len(a), 1)
        return 0.35 * jaccard + 0.65 * same

    def _edit(self, op: dict, doc: Any) -> Any:
        kind = op["kind"]
        if kind == "rename_key":
            return _rename(doc, op["old"], op["new"])
        if kind == "nest":
            return {op["key"]: doc}
        if kind == "unnest":
            return doc[op["key"]]
        if kind == "add_field":
            return {**doc, op["key"]: op["value"]}
        if kind == "remove_field":
            return {k: v for k, v in doc.items() if k != op["key"]}
        if kind == "reverse_list":
            return {**doc, op["key"]: list(reversed(doc[op["key"]]))}
        if kind == "indent":
            return doc
        raise ValueError(f"unknown json edit {kind!r}")

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            doc = self._edit(op, json.loads(files[name]))
            out[name] = json.dumps(doc, indent=op.get("spaces", 2), ensure_ascii=False) + "\n"
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        inverse = {"rename_key": lambda: {**op, "old": op["new"], "new": op["old"]},
                   "nest": lambda: {**op, "kind": "unnest"}, "unnest": lambda: {**op, "kind": "nest"},
                   "add_field": lambda: {**op, "kind": "remove_field"},
                   "reverse_list": lambda: op, "indent": lambda: {**op, "spaces": op.get("original_spaces", 2)}}
        return inverse[kind]()

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        doc = json.loads(files[name])
        paths = [p for p in _leaves(doc) if p]
        if not paths:
            return files
        path = rng.choice(paths)
        node = doc
        for k in path[:-1]:
            node = node[k]
        if isinstance(node, dict):
            del node[path[-1]]  # a dropped field: the kind of damage delegates do
        else:
            node[path[-1]] = "corrupted"
        return {**files, name: json.dumps(doc, indent=2) + "\n"}


class YAMLDomain(JSONDomain):
    """YAML documents (PyYAML, safe loader): the JSON domain's similarity and edits on the parsed data; written
    back in block style with the keys in document order."""

    name = "yaml"

    def parse(self, text: str) -> Any:
        import yaml

        return yaml.safe_load(text)

    @staticmethod
    def _dump(doc: Any, indent: int = 2) -> str:
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, indent=indent, default_flow_style=False)

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            out[name] = self._dump(self._edit(op, self.parse(files[name])), op.get("spaces", 2))
        return out

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        as_json = JSONDomain.corrupt(self, {name: json.dumps(self.parse(files[name]))}, rng)
        return {**files, name: self._dump(json.loads(as_json[name]))}


# ---- CSV ---------------------------------------------------------------------------------------------------

class CSVDomain(Domain):
    """Spreadsheets. Similarity: 0.2 × header equality + 0.6 × the fraction of the seed's rows found (as a
    multiset of whole rows under the seed's header) + 0.2 × the fraction of consecutive seed rows still in order.
    Columns are matched by name, so a column reorder that is undone scores fully. The delimiter is sniffed.
    Oracle edits: rename_column, swap_columns, reverse_rows, add_column, delimiter."""

    name = "csv"

    def parse(self, text: str) -> tuple[list[str], list[dict[str, str]]]:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t|")
        rows = list(csv.reader(io.StringIO(text), dialect))
        if not rows:
            raise ValueError("empty table")
        header = rows[0]
        if len(set(header)) != len(header):
            raise ValueError("duplicate column names")
        if any(len(r) != len(header) for r in rows[1:] if r):
            raise ValueError("ragged rows")
        return header, [dict(zip(header, r)) for r in rows[1:] if r]

    def file_similarity(self, seed, got) -> float:
        (h1, r1), (h2, r2) = seed, got
        header = 1.0 if h1 == h2 else len(set(h1) & set(h2)) / max(len(set(h1) | set(h2)), 1) * 0.5
        key = lambda r: tuple(r.get(c) for c in h1)  # noqa: E731
        pool: dict[tuple, int] = {}
        for r in r2:
            pool[key(r)] = pool.get(key(r), 0) + 1
        found = 0
        for r in r1:
            if pool.get(key(r), 0):
                pool[key(r)] -= 1
                found += 1
        pos = {key(r): i for i, r in enumerate(r2)}
        match = {i: pos[key(r)] for i, r in enumerate(r1) if key(r) in pos}
        return 0.2 * header + 0.6 * found / max(len(r1), 1) + 0.2 * _kept_order(match, len(r1))

    @staticmethod
    def _write(header: list[str], rows: list[dict[str, str]], delimiter: str = ",") -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[c] for c in header])
        return buf.getvalue()

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            header, rows = self.parse(files[name])
            kind, delim = op["kind"], op.get("delimiter", ",")
            if kind == "rename_column":
                header = [op["new"] if c == op["old"] else c for c in header]
                rows = [{(op["new"] if k == op["old"] else k): v for k, v in r.items()} for r in rows]
            elif kind == "swap_columns":
                i, j = header.index(op["a"]), header.index(op["b"])
                header[i], header[j] = header[j], header[i]
            elif kind == "reverse_rows":
                rows = rows[::-1]
            elif kind == "add_column":
                header = header + [op["name"]]
                rows = [{**r, op["name"]: op["value"]} for r in rows]
            elif kind == "drop_column":
                header = [c for c in header if c != op["name"]]
                rows = [{k: v for k, v in r.items() if k != op["name"]} for r in rows]
            elif kind != "delimiter":
                raise ValueError(f"unknown csv edit {kind!r}")
            out[name] = self._write(header, rows, delim)
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        if kind == "rename_column":
            return {**op, "old": op["new"], "new": op["old"]}
        if kind == "add_column":
            return {**op, "kind": "drop_column"}
        if kind == "delimiter":
            return {**op, "delimiter": op.get("original", ",")}
        return copy.deepcopy(op)  # swap_columns and reverse_rows are their own inverses

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        header, rows = self.parse(files[name])
        if rows:
            del rows[rng.randrange(len(rows))]  # a dropped row
        return {**files, name: self._write(header, rows)}


# ---- SRT subtitles -----------------------------------------------------------------------------------------

_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d{1,2}):(\d{2}):(\d{2})[,.](\d{3})")


def _ms(h, m, s_, ms) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s_)) * 1000 + int(ms)


def _stamp(ms: int) -> str:
    ms = max(ms, 0)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


class SRTDomain(Domain):
    """SubRip subtitles: cues (start, end, text). Similarity, as in the DELEGATE paper: 0.20 coverage (seed cues
    matched with text similarity ≥ 0.5) + 0.40 text (mean text similarity of the Hungarian matching of cues) +
    0.25 timing (matched cues: 1 within 5 ms, falling to 0 at 2 s of start+end error) + 0.15 order (consecutive
    seed cues whose matches keep their order). Cue numbers are not scored.
    Oracle edits: shift (all times by ms), reverse (cue order in the file), dash (prefix every text line with
    '- '), italic (wrap every cue in <i>…</i>), renumber (start the numbering at 0)."""

    name = "srt"

    def parse(self, text: str) -> list[tuple[int, int, str]]:
        cues = []
        for block in re.split(r"\n\s*\n", text.strip().replace("\r\n", "\n")):
            lines = block.strip().split("\n")
            if not lines or not lines[0].strip():
                continue
            if len(lines) < 2 or not lines[0].strip().lstrip("-").isdigit():
                raise ValueError(f"cue without a number line: {lines[0][:40]!r}")
            m = _TIME.match(lines[1].strip())
            if not m:
                raise ValueError(f"bad timing line {lines[1][:40]!r}")
            g = m.groups()
            cues.append((_ms(*g[:4]), _ms(*g[4:]), "\n".join(lines[2:])))
        if not cues:
            raise ValueError("no cues")
        return cues

    @staticmethod
    def _write(cues: list[tuple[int, int, str]], first: int = 1) -> str:
        return "\n".join(f"{i}\n{_stamp(a)} --> {_stamp(b)}\n{t}\n" for i, (a, b, t) in enumerate(cues, first))

    def file_similarity(self, seed, got) -> float:
        import difflib

        import numpy as np

        sim = np.array([[difflib.SequenceMatcher(None, a[2], b[2]).ratio() for b in got] for a in seed])
        match = _best_matching(sim)
        n = len(seed)
        coverage = sum(sim[i, j] >= 0.5 for i, j in match.items()) / n
        text = sum(sim[i, j] for i, j in match.items()) / n

        def timing(a, b):
            err = abs(a[0] - b[0]) + abs(a[1] - b[1])
            return 1.0 if err <= 5 else max(0.0, 1 - err / 2000)

        time_score = sum(timing(seed[i], got[j]) for i, j in match.items()) / n
        return 0.20 * coverage + 0.40 * text + 0.25 * time_score + 0.15 * _kept_order(match, n)

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            cues, kind, first = self.parse(files[name]), op["kind"], 1
            if kind == "shift":
                cues = [(a + op["ms"], b + op["ms"], t) for a, b, t in cues]
            elif kind == "reverse":
                cues = cues[::-1]
            elif kind == "dash":
                cues = [(a, b, "\n".join("- " + x for x in t.split("\n"))) for a, b, t in cues]
            elif kind == "undash":
                cues = [(a, b, "\n".join(x[2:] if x.startswith("- ") else x for x in t.split("\n"))) for a, b, t in cues]
            elif kind == "italic":
                cues = [(a, b, f"<i>{t}</i>") for a, b, t in cues]
            elif kind == "unitalic":
                cues = [(a, b, t[3:-4] if t.startswith("<i>") and t.endswith("</i>") else t) for a, b, t in cues]
            elif kind == "renumber":
                first = op.get("first", 0)
            else:
                raise ValueError(f"unknown srt edit {kind!r}")
            out[name] = self._write(cues, first)
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        pairs = {"dash": "undash", "undash": "dash", "italic": "unitalic", "unitalic": "italic"}
        if kind in pairs:
            return {**op, "kind": pairs[kind]}
        if kind == "shift":
            return {**op, "ms": -op["ms"]}
        if kind == "renumber":
            return {**op, "first": 1}
        return dict(op)  # reverse

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        cues = self.parse(files[name])
        if len(cues) > 1:
            del cues[rng.randrange(len(cues))]  # a dropped cue
        return {**files, name: self._write(cues)}


# ---- Python ------------------------------------------------------------------------------------------------

def _replace_tokens(text: str, kind: int, old: str, new: str) -> str:
    """Replace the code tokens of type ``kind`` spelled ``old`` (never inside strings or comments)."""
    lines = text.splitlines(keepends=True)
    spans = [t.start + t.end for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == kind and t.string == old]
    for (r0, c0, r1, c1) in reversed(spans):  # single-line tokens; right to left keeps positions valid
        line = lines[r0 - 1]
        lines[r0 - 1] = line[:c0] + new + line[c1:]
    return "".join(lines)


class PythonDomain(Domain):
    """Python programs. A file set is scored by running every seed script (in a temporary directory holding the
    answer's files, a fresh interpreter, a 10 s timeout): 0.1 if the file parses, plus 0.9 × the fraction of the
    seed's output lines reproduced exactly, in order (a program with the seed's exact output and exit status
    scores 1). Oracle edits (textual, exactly invertible): rename (an identifier), tabs (leading 4-space indents
    ↔ tabs), header (a first comment line), constant (a literal named as a module constant)."""

    name = "python"
    timeout = 10.0

    def parse(self, text: str) -> Any:
        import ast

        return ast.parse(text)

    def _run(self, files: Files, script: str) -> tuple[int, tuple[str, ...]]:
        return self._run_cached(tuple(sorted(files.items())), script)

    @functools.lru_cache(maxsize=256)  # relays revisit the same states; a run depends only on the files
    def _run_cached(self, items: tuple[tuple[str, str], ...], script: str) -> tuple[int, tuple[str, ...]]:
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            for name, text in items:
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            try:
                r = subprocess.run([sys.executable, "-I", script], cwd=tmp, capture_output=True, text=True,
                                   timeout=self.timeout)
            except subprocess.TimeoutExpired:
                return -1, ()
            return r.returncode, tuple(r.stdout.splitlines())

    def similarity(self, seed: Files, got: Files) -> float:
        scores = []
        for name in seed:
            if name not in got or self.check(name, got[name]):
                scores.append(0.0)
                continue
            code0, want = self._run(seed, name)
            code1, have = self._run(got, name)
            if code0 == code1 and want == have:
                scores.append(1.0)
                continue
            import difflib

            same = sum(b.size for b in difflib.SequenceMatcher(None, want, have, autojunk=False).get_matching_blocks())
            scores.append(0.1 + 0.9 * same / max(len(want), 1) * (0.9 if code0 != code1 else 1.0))
        return sum(scores) / len(scores)

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            text, kind = files[name], op["kind"]
            if kind == "rename":
                text = _replace_tokens(text, tokenize.NAME, op["old"], op["new"])
            elif kind == "tabs":
                text = re.sub(r"(?m)^((?:    )+)", lambda m: "\t" * (len(m.group(1)) // 4), text)
            elif kind == "spaces":
                text = re.sub(r"(?m)^(\t+)", lambda m: "    " * len(m.group(1)), text)
            elif kind == "header":
                text = op["line"] + "\n" + text
            elif kind == "unheader":
                first, _, rest = text.partition("\n")
                text = rest if first == op["line"] else text
            elif kind == "constant":
                text = f"{op['name']} = {op['literal']}\n" + _replace_tokens(text, tokenize.NUMBER, op["literal"], op["name"])
            elif kind == "inline":
                first, _, rest = text.partition("\n")
                if first == f"{op['name']} = {op['literal']}":
                    text = _replace_tokens(rest, tokenize.NAME, op["name"], op["literal"])
            else:
                raise ValueError(f"unknown python edit {kind!r}")
            out[name] = text
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        if kind == "rename":
            return {**op, "old": op["new"], "new": op["old"]}
        pairs = {"tabs": "spaces", "spaces": "tabs", "header": "unheader", "unheader": "header", "constant": "inline",
                 "inline": "constant"}
        return {**op, "kind": pairs[kind]}

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        lines = files[name].split("\n")
        prints = [i for i, x in enumerate(lines) if x.strip().startswith("print(")]
        if prints:
            del lines[rng.choice(prints)]  # a dropped output line
        return {**files, name: "\n".join(lines)}


# ---- GeoJSON -----------------------------------------------------------------------------------------------

def _flat_coords(c: Any) -> list[tuple[float, ...]]:
    if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
        return [tuple(float(x) for x in c)]
    return [p for part in (c or []) for p in _flat_coords(part)]


class GeoJSONDomain(Domain):
    """GeoJSON feature collections. Features are matched to the seed's by the Hungarian method on property
    agreement; similarity = 0.15 × feature count agreement + 0.35 × properties (fraction of seed key/values kept)
    + 0.40 × geometry (same type, and every vertex within 1e-7 degrees) + 0.10 × order.
    Oracle edits: swap_axes (lon/lat ↔ lat/lon), rename_property, reverse_features, add_property, id_from (copy a
    property into the feature id)."""

    name = "geojson"

    def parse(self, text: str) -> list[dict]:
        doc = json.loads(text)
        if doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
            raise ValueError("not a GeoJSON FeatureCollection")
        for f in doc["features"]:
            if f.get("type") != "Feature" or "geometry" not in f:
                raise ValueError("a feature without type 'Feature' or a geometry")
        return doc["features"]

    @staticmethod
    def _props(f: dict) -> dict:
        return f.get("properties") or {}

    def file_similarity(self, seed: list[dict], got: list[dict]) -> float:
        import numpy as np

        if not seed:
            return 1.0 if not got else 0.0
        if not got:
            return 0.0

        def prop_score(a, b):
            pa, pb = self._props(a), self._props(b)
            return sum(1 for k, v in pa.items() if pb.get(k) == v) / max(len(pa), 1)

        def geom_score(a, b):
            ga, gb = a.get("geometry") or {}, b.get("geometry") or {}
            if ga.get("type") != gb.get("type"):
                return 0.0
            ca, cb = _flat_coords(ga.get("coordinates")), _flat_coords(gb.get("coordinates"))
            if len(ca) != len(cb):
                return 0.0
            return sum(all(abs(x - y) <= 1e-7 for x, y in zip(p, q)) for p, q in zip(ca, cb)) / max(len(ca), 1)

        props = np.array([[prop_score(a, b) for b in got] for a in seed])
        match = _best_matching(props)
        n = len(seed)
        count = min(n, len(got)) / max(n, len(got))
        p = sum(props[i, j] for i, j in match.items()) / n
        g = sum(geom_score(seed[i], got[j]) for i, j in match.items()) / n
        return 0.15 * count + 0.35 * p + 0.40 * g + 0.10 * _kept_order(match, n)

    @staticmethod
    def _swap(c: Any) -> Any:
        if isinstance(c, list) and c and isinstance(c[0], (int, float)):
            return [c[1], c[0], *c[2:]]
        return [GeoJSONDomain._swap(x) for x in c]

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            doc = json.loads(files[name])
            feats, kind = doc["features"], op["kind"]
            if kind == "swap_axes":
                for f in feats:
                    f["geometry"]["coordinates"] = self._swap(f["geometry"]["coordinates"])
            elif kind == "rename_property":
                for f in feats:
                    f["properties"] = {(op["new"] if k == op["old"] else k): v for k, v in self._props(f).items()}
            elif kind == "reverse_features":
                doc["features"] = feats[::-1]
            elif kind == "add_property":
                for f in feats:
                    f["properties"] = {**self._props(f), op["key"]: op["value"]}
            elif kind == "remove_property":
                for f in feats:
                    f["properties"] = {k: v for k, v in self._props(f).items() if k != op["key"]}
            elif kind == "id_from":
                for f in feats:
                    f["id"] = self._props(f)[op["key"]]
            elif kind == "drop_id":
                for f in feats:
                    f.pop("id", None)
            else:
                raise ValueError(f"unknown geojson edit {kind!r}")
            out[name] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        if kind == "rename_property":
            return {**op, "old": op["new"], "new": op["old"]}
        pairs = {"add_property": "remove_property", "remove_property": "add_property", "id_from": "drop_id",
                 "drop_id": "id_from"}
        return {**op, "kind": pairs[kind]} if kind in pairs else dict(op)  # swap_axes, reverse_features: self-inverse

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        doc = json.loads(files[name])
        if doc["features"]:
            del doc["features"][rng.randrange(len(doc["features"]))]  # a dropped feature
        return {**files, name: json.dumps(doc, indent=2) + "\n"}
