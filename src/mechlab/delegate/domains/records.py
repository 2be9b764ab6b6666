"""Record domains, each read with its format's dedicated parser from PyPI: iCalendar (icalendar), GPX tracks
(gpxpy), chess games (python-chess), gettext catalogues (polib), CoNLL-U treebanks (conllu), SQL schemas (sqlglot).

Each document is a list of records (events, tracks, games, entries, sentences, tables) plus document-level fields.
Seed records are matched to the answer's by the Hungarian method on a per-record score in [0, 1], and the file
similarity is ``w_count`` × record-count agreement + ``w_records`` × the mean matched score (an unmatched seed
record scores 0) + ``w_doc`` × document fields + ``w_order`` × the kept order of consecutive seed records, with
the weights in each class's docstring.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import io
import random
from typing import Any, Callable

from mechlab.delegate.domains.base import Domain, Files, _best_matching, _kept_order
from mechlab.errors import ConfigError


def _require(module: str):
    """Import a domain's parser, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"this DELEGATE domain needs {module.split('.')[0]}: pip install \"mechlab[delegate]\"") from e


def _fraction_equal(a: dict, b: dict) -> float:
    """The fraction of a's fields with an equal value in b (1 for no fields)."""
    return sum(1 for k, v in a.items() if k in b and b[k] == v) / len(a) if a else 1.0


def record_similarity(seed: list, got: list, score: Callable[[Any, Any], float], doc: float = 1.0, *,
                      w_count: float, w_records: float, w_doc: float, w_order: float) -> float:
    """The module docstring's weighted record similarity; ``doc`` is the document-level score."""
    import numpy as np

    if not seed:
        records, order = (1.0 if not got else 0.0), 1.0
    elif not got:
        records, order = 0.0, 0.0
    else:
        s = np.array([[score(a, b) for b in got] for a in seed])
        match = _best_matching(s)
        records = sum(s[i, j] for i, j in match.items()) / len(seed)
        order = _kept_order(match, len(seed))
    count = min(len(seed), len(got)) / max(len(seed), len(got), 1)
    return float(w_count * count + w_records * records + w_doc * doc + w_order * order)


