"""Infrastructure and data-feed domains, each read with its format's maintained parser: GTFS transit feeds (the
standard library's ``csv``; a file-set domain), DNS zones in BIND master-file format (dnspython), Graphviz DOT graphs
(pydot), Terraform configurations (python-hcl2), Dockerfiles (dockerfile-parse) and NORAD two-line element sets
(sgp4) (DELEGATE-52, arXiv 2604.15597: parser-based weighted structural similarity; the plumbing and the oracle's
text edits are in :mod:`mechlab.delegate.domains.textrecords`). The PyPI parsers come with
``pip install "mechlab[delegate]"``."""

from __future__ import annotations

import difflib
import functools
import io
import re
from typing import Any

from mechlab.delegate.domains.base import Files, aligned
from mechlab.delegate.domains.documents import CSVDomain, _same_cell, tree_similarity
from mechlab.delegate.domains.records import _require
from mechlab.delegate.domains.textrecords import UNREADABLE, TextRecordDomain, field_similarity, value_of

# ---- GTFS --------------------------------------------------------------------------------------------------

_GTFS_REQUIRED = {  # GTFS Schedule reference (gtfs.org): the columns each file must have
    "agency.txt": ("agency_name", "agency_url", "agency_timezone"),
    "stops.txt": ("stop_id",),
    "routes.txt": ("route_id", "route_type"),
    "trips.txt": ("route_id", "service_id", "trip_id"),
    "stop_times.txt": ("trip_id", "stop_id", "stop_sequence"),
    "calendar.txt": ("service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
                     "start_date", "end_date"),
    "calendar_dates.txt": ("service_id", "date", "exception_type"),
    "shapes.txt": ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"),
    "frequencies.txt": ("trip_id", "start_time", "end_time", "headway_secs"),
    "transfers.txt": ("from_stop_id", "to_stop_id", "transfer_type"),
    "feed_info.txt": ("feed_publisher_name", "feed_publisher_url", "feed_lang"),
}
_GTFS_TIME = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")


def _seconds(cell: str) -> int | None:
    m = _GTFS_TIME.match(cell.strip())
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) if m else None


class GTFSDomain(CSVDomain):
    """GTFS Schedule feeds (gtfs.org): a folder of CSV text files (agency.txt, stops.txt, routes.txt, trips.txt,
    stop_times.txt, calendar.txt, ...), read with the standard library's ``csv``. Each seed file is scored as the CSV
    domain scores a table, with 0.2 header + 0.75 rows (rows matched by content: a feed's row order means nothing) +
    0.05 delimiter (GTFS requires commas),
    times compared by value (``8:05:00`` = ``08:05:00``, GTFS allows hours past 24) and numbers by value; the file
    set's score is the mean over the seed's files (a missing file scores 0). A seed file must be a GTFS file with the
    reference's required columns. Oracle edits: the CSV domain's (rename_column, reverse_rows, add_column, ...),
    shift_times (every arrival and departure by minutes), text edits (rename a stop, add or remove a row), and
    add_file / remove_file (feed_info.txt: the file set changes)."""

    name = "gtfs"
    W_HEADER, W_ROWS, W_ORDER, W_DELIMITER = 0.2, 0.75, 0.0, 0.05
    finish = TextRecordDomain.finish  # the text edits of TextRecordDomain.apply

    @staticmethod
    def same_cell(a: str | None, b: str | None) -> bool:
        if a is not None and b is not None:
            sa, sb = _seconds(a), _seconds(b)
            if sa is not None and sb is not None:
                return sa == sb
        return _same_cell(a, b)

    def check(self, filename: str, text: str) -> str | None:
        problem = super().check(filename, text)
        if problem:
            return problem
        base = filename.rsplit("/", 1)[-1]
        if base not in _GTFS_REQUIRED:
            return f"{filename} is not a GTFS file (known: {', '.join(sorted(_GTFS_REQUIRED))})"
        header, _ = self.strict(text)
        missing = [c for c in _GTFS_REQUIRED[base] if c not in header]
        return f"{filename} lacks the required GTFS columns {', '.join(missing)}" if missing else None

    def apply(self, op: dict, files: Files) -> Files:
        kind = op["kind"]
        if kind in ("add_file", "remove_file", "replace"):
            return TextRecordDomain.apply(self, op, files)
        if kind == "shift_times":
            out = dict(files)
            for name in op.get("files", ["stop_times.txt"]):
                header, rows = self.strict(files[name])
                for r in rows:
                    for col in ("arrival_time", "departure_time"):
                        s = _seconds(r.get(col, ""))
                        if s is not None:
                            s += 60 * op["minutes"]
                            r[col] = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
                out[name] = self._write(header, rows)
            return out
        return super().apply(op, files)

    def invert(self, op: dict) -> dict:
        kind = op["kind"]
        if kind in ("add_file", "remove_file", "replace"):
            return TextRecordDomain.invert(self, op)
        if kind == "shift_times":
            return {**op, "minutes": -op["minutes"]}
        return super().invert(op)

    def corrupt(self, files: Files, rng) -> Files:
        core = sorted(f for f in files if f in ("stops.txt", "routes.txt", "trips.txt", "stop_times.txt"))
        name = rng.choice(core or sorted(files))
        return {**files, **super().corrupt({name: files[name]}, rng)}


