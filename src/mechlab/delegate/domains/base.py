"""The domain interface and the matching helpers every structural similarity shares (DELEGATE-52,
arXiv 2604.15597: parser-based, weighted structural similarity).

Two readers per domain: ``check`` is strict (a seed document must pass it), ``parse`` is lenient (an answer is
read as far as it can be, and what cannot be read counts as damage in the score, so a local defect costs
locally)."""

from __future__ import annotations

import json
import math
import random
import re
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

    def similarity(self, seed: Files, got: Files, tests: Any = None) -> float:
        """Mean over the seed's files and the answer's extra files of ``file_similarity`` (0 for a file missing or no
        longer parsing; an extra file, one the seed does not have, scores 0, so a leftover split part or an invented
        file costs its share). Both sides are read without a leading byte-order mark and with LF line endings, as the
        relay reads replies. ``tests`` (a test suite) only the Python domain scores; ConfigError elsewhere."""
        if tests is not None:
            raise ConfigError(f"the {self.name} domain scores no test suites (only python environments carry one)")
        scores = []
        extra = [name for name in got if name not in seed]
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
        return round(sum(scores) / (len(scores) + len(extra)), 12)  # no float dust: an exact reconstruction is exactly 1.0

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


# Above these sizes the matchings below switch from the exact algorithms (Hungarian method, full alignment table:
# n × m score evaluations) to banded ones (about n × (2 BAND + 1) evaluations), so a heavily damaged large file
# scores in time linear in its size. The exact algorithms run whenever the part that differs is small, which is
# every realistic answer: equal records are paired and equal prefixes / suffixes aligned before the switch.
MATCH_EXACT_LIMIT = 40_000  # n × m pairs of differing records (200 × 200)
ALIGN_EXACT_LIMIT = 250_000  # cells of the alignment table of the differing middle (500 × 500)
BAND = 25  # positions either side of the diagonal the banded algorithms look at


def _band(i: int, n: int, m: int) -> range:
    """The answer positions within :data:`BAND` of seed position ``i``'s place on the diagonal (n seed items,
    m answer items)."""
    centre = round(i * (m - 1) / max(n - 1, 1)) if m > 1 else 0
    return range(max(0, centre - BAND), min(m, centre + BAND + 1))


def aligned(a: Sequence, b: Sequence, score: Callable[[Any, Any], float]) -> float:
    """The summed ``score`` (in [0, 1] per pair) of the best order-preserving alignment of ``a`` with ``b`` (an
    optimal alignment without gap costs, as in Needleman–Wunsch), so one dropped or inserted item costs that item
    alone. Equal prefixes and suffixes are taken as aligned first (what makes long, locally damaged sequences
    cheap). When the differing middle's table exceeds :data:`ALIGN_EXACT_LIMIT` cells only the cells within
    :data:`BAND` of its diagonal are scored (a cell outside carries the best value reached above or to its left,
    which is a gap), so the result is a valid alignment's score, a lower bound that is exact when the best
    alignment stays in the band. Normalise by the longer length for a similarity."""
    import numpy as np

    lo, n, m = 0, len(a), len(b)
    while lo < min(n, m) and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < min(n, m) - lo and a[n - 1 - hi] == b[m - 1 - hi]:
        hi += 1
    a_mid, b_mid = a[lo:n - hi], b[lo:m - hi]
    na, nb = len(a_mid), len(b_mid)
    if na * nb <= ALIGN_EXACT_LIMIT:
        prev = [0.0] * (nb + 1)
        for x in a_mid:
            cur = [0.0]
            for j, y in enumerate(b_mid):
                cur.append(max(prev[j + 1], cur[j], prev[j] + score(x, y)))
            prev = cur
        return lo + hi + prev[-1]
    prev_row = np.zeros(nb + 1)
    for i, x in enumerate(a_mid):
        cur_row = prev_row.copy()  # a cell left of the band: the gap from the cell above
        band = _band(i, na, nb)
        for j in band:
            cur_row[j + 1] = max(prev_row[j + 1], cur_row[j], prev_row[j] + score(x, b_mid[j]))
        if band.stop < nb:  # right of the band: the gap from the band's last cell or from above
            cur_row[band.stop + 1:] = np.maximum(prev_row[band.stop + 1:], cur_row[band.stop])
        prev_row = cur_row
    return lo + hi + float(prev_row[-1])


