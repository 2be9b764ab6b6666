"""The domain interface and the matching helpers every structural similarity shares (DELEGATE-52,
arXiv 2604.15597: parser-based, weighted structural similarity).

Two readers per domain: ``check`` is strict (a seed document must pass it), ``parse`` is lenient (an answer is
read as far as it can be, and what cannot be read counts as damage in the score, so a local defect costs
locally)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from numbers import Number
from typing import Any

from mechlab.errors import ConfigError

Files = dict[str, str]


class Domain:
    name = ""

    def parse(self, text: str) -> Any:
        """The document as the data ``file_similarity`` compares, read leniently; raises when nothing is read."""
        raise NotImplementedError

    def strict(self, text: str) -> Any:
        """The strict reader of seed documents (the same as ``parse`` unless a domain reads answers leniently)."""
        return self.parse(text)

    def check(self, filename: str, text: str) -> str | None:
        """None when the document passes the strict reader, else the parser's complaint."""
        try:
            self.strict(text)
        except Exception as e:  # each parser raises its own error types
            return f"does not parse as {self.name}: {e}"
        return None

    def file_similarity(self, seed: Any, got: Any) -> float:
        raise NotImplementedError

    def similarity(self, seed: Files, got: Files) -> float:
        """Mean over the seed's files of ``file_similarity`` (0 for a file missing or no longer parsing). Both sides
        are read without a leading byte-order mark and with LF line endings, as the relay reads replies."""
        scores = []
        for name, text in seed.items():
            if name not in got:
                scores.append(0.0)
                continue
            try:
                scores.append(float(self.file_similarity(self.parse(_plain(text)), self.parse(_plain(got[name])))))
            except ConfigError:  # a missing parser is the user's to fix, not a score
                raise
            except Exception:  # an answer that no longer parses at all scores 0 for that file
                scores.append(0.0)
        return round(sum(scores) / len(scores), 12)  # no float dust: an exact reconstruction is exactly 1.0

    def apply(self, op: dict, files: Files) -> Files:
        raise NotImplementedError

    def invert(self, op: dict) -> dict:
        raise NotImplementedError

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        raise NotImplementedError


def _plain(text: str) -> str:
    """``text`` without a leading byte-order mark, with LF line endings (CRLF and lone CR converted)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _best_matching(score) -> dict[int, int]:
    """Seed item → answer item maximising the summed ``score`` (a seed × answer array): the Hungarian method.
    Among matchings of equal score the one closest to the diagonal wins (a tie-break below any real score
    difference), so equal items, e.g. duplicate rows, are matched in their order."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    score = np.asarray(score, dtype=float)
    n, m = score.shape
    if n == 0 or m == 0:
        return {}
    i, j = np.arange(n)[:, None] / max(n - 1, 1), np.arange(m)[None, :] / max(m - 1, 1)
    rows, cols = linear_sum_assignment(-(score + 1e-9 * (1 - np.abs(i - j)) / max(n, m)))
    return dict(zip(rows.tolist(), cols.tolist()))


def same_value(a: Any, b: Any) -> bool:
    """Equality of parsed values by value: numbers compare numerically (1 == 1.0, NaN == NaN), booleans only with
    booleans (true is not 1), containers element by element, anything else with ==."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Number) and isinstance(b, Number):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def aligned(a: Sequence, b: Sequence, score: Callable[[Any, Any], float]) -> float:
    """The summed ``score`` (in [0, 1] per pair) of the best order-preserving alignment of ``a`` with ``b`` (an
    optimal alignment without gap costs, as in Needleman–Wunsch), so one dropped or inserted item costs that item
    alone. Equal prefixes and suffixes are taken as aligned first (what makes long, locally damaged sequences
    cheap). Normalise by the longer length for a similarity."""
    lo, n, m = 0, len(a), len(b)
    while lo < min(n, m) and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < min(n, m) - lo and a[n - 1 - hi] == b[m - 1 - hi]:
        hi += 1
    a_mid, b_mid = a[lo:n - hi], b[lo:m - hi]
    prev = [0.0] * (len(b_mid) + 1)
    for x in a_mid:
        cur = [0.0]
        for j, y in enumerate(b_mid):
            cur.append(max(prev[j + 1], cur[j], prev[j] + score(x, y)))
        prev = cur
    return lo + hi + prev[-1]


def matched_records(seed: Sequence, got: Sequence, score: Callable[[Any, Any], float]) -> tuple[float, float]:
    """Records matched by the Hungarian method on ``score``: (the summed score over the larger of the two record
    counts, so a missing record and an extra one, duplicated or invented, each cost their share; the kept order of
    consecutive seed records). Both 1.0 for two empty lists; (0, 0) when one side is empty."""
    import numpy as np

    if not seed and not got:
        return 1.0, 1.0
    if not seed or not got:
        return 0.0, 0.0
    # records that are exactly equal are paired first, in their order (what a diff does): an unchanged file costs
    # O(n) comparisons instead of n × m, and the Hungarian method only sees the records that differ
    free: dict[str, list[int]] = {}
    for j, y in enumerate(got):
        free.setdefault(_record_key(y), []).append(j)
    match, total = {}, 0.0
    for i, x in enumerate(seed):
        same = free.get(_record_key(x))
        if same:
            match[i] = same.pop(0)
            total += score(x, got[match[i]])
    rest_seed = [i for i in range(len(seed)) if i not in match]
    taken = set(match.values())
    rest_got = [j for j in range(len(got)) if j not in taken]
    if rest_seed and rest_got:
        s = np.array([[score(seed[i], got[j]) for j in rest_got] for i in rest_seed], dtype=float)
        for a, b in _best_matching(s).items():
            match[rest_seed[a]] = rest_got[b]
            total += s[a, b]
    return float(total / max(len(seed), len(got))), _kept_order(match, len(seed))


def _record_key(record: Any) -> str:
    """A canonical text of a parsed record, equal exactly when the records are (dict keys sorted)."""
    try:
        return json.dumps(record, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(record)


def _kept_order(match: dict[int, int], n: int) -> float:
    """The fraction of consecutive seed items whose matches keep their order (1 for a single item)."""
    if n < 2:
        return 1.0
    return sum(1 for i in range(n - 1) if i in match and i + 1 in match and match[i] < match[i + 1]) / (n - 1)


def readable_xml_root(text: str):
    """The document's root element, or, for a document that is not well-formed (cut off, a broken tag), the elements
    ElementTree's pull parser built before the first error (their cut-off ends closed)."""
    import xml.etree.ElementTree as ET

    try:
        return ET.fromstring(text)
    except ET.ParseError:
        pass
    parser = ET.XMLPullParser(events=("start",))
    root = None
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError:
        pass
    try:
        for _, element in parser.read_events():  # the events before the error, then the error itself
            root = element if root is None else root
    except ET.ParseError:
        pass
    if root is None:
        raise ValueError("no readable XML")
    return root
