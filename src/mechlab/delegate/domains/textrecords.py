"""The plumbing of the domains added in ``markup`` and ``infra`` (DELEGATE-52, arXiv 2604.15597: parser-based
weighted structural similarity): a document is read by its format's parser into document-level fields and a list of
records (plain dicts), seed records are matched to the answer's by the Hungarian method
(:func:`mechlab.delegate.domains.records.record_similarity`), and field values compare by value
(:func:`field_similarity`: numbers numerically, number lists aligned in order).

The oracle's edits are exact text edits (the files keep their formatting, so a round trip returns the seed byte for
byte), given as data in each environment:

- ``{"kind": "replace", "pairs": [[old, new], ...]}``: every occurrence of each ``old`` becomes ``new``, pair by
  pair (inverse: the pairs swapped, in reverse order). An insertion is a pair whose ``new`` extends ``old``;
- ``{"kind": "reverse"}``: the domain's records (:meth:`TextRecordDomain.blocks`) in reverse order, the text between
  them in place (its own inverse);
- ``{"kind": "shift", "pattern": REGEX, "delta": x}``: every number matched by the regex's group ``n`` plus ``x``,
  in decimal arithmetic with its digits kept (``12.50`` + 1 = ``13.50``; inverse: ``-x``);
- ``{"kind": "add_file", "file": name, "text": ...}`` / ``remove_file`` (each other's inverse): a file-set change;
- ``{"kind": "split_file", "file": src, "new": dst, "after": anchor, "text": part}``: ``part``, which follows
  ``anchor`` in ``src``, moves to a new file ``dst`` without its surrounding blank lines (inverse ``merge_file``:
  ``dst``'s text back after ``anchor`` with those blank lines, ``dst`` removed); a file-set change;
- ``rename_file`` works in every domain (``mechlab.delegate.relay.apply_op``).

An edit whose text is missing (e.g. the record was lost earlier) changes nothing. The noisy agent's corruption drops
one record's text (:meth:`TextRecordDomain.blocks`), keeping the rest byte for byte.
"""

from __future__ import annotations

import functools
import math
import random
import re
from decimal import Decimal
from typing import Any

from mechlab.delegate.domains.base import Domain, Files, aligned, same_value
from mechlab.delegate.domains.records import UNREADABLE, record_similarity

__all__ = ["TextRecordDomain", "field_similarity", "value_of", "UNREADABLE"]


def _scalar(s: str) -> Any:
    """A number (float) where the text is one, else the stripped text."""
    s = s.strip()
    try:
        f = float(s)
    except ValueError:
        return s
    return f if math.isfinite(f) or s.lower() in ("inf", "-inf", "nan") else s


def value_of(s: str) -> Any:
    """A field's text as a value compared by value: a number (``1`` = ``1.0``), a tuple of numbers for a
    whitespace-separated list (URDF ``xyz``, SVG ``viewBox``), a tuple of tuples for comma-joined tuples separated by
    whitespace (KML coordinates ``lon,lat,alt lon,lat,alt``, SVG ``points``), else the text with its whitespace
    collapsed."""
    s = " ".join(s.split())
    parts = s.split(" ")
    items = [tuple(_scalar(p) for p in part.split(",")) if "," in part else _scalar(part) for part in parts]

    def numeric(x):
        return all(isinstance(y, float) for y in x) if isinstance(x, tuple) else isinstance(x, float)

    if len(items) > 1 and all(numeric(x) for x in items):
        return tuple(items)
    if len(items) == 1 and isinstance(items[0], tuple) and numeric(items[0]):
        return items[0]
    return _scalar(s)


def _value_similarity(a: Any, b: Any) -> float:
    """1/0 by value (:func:`same_value`); two tuples of several items are aligned in order (:func:`aligned`) and
    score the fraction of items kept over the longer, so one dropped vertex costs that vertex."""
    if isinstance(a, tuple) and isinstance(b, tuple) and max(len(a), len(b)) > 1:
        if same_value(a, b):
            return 1.0
        return aligned(a, b, lambda x, y: float(same_value(x, y))) / max(len(a), len(b))
    return float(same_value(a, b))


def field_similarity(a: dict, b: dict) -> float:
    """The summed :func:`_value_similarity` of the fields both records hold, over the larger field count (1 for two
    records without fields): a changed, missing or invented field each costs its share."""
    if not a and not b:
        return 1.0
    return sum(_value_similarity(v, b[k]) for k, v in a.items() if k in b) / max(len(a), len(b))


def _shift_number(text: str, delta: Any) -> str:
    """``text`` (a decimal number) plus ``delta`` with as many decimals as ``text`` had."""
    d = Decimal(text)
    out = d + Decimal(str(delta))
    places = -d.as_tuple().exponent if d.as_tuple().exponent < 0 else 0
    return f"{out:.{places}f}"