def best_pairs(seed: Sequence, got: Sequence, score: Callable[[Any, Any], float]) -> dict[int, tuple[int, float]]:
    """Seed item → (answer item, its score): exactly equal items paired first, in their order (what a diff does),
    then the rest by the Hungarian method on ``score`` (the sum maximised), or, when the differing items number
    more than :data:`MATCH_EXACT_LIMIT` pairs, greedily (best score first) among the answer items within
    :data:`BAND` positions of each seed item's place, a matching of at least half the optimal sum (each damaged
    record has one clear partner near its place in every realistic answer, where greedy is the optimum)."""
    free: dict[str, list[int]] = {}
    for j, y in enumerate(got):
        free.setdefault(_record_key(y), []).append(j)
    match: dict[int, tuple[int, float]] = {}
    for i, x in enumerate(seed):
        same = free.get(_record_key(x))
        if same:
            j = same.pop(0)
            match[i] = (j, float(score(x, got[j])))
    rest_seed = [i for i in range(len(seed)) if i not in match]
    taken = {j for j, _ in match.values()}
    rest_got = [j for j in range(len(got)) if j not in taken]
    if not rest_seed or not rest_got:
        return match
    if len(rest_seed) * len(rest_got) <= MATCH_EXACT_LIMIT:
        import numpy as np

        s = np.array([[score(seed[i], got[j]) for j in rest_got] for i in rest_seed], dtype=float)
        for a, b in _best_matching(s).items():
            match[rest_seed[a]] = (rest_got[b], float(s[a, b]))
        return match
    candidates = []
    for a, i in enumerate(rest_seed):
        for b in _band(a, len(rest_seed), len(rest_got)):
            candidates.append((-float(score(seed[i], got[rest_got[b]])), abs(a - b), a, b))
    candidates.sort()
    used_a, used_b = set(), set()
    for neg, _, a, b in candidates:
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        match[rest_seed[a]] = (rest_got[b], -neg)
    return match