# ---- DNS zones ---------------------------------------------------------------------------------------------

def _zone_entries(text: str) -> list[str]:
    """The entries of a master file (RFC 1035 §5.1): each line with its continuation lines while a parenthesis
    is open (outside quotes and ``;`` comments), comments removed; blank entries left out."""
    out, cur, depth = [], [], 0
    for line in text.split("\n"):
        code, quote = [], False
        for c in line:
            if c == '"':
                quote = not quote
            elif c == ";" and not quote:
                break
            elif not quote and c == "(":
                depth += 1
            elif not quote and c == ")":
                depth = max(0, depth - 1)
            code.append(c)
        cur.append("".join(code).rstrip())
        if depth == 0:
            entry = "\n".join(x for x in cur if x.strip())
            if entry.strip():
                out.append(entry)
            cur = []
    if cur and "\n".join(cur).strip():
        out.append("\n".join(x for x in cur if x.strip()))
    return out


class ZoneDomain(TextRecordDomain):
    """DNS zones in the BIND master-file format (RFC 1035 §5; dnspython, names relative to the zone's
    ``$ORIGIN``). Records: the resource records (owner, type, TTL, rdata in dnspython's canonical text, so ``mail`` =
    ``mail.example.org.`` and ``3600`` = ``1h``); per record 0 for a different type, else 0.35 owner + 0.45 rdata +
    0.20 TTL. File: 0.15 count + 0.80 records + 0.05 origin; a zone's record order means nothing. A zone dnspython
    cannot read whole is read entry by entry, an unreadable entry counting as an extra record. A seed needs an SOA at
    its origin. Oracle edits: text edits (an address, a host's name, add or remove a record), shift (the SOA serial),
    rename the file."""

    name = "zone"
    W = (0.15, 0.80, 0.05, 0.0)

    def _zone(self, text: str, check: bool):
        dns_zone = _require("dns.zone")
        return dns_zone.from_text(text, relativize=True, check_origin=check)

    def load(self, text: str):
        return self._zone(text, True)

    @staticmethod
    def _records(zone) -> list[dict]:
        records = []
        for name, node in zone.nodes.items():
            for rdataset in node:
                for rd in rdataset:
                    records.append({"kind": rdataset.rdtype.name if hasattr(rdataset.rdtype, "name") else str(rdataset.rdtype),
                                    "owner": str(name), "ttl": rdataset.ttl, "rdata": rd.to_text()})
        return records

    def read(self, text: str) -> tuple[dict, list]:
        """The whole zone as dnspython reads it; or, when it cannot, entry by entry (:func:`_zone_entries`: a line
        with its parenthesised continuations; a multi-line entry that cannot be read loses its first line and the rest
        is read again, so an unclosed parenthesis costs one entry), each read by dnspython with the ``$ORIGIN``,
        ``$TTL`` and owner in force at its place, an unreadable entry counting as one :data:`UNREADABLE` record
        (dnspython stops at the first error and reports the line after it, so deleting reported lines would lose good
        records)."""
        dns_exception = _require("dns.exception")
        try:
            zone = self._zone(text, False)
            return {"origin": str(zone.origin)}, self._records(zone)
        except dns_exception.DNSException:
            pass
        dns_name, dns_ttl, dns_zone = _require("dns.name"), _require("dns.ttl"), _require("dns.zone")
        zone_origin = origin = ttl = owner = None
        records: list = []
        bad = 0
        queue = _zone_entries(text)[::-1]
        while queue:
            entry = queue.pop()
            words = entry.split()
            try:
                if words[0].upper() == "$ORIGIN":
                    origin = dns_name.from_text(words[1])
                    zone_origin = zone_origin or origin
                    continue
                if words[0].upper() == "$TTL":
                    dns_ttl.from_text(words[1])
                    ttl = words[1]
                    continue
                if entry[0] in " \t":  # the owner of the entry before
                    if owner is None:
                        raise ValueError("no owner")
                    entry = owner + entry
                else:
                    owner = words[0]
                if origin is None:
                    raise ValueError("no $ORIGIN before the record")
                head = f"$ORIGIN {origin}\n" + (f"$TTL {ttl}\n" if ttl else "")
                zone = dns_zone.from_text(head + entry + "\n", origin=zone_origin, relativize=True, check_origin=False)
                records += self._records(zone)
            except Exception:  # dnspython's errors and a malformed directive: this entry is damage
                bad += 1
                _, _, rest = entry.partition("\n")
                if rest.strip():  # an unclosed parenthesis swallowed the lines after it: read them again
                    queue += _zone_entries(rest)[::-1]
        if zone_origin is None and not records:
            raise ValueError("no readable zone entries")
        return {"origin": str(zone_origin)}, records + [UNREADABLE] * bad

    def record_score(self, a: dict, b: dict) -> float:
        if a["kind"] != b["kind"]:
            return 0.0
        return 0.35 * (a["owner"] == b["owner"]) + 0.45 * (a["rdata"] == b["rdata"]) + 0.20 * (a["ttl"] == b["ttl"])

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """Single-line resource records (not the SOA, directives, comments or multi-line records)."""
        return [m.span() for m in re.finditer(r"(?m)^(?![;$\s])[^\n;()]*?\sIN\s+(?!SOA\b)[A-Z]+\b[^\n()]*\n", text)]


