"""Record domains, each read with its format's dedicated parser from PyPI: iCalendar (icalendar), GPX tracks
(gpxpy), chess games (python-chess), gettext catalogues (polib), CoNLL-U treebanks (conllu), SQL schemas (sqlglot)
(DELEGATE-52, arXiv 2604.15597: parser-based weighted structural similarity).

Each document is a list of records (events, tracks, games, entries, sentences, tables) plus document-level fields.
Seed records are matched to the answer's by the Hungarian method on a per-record score in [0, 1], and the file
similarity is ``w_count`` × record-count agreement + ``w_records`` × the summed matched score over the larger of
the two record counts (an unmatched seed record scores 0, and an extra record, duplicated or invented, costs its
share) + ``w_doc`` × document fields + ``w_order`` × the kept order of consecutive seed records, with the weights in
each class's docstring. Seeds are read strictly (``load``); answers leniently (``read``): what the parser can read
is scored, and a record it cannot read counts as an extra, unmatched record.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import io
import random
import re
from collections.abc import Callable
from typing import Any

from mechlab.delegate.domains.base import (
    Domain,
    Files,
    _kept_order,
    aligned,
    matched_records,
    readable_xml_root,
    same_value,
)
from mechlab.errors import ConfigError


def _xml_text(root) -> str:
    """An lxml (or ElementTree) element written back as XML text."""
    try:
        from lxml import etree

        if isinstance(root, etree._Element):
            return etree.tostring(root, encoding="unicode")
    except ImportError:
        pass
    import xml.etree.ElementTree as ET

    return ET.tostring(root, encoding="unicode")


def _require(module: str):
    """Import a domain's parser, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"this DELEGATE domain needs {module.split('.')[0]}: pip install \"mechlab[delegate]\"") from e


def _fraction_equal(a: dict, b: dict) -> float:
    """The fraction of the fields of a and b with an equal value (by value) in both, over the larger field set
    (1 for no fields on either side)."""
    if not a and not b:
        return 1.0
    return sum(1 for k, v in a.items() if k in b and same_value(b[k], v)) / max(len(a), len(b))


UNREADABLE = object()  # a record of an answer that its parser could not read: it matches nothing


def record_similarity(seed: list, got: list, score: Callable[[Any, Any], float], doc: float = 1.0, *,
                      w_count: float, w_records: float, w_doc: float, w_order: float) -> float:
    """The module docstring's weighted record similarity; ``doc`` is the document-level score. ``got`` may hold
    :data:`UNREADABLE` records, which score 0 against every seed record."""
    records, order = matched_records(seed, got, lambda a, b: 0.0 if b is UNREADABLE else score(a, b))
    if not seed:
        order = 1.0
    count = min(len(seed), len(got)) / max(len(seed), len(got), 1)
    return float(w_count * count + w_records * records + w_doc * doc + w_order * order)


class RecordDomain(Domain):
    """Shared plumbing: ``load`` a document into an editable object, ``dump`` it back; ``edit(op, obj)`` edits it
    in place; ``INVERSES`` maps each edit kind to its inverse kind (same fields), or a callable on the op;
    ``damage(obj, rng)`` is the noisy agent's corruption, in place."""

    INVERSES: dict[str, Any] = {}

    def parse(self, text: str) -> Any:
        return self._parsed(text)

    def strict(self, text: str) -> Any:
        return self.load(text)

    @functools.lru_cache(maxsize=256)  # relays score the same documents again and again; nothing mutates them
    def _parsed(self, text: str) -> Any:
        return self.read(text)

    def read(self, text: str) -> Any:
        """The document as the plain data ``file_similarity`` compares, read as far as the parser can."""
        raise NotImplementedError

    def load(self, text: str) -> Any:
        raise NotImplementedError

    def dump(self, obj: Any) -> str:
        raise NotImplementedError

    def edit(self, op: dict, obj: Any) -> Any:
        raise NotImplementedError

    def apply(self, op: dict, files: Files) -> Files:
        out = dict(files)
        for name in op.get("files", list(files)):
            obj = self.edit(op, self.load(files[name]))
            out[name] = self.dump(obj)
        return out

    def invert(self, op: dict) -> dict:
        inverse = self.INVERSES.get(op["kind"], op["kind"])
        return inverse(op) if callable(inverse) else {**op, "kind": inverse}

    def damage(self, obj: Any, rng: random.Random) -> None:
        """One realistic damage to a loaded document, in place (for the noisy agent)."""
        raise NotImplementedError

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        name = rng.choice(sorted(files))
        obj = self.load(files[name])
        self.damage(obj, rng)
        return {**files, name: self.dump(obj)}


def _swap(old: str = "old", new: str = "new"):
    return lambda op: {**op, old: op[new], new: op[old]}


def _negate(key: str):
    return lambda op: {**op, key: -op[key]}


# ---- iCalendar ---------------------------------------------------------------------------------------------

