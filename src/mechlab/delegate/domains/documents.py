"""Document domains: JSON, YAML, CSV, SubRip subtitles, Python programs, GeoJSON (DELEGATE-52,
arXiv 2604.15597: each scored by a parser-based weighted structural similarity).

Every scorer is held to the same rules: an answer is read as far as its parser can read it and the rest counts
as damage (a truncated or ragged file loses what is lost, not everything); a missing record and an extra one
(duplicated or invented) each cost their share; lists are aligned by content, not compared index by index;
numbers compare by value (1 == 1.0, but true is not 1); an empty answer scores 0."""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import math
import random
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from mechlab.delegate.domains.base import (
    Domain,
    Files,
    _kept_order,
    aligned,
    best_pairs,
    matched_records,
    same_value,
)
from mechlab.errors import ConfigError

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


def _size(x: Any) -> int:
    """The number of leaves of a parsed tree (an empty container is one leaf)."""
    if isinstance(x, dict):
        return sum(_size(v) for v in x.values()) or 1
    if isinstance(x, list):
        return sum(_size(v) for v in x) or 1
    return 1


def tree_similarity(a: Any, b: Any) -> float:
    """The similarity in [0, 1] of two parsed JSON/YAML trees, every leaf weighing the same. A scalar: 1 when equal
    by value (:func:`same_value`), 0.35 when both are scalars but differ (the field kept, its value wrong), 0 against
    a container. An object: the leaf-weighted similarity of the values under shared keys, over the leaves of the
    seed's values plus those of the answer's extra keys. A list: elements matched by :func:`best_pairs` on their
    similarity (equal elements first, then the Hungarian method; banded above a size), leaf-weighted over the seed's
    leaves plus the answer's unmatched elements (0.9), and the kept order of consecutive seed elements (0.1); so
    dropping one of four items costs about a quarter wherever it was."""
    if same_value(a, b):
        return 1.0
    if isinstance(a, dict) and isinstance(b, dict):
        if not a and not b:
            return 1.0
        num = sum(_size(v) * tree_similarity(v, b[k]) for k, v in a.items() if k in b)
        return num / (sum(_size(v) for v in a.values()) + sum(_size(v) for k, v in b.items() if k not in a))
    if isinstance(a, list) and isinstance(b, list):
        if not a and not b:
            return 1.0
        if not a or not b:
            return 0.0
        pairs = best_pairs(a, b, tree_similarity)
        match = {i: j for i, (j, _) in pairs.items()}
        used = set(match.values())
        num = sum(_size(a[i]) * sim for i, (_, sim) in pairs.items())
        den = sum(_size(x) for x in a) + sum(_size(y) for j, y in enumerate(b) if j not in used)
        return 0.9 * num / den + 0.1 * _kept_order(match, len(a))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return 0.0
    return 1.0 if same_value(a, b) else 0.35