# ---- Graphviz DOT ------------------------------------------------------------------------------------------

def _unquote(s: Any) -> str:
    s = str(s)
    return s[1:-1].replace('\\"', '"') if len(s) >= 2 and s[0] == s[-1] == '"' else s


def _dot_statements(body: str) -> list[str]:
    return _dot_body(body)[0]


def _dot_body(body: str) -> tuple[list[str], int]:
    """The top-level statements of a DOT graph body (after the opening brace): split at ``;`` and line ends outside
    quotes, brackets and braces (a subgraph with its braces is one statement); the graph's closing brace and what
    follows it, comments and empty statements left out. A body cut off keeps its statements before the cut, the
    cut one included as it is. :func:`_dot_body` also gives where the body ends (the closing brace's index, or the
    body's length)."""
    out, cur, depth, bracket, quote, i = [], [], 0, 0, False, 0
    while i < len(body):
        c = body[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(body):
                cur.append(body[i + 1])
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
            cur.append(c)
        elif depth == 0 and bracket == 0 and (body.startswith("//", i) or (c == "#" and not "".join(cur).strip())):
            j = body.find("\n", i)
            i = len(body) if j < 0 else j
            continue
        elif c == "[":
            bracket += 1
            cur.append(c)
        elif c == "]":
            bracket = max(0, bracket - 1)
            cur.append(c)
        elif c == "{":
            depth += 1
            cur.append(c)
        elif c == "}":
            if depth == 0:  # the graph's closing brace
                break
            depth -= 1
            cur.append(c)
            if depth == 0:
                out.append("".join(cur))
                cur = []
        elif c in ";\n" and depth == 0 and bracket == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()], i