class ICSDomain(RecordDomain):
    """iCalendar files (RFC 5545; icalendar): VEVENTs. Per event: 0.5 × text fields (uid, summary, location,
    description, categories equal) + 0.5 × times (start and end; each 1 when equal, falling linearly to 0 at a day
    off). File: 0.15 count + 0.70 events + 0.10 calendar fields (X-WR-CALNAME, X-WR-TIMEZONE, METHOD) + 0.05 order.
    A cut-off calendar is read after closing its open components (the events before the cut count).
    Oracle edits: shift (every event by minutes), extend (every end by minutes), rename_location, prefix (every
    summary), add_category (to every event; remove_category), calname (the calendar's name)."""

    name = "ics"
    CAL_FIELDS = ("X-WR-CALNAME", "X-WR-TIMEZONE", "METHOD")
    INVERSES = {"shift": _negate("minutes"), "extend": _negate("minutes"), "rename_location": _swap(),
                "prefix": "unprefix", "unprefix": "prefix", "add_category": "remove_category",
                "remove_category": "add_category", "calname": _swap()}

    def load(self, text: str):
        cal = _require("icalendar").Calendar.from_ical(text)
        if cal.name != "VCALENDAR":
            raise ValueError(f"not a VCALENDAR but {cal.name}")
        return cal

    def dump(self, cal) -> str:
        return cal.to_ical().decode("utf-8")

    @staticmethod
    def _event(ev) -> dict:
        cats = ev.get("CATEGORIES")
        cats = cats if isinstance(cats, list) else [cats] if cats is not None else []
        return {"uid": str(ev.get("UID", "")), "summary": str(ev.get("SUMMARY", "")),
                "location": str(ev.get("LOCATION", "")), "description": str(ev.get("DESCRIPTION", "")),
                "categories": sorted(str(c) for cat in cats for c in getattr(cat, "cats", [cat])),
                "start": ev.decoded("DTSTART", None), "end": ev.decoded("DTEND", None)}

    @staticmethod
    def _closed(text: str) -> str:
        """A cut-off calendar closed: a last line without a property separator dropped, and an END line added
        for every component still open (the repair that lets icalendar read the events before the cut)."""
        lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
        if lines and ":" not in lines[-1]:
            lines.pop()
        stack = []
        for line in lines:
            key, _, value = line.partition(":")
            if key.upper() == "BEGIN":
                stack.append(value.strip())
            elif key.upper() == "END" and stack:
                stack.pop()
        return "\n".join(lines + [f"END:{name}" for name in reversed(stack)]) + "\n"

    def _calendar(self, text: str):
        try:
            return self.load(text)
        except ValueError:
            return self.load(self._closed(text))

    def read(self, text: str):
        """(the first calendar's fields, the events): text before the first ``BEGIN:VCALENDAR`` and after the last
        ``END:VCALENDAR`` (a model's preamble or closing words) is one unreadable record each, a second calendar's
        events are extra records."""
        starts = [m.start() for m in re.finditer(r"(?mi)^BEGIN:VCALENDAR[ \t]*\r?$", text)]
        if len(starts) <= 1 and not (starts and text[: starts[0]].strip()):
            cal = self._calendar(text)
            events = [self._event(ev) for ev in cal.walk("VEVENT")]
            tail = re.split(r"(?mi)^END:VCALENDAR[ \t]*\r?$", text)
            extra = [UNREADABLE] if len(tail) > 1 and tail[-1].strip() else []
            return {k: str(cal[k]) for k in self.CAL_FIELDS if k in cal}, events + extra
        records: list = [UNREADABLE] if text[: starts[0]].strip() else []
        fields = None
        for a, b in zip(starts, starts[1:] + [len(text)]):
            part = text[a:b]
            end = re.search(r"(?mi)^END:VCALENDAR[ \t]*\r?$", part)
            body, after = (part[: end.end()], part[end.end():]) if end else (part, "")
            try:
                cal = self._calendar(body)
            except ValueError:
                records.append(UNREADABLE)
                continue
            fields = fields if fields is not None else {k: str(cal[k]) for k in self.CAL_FIELDS if k in cal}
            records += [self._event(ev) for ev in cal.walk("VEVENT")]
            records += [UNREADABLE] if after.strip() else []
        if fields is None:
            raise ValueError("no readable calendar")
        return fields, records

    @staticmethod
    def _time_score(a, b) -> float:
        if a == b:
            return 1.0
        if not isinstance(a, dt.datetime) or not isinstance(b, dt.datetime):
            return 0.0
        try:
            return max(0.0, 1 - abs((a - b).total_seconds()) / 86400)
        except TypeError:  # naive against aware
            return 0.0

    def file_similarity(self, seed, got) -> float:
        (cal_a, ev_a), (cal_b, ev_b) = seed, got

        fields = ("uid", "summary", "location", "description", "categories")

        def score(a, b):
            text = _fraction_equal({k: a[k] for k in fields}, {k: b[k] for k in fields})
            return 0.5 * text + 0.25 * self._time_score(a["start"], b["start"]) + 0.25 * self._time_score(a["end"], b["end"])

        return record_similarity(ev_a, ev_b, score, _fraction_equal(cal_a, cal_b),
                                 w_count=0.15, w_records=0.70, w_doc=0.10, w_order=0.05)

    def edit(self, op: dict, cal):
        kind = op["kind"]
        if kind == "calname":
            cal.pop("X-WR-CALNAME", None)
            cal.add("X-WR-CALNAME", op["new"])
            return cal
        delta = dt.timedelta(minutes=op.get("minutes", 0))
        for ev in cal.walk("VEVENT"):
            if kind in ("shift", "extend"):
                keys = ("DTSTART", "DTEND") if kind == "shift" else ("DTEND",)
                for key in keys:
                    t = ev.decoded(key)
                    ev.pop(key)
                    ev.add(key, t + delta)
            elif kind == "rename_location":
                if str(ev.get("LOCATION", "")) == op["old"]:
                    ev["LOCATION"] = op["new"]
            elif kind == "prefix":
                ev["SUMMARY"] = op["prefix"] + str(ev["SUMMARY"])
            elif kind == "unprefix":
                s = str(ev["SUMMARY"])
                ev["SUMMARY"] = s[len(op["prefix"]):] if s.startswith(op["prefix"]) else s
            elif kind in ("add_category", "remove_category"):
                cats = self._event(ev)["categories"]
                cats = cats + [op["category"]] if kind == "add_category" else [c for c in cats if c != op["category"]]
                ev.pop("CATEGORIES", None)
                if cats:
                    ev.add("CATEGORIES", cats)
            else:
                raise ValueError(f"unknown ics edit {kind!r}")
        return cal

    def damage(self, cal, rng: random.Random) -> None:
        events = [c for c in cal.subcomponents if c.name == "VEVENT"]
        if events:
            cal.subcomponents.remove(rng.choice(events))  # a dropped event