def _repaired_json(text: str) -> Any:
    """``text`` as JSON, or, when it is not valid JSON, what json-repair reads of it (a truncated document, a
    trailing comma); raises ValueError when nothing is left."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        try:
            import json_repair
        except ImportError:
            raise ConfigError('reading a damaged JSON answer needs json-repair: pip install "mechlab[delegate]"') from e
        doc = json_repair.loads(text)
        if doc in ("", None) or not isinstance(doc, (dict, list)):
            raise ValueError(f"not JSON: {e}") from e
        return doc


def _json_values(text: str) -> tuple[list, int] | None:
    """Every JSON value written in ``text`` and the number of prose segments around them (a model's preamble,
    closing words), or None when something that opens like JSON (``{`` or ``[``) does not read as JSON."""
    decoder, values, stray, i = json.JSONDecoder(), [], 0, 0
    opener = re.compile(r"[\[{]")
    while True:
        m = opener.search(text, i)
        if m is None:
            stray += bool(text[i:].strip())
            return values, stray
        stray += bool(text[i:m.start()].strip())
        try:
            value, i = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            return None
        values.append(value)


def _answer_json(text: str) -> tuple[Any, list, int]:
    """(the document, the further JSON values after it, the prose segments around them) of an answer: valid JSON
    alone, else every value with the prose between (:func:`_json_values`), else what json-repair reads of a
    damaged document (:func:`_repaired_json`)."""
    try:
        return json.loads(text), [], 0
    except json.JSONDecodeError:
        pass
    found = _json_values(text)
    if found and found[0]:
        values, stray = found
        return values[0], values[1:], stray
    return _repaired_json(text), [], 0


class JSONDomain(Domain):
    """JSON documents (RFC 8259). Similarity: :func:`tree_similarity` of the seed and the answer (key order and
    formatting do not count). An answer that is not valid JSON is read by json-repair (a truncated document
    keeps what came before the cut); prose around the document and a second document cost as extra leaves.
    Oracle edits: rename_key (everywhere), nest (the whole document under a key),
    add_field (top level), reverse_list (a top-level list), indent (formatting only)."""

    name = "json"

    def parse(self, text: str) -> tuple[Any, int]:
        """(the document, the leaves of what the answer holds besides it: a further document's leaves, one per
        prose segment around the JSON), see :func:`_answer_json`."""
        doc, more, stray = _answer_json(text)
        return doc, stray + sum(_size(v) for v in more)

    def strict(self, text: str) -> Any:
        return json.loads(text)

    def file_similarity(self, seed: tuple[Any, int], got: tuple[Any, int]) -> float:
        """:func:`tree_similarity`, times n / (n + e) for an answer holding e leaves besides its document (n: the
        seed's leaves), so content around the document costs as extra leaves would."""
        (a, _), (b, extra) = seed, got
        n = _size(a)
        return tree_similarity(a, b) * n / (n + extra)

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


def _yaml_loader():
    """PyYAML's safe loader, the libyaml-backed one where PyYAML was built with it (the same YAML, faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _duplicate_leaves(node) -> int:
    """The scalar leaves under the repeated keys of a composed YAML document's mappings (PyYAML keeps the last of
    a repeated key silently, so a document written twice reads as one: the repeats cost as extra leaves)."""
    import yaml

    def leaves(n) -> int:
        if isinstance(n, yaml.MappingNode):
            return sum(leaves(v) for _, v in n.value) or 1
        if isinstance(n, yaml.SequenceNode):
            return sum(leaves(v) for v in n.value) or 1
        return 1

    if node is None:
        return 0
    total, seen = 0, set()
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = (k.tag, k.value) if isinstance(k, yaml.ScalarNode) else id(k)
            total += leaves(v) if key in seen else 0
            seen.add(key)
            total += _duplicate_leaves(v)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_duplicate_leaves(v) for v in node.value)
    return total


class YAMLDomain(JSONDomain):
    """YAML 1.1 documents (PyYAML, safe loader): the JSON domain's similarity and edits on the parsed data;
    written back in block style with the keys in document order. An answer with a syntax error is read up to the
    line of the error (the document before it is kept, each line cut costing one leaf), and the leaves under a
    repeated key (which PyYAML silently overwrites) cost as extra leaves; an empty answer is no document."""

    name = "yaml"

    def strict(self, text: str) -> Any:
        import yaml

        return yaml.load(text, Loader=_yaml_loader())

    def parse(self, text: str) -> tuple[Any, int]:
        """(the document read up to the line of its first error, the number of lines cut: each costs one leaf);
        an error reported past the last line (a trailing line of prose) cuts the last non-blank line."""
        return self._read_yaml(text)

    def _read_yaml(self, text: str) -> tuple[Any, int]:
        import yaml

        lines = text.split("\n")
        cut = 0
        for _ in range(8):
            try:
                doc = yaml.load("\n".join(lines), Loader=_yaml_loader())
                break
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                if mark is None or mark.line == 0:
                    raise
                at = mark.line if mark.line < len(lines) else max(
                    (i for i, x in enumerate(lines) if x.strip()), default=0)
                if at == 0:
                    raise
                cut += sum(1 for x in lines[at:] if x.strip())
                lines = lines[:at]
        else:
            raise ValueError("no readable YAML prefix")
        if doc is None:
            raise ValueError("an empty YAML document")
        return doc, cut + _duplicate_leaves(yaml.compose("\n".join(lines), Loader=_yaml_loader()))

    @staticmethod
    def _dump(doc: Any, indent: int = 2) -> str:
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, indent=indent, default_flow_style=False)

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            out[name] = self._dump(self._edit(op, self.strict(files[name])), op.get("spaces", 2))
        return out

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        as_json = JSONDomain.corrupt(self, {name: json.dumps(self.strict(files[name]))}, rng)
        return {**files, name: self._dump(json.loads(as_json[name]))}


# ---- CSV ---------------------------------------------------------------------------------------------------

def _same_cell(a: str | None, b: str | None) -> bool:
    """Two spreadsheet cells hold the same value: equal after trimming (a non-breaking space read as a space), or
    both numbers of equal value (1 and 1.0)."""
    if a is None or b is None:
        return a is b
    a, b = a.replace("\xa0", " ").strip(), b.replace("\xa0", " ").strip()
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


class CSVDomain(Domain):
    """Spreadsheets (RFC 4180; the delimiter is sniffed among , ; tab |). Similarity: 0.2 × header (1 when equal,
    else half the Jaccard overlap of the column names) + 0.6 × rows + 0.15 × the kept order of consecutive seed rows
    + 0.05 × the same delimiter (a consumer reading the seed's delimiter misreads the rest).
    Rows are matched by the Hungarian method on the fraction of the seed's columns (by name) whose cells hold the
    same value (:func:`_same_cell`), over the longer of the seed's columns and the row's cells, so a ragged or
    cut-off row loses only its damaged cells; the rows term is the matched score over the larger row count, so
    a missing row and an extra (duplicated, invented) row each cost their share. Seeds must not be ragged.
    Oracle edits: rename_column, swap_columns, reverse_rows, add_column, delimiter."""

    name = "csv"
    W_HEADER, W_ROWS, W_ORDER, W_DELIMITER = 0.2, 0.6, 0.15, 0.05  # where row order means nothing W_ORDER = 0

    @staticmethod
    def same_cell(a: str | None, b: str | None) -> bool:
        """Two cells hold the same value (:func:`_same_cell`; subclasses compare their own value types)."""
        return _same_cell(a, b)

    def _rows(self, text: str) -> list[list[str]]:
        return self._read(text)[0]

    @staticmethod
    def _read(text: str) -> tuple[list[list[str]], str]:
        """(the non-empty rows, the delimiter sniffed from the first line among , ; tab |)."""
        first = text.splitlines()[0] if text.strip() else ","
        try:
            dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        except csv.Error:  # one column: nothing to sniff
            dialect = csv.excel
        rows = [r for r in csv.reader(io.StringIO(text), dialect) if r]
        if not rows:
            raise ValueError("empty table")
        return rows, dialect.delimiter

    def parse(self, text: str) -> tuple[list[str], list[list[str]], str]:
        """(header, rows as lists of cells, the delimiter); rows may be ragged. Lines before the table that hold
        no delimiter while later lines do (a model's preamble) are read past and kept as extra one-cell rows at the
        end, so they cost as extra rows instead of becoming the header."""
        lines = text.split("\n")
        stray: list[list[str]] = []
        has_delimiter = [any(c in x for c in ",;\t|") for x in lines]
        while len(lines) > 1 and not has_delimiter[0] and any(has_delimiter[1:]):
            if lines[0].strip():
                stray.append([lines[0].strip()])
            lines, has_delimiter = lines[1:], has_delimiter[1:]
        rows, delimiter = self._read("\n".join(lines))
        return [c.replace("\xa0", " ").strip() for c in rows[0]], rows[1:] + stray, delimiter

    def strict(self, text: str) -> tuple[list[str], list[dict[str, str]]]:
        """(header, rows as dicts); raises ValueError for duplicate column names or a ragged row."""
        rows = self._rows(text)
        header = rows[0]
        if len(set(header)) != len(header):
            raise ValueError("duplicate column names")
        if any(len(r) != len(header) for r in rows[1:]):
            raise ValueError("ragged rows")
        return header, [dict(zip(header, r)) for r in rows[1:]]

    def file_similarity(self, seed, got) -> float:
        (h1, r1, d1), (h2, r2, d2) = seed, got
        header = 1.0 if h1 == h2 else len(set(h1) & set(h2)) / max(len(set(h1) | set(h2)), 1) * 0.5
        col = {c: i for i, c in reversed(list(enumerate(h2)))}

        def row_score(a: list[str], b: list[str]) -> float:
            cells = [b[col[c]] if c in col and col[c] < len(b) else None for c in h1]
            same = sum(self.same_cell(x, y) for x, y in zip(a, cells))
            return same / max(len(h1), len(a), len(b))

        rows, order = matched_records(r1, r2, row_score)
        return self.W_HEADER * header + self.W_ROWS * rows + self.W_ORDER * order + self.W_DELIMITER * (d1 == d2)

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
            header, rows = self.strict(files[name])
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
        header, rows = self.strict(files[name])
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


@functools.lru_cache(maxsize=1 << 16)  # relays compare the same cue texts again and again
def _text_ratio(a: str, b: str) -> float:
    """difflib's similarity ratio of two texts (1.0 for equal texts)."""
    import difflib

    return 1.0 if a == b else difflib.SequenceMatcher(None, a, b).ratio()


class SRTDomain(Domain):
    """SubRip subtitles: cues (start, end, text). Similarity, as in the DELEGATE paper (arXiv 2604.15597): 0.20
    coverage (seed cues matched with text similarity ≥ 0.5) + 0.40 text (the summed text similarity of the Hungarian
    matching of cues) + 0.25 timing (matched cues: 1 within 5 ms, falling to 0 at 2 s of start+end error) + 0.15 order
    (consecutive seed cues whose matches keep their order). Text and timing are divided by the larger of the seed's
    and the answer's cue counts, so an invented or duplicated cue costs its share. The order term also holds the cue
    numbers: 0.8 kept order + 0.2 matched cues keeping the seed's number (over the larger count; a cue written without
    its number line keeps it, a renumbered cue does not). An answer is read block by block: a cue without its number
    line is read, a block without a timing line (a cut-off cue) is an unreadable record that counts as an extra cue.
    Oracle edits: shift (all times by ms), reverse (cue order in the file), dash (prefix every text line with '- '),
    italic (wrap every cue in <i>…</i>), renumber (start the numbering at 0)."""

    name = "srt"

    @staticmethod
    def _blocks(text: str):
        """(cue or None, the block's first line) per blank-line separated block."""
        for block in re.split(r"\n\s*\n", text.strip().replace("\r\n", "\n")):
            lines = block.strip().split("\n")
            if not lines or not lines[0].strip():
                continue
            numbered = lines[0].strip().lstrip("-").isdigit()
            m = _TIME.match(lines[1].strip()) if numbered and len(lines) > 1 else _TIME.match(lines[0].strip())
            if m is None:
                yield None, lines[0]
                continue
            g = m.groups()
            yield (_ms(*g[:4]), _ms(*g[4:]), "\n".join(lines[2 if numbered else 1:])), lines[0]

    def strict(self, text: str) -> list[tuple[int, int, str]]:
        cues = []
        for cue, first in self._blocks(text):
            if cue is None:
                raise ValueError(f"a cue without a number and timing line: {first[:40]!r}")
            cues.append(cue)
        if not cues:
            raise ValueError("no cues")
        return cues

    def parse(self, text: str) -> tuple[list[tuple[int, int, str]], int, list[str | None]]:
        """(the readable cues, the number of unreadable blocks, each readable cue's number line or None); raises
        ValueError when no cue is readable."""
        blocks = list(self._blocks(text))
        cues = [c for c, _ in blocks if c is not None]
        if not cues:
            raise ValueError("no cues")
        numbers = [first.strip() if first.strip().lstrip("-").isdigit() else None for c, first in blocks
                   if c is not None]
        return cues, len(blocks) - len(cues), numbers

    @staticmethod
    def _write(cues: list[tuple[int, int, str]], first: int = 1) -> str:
        return "\n".join(f"{i}\n{_stamp(a)} --> {_stamp(b)}\n{t}\n" for i, (a, b, t) in enumerate(cues, first))

    def file_similarity(self, seed, got) -> float:
        (seed, _, numbers_a), (got, unreadable, numbers_b) = seed, got
        pairs = best_pairs(seed, got, lambda a, b: _text_ratio(a[2], b[2]))
        match = {i: j for i, (j, _) in pairs.items()}
        n, larger = len(seed), max(len(seed), len(got) + unreadable)
        coverage = sum(sim >= 0.5 for _, sim in pairs.values()) / n
        text = sum(sim for _, sim in pairs.values()) / larger

        def timing(a, b):
            err = abs(a[0] - b[0]) + abs(a[1] - b[1])
            return 1.0 if err <= 5 else max(0.0, 1 - err / 2000)

        time_score = sum(timing(seed[i], got[j]) for i, j in match.items()) / larger
        numbers = sum(numbers_b[j] in (None, numbers_a[i]) for i, j in match.items()) / larger
        return 0.20 * coverage + 0.40 * text + 0.25 * time_score + 0.15 * (0.8 * _kept_order(match, n) + 0.2 * numbers)

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            cues, kind, first = self.strict(files[name]), op["kind"], 1
            if kind == "shift":
                cues = [(a + op["ms"], b + op["ms"], t) for a, b, t in cues]
            elif kind == "reverse":
                cues = cues[::-1]
            elif kind == "dash":
                cues = [(a, b, "\n".join("- " + x for x in t.split("\n"))) for a, b, t in cues]
            elif kind == "undash":
                cues = [(a, b, "\n".join(x.removeprefix("- ") for x in t.split("\n"))) for a, b, t in cues]
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
        cues = self.strict(files[name])
        if len(cues) > 1:
            del cues[rng.randrange(len(cues))]  # a dropped cue
        return {**files, name: self._write(cues)}


# ---- Python ------------------------------------------------------------------------------------------------

def _replace_tokens(text: str, kind: int, old: str, new: str) -> str:
    """Replace the code tokens of type ``kind`` spelled ``old`` (never inside strings or comments)."""
    lines = text.splitlines(keepends=True)
    spans = [t.start + t.end for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == kind and t.string == old]
    for (r0, c0, _r1, c1) in reversed(spans):  # single-line tokens; right to left keeps positions valid
        line = lines[r0 - 1]
        lines[r0 - 1] = line[:c0] + new + line[c1:]
    return "".join(lines)


@dataclass(frozen=True)
class PythonTestSuite:
    """An environment's test file(s) for the Python domain: ``files`` (name → text; never shown to the model),
    ``entry`` (the file defining ``run_tests(state)``) and ``state`` (the id of the state the answer should be in,
    passed to ``run_tests``: the seed state's id, ``seed`` for mechlab's environments, the official start state's
    id for converted ones)."""

    files: tuple[tuple[str, str], ...]
    entry: str = "testing.py"
    state: str = "seed"


def pass_rate(result: Any) -> float:
    """A ``run_tests`` result as a pass rate in [0, 1]: a bool (all or nothing); a number (clipped to [0, 1]); a
    ``(passed, total)`` pair; a dict with ``score`` / ``pass_rate`` (a number), or ``passed`` and ``total`` (or
    ``failed``) counts; or a list of per-test results (each a bool, or a dict with ``passed``), their mean.
    Raises ValueError for anything else."""
    if isinstance(result, bool):
        return float(result)
    if isinstance(result, (int, float)) and math.isfinite(result):
        return min(1.0, max(0.0, float(result)))
    if isinstance(result, (list, tuple)) and len(result) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in result):
        passed, total = result
        return min(1.0, max(0.0, passed / total)) if total > 0 else 0.0
    if isinstance(result, dict):
        for key in ("score", "pass_rate"):
            if key in result and not isinstance(result[key], bool):
                return pass_rate(float(result[key]))
        if "passed" in result and ("total" in result or "failed" in result):
            passed = result["passed"]
            passed = len(passed) if isinstance(passed, list) else int(passed)
            if "total" in result:
                total = int(result["total"])
            else:
                failed = result["failed"]
                total = passed + (len(failed) if isinstance(failed, list) else int(failed))
            return pass_rate((passed, total))
    if isinstance(result, list) and result:
        return sum(pass_rate(x if not isinstance(x, dict) else bool(x.get("passed"))) for x in result) / len(result)
    raise ValueError(f"cannot read a pass rate from run_tests's result {str(result)[:80]!r}")


class PythonDomain(Domain):
    """Python programs. A file set is scored by running every seed script in a temporary directory holding the
    answer's files, with a fresh interpreter (``python -E -s``: no environment variables or user site; the
    script's folder is on the path, so a script imports the other files of the set) contained by :func:`mechlab.delegate.sandbox.run_contained`
    (cleared environment, stdin closed, CPU / memory / output limits, a wall-clock timeout, no network where the
    machine allows). A program with the seed's exact output and exit status scores 1, as in DELEGATE-52's
    test-by-output; otherwise 0.1 for a program that parses plus 0.9 × the output lines it shares with the seed's
    (longest matching blocks, in order) over the longer of the two outputs (× 0.9 for a different exit status),
    so missing and invented lines both cost. An empty program (no statements) scores 0. An environment may also
    carry a test suite (:class:`PythonTestSuite`: a ``testing.py`` defining ``run_tests(state)``, as the official
    release's Python environments do); then the file set scores 0.5 × the output score + 0.5 × the suite's pass
    rate on the answer (:func:`pass_rate` reads ``run_tests``'s result). Oracle edits (textual,
    exactly invertible): rename (an identifier), tabs (leading 4-space indents ↔ tabs), header (a first comment
    line), constant (a literal named as a module constant)."""

    name = "python"
    timeout = 10.0
    W_TESTS = 0.5  # the weight of an environment's test suite, where it has one

    def parse(self, text: str) -> Any:
        import ast

        return ast.parse(text)

    def _run(self, files: Files, script: str) -> tuple[int, tuple[str, ...]]:
        return self._run_cached(tuple(sorted(files.items())), script)

    @functools.lru_cache(maxsize=256)  # relays revisit the same states; a run depends only on the files
    def _run_cached(self, items: tuple[tuple[str, str], ...], script: str) -> tuple[int, tuple[str, ...]]:
        import sys
        import tempfile
        from pathlib import Path

        from mechlab.delegate.sandbox import Limits, run_contained

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp).resolve()
            for name, text in items:
                path = (root / name).resolve()
                if root not in path.parents:  # a file name that leaves the folder is not written
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            r = run_contained([sys.executable, "-E", "-s", script], root,
                              Limits(cpu_seconds=int(self.timeout), wall_seconds=self.timeout * 2))
            if r.timed_out:
                return -1, ()
            return r.returncode, tuple(r.stdout.splitlines())

    def similarity(self, seed: Files, got: Files, tests: PythonTestSuite | None = None) -> float:
        """The output score (the class docstring) averaged over the seed's scripts and the answer's extra files
        (an extra file scores 0); with a test suite, ``(1 - W_TESTS)`` × that + ``W_TESTS`` × the suite's result on
        the answer (:meth:`test_score`)."""
        scores = []
        for name in seed:
            if name not in got or self.check(name, got[name]) or not self.parse(got[name]).body:
                scores.append(0.0)
                continue
            code0, want = self._run(seed, name)
            code1, have = self._run(got, name)
            if code0 == code1 and want == have:
                scores.append(1.0)
                continue
            import difflib

            same = sum(b.size for b in difflib.SequenceMatcher(None, want, have, autojunk=False).get_matching_blocks())
            scores.append(0.1 + 0.9 * same / max(len(want), len(have), 1) * (0.9 if code0 != code1 else 1.0))
        extra = [name for name in got if name not in seed]
        output = sum(scores) / (len(scores) + len(extra))
        if tests is None:
            return round(output, 12)
        return round((1 - self.W_TESTS) * output + self.W_TESTS * self.test_score(tests, got), 12)

    def test_score(self, tests: PythonTestSuite, files: Files) -> float:
        """The pass rate in [0, 1] of ``tests`` run on ``files``: the suite's files and ``files`` written to a
        temporary folder (a model's file of the same name as a suite file is replaced by the suite's), then
        ``run_tests(state)`` of the suite's entry module called in a fresh interpreter contained as the scripts
        are (:func:`mechlab.delegate.sandbox.run_contained`). A suite that crashes, times out or returns nothing
        readable scores 0 (the answer's code runs inside it). The result is read as the class docstring says."""
        return self._tests_cached(tuple(sorted(files.items())), tuple(sorted(tests.files)), tests.entry, tests.state)

    @functools.lru_cache(maxsize=256)
    def _tests_cached(self, items, suite, entry: str, state: str) -> float:
        import secrets
        import sys
        import tempfile
        from pathlib import Path

        from mechlab.delegate.sandbox import Limits, run_contained

        marker = "MECHLAB-RUN-TESTS-" + secrets.token_hex(8) + ":"
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp).resolve()
            for name, text in [*items, *suite]:  # the suite's files last: they win over a model's file of that name
                path = (root / name).resolve()
                if root not in path.parents:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            driver = ("import json, sys\nsys.path.insert(0, '.')\nmarker, module, state = sys.argv[1:4]\n"
                      "import importlib\nresult = importlib.import_module(module).run_tests(state)\n"
                      "sys.stdout.flush()\nprint('\\n' + marker + json.dumps(result, default=str))\n")
            module = entry.removesuffix(".py").replace("/", ".")
            r = run_contained([sys.executable, "-E", "-s", "-c", driver, marker, module, state],
                              root, Limits(cpu_seconds=int(self.timeout), wall_seconds=self.timeout * 2))
        lines = [x for x in r.stdout.splitlines() if x.startswith(marker)]
        if r.timed_out or r.returncode != 0 or not lines:
            return 0.0
        import json

        try:
            return pass_rate(json.loads(lines[-1][len(marker):]))
        except (ValueError, TypeError):
            return 0.0

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
    """GeoJSON feature collections (RFC 7946). Features are matched to the seed's by the Hungarian method on
    0.05 × the feature ``id`` (the same, or absent on both) + 0.30 × properties (the fraction of the seed's key/values
    kept, equal by value, over the larger of the two property sets) + 0.40 × geometry (same type, and the fraction of
    vertices, aligned in order, within 1e-7 degrees), summed over the larger feature count; similarity = 0.15 ×
    feature count agreement + that matched score (0.75 of the weight) + 0.10 × order. A document that is not valid
    JSON is read by json-repair. Oracle edits: swap_axes (lon/lat ↔ lat/lon), rename_property, reverse_features,
    add_property, id_from (copy a property into the feature id)."""

    name = "geojson"

    @staticmethod
    def _features(doc: Any, strict: bool) -> list[dict]:
        if (not isinstance(doc, dict) or doc.get("type") != "FeatureCollection"
                or not isinstance(doc.get("features"), list)):
            raise ValueError("not a GeoJSON FeatureCollection")
        for f in doc["features"]:
            if strict and (not isinstance(f, dict) or f.get("type") != "Feature" or "geometry" not in f):
                raise ValueError("a feature without type 'Feature' or a geometry")
        return [f if isinstance(f, dict) else {} for f in doc["features"]]

    def strict(self, text: str) -> list[dict]:
        return self._features(json.loads(text), True)

    def parse(self, text: str) -> tuple[list[dict], int]:
        """(the features, the extra features and prose segments around the collection: a second collection's
        features, or one per other JSON value or prose segment)."""
        doc, more, stray = _answer_json(text)
        extra = stray + sum(len(v["features"]) if isinstance(v, dict) and isinstance(v.get("features"), list) else 1
                            for v in more)
        return self._features(doc, False), extra

    @staticmethod
    def _props(f: dict) -> dict:
        props = f.get("properties")
        return props if isinstance(props, dict) else {}

    def file_similarity(self, seed: tuple[list[dict], int], got: tuple[list[dict], int]) -> float:
        """The class docstring's score, times n / (n + e) for e extra features or prose segments around the
        collection (n: the seed's features)."""
        (seed, _), (got, extra) = seed, got
        if not seed:
            return 1.0 if not got and not extra else 0.0
        if not got:
            return 0.0
        return self._similarity(seed, got) * len(seed) / (len(seed) + extra)

    def _similarity(self, seed: list[dict], got: list[dict]) -> float:

        def prop_score(a, b):
            pa, pb = self._props(a), self._props(b)
            return sum(1 for k, v in pa.items() if k in pb and same_value(pb[k], v)) / max(len(pa), len(pb), 1)

        def geom_score(a, b):
            ga, gb = a.get("geometry") or {}, b.get("geometry") or {}
            if not isinstance(ga, dict) or not isinstance(gb, dict) or ga.get("type") != gb.get("type"):
                return 0.0
            ca, cb = _flat_coords(ga.get("coordinates")), _flat_coords(gb.get("coordinates"))
            if not ca and not cb:
                return 1.0
            def near(p, q) -> float:
                return float(len(p) == len(q) and all(abs(x - y) <= 1e-7 for x, y in zip(p, q)))

            return aligned(ca, cb, near) / max(len(ca), len(cb))

        def feature_score(a, b):
            same_id = ("id" in a) == ("id" in b) and same_value(a.get("id"), b.get("id"))
            return (0.30 * prop_score(a, b) + 0.40 * geom_score(a, b) + 0.05 * same_id) / 0.75

        features, order = matched_records(seed, got, feature_score)
        count = min(len(seed), len(got)) / max(len(seed), len(got))
        return 0.15 * count + 0.75 * features + 0.10 * order

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