class TextRecordDomain(Domain):
    """A format read into ``(document fields, records)`` by :meth:`read` (lenient: what cannot be read is an
    :data:`UNREADABLE` record, which costs as an extra record) and :meth:`load` (strict: the seed reader). Scored by
    :func:`record_similarity` with the class's weights ``W = (count, records, document, order)``; ``record_score``
    compares two records in [0, 1] (default: records of different ``kind`` score 0, else
    :func:`field_similarity`)."""

    W: tuple[float, float, float, float] = (0.15, 0.70, 0.10, 0.05)

    def read(self, text: str) -> tuple[dict, list]:
        raise NotImplementedError

    def load(self, text: str) -> Any:
        """The strict reader; raises ValueError (or the parser's error) for a document a seed may not be."""
        raise NotImplementedError

    def strict(self, text: str) -> Any:
        return self._loaded(text)

    @functools.lru_cache(maxsize=256)  # replies are checked block by block, the same texts again and again
    def _loaded(self, text: str) -> Any:
        return self.load(text)

    def parse(self, text: str) -> tuple[dict, list]:
        return self._parsed(text)

    @functools.lru_cache(maxsize=256)  # relays score the same documents again and again; nothing mutates them
    def _parsed(self, text: str) -> tuple[dict, list]:
        if not text.strip():
            raise ValueError("an empty document")
        doc, records = self.read(text)
        if not doc and not [r for r in records if r is not UNREADABLE]:
            raise ValueError("nothing readable")
        return doc, records

    def record_score(self, a: dict, b: dict) -> float:
        if a.get("kind") != b.get("kind"):
            return 0.0
        return field_similarity(a, b)

    def doc_score(self, a: dict, b: dict) -> float:
        return field_similarity(a, b)

    def file_similarity(self, seed, got) -> float:
        (doc_a, rec_a), (doc_b, rec_b) = seed, got
        w_count, w_records, w_doc, w_order = self.W
        return record_similarity(rec_a, rec_b, self.record_score, self.doc_score(doc_a, doc_b) if w_doc else 1.0,
                                 w_count=w_count, w_records=w_records, w_doc=w_doc, w_order=w_order)

    # ---- the oracle's text edits and the noisy agent's damage --------------------------------------------------

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """The character spans of the document's records (what ``reverse`` reorders and the noisy agent drops),
        in order and not overlapping."""
        raise NotImplementedError

    def finish(self, text: str) -> str:
        """The text after an edit (a format with derived fields, e.g. TLE checksums, recomputes them here)."""
        return text

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        kind = op["kind"]
        if kind == "add_file":
            out[op["file"]] = op["text"]
            return out
        if kind == "remove_file":
            out.pop(op["file"], None)
            return out
        if kind in ("split_file", "merge_file"):  # the new file holds the part without its surrounding blank lines
            part = op["text"]
            lead, trail = part[: len(part) - len(part.lstrip("\n"))], part[len(part.rstrip("\n")):]
            src = out.get(op["file"], "")
            if kind == "split_file" and op["after"] + part in src:
                out[op["file"]] = self.finish(src.replace(op["after"] + part, op["after"], 1))
                out[op["new"]] = self.finish(part.strip("\n") + "\n")
            elif kind == "merge_file" and op["new"] in out and op["file"] in out:
                moved = out.pop(op["new"]).strip("\n")
                out[op["file"]] = self.finish(src.replace(op["after"], op["after"] + lead + moved + trail, 1))
            return out
        for name in op.get("files", list(files)):
            if name not in out:
                continue
            text = out[name]
            if kind == "replace":
                for old, new in op["pairs"]:
                    text = text.replace(old, new)
            elif kind == "reverse":
                spans = self.blocks(text)
                pieces = [text[a:b] for a, b in spans][::-1]
                for (a, b), piece in reversed(list(zip(spans, pieces))):
                    text = text[:a] + piece + text[b:]
            elif kind == "shift":
                text = re.sub(op["pattern"], lambda m: m.group(0)[:m.start("n") - m.start(0)]
                              + _shift_number(m.group("n"), op["delta"]) + m.group(0)[m.end("n") - m.start(0):],
                              text)
            else:
                raise ValueError(f"unknown {self.name} edit {kind!r}")
            out[name] = self.finish(text)
        return out

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        if kind == "replace":
            return {**op, "pairs": [[new, old] for old, new in reversed(op["pairs"])]}
        if kind == "shift":
            return {**op, "delta": -op["delta"]}
        pairs = {"add_file": "remove_file", "remove_file": "add_file", "split_file": "merge_file",
                 "merge_file": "split_file"}
        if kind in pairs:
            return {**op, "kind": pairs[kind]}
        return dict(op)  # reverse

    def corruptible(self, name: str) -> bool:
        """Whether the noisy agent may damage this file (all by default)."""
        return True

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        names = sorted(f for f in files if self.corruptible(f)) or sorted(files)
        name = rng.choice(names)
        text = files[name]
        spans = self.blocks(text)
        if len(spans) < 2:
            return files
        a, b = rng.choice(spans)
        return {**files, name: text[:a] + text[b:]}  # a dropped record