# ---- GPX ---------------------------------------------------------------------------------------------------

class GPXDomain(RecordDomain):
    """GPS exchange files (GPX 1.1; gpxpy): tracks and waypoints. Per track: 0.2 × name + 0.8 × the fraction of the
    seed's points (segments concatenated) matched in an order-preserving alignment (:func:`aligned`, over the longer of
    the two point lists) with position within 1e-6°, elevation within 1 mm and the same time, so a dropped or inserted
    point costs that point alone. A broken or cut-off file is read past its errors (lxml's recovering parser), each
    damaged place an extra record. Per waypoint: 0.5 name + 0.5 position. File:
    0.10 count (tracks and waypoints) + 0.65 tracks and waypoints (by their share of the records) + 0.15 metadata name,
    description and the root's namespace + 0.10 order. Oracle edits: shift_elevation (metres, points and
    waypoints), shift_time (seconds), reverse_track (points of every segment), rename_track, rename_waypoint,
    add_waypoint (remove_waypoint)."""

    name = "gpx"
    INVERSES = {"shift_elevation": _negate("metres"), "shift_time": _negate("seconds"), "rename_track": _swap(),
                "rename_waypoint": _swap(), "add_waypoint": "remove_waypoint", "remove_waypoint": "add_waypoint"}

    def load(self, text: str):
        return _require("gpxpy").parse(text)

    def dump(self, gpx) -> str:
        return gpx.to_xml()

    @staticmethod
    def _recovered(text: str) -> tuple[str, int, str]:
        """(the readable part of the document as well-formed XML, the number of damaged places, the root element's
        namespace): :func:`readable_xml_root` (lxml's recovering parser for a broken document: the points after a
        broken tag are kept), written back without namespace prefixes, as gpxpy reads GPX files."""
        import xml.etree.ElementTree as ET

        root, damage = readable_xml_root(text)
        ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
        if damage:
            root = ET.fromstring(_xml_text(root))
            home = {"trkpt": "trkseg", "rtept": "rte"}
            last: dict[str, ET.Element] = {}
            for parent in list(root.iter()):
                for child in list(parent):
                    tag = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
                    if tag in ("trkseg", "rte"):
                        last[tag] = child
                    if tag in ("trkpt", "rtept", "wpt") and not (child.get("lat") and child.get("lon")):
                        parent.remove(child)  # a point whose position was lost with a broken tag: gpxpy refuses it
                    elif tag in home and parent.tag.rsplit("}", 1)[-1] != home[tag] and home[tag] in last:
                        parent.remove(child)  # a point pushed out of its segment by a broken tag's cascade
                        last[home[tag]].append(child)
        for element in root.iter():
            if isinstance(element.tag, str):
                element.tag = element.tag.rsplit("}", 1)[-1]
        return ET.tostring(root, encoding="unicode"), damage, ns

    def read(self, text: str):
        """(metadata: name, description and the root's namespace, so a changed namespace costs; the tracks and
        waypoints, plus one unreadable record per damaged place of a document that is not well-formed)."""
        xml, damage, ns = self._recovered(text)
        gpx = self.load(text) if not damage else self.load(xml)
        tracks = [("track", t.name or "", [(p.latitude, p.longitude, p.elevation, p.time)
                                          for s in t.segments for p in s.points]) for t in gpx.tracks]
        waypoints = [("waypoint", w.name or "", [(w.latitude, w.longitude, w.elevation, w.time)]) for w in gpx.waypoints]
        meta = {"name": gpx.name or "", "description": gpx.description or "", "xmlns": ns}
        return meta, tracks + waypoints + [UNREADABLE] * damage

    @staticmethod
    def _same_point(p, q) -> bool:
        def close(a, b, tol):
            return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= tol)

        return close(p[0], q[0], 1e-6) and close(p[1], q[1], 1e-6) and close(p[2], q[2], 1e-3) and p[3] == q[3]

    def file_similarity(self, seed, got) -> float:
        (meta_a, rec_a), (meta_b, rec_b) = seed, got

        def score(a, b):
            if a[0] != b[0]:
                return 0.0
            points = aligned(a[2], b[2], lambda p, q: float(self._same_point(p, q))) / max(len(a[2]), len(b[2]), 1)
            return (0.2 if a[0] == "track" else 0.5) * (a[1] == b[1]) + (0.8 if a[0] == "track" else 0.5) * points

        return record_similarity(rec_a, rec_b, score, _fraction_equal(meta_a, meta_b),
                                 w_count=0.10, w_records=0.65, w_doc=0.15, w_order=0.10)

    def edit(self, op: dict, gpx):
        kind = op["kind"]
        points = [p for t in gpx.tracks for s in t.segments for p in s.points]
        if kind == "shift_elevation":
            for p in points + list(gpx.waypoints):
                if p.elevation is not None:
                    p.elevation = round(p.elevation + op["metres"], 3)
        elif kind == "shift_time":
            for p in points + list(gpx.waypoints):
                if p.time is not None:
                    p.time = p.time + dt.timedelta(seconds=op["seconds"])
        elif kind == "reverse_track":
            for t in gpx.tracks:
                for s in t.segments:
                    s.points.reverse()
        elif kind == "rename_track":
            for t in gpx.tracks:
                if t.name == op["old"]:
                    t.name = op["new"]
        elif kind == "rename_waypoint":
            for w in gpx.waypoints:
                if w.name == op["old"]:
                    w.name = op["new"]
        elif kind == "add_waypoint":
            gpx.waypoints.append(_require("gpxpy.gpx").GPXWaypoint(op["lat"], op["lon"], elevation=op.get("ele"),
                                                                   name=op["name"]))
        elif kind == "remove_waypoint":
            gpx.waypoints = [w for w in gpx.waypoints if w.name != op["name"]]
        else:
            raise ValueError(f"unknown gpx edit {kind!r}")
        return gpx

    def damage(self, gpx, rng: random.Random) -> None:
        segments = [s for t in gpx.tracks for s in t.segments if len(s.points) > 2]
        if segments:
            s = rng.choice(segments)
            del s.points[rng.randrange(1, len(s.points) - 1)]  # a dropped track point