class DotDomain(TextRecordDomain):
    """Graphviz DOT graphs (graphviz.org/doc/info/lang.html; pydot). Records: the node statements (name,
    attributes), edges (ends, attributes) and default statements (``node [...]``), each with the subgraph it sits
    in; quoted and bare ids are the same id, numbers compare by value (``penwidth=1`` = ``1.0``). Per record 0 for a
    different kind, else 0.4 name (or ends) + 0.6 attributes (the fraction equal over the larger set, 1 for none).
    Document: the graph's type, name and attributes. File: 0.15 count + 0.75 records + 0.10 document; statement
    order means nothing. A graph is read statement by statement (:meth:`read`), an unreadable statement, text before
    or after the graph, counting as an extra record (a second graph's statements are extra records); a seed must
    parse whole. Oracle edits: text edits (rename a node everywhere, recolour, add or remove an
    edge), reverse (statement lines), rename the file."""

    name = "dot"
    W = (0.15, 0.75, 0.10, 0.0)

    @staticmethod
    def _graphs(text: str) -> list:
        import warnings

        with warnings.catch_warnings():  # pydot's grammar uses pyparsing names deprecated in pyparsing 3.3
            warnings.simplefilter("ignore", DeprecationWarning)
            dot_parser = _require("pydot.dot_parser")
        return list(dot_parser.GraphParser.parser.parse_string(text, parse_all=True))

    def load(self, text: str):
        graphs = self._graphs(text)
        if len(graphs) != 1:
            raise ValueError(f"{len(graphs)} graphs in one file")
        return graphs[0]

    @staticmethod
    def _attrs(obj) -> dict:
        return {k: value_of(_unquote(v)) for k, v in obj.get_attributes().items()}

    def _records(self, graph, where: str) -> list[dict]:
        out = []
        for n in graph.get_node_list():
            name = _unquote(n.get_name())
            kind = "default" if name in ("node", "edge", "graph") else "node"
            out.append({"kind": kind, "name": name, "in": where, "attrs": self._attrs(n)})
        for e in graph.get_edge_list():
            out.append({"kind": "edge", "name": (_unquote(e.get_source()), _unquote(e.get_destination())),
                        "in": where, "attrs": self._attrs(e)})
        for s in graph.get_subgraph_list():
            sub = _unquote(s.get_name())
            out.append({"kind": "subgraph", "name": sub, "in": where, "attrs": self._attrs(s)})
            out += self._records(s, f"{where}/{sub}" if where else sub)
        return out

    def read(self, text: str) -> tuple[dict, list]:
        """The graph read statement by statement: each top-level statement (a subgraph with its body) parsed by
        pydot inside the graph's header, cached, so a damaged answer re-reads only what changed (pydot's grammar
        takes about 0.1 s per graph of tens of lines); an unreadable statement is an :data:`UNREADABLE` record."""
        m = re.search(r'(?m)^\s*(strict\s+)?(digraph|graph)\s*("(?:[^"\\]|\\.)*"|[\w.]+)?\s*\{', text, re.IGNORECASE)
        if not m:
            raise ValueError("no graph header")
        header = m.group(0)
        doc = {"type": m.group(2).lower(), "name": _unquote(m.group(3) or "")}
        records: list = []
        before = re.sub(r"(?m)^\s*(//|#).*$", "", text[: m.start()])
        if before.strip():  # prose before the graph (a model's preamble)
            records.append(UNREADABLE)
        units, end = _dot_body(text[m.end():])
        after = text[m.end() + end + 1:]
        if re.search(r"(?m)^\s*(strict\s+)?(di)?graph\b", after, re.IGNORECASE):  # a second graph: extra records
            try:
                records += self.read(after)[1]
            except ValueError:
                records.append(UNREADABLE)
        elif re.sub(r"(?m)^\s*(//|#).*$", "", after).strip():  # text after the graph
            records.append(UNREADABLE)
        for unit in units:
            try:
                graph = self._unit(header, unit)
            except Exception:  # pyparsing's errors: this statement is damage
                records.append(UNREADABLE)
                continue
            doc.update(self._attrs(graph))
            records += self._records(graph, "")
        return doc, records

    @functools.lru_cache(maxsize=4096)
    def _unit(self, header: str, statement: str):
        return self.load(f"{header}\n{statement}\n}}\n")

    def record_score(self, a: dict, b: dict) -> float:
        if a["kind"] != b["kind"]:
            return 0.0
        return (0.4 * (a["name"] == b["name"] and a["in"] == b["in"]) + 0.6 * field_similarity(a["attrs"], b["attrs"]))

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """Node and edge statements written one per line (not defaults, graph attributes or braces)."""
        return [m.span() for m in re.finditer(r"(?m)^[ \t]+(?!(?:node|edge|graph)\b)[^\s{}=][^{}\n]*;[ \t]*\n", text)
                if "=" not in m.group(0).split("[")[0]]