def matched_records(seed: Sequence, got: Sequence, score: Callable[[Any, Any], float]) -> tuple[float, float]:
    """Records matched by :func:`best_pairs` on ``score``: (the summed score over the larger of the two record
    counts, so a missing record and an extra one, duplicated or invented, each cost their share; the kept order of
    consecutive seed records). Both 1.0 for two empty lists; (0, 0) when one side is empty."""
    if not seed and not got:
        return 1.0, 1.0
    if not seed or not got:
        return 0.0, 0.0
    pairs = best_pairs(seed, got, score)
    total = sum(s for _, s in pairs.values())
    return float(total / max(len(seed), len(got))), _kept_order({i: j for i, (j, _) in pairs.items()}, len(seed))


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
    """(the document's root element, the number of damaged places): a well-formed document is read by the standard
    library's ElementTree with no damage; one that is not (a broken tag, a cut-off end, content after the root
    element) is read by lxml's recovering parser (libxml2's ``recover`` mode: every element it can make sense of is
    kept). Where libxml2 ends the root early (a broken start tag makes its end tag close the root) the rest of the
    text is read the same way, inside the root's namespace declarations, and its elements are appended to the root, so
    one broken tag costs its own element rather than the rest of the document (a second document's elements are extra
    elements; prose before the first tag is one damaged place, the document read from that tag). Each source line
    holding an error counts as one damaged place (:func:`_damaged_lines`: a broken tag's cascade of end-tag mismatches
    is one place; the caller scores each place as an unreadable record, so the damage costs locally). Entities are not
    resolved and nothing is fetched. Raises ValueError when no element is readable, ConfigError when lxml is
    missing."""
    import xml.etree.ElementTree as ET

    try:
        return ET.fromstring(text), 0
    except ET.ParseError:
        pass
    try:
        from lxml import etree
    except ImportError as e:
        raise ConfigError('reading a damaged XML answer needs lxml: pip install "mechlab[delegate]"') from e

    def recover(data: bytes):
        parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, remove_comments=True,
                                 remove_pis=True)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError:
            root = None
        return root, list(parser.error_log)

    current = text.encode("utf-8")
    preamble = 0
    start = re.search(rb"<(?:\?xml\b|!DOCTYPE\b|[A-Za-z_])", current)
    if start and current[: start.start()].strip():  # prose before the document: read from its first tag on
        preamble, current = 1, current[start.start():]
    root, errors = recover(current)
    if root is None:
        raise ValueError("no readable XML")
    damaged = {line + 10**9 for line in range(preamble)} | _damaged_lines(errors)  # the preamble: one place
    base = 0  # the text's line = the line in ``current`` + base (``current`` becomes each wrapped rest in turn)
    for _ in range(50):
        end = next((e for e in errors if e.type_name in ("ERR_DOCUMENT_END", "ERR_RESERVED_XML_NAME")
                    or _closes_root(e, root)), None)
        if end is None:
            break
        lines = current.split(b"\n")
        at = sum(len(x) + 1 for x in lines[: end.line - 1]) + max(end.column - 1, 0)
        if end.type_name == "ERR_RESERVED_XML_NAME":  # a second XML declaration: the rest starts at its "<?"
            at = max(current.rfind(b"<?", 0, at + 1), 0)
        rest = current[at:]
        close = re.search(rb"</(?:[\w.-]+:)?" + re.escape(_local_tag(root.tag).encode()) + rb"\s*>\s*\Z", rest)
        if close:  # the root's own end tag: not damage
            rest = rest[: close.start()]
        rest = re.sub(rb"<\?xml\b.*?\?>|<!DOCTYPE\b[^>]*>", b"", rest, flags=re.DOTALL)  # a second document's prolog
        if not rest.strip():
            break
        ns = " ".join(f'xmlns{":" + k if k else ""}="{v}"' for k, v in (root.nsmap or {}).items())
        base += end.line - 2  # the rest starts on the wrapper's second line
        current = b"<mechlab-recovered " + ns.encode() + b">\n" + rest + b"\n</mechlab-recovered>"
        wrapper, errors = recover(current)
        damaged |= {base + line for line in _damaged_lines(errors)}
        if wrapper is None:
            break
        if not len(wrapper):
            break  # only text after the root: the error already counted
        root.extend(list(wrapper))
    return root, max(1, len(damaged))


def _damaged_lines(errors) -> set[int]:
    """The lines of libxml2's errors that are damage: every error but the end-tag mismatches that follow another
    error (the cascade a broken start tag sets off, each later end tag closing the wrong element); a mismatch with
    no error before it (a dropped end tag) is one damaged place."""
    first_other = min((e.line for e in errors if e.type_name != "ERR_TAG_NAME_MISMATCH"), default=None)
    lines = {e.line for e in errors if e.type_name != "ERR_TAG_NAME_MISMATCH"}
    mismatches = sorted(e.line for e in errors if e.type_name == "ERR_TAG_NAME_MISMATCH")
    if mismatches and (first_other is None or mismatches[0] < first_other):
        lines.add(mismatches[0])
    return lines


def _closes_root(error, root) -> bool:
    """Whether libxml2's error is an end tag that closed the root element early (its parse stops there)."""
    m = re.match(r"Opening and ending tag mismatch: (\S+) line (\d+) and", error.message or "")
    return bool(m and m.group(1).rsplit(":", 1)[-1] == _local_tag(root.tag) and int(m.group(2)) == root.sourceline)


def _local_tag(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