class RecordDomain(Domain):
    """Shared plumbing: ``load`` a document into an editable object, ``dump`` it back; ``edit(op, obj)`` edits it
    in place; ``INVERSES`` maps each edit kind to its inverse kind (same fields), or a callable on the op;
    ``damage(obj, rng)`` is the noisy agent's corruption, in place."""

    INVERSES: dict[str, Any] = {}

    def parse(self, text: str) -> Any:
        return self._parsed(text)

    @functools.lru_cache(maxsize=256)  # relays score the same documents again and again; nothing mutates them
    def _parsed(self, text: str) -> Any:
        return self.read(text)

    def read(self, text: str) -> Any:
        """The document as the plain data ``file_similarity`` compares."""
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
    """iCalendar files (icalendar): VEVENTs. Per event: 0.5 × text fields (uid, summary, location, description,
    categories equal) + 0.5 × times (start and end; each 1 when equal, falling linearly to 0 at a day off).
    File: 0.15 count + 0.70 events + 0.10 calendar fields (X-WR-CALNAME, X-WR-TIMEZONE, METHOD) + 0.05 order.
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

    def read(self, text: str):
        cal = self.load(text)
        events = [self._event(ev) for ev in cal.walk("VEVENT")]
        return {k: str(cal[k]) for k in self.CAL_FIELDS if k in cal}, events

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

        def score(a, b):
            text = _fraction_equal({k: a[k] for k in ("uid", "summary", "location", "description", "categories")}, b)
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
    """GPS exchange files (gpxpy): tracks and waypoints. Per track: 0.2 × name + 0.8 × the fraction of the
    seed's points (in order, segments concatenated) found at the same index with position within 1e-6°,
    elevation within 1 mm and the same time. Per waypoint: 0.5 name + 0.5 position. File: 0.10 count (tracks and
    waypoints) + 0.65 tracks and waypoints (by their share of the records) + 0.15 metadata name and description +
    0.10 order. Oracle edits: shift_elevation (metres, points and waypoints), shift_time (seconds),
    reverse_track (points of every segment), rename_track, rename_waypoint, add_waypoint (remove_waypoint)."""

    name = "gpx"
    INVERSES = {"shift_elevation": _negate("metres"), "shift_time": _negate("seconds"), "rename_track": _swap(),
                "rename_waypoint": _swap(), "add_waypoint": "remove_waypoint", "remove_waypoint": "add_waypoint"}

    def load(self, text: str):
        return _require("gpxpy").parse(text)

    def dump(self, gpx) -> str:
        return gpx.to_xml()

    def read(self, text: str):
        gpx = self.load(text)
        tracks = [("track", t.name or "", [(p.latitude, p.longitude, p.elevation, p.time)
                                          for s in t.segments for p in s.points]) for t in gpx.tracks]
        waypoints = [("waypoint", w.name or "", [(w.latitude, w.longitude, w.elevation, w.time)]) for w in gpx.waypoints]
        return {"name": gpx.name or "", "description": gpx.description or ""}, tracks + waypoints

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
            points = sum(1 for p, q in zip(a[2], b[2]) if self._same_point(p, q)) / max(len(a[2]), len(b[2]), 1)
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
    """Chess games in PGN (python-chess; a game with parse errors is an error). Per game: 0.30 × tags (the
    seed's header tags equal) + 0.55 × moves (the seed's mainline moves equal ply by ply) + 0.15 × annotations
    (comments and NAGs equal ply by ply, and the game comment). File: 0.10 count + 0.85 games + 0.05 order.
    Oracle edits: rename_player, set_tag (one tag of every game, old → new value), swap_colors (White ↔ Black
    names), comment (a comment after the first move of every game; uncomment), reverse_games, mark_captures
    (NAG $1 "!" on every capture; unmark_captures)."""

    name = "pgn"
    INVERSES = {"rename_player": _swap(), "set_tag": _swap(), "comment": "uncomment", "uncomment": "comment",
                "mark_captures": "unmark_captures", "unmark_captures": "mark_captures"}

    def load(self, text: str) -> list:
        pgn = _require("chess.pgn")
        stream, games = io.StringIO(text), []
        while (game := pgn.read_game(stream)) is not None:
            if game.errors:
                raise ValueError(f"game {len(games) + 1}: {game.errors[0]}")
            games.append(game)
        if not games:
            raise ValueError("no games")
        return games

    def dump(self, games: list) -> str:
        return "\n\n".join(str(g) for g in games) + "\n"

    def read(self, text: str) -> list[dict]:
        out = []
        for g in self.load(text):
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
    """gettext catalogues (polib). Entries are keyed by (msgctxt, msgid). Per entry: 0.70 × translation
    (msgstr, or every plural form, equal) + 0.15 × flags + 0.15 × comments (translator and extracted) and
    references. File: 0.10 count + 0.75 entries + 0.10 header metadata (fields equal) + 0.05 order.
    Oracle edits: fuzzy (flag every entry; unfuzzy), comment (a translator comment on every entry; uncomment),
    metadata (one header field, old → new), prefix (every translation; unprefix), reverse_entries."""

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

    def read(self, text: str):
        po = self.load(text)
        entries = [{"key": (e.msgctxt, e.msgid), "msgstr": (e.msgstr, tuple(sorted(e.msgstr_plural.items()))),
                    "flags": tuple(sorted(e.flags)), "comments": (e.tcomment, e.comment, tuple(e.occurrences))}
                   for e in po if not e.obsolete]
        return dict(po.metadata), entries

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
    """Universal Dependencies treebanks in CoNLL-U (conllu). Per sentence: 0.15 × its metadata comments equal +
    0.85 × tokens (for the seed's tokens in order, the fraction of their ten fields equal, over the longer of the
    two token lists). File: 0.10 count + 0.85 sentences + 0.05 order. Oracle edits: rename_deprel (a relation
    label everywhere), prefix_ids (every sent_id; unprefix_ids), add_misc (a MISC attribute on every token;
    remove_misc), add_meta (a comment on every sentence; remove_meta), reverse_sentences."""

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

    def read(self, text: str) -> list[dict]:
        return [{"meta": dict(s.metadata), "tokens": [tuple(str(t.get(f)) for f in _CONLLU_FIELDS) for t in s]}
                for s in self.load(text)]

    def file_similarity(self, seed, got) -> float:
        def score(a, b):
            ta, tb = a["tokens"], b["tokens"]
            fields = sum(sum(x == y for x, y in zip(p, q)) / len(p) for p, q in zip(ta, tb)) / max(len(ta), len(tb))
            return 0.15 * _fraction_equal(a["meta"], b["meta"]) + 0.85 * fields

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
    """SQL schemas: CREATE TABLE statements (sqlglot, generic dialect; anything else is an error). Per table:
    0.15 × name + 0.55 × columns (per seed column found by name: 0.4 + 0.4 type + 0.2 constraints equal, as
    sqlglot prints them) + 0.10 × column order + 0.20 × table constraints (primary and foreign keys) equal.
    File: 0.10 count + 0.85 tables + 0.05 order. Oracle edits: rename_table (and every reference to it),
    rename_column (in its table), add_column (drop_column), change_type, reverse_tables."""

    name = "sql"
    INVERSES = {"rename_table": _swap(), "rename_column": _swap(), "add_column": "drop_column",
                "drop_column": "add_column", "change_type": _swap()}

    def load(self, text: str) -> list:
        sqlglot = _require("sqlglot")
        statements = [s for s in sqlglot.parse(text) if s is not None]
        if not statements:
            raise ValueError("no statements")
        for s in statements:
            if not isinstance(s, sqlglot.exp.Create) or str(s.args.get("kind", "")).upper() != "TABLE":
                raise ValueError(f"not a CREATE TABLE statement: {s.sql()[:60]!r}")
        return statements

    def dump(self, statements: list) -> str:
        return "".join(s.sql(pretty=True) + ";\n\n" for s in statements)

    def read(self, text: str) -> list[dict]:
        exp = _require("sqlglot").exp
        tables = []
        for s in self.load(text):
            schema = s.this
            cols, keys = [], []
            for e in schema.expressions:
                if isinstance(e, exp.ColumnDef):
                    kind = e.args.get("kind")
                    cols.append((e.name, kind.sql() if kind else "", tuple(c.sql() for c in e.constraints)))
                else:
                    keys.append(e.sql())
            tables.append({"name": schema.this.name, "columns": cols, "keys": sorted(keys)})
        return tables

    def file_similarity(self, seed, got) -> float:
        def score(a, b):
            found = {c[0]: c for c in b["columns"]}
            cols = sum(0.4 + 0.4 * (found[c[0]][1] == c[1]) + 0.2 * (found[c[0]][2] == c[2])
                       for c in a["columns"] if c[0] in found) / max(len(a["columns"]), 1)
            pos = {c[0]: i for i, c in enumerate(b["columns"])}
            order = _kept_order({i: pos[c[0]] for i, c in enumerate(a["columns"]) if c[0] in pos}, len(a["columns"]))
            keys = 1.0 if a["keys"] == b["keys"] else 0.0
            return 0.15 * (a["name"] == b["name"]) + 0.55 * cols + 0.10 * order + 0.20 * keys

        return record_similarity(seed, got, score, w_count=0.10, w_records=0.85, w_doc=0.0, w_order=0.05)

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
        target = [s for s in statements if s.this.this.name == op["table"]]
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
        schema = rng.choice(statements).this
        columns = [e for e in schema.expressions if isinstance(e, exp.ColumnDef)]
        if len(columns) > 1:
            victim = rng.choice(columns)
            schema.set("expressions", [e for e in schema.expressions if e is not victim])  # a dropped column


RECORD_DOMAINS = (ICSDomain(), GPXDomain(), PGNDomain(), PODomain(), CoNLLUDomain(), SQLDomain())
__all__ = ["RECORD_DOMAINS", "record_similarity"]