# ---- PGN ---------------------------------------------------------------------------------------------------

class PGNDomain(RecordDomain):
    """Chess games in PGN (python-chess; every game of the file is read; a seed game with parse errors is an error, an
    answer's game keeps the moves before its first illegal one). Per game: 0.30 × tags (the seed's header tags equal,
    over the larger tag set) + 0.55 × moves (the seed's mainline moves equal ply by ply) + 0.15 × annotations (comments
    and NAGs equal ply by ply, and the game comment). File: 0.10 count + 0.85 games + 0.05 order. Oracle edits:
    rename_player, set_tag (one tag of every game, old → new value), swap_colors (White ↔ Black names), comment (a
    comment after the first move of every game; uncomment), reverse_games, mark_captures (NAG $1 "!" on every capture;
    unmark_captures)."""

    name = "pgn"
    INVERSES = {"rename_player": _swap(), "set_tag": _swap(), "comment": "uncomment", "uncomment": "comment",
                "mark_captures": "unmark_captures", "unmark_captures": "mark_captures"}

    def _games(self, text: str, strict: bool) -> list:
        pgn = _require("chess.pgn")
        stream, games = io.StringIO(text), []
        while (game := pgn.read_game(stream)) is not None:
            if game.errors and strict:
                raise ValueError(f"game {len(games) + 1}: {game.errors[0]}")
            games.append(game)
        if not games:
            raise ValueError("no games")
        return games

    def load(self, text: str) -> list:
        return self._games(text, strict=True)

    def dump(self, games: list) -> str:
        return "\n\n".join(str(g) for g in games) + "\n"

    def read(self, text: str) -> list[dict]:
        out = []
        for g in self._games(text, strict=False):  # a game with an illegal move keeps the moves before it
            nodes = list(g.mainline())
            out.append({"tags": dict(g.headers), "moves": [n.san() for n in nodes],
                        "notes": [g.comment] + [(n.comment, tuple(sorted(n.nags))) for n in nodes]})
        return out

    def file_similarity(self, seed, got) -> float:
        def plies(a: list, b: list) -> float:
            return sum(1 for x, y in zip(a, b) if x == y) / max(len(a), len(b), 1)

        def score(a, b):
            return 0.30 * _fraction_equal(a["tags"], b["tags"]) + 0.55 * plies(a["moves"], b["moves"]) + \
                0.15 * plies(a["notes"], b["notes"])

        return record_similarity(seed, got, score, w_count=0.10, w_records=0.85, w_doc=0.0, w_order=0.05)

    def edit(self, op: dict, games: list) -> list:
        kind = op["kind"]
        if kind == "reverse_games":
            return games[::-1]
        for g in games:
            if kind == "rename_player":
                for tag in ("White", "Black"):
                    if g.headers.get(tag) == op["old"]:
                        g.headers[tag] = op["new"]
            elif kind == "set_tag":
                if g.headers.get(op["tag"]) == op["old"]:
                    g.headers[op["tag"]] = op["new"]
            elif kind == "swap_colors":
                g.headers["White"], g.headers["Black"] = g.headers.get("Black", "?"), g.headers.get("White", "?")
            elif kind in ("comment", "uncomment"):
                first = g.next()
                if first is not None:
                    if kind == "comment":
                        first.comment = op["text"]
                    elif first.comment == op["text"]:
                        first.comment = ""
            elif kind in ("mark_captures", "unmark_captures"):
                for node in g.mainline():
                    if node.parent.board().is_capture(node.move):
                        (node.nags.add if kind == "mark_captures" else node.nags.discard)(1)
            else:
                raise ValueError(f"unknown pgn edit {kind!r}")
        return games

    def damage(self, games: list, rng: random.Random) -> None:
        last = rng.choice(games).end()
        if last.parent is not None:
            last.parent.variations.remove(last)  # the game's last move lost