# ---- Terraform ---------------------------------------------------------------------------------------------

def _top_level_blocks(text: str) -> list[tuple[int, int]]:
    """The spans of the top-level ``kind "label" { ... }`` blocks of an HCL file, by brace depth outside strings
    and comments (a block runs to the end of the line of its closing brace)."""
    spans, depth, start, i, n = [], 0, None, 0, len(text)
    in_str, line_start = False, 0
    while i < n:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        elif c == "{":
            if depth == 0:
                start = line_start
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                end = text.find("\n", i)
                end = n if end < 0 else end + 1
                spans.append((start, end))
                start = None
                i = end
                line_start = end
                continue
        if c == "\n":
            line_start = i + 1
        i += 1
    return spans


class TerraformDomain(TextRecordDomain):
    """Terraform configurations (HCL2; python-hcl2). Records: the top-level blocks (resource, data, variable,
    output, module, provider, locals, terraform) with their labels; per block 0 for a different kind, else 0.3
    labels + 0.7 × the body's :func:`tree_similarity` (the JSON domain's: every leaf weighs the same, numbers by
    value, lists matched by content). File: 0.15 count + 0.85 blocks; block order means nothing. A file hcl2 cannot
    read whole is read block by block, an unreadable block, and text between or after the blocks that is not a
    comment, counting as an extra record. Oracle edits: text edits
    (an instance type, a tag, add or remove a block, rename a variable everywhere), reverse (blocks), rename the
    file."""

    name = "terraform"
    W = (0.15, 0.85, 0.0, 0.0)

    def load(self, text: str) -> dict:
        doc = _require("hcl2").loads(text)
        if not doc:
            raise ValueError("no blocks")
        return doc

    @staticmethod
    def _clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {_unquote(k): TerraformDomain._clean(v) for k, v in x.items() if k != "__is_block__"}
        if isinstance(x, list):
            return [TerraformDomain._clean(v) for v in x]
        return _unquote(x) if isinstance(x, str) else x

    def _records(self, doc: dict) -> list[dict]:
        out = []
        for kind, entries in doc.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                entry = self._clean(entry)
                depth = {"resource": 2, "data": 2}.get(kind, 0 if kind in ("locals", "terraform") else 1)
                labels, body = (), entry
                for _ in range(depth):
                    if not isinstance(body, dict) or len(body) != 1:
                        break
                    (label, body), = body.items()
                    labels += (label,)
                out.append({"kind": kind, "labels": labels, "body": body})
        return out

    def read(self, text: str) -> tuple[dict, list]:
        try:
            return {}, self._records(self.load(text))
        except Exception:  # lark's errors: block by block
            pass
        records, bad, end = [], 0, 0
        for a, b in _top_level_blocks(text) or [(0, len(text))]:
            gap = re.sub(r"(?m)^\s*(#|//).*$", "", text[end:a])  # text between blocks that is not a comment
            bad += bool(gap.strip())  # prose or a broken statement between blocks (a model's preamble)
            end = b
            try:
                records += self._records(self.load(text[a:b]))
            except Exception:
                bad += 1
        tail = text[_top_level_blocks(text)[-1][1]:] if _top_level_blocks(text) else ""
        bad += bool(tail.strip())  # a cut-off last block, or text after the last one
        return {}, records + [UNREADABLE] * bad

    def record_score(self, a: dict, b: dict) -> float:
        if a["kind"] != b["kind"]:
            return 0.0
        return 0.3 * (a["labels"] == b["labels"]) + 0.7 * tree_similarity(a["body"], b["body"])

    def blocks(self, text: str) -> list[tuple[int, int]]:
        return _top_level_blocks(text)


# ---- Dockerfile --------------------------------------------------------------------------------------------

_DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                        "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


class DockerfileDomain(TextRecordDomain):
    """Dockerfiles (docs.docker.com/reference/dockerfile; dockerfile-parse). Records: the instructions in order
    (continuation lines joined, whitespace collapsed; comments left out). Instructions are aligned in order
    (:func:`aligned`: a Dockerfile's order is its meaning, so a dropped, invented or moved instruction costs that
    instruction), each pair scoring 0 for a different instruction, else 0.3 + 0.7 × the word-sequence ratio of the
    arguments. File: 0.1 count + 0.9 × the aligned score over the longer instruction list. A seed's instructions
    must be Dockerfile instructions, the first (after ARGs) a FROM. Oracle edits: text edits (base image, a
    package, an ENV value, add or remove an instruction), rename the file."""

    name = "dockerfile"

    @staticmethod
    def _structure(text: str) -> list[dict]:
        parser = _require("dockerfile_parse").DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")),
                                                                         env_replace=False)
        return [s for s in parser.structure if s["instruction"] != "COMMENT"]

    def load(self, text: str) -> list[dict]:
        structure = self._structure(text)
        kinds = [s["instruction"] for s in structure]
        unknown = sorted(set(kinds) - _DOCKER_INSTRUCTIONS)
        if unknown:
            raise ValueError(f"unknown instructions {unknown}")
        first = next((k for k in kinds if k != "ARG"), None)
        if first != "FROM":
            raise ValueError("the first instruction (after ARGs) is not FROM")
        return structure

    def read(self, text: str) -> tuple[dict, list]:
        return {}, [{"kind": s["instruction"], "value": " ".join(s["value"].split())} for s in self._structure(text)]

    def file_similarity(self, seed, got) -> float:
        (_, a), (_, b) = seed, got

        def score(x, y) -> float:
            if x["kind"] != y["kind"]:
                return 0.0
            if x["value"] == y["value"]:
                return 1.0
            ratio = difflib.SequenceMatcher(None, x["value"].split(), y["value"].split(), autojunk=False).ratio()
            return 0.3 + 0.7 * ratio

        longer = max(len(a), len(b))
        return 0.1 * min(len(a), len(b)) / longer + 0.9 * aligned(a, b, score) / longer

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """Instructions after the first (each its lines, continuations included)."""
        starts = [0]
        for line in text.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        spans = []
        for s in self._structure(text)[1:]:
            spans.append((starts[s["startline"]], starts[min(s["endline"] + 1, len(starts) - 1)]))
        return spans


# ---- two-line element sets ---------------------------------------------------------------------------------

_TLE_LINE1 = ("satnum", "classification", "intldesg", "epochyr", "epochdays", "ndot", "nddot", "bstar", "ephtype",
              "elnum")
_TLE_LINE2 = ("inclo", "nodeo", "ecco", "argpo", "mo", "no_kozai", "revnum")