# ---- gettext PO --------------------------------------------------------------------------------------------

class PODomain(RecordDomain):
    """gettext catalogues (GNU gettext PO format; polib). Entries are keyed by (msgctxt, msgid); a catalogue polib
    cannot read whole is read entry by entry (blank-line separated), an unreadable entry counting as an extra one. Per
    entry: 0.70 × translation (msgstr, or every plural form, equal) + 0.15 × flags + 0.15 × comments (translator and
    extracted) and references. File: 0.10 count + 0.75 entries + 0.10 header metadata (fields equal) + 0.05 order.
    Oracle edits: fuzzy (flag every entry; unfuzzy), comment (a translator comment on every entry; uncomment), metadata
    (one header field, old → new), prefix (every translation; unprefix), reverse_entries."""

    name = "po"
    INVERSES = {"fuzzy": "unfuzzy", "unfuzzy": "fuzzy", "comment": "uncomment", "uncomment": "comment",
                "metadata": _swap(), "prefix": "unprefix", "unprefix": "prefix"}

    def load(self, text: str):
        if "\n" not in text:
            text += "\n"  # polib reads a one-line string as a file name
        po = _require("polib").pofile(text)
        if not len(po) and not po.metadata:
            raise ValueError("no entries")
        return po

    def dump(self, po) -> str:
        return str(po)

    @staticmethod
    def _entry(e) -> dict:
        return {"key": (e.msgctxt, e.msgid), "msgstr": (e.msgstr, tuple(sorted(e.msgstr_plural.items()))),
                "flags": tuple(sorted(e.flags)), "comments": (e.tcomment, e.comment, tuple(e.occurrences))}

    def read(self, text: str):
        try:
            po = self.load(text)
            return dict(po.metadata), [self._entry(e) for e in po if not e.obsolete]
        except (OSError, ValueError):  # polib's syntax errors are OSErrors: read entry by entry instead
            pass
        metadata, entries = {}, []
        for chunk in re.split(r"\n\s*\n", text.strip()):
            try:
                po = _require("polib").pofile(chunk + "\n")
            except (OSError, ValueError):
                entries.append(UNREADABLE)
                continue
            metadata = metadata or dict(po.metadata)
            entries += [self._entry(e) for e in po if not e.obsolete]
        if not any(e is not UNREADABLE for e in entries) and not metadata:
            raise ValueError("no readable entries")
        return metadata, entries

    def file_similarity(self, seed, got) -> float:
        (meta_a, ent_a), (meta_b, ent_b) = seed, got

        def score(a, b):
            if a["key"] != b["key"]:
                return 0.0
            return 0.70 * (a["msgstr"] == b["msgstr"]) + 0.15 * (a["flags"] == b["flags"]) + \
                0.15 * (a["comments"] == b["comments"])

        return record_similarity(ent_a, ent_b, score, _fraction_equal(meta_a, meta_b),
                                 w_count=0.10, w_records=0.75, w_doc=0.10, w_order=0.05)

    def edit(self, op: dict, po):
        kind = op["kind"]
        if kind == "metadata":
            if po.metadata.get(op["key"]) == op["old"]:
                po.metadata[op["key"]] = op["new"]
            return po
        if kind == "reverse_entries":
            po[:] = po[::-1]
            return po
        for e in po:
            if kind == "fuzzy" and "fuzzy" not in e.flags:
                e.flags.append("fuzzy")
            elif kind == "unfuzzy" and "fuzzy" in e.flags:
                e.flags.remove("fuzzy")
            elif kind == "comment":
                e.tcomment = op["text"]
            elif kind == "uncomment" and e.tcomment == op["text"]:
                e.tcomment = ""
            elif kind == "prefix" and e.msgstr:
                e.msgstr = op["prefix"] + e.msgstr
            elif kind == "unprefix" and e.msgstr.startswith(op["prefix"]):
                e.msgstr = e.msgstr[len(op["prefix"]):]
            elif kind not in ("fuzzy", "unfuzzy", "comment", "uncomment", "prefix", "unprefix"):
                raise ValueError(f"unknown po edit {kind!r}")
        return po

    def damage(self, po, rng: random.Random) -> None:
        translated = [e for e in po if e.msgstr]
        if translated:
            rng.choice(translated).msgstr = ""  # a translation lost


# ---- CoNLL-U -----------------------------------------------------------------------------------------------

_CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


class CoNLLUDomain(RecordDomain):
    """Universal Dependencies treebanks in CoNLL-U (https://universaldependencies.org/format.html; conllu). Per
    sentence: 0.15 × its metadata comments equal + 0.85 × tokens (the tokens aligned in order by :func:`aligned` on the
    fraction of their ten fields equal, over the longer of the two token lists, so a dropped token costs that token and
    the ids and heads it shifts). A file conllu cannot read whole is read sentence by sentence. File: 0.10 count + 0.85
    sentences + 0.05 order. Oracle edits: rename_deprel (a relation label everywhere), prefix_ids (every sent_id;
    unprefix_ids), add_misc (a MISC attribute on every token; remove_misc), add_meta (a comment on every sentence;
    remove_meta), reverse_sentences."""

    name = "conllu"
    INVERSES = {"rename_deprel": _swap(), "prefix_ids": "unprefix_ids", "unprefix_ids": "prefix_ids",
                "add_misc": "remove_misc", "remove_misc": "add_misc", "add_meta": "remove_meta",
                "remove_meta": "add_meta"}

    def load(self, text: str) -> list:
        sentences = _require("conllu").parse(text)
        if not sentences:
            raise ValueError("no sentences")
        for s in sentences:
            if not len(s):
                raise ValueError(f"a sentence without tokens ({dict(s.metadata)})")
        return sentences

    def dump(self, sentences: list) -> str:
        return "".join(s.serialize() for s in sentences)

    @staticmethod
    def _sentence(s) -> dict:
        return {"meta": dict(s.metadata), "tokens": [tuple(str(t.get(f)) for f in _CONLLU_FIELDS) for t in s]}

    def read(self, text: str) -> list[dict]:
        conllu = _require("conllu")
        try:
            return [self._sentence(s) for s in self.load(text)]
        except (ValueError, conllu.exceptions.ParseException):
            pass
        out = []
        for chunk in re.split(r"\n\s*\n", text.strip()):  # sentence by sentence
            try:
                out += [self._sentence(s) for s in conllu.parse(chunk + "\n\n") if len(s)]
            except (ValueError, conllu.exceptions.ParseException):
                out.append(UNREADABLE)
        if not any(s is not UNREADABLE for s in out):
            raise ValueError("no readable sentences")
        return out

    def file_similarity(self, seed, got) -> float:
        def fields(p, q) -> float:
            return sum(x == y for x, y in zip(p, q)) / len(p)

        def score(a, b):
            ta, tb = a["tokens"], b["tokens"]
            tokens = aligned(ta, tb, fields) / max(len(ta), len(tb))
            return 0.15 * _fraction_equal(a["meta"], b["meta"]) + 0.85 * tokens

        return record_similarity(seed, got, score, w_count=0.10, w_records=0.85, w_doc=0.0, w_order=0.05)

    def edit(self, op: dict, sentences: list) -> list:
        kind = op["kind"]
        if kind == "reverse_sentences":
            return sentences[::-1]
        for s in sentences:
            if kind == "rename_deprel":
                for t in s:
                    if t["deprel"] == op["old"]:
                        t["deprel"] = op["new"]
            elif kind in ("prefix_ids", "unprefix_ids"):
                sid = s.metadata.get("sent_id")
                if sid is not None and kind == "prefix_ids":
                    s.metadata["sent_id"] = op["prefix"] + sid
                elif sid is not None and sid.startswith(op["prefix"]):
                    s.metadata["sent_id"] = sid[len(op["prefix"]):]
            elif kind in ("add_misc", "remove_misc"):
                for t in s:
                    misc = dict(t["misc"] or {})
                    if kind == "add_misc":
                        misc[op["key"]] = op["value"]
                    else:
                        misc.pop(op["key"], None)
                    t["misc"] = misc or None
            elif kind == "add_meta":
                s.metadata[op["key"]] = op["value"]
            elif kind == "remove_meta":
                s.metadata.pop(op["key"], None)
            else:
                raise ValueError(f"unknown conllu edit {kind!r}")
        return sentences

    def damage(self, sentences: list, rng: random.Random) -> None:
        longer = [s for s in sentences if len(s) > 1]
        if longer:
            rng.choice(longer).pop()  # the sentence's last token (its punctuation, mostly) lost