class TLEDomain(TextRecordDomain):
    """NORAD two-line element sets (the CelesTrak / Space-Track TLE format, a name line before each set; sgp4).
    Records: the satellites; per satellite 0.1 name + 0.45 × line 1 + 0.45 × line 2, a line scoring the fraction of
    its elements (as sgp4 reads them) equal to the seed's, and 0 when its checksum (column 69: the digits summed, each
    minus sign counting 1, modulo 10) is wrong, as a consumer rejects it. File: 0.15 count + 0.80 satellites + 0.05
    order (a catalogue's order means little, but a reordered file is a changed file). A set sgp4 cannot read is an
    extra record. A seed's lines must pass their checksums. Oracle edits: text edits (rename a satellite, add or
    remove a set, change the classification), reverse (sets), rename the file; every edited line's checksum is
    recomputed."""

    name = "tle"
    W = (0.15, 0.80, 0.0, 0.05)

    @staticmethod
    def _sets(text: str) -> list[tuple[str, str | None, str | None]]:
        """(name, line 1, line 2) per set; a missing line is None."""
        lines = [x.rstrip() for x in text.replace("\r\n", "\n").split("\n") if x.strip()]
        out, name, i = [], "", 0
        while i < len(lines):
            x = lines[i]
            if x.startswith("1 "):
                l2 = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("2 ") else None
                out.append((name, x, l2))
                name, i = "", i + (2 if l2 else 1)
            elif x.startswith("2 "):
                out.append((name, None, x))
                name, i = "", i + 1
            else:
                if name:
                    out.append((name, None, None))
                name, i = (x[2:] if x.startswith("0 ") else x).strip(), i + 1
        if name:
            out.append((name, None, None))
        return out

    def load(self, text: str) -> list:
        io_ = _require("sgp4.io")
        api = _require("sgp4.api")
        sets = self._sets(text)
        if not sets:
            raise ValueError("no element sets")
        for name, l1, l2 in sets:
            if not l1 or not l2 or len(l1) != 69 or len(l2) != 69:
                raise ValueError(f"{name or 'a set'}: needs two 69-column lines")
            io_.verify_checksum(l1, l2)
            api.Satrec.twoline2rv(l1, l2)
        return sets

    @staticmethod
    def _line_ok(line: str) -> bool:
        io_ = _require("sgp4.io")
        return len(line) == 69 and line[68].isdigit() and int(line[68]) == io_.compute_checksum(line)

    def read(self, text: str) -> tuple[dict, list]:
        api = _require("sgp4.api")
        records: list = []
        for name, l1, l2 in self._sets(text):
            if not l1 or not l2:
                records.append(UNREADABLE)
                continue
            try:
                sat = api.Satrec.twoline2rv(l1.ljust(69), l2.ljust(69))
                rec = {"name": name, "ok1": self._line_ok(l1), "ok2": self._line_ok(l2)}
                rec.update({k: getattr(sat, k) for k in _TLE_LINE1 + _TLE_LINE2})
            except Exception:  # sgp4 refuses the set
                records.append(UNREADABLE)
                continue
            records.append(rec)
        return {}, records

    def record_score(self, a: dict, b: dict) -> float:
        def line(keys, ok) -> float:
            return 0.0 if not b[ok] else sum(a[k] == b[k] for k in keys) / len(keys)

        return 0.1 * (a["name"] == b["name"]) + 0.45 * line(_TLE_LINE1, "ok1") + 0.45 * line(_TLE_LINE2, "ok2")

    def finish(self, text: str) -> str:
        io_ = _require("sgp4.io")

        def fix(line: str) -> str:
            if line[:2] in ("1 ", "2 ") and len(line) == 69:
                return line[:68] + str(io_.compute_checksum(line))
            return line

        return "\n".join(fix(x) for x in text.split("\n"))

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """Each set: its name line (if any) and its two lines."""
        return [m.span() for m in re.finditer(r"(?m)^(?:(?![12] ).*\n)?1 .*\n2 .*(?:\n|\Z)", text)]


INFRA_DOMAINS = (GTFSDomain(), ZoneDomain(), DotDomain(), TerraformDomain(), DockerfileDomain(), TLEDomain())