# ---- SQL schema --------------------------------------------------------------------------------------------

class SQLDomain(RecordDomain):
    """SQL schemas, read in the MySQL dialect (sqlglot; MySQL dumps as in the official release: backquoted names,
    ``DROP TABLE IF EXISTS``, ``ENGINE=…`` options, inline ``KEY`` lines, ``SET``/``LOCK`` statements). Records are
    the CREATE TABLE and CREATE INDEX statements. Per table: 0.15 × name + 0.50 × columns (per seed column found by
    name: 0.4 + 0.4 type + 0.2 constraints equal, as sqlglot prints them, over the larger column count) + 0.10 ×
    column order + 0.20 × table constraints and inline keys (the fraction equal, over the larger count) + 0.05 ×
    table options. Per index: 0.4 × table and columns + 0.3 × name + 0.3 × uniqueness and the rest of its text.
    File: 0.10 count + 0.80 tables and indexes + 0.05 the other statements (the fraction equal, over the larger
    count) + 0.05 order. A schema sqlglot cannot read whole is read statement by statement, an unreadable
    statement counting as an extra record; a seed must read whole and hold a CREATE TABLE.
    Oracle edits: rename_table (and every reference to it), rename_column (in its table), add_column
    (drop_column), change_type, reverse_tables."""

    name = "sql"
    DIALECT = "mysql"
    INVERSES = {"rename_table": _swap(), "rename_column": _swap(), "add_column": "drop_column",
                "drop_column": "add_column", "change_type": _swap()}

    @staticmethod
    def _kind(s) -> str:
        exp = _require("sqlglot").exp
        return str(s.args.get("kind", "")).upper() if isinstance(s, exp.Create) else ""

    def load(self, text: str) -> list:
        sqlglot = _require("sqlglot")
        statements = [s for s in sqlglot.parse(text, read=self.DIALECT) if s is not None]
        if not any(self._kind(s) == "TABLE" for s in statements):
            raise ValueError("no CREATE TABLE statement")
        return statements

    def dump(self, statements: list) -> str:
        return "".join(s.sql(dialect=self.DIALECT, pretty=True) + ";\n\n" for s in statements)

    def _statements(self, text: str) -> list:
        """Every statement, or, when sqlglot cannot read the whole text, statement by statement (split at the
        tokenizer's semicolons), an unreadable one as :data:`UNREADABLE`."""
        sqlglot = _require("sqlglot")
        try:
            return [s for s in sqlglot.parse(text, read=self.DIALECT) if s is not None]
        except sqlglot.errors.SqlglotError:
            pass
        try:
            tokens = sqlglot.tokenize(text, read=self.DIALECT)
        except sqlglot.errors.SqlglotError:  # an unterminated string or comment: cut there
            return [UNREADABLE]
        cuts = [t.end + 1 for t in tokens if t.token_type == sqlglot.tokens.TokenType.SEMICOLON]
        out, start = [], 0
        for end in cuts + [len(text)]:
            chunk, start = text[start:end], end
            if not chunk.strip().strip(";").strip():
                continue
            try:
                out += [s for s in sqlglot.parse(chunk, read=self.DIALECT) if s is not None]
            except sqlglot.errors.SqlglotError:
                out.append(UNREADABLE)
        return out

    def read(self, text: str) -> tuple[list[str], list]:
        """(the other statements as MySQL text, the tables and indexes as records)."""
        exp = _require("sqlglot").exp
        records, other = [], []
        for s in self._statements(text):
            kind = "" if s is UNREADABLE else self._kind(s)
            if s is UNREADABLE:
                records.append(s)
            elif kind == "TABLE" and isinstance(s.this, exp.Schema):
                schema = s.this
                cols, keys = [], []
                for e in schema.expressions:
                    if isinstance(e, exp.ColumnDef):
                        ctype = e.args.get("kind")
                        cols.append((e.name, ctype.sql(self.DIALECT) if ctype else "",
                                     tuple(c.sql(self.DIALECT) for c in e.constraints)))
                    else:
                        keys.append(e.sql(self.DIALECT))
                props = s.args.get("properties")
                records.append({"kind": "table", "name": schema.this.name, "columns": cols, "keys": sorted(keys),
                                "options": props.sql(self.DIALECT) if props else ""})
            elif kind == "INDEX" and isinstance(s.this, exp.Index):
                index = s.this
                table = index.args.get("table")
                params = index.args.get("params")
                columns = tuple(c.sql(self.DIALECT) for c in (params.args.get("columns") or [])) if params else ()
                records.append({"kind": "index", "name": index.name, "table": table.name if table else "",
                                "columns": columns, "text": s.sql(self.DIALECT)})
            else:
                other.append(s.sql(self.DIALECT))
        if not records and not other:
            raise ValueError("no statements")
        return other, records

    @staticmethod
    def _multiset_overlap(a: list, b: list) -> float:
        """The fraction of items shared by two lists counted with multiplicity, over the longer (1 for two empty)."""
        if not a and not b:
            return 1.0
        pool = list(b)
        same = 0
        for x in a:
            if x in pool:
                pool.remove(x)
                same += 1
        return same / max(len(a), len(b))

    def file_similarity(self, seed, got) -> float:
        (other_a, rec_a), (other_b, rec_b) = seed, got

        def table(a, b) -> float:
            found = {c[0]: c for c in b["columns"]}
            cols = sum(0.4 + 0.4 * (found[c[0]][1] == c[1]) + 0.2 * (found[c[0]][2] == c[2])
                       for c in a["columns"] if c[0] in found) / max(len(a["columns"]), len(b["columns"]), 1)
            pos = {c[0]: i for i, c in enumerate(b["columns"])}
            order = _kept_order({i: pos[c[0]] for i, c in enumerate(a["columns"]) if c[0] in pos}, len(a["columns"]))
            keys = self._multiset_overlap(a["keys"], b["keys"])
            return (0.15 * (a["name"] == b["name"]) + 0.50 * cols + 0.10 * order + 0.20 * keys
                    + 0.05 * (a["options"] == b["options"]))

        def index(a, b) -> float:
            return (0.4 * (a["table"] == b["table"] and a["columns"] == b["columns"]) + 0.3 * (a["name"] == b["name"])
                    + 0.3 * (a["text"] == b["text"]))

        def score(a, b) -> float:
            if a["kind"] != b["kind"]:
                return 0.0
            return table(a, b) if a["kind"] == "table" else index(a, b)

        return record_similarity(rec_a, rec_b, score, self._multiset_overlap(other_a, other_b),
                                 w_count=0.10, w_records=0.80, w_doc=0.05, w_order=0.05)

    def edit(self, op: dict, statements: list) -> list:
        exp = _require("sqlglot").exp
        kind = op["kind"]
        if kind == "reverse_tables":
            return statements[::-1]
        if kind == "rename_table":
            for s in statements:
                for t in s.find_all(exp.Table):
                    if t.name == op["old"]:
                        t.set("this", exp.to_identifier(op["new"]))
            return statements
        target = [s for s in statements if self._kind(s) == "TABLE" and s.this.this.name == op["table"]]
        if not target:
            raise ValueError(f"no table {op['table']!r}")
        schema = target[0].this
        if kind == "rename_column":
            for ident in schema.find_all(exp.Identifier):
                if ident.name == op["old"] and not isinstance(ident.parent, exp.Table):
                    ident.set("this", op["new"])
        elif kind == "add_column":
            column = exp.ColumnDef(this=exp.to_identifier(op["column"]), kind=exp.DataType.build(op["type"]))
            schema.set("expressions", [*schema.expressions, column])
        elif kind == "drop_column":
            schema.set("expressions", [e for e in schema.expressions
                                       if not (isinstance(e, exp.ColumnDef) and e.name == op["column"])])
        elif kind == "change_type":
            for e in schema.expressions:
                if isinstance(e, exp.ColumnDef) and e.name == op["column"]:
                    e.set("kind", exp.DataType.build(op["new"]))
        else:
            raise ValueError(f"unknown sql edit {kind!r}")
        return statements

    def damage(self, statements: list, rng: random.Random) -> None:
        exp = _require("sqlglot").exp
        schema = rng.choice([s for s in statements if self._kind(s) == "TABLE"]).this
        columns = [e for e in schema.expressions if isinstance(e, exp.ColumnDef)]
        if len(columns) > 1:
            victim = rng.choice(columns)
            schema.set("expressions", [e for e in schema.expressions if e is not victim])  # a dropped column


RECORD_DOMAINS = (ICSDomain(), GPXDomain(), PGNDomain(), PODomain(), CoNLLUDomain(), SQLDomain())
__all__ = ["RECORD_DOMAINS", "record_similarity"]
