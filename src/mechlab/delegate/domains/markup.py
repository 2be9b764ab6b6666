"""Markup domains read with the standard library: e-mail messages (``email``, RFC 5322 / MIME) and five XML
formats (``xml.etree.ElementTree``): SVG drawings, KML maps, URDF robot descriptions, XSPF playlists and VOTable
tables (DELEGATE-52, arXiv 2604.15597: parser-based weighted structural similarity; the plumbing and the oracle's
text edits are in :mod:`mechlab.delegate.domains.textrecords`).

An XML document is read into records (the elements the format lists: shapes, placemarks and styles, links and
joints, tracks, fields and table rows) and document fields (everything outside the records). A record's fields are
its subtree flattened to paths (``origin@xyz``, ``ExtendedData/Data[ele]/value#text``; a repeated child is keyed by
its ``name`` or ``id``, else by its position), each value compared by value (:func:`value_of`). A document the XML
parser cannot read whole (a cut-off file, a broken tag, content after the root) is read by lxml's recovering parser
(:func:`mechlab.delegate.domains.base.readable_xml_root`): the elements before and after each error are kept, each
damaged place counting as an unreadable record. Every record and the root hold their namespace (``@xmlns``).
"""

from __future__ import annotations

import difflib
import re
import xml.etree.ElementTree as ET
from typing import Any

from mechlab.delegate.domains.base import readable_xml_root
from mechlab.delegate.domains.textrecords import UNREADABLE, TextRecordDomain, field_similarity, value_of


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    """The namespace URI of a ``{uri}local`` tag ("" for none)."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


class XMLDomain(TextRecordDomain):
    """An XML format: records are the elements whose local tag is in ``RECORDS`` (found anywhere; a record's
    ``in`` field names its enclosing containers, e.g. the KML folder or SVG group), the document fields the rest of
    the tree flattened. ``ROOT`` is the root's local tag a seed must have. Records score by
    :func:`field_similarity` (0 between different tags); weights ``W`` = (count, records, document, order)."""

    ROOT = ""
    RECORDS: frozenset[str] = frozenset()
    CONTAINERS: frozenset[str] = frozenset()  # the ancestors that name a record's place (``in``)

    def load(self, text: str) -> ET.Element:
        root = ET.fromstring(text)
        if _local(root.tag) != self.ROOT:
            raise ValueError(f"the root element is <{_local(root.tag)}>, not <{self.ROOT}>")
        if not any(_local(e.tag) in self.RECORDS for e in root.iter() if isinstance(e.tag, str)):
            raise ValueError(f"no {' / '.join(sorted(self.RECORDS))} elements")
        self.validate(root)
        return root

    def validate(self, root: ET.Element) -> None:
        """Format rules a seed must keep beyond well-formed XML (raise ValueError)."""

    @staticmethod
    def _label(el: ET.Element) -> str:
        name = el.get("name") or el.get("id")
        if name is None:
            child = next((c for c in el if isinstance(c.tag, str) and _local(c.tag) == "name"), None)
            name = (child.text or "").strip() if child is not None else None
        return f"{_local(el.tag)}[{name}]" if name else _local(el.tag)

    def flatten(self, el: ET.Element, prefix: str = "", parent_ns: str | None = None) -> dict[str, Any]:
        """The element's attributes and text, and those of its non-record descendants, as path → value; an
        element's namespace is the field ``@xmlns`` where it differs from its parent's (a record's and the root's
        always), and a namespaced attribute keeps its namespace in its name, so a changed namespace costs."""
        out: dict[str, Any] = {}
        ns = _namespace(el.tag)
        if ns != parent_ns and (ns or parent_ns is not None):
            out[f"{prefix}@xmlns"] = ns
        for k, v in el.attrib.items():
            out[f"{prefix}@{_local(k) if not _namespace(k) else '{' + _namespace(k) + '}' + _local(k)}"] = value_of(v)
        text = (el.text or "").strip()
        if text:
            out[f"{prefix}#text"] = value_of(text)
        seen: dict[str, int] = {}
        for child in el:
            if not isinstance(child.tag, str) or _local(child.tag) in self.RECORDS:
                continue
            key = self._label(child)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += f"#{seen[key]}"
            out.update(self.flatten(child, f"{prefix}{key}/", ns))
        return out

    def record(self, el: ET.Element, where: str) -> dict[str, Any]:
        return {"kind": _local(el.tag), "in": where, **self.flatten(el)}

    def read(self, text: str) -> tuple[dict, list]:
        """(the document fields, the records plus one :data:`UNREADABLE` record per damaged place of a document that
        is not well-formed: :func:`readable_xml_root` recovers the elements before and after each error, and content
        after the root element is damage too)."""
        root, damage = readable_xml_root(text)
        records: list = []

        def walk(el: ET.Element, where: list[str]) -> None:
            for child in el:
                if not isinstance(child.tag, str):
                    continue
                if _local(child.tag) in self.RECORDS:
                    records.append(self.record(child, "/".join(where)))
                else:
                    walk(child, where + [self._label(child)] if _local(child.tag) in self.CONTAINERS else where)

        walk(root, [])
        return {"root": _local(root.tag), **self.flatten(root)}, records + [UNREADABLE] * damage

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """Each record element's lines: from the line of its start tag to the end of the line of its end tag (or
        of a self-closing start tag); records written on shared lines are not split."""
        tags = "|".join(sorted(self.RECORDS))
        pattern = re.compile(rf"(?ms)^[ \t]*<(?:\w+:)?({tags})\b(?:[^>]*?/>|.*?</(?:\w+:)?\1>)[ \t]*\n")
        return [m.span() for m in pattern.finditer(text)]


class SVGDomain(XMLDomain):
    """SVG drawings (SVG 1.1; xml.etree). Records: the shapes and texts (rect, circle, ellipse, line, polyline,
    polygon, path, text, image, use), each with the groups it sits in; numbers by value, point lists aligned.
    Document: the root's attributes (width, height, viewBox), title, desc and the groups' own attributes. File:
    0.15 count + 0.70 shapes + 0.10 document + 0.05 order (drawing order is paint order). Oracle edits: text edits
    (recolour, rename an id, add or remove a shape), reverse (paint order), shift (coordinates)."""

    name = "svg"
    ROOT = "svg"
    RECORDS = frozenset({"rect", "circle", "ellipse", "line", "polyline", "polygon", "path", "text", "image", "use"})
    CONTAINERS = frozenset({"g", "a", "defs", "symbol", "clipPath", "mask", "pattern"})


class KMLDomain(XMLDomain):
    """KML maps (OGC KML 2.2; xml.etree). Records: Placemarks (name, description, style, ExtendedData, geometry;
    coordinates ``lon,lat[,alt]`` tuples aligned in order, so one dropped vertex costs that vertex), Styles and
    StyleMaps, each with the folders it sits in. Document: the Document's and folders' names and descriptions. File:
    0.15 count + 0.75 records + 0.10 document; the order of placemarks means nothing. Oracle edits: text edits
    (rename, restyle, move, add or remove a placemark), reverse."""

    name = "kml"
    ROOT = "kml"
    RECORDS = frozenset({"Placemark", "Style", "StyleMap"})
    CONTAINERS = frozenset({"Folder", "Document"})
    W = (0.15, 0.75, 0.10, 0.0)


class URDFDomain(XMLDomain):
    """URDF robot descriptions (ROS URDF XML; xml.etree). Records: links (inertial, visual and collision
    geometry, origins) and joints (type, parent, child, origin, axis, limits), vectors such as ``xyz="0 0 0.1"``
    compared by value component by component. Document: the robot's name and materials. File: 0.15 count + 0.75
    links and joints + 0.10 document; element order means nothing. A seed's joints must name links it defines.
    Oracle edits: text edits (rename a link everywhere, change a limit, add or remove a link with its joint),
    reverse."""

    name = "urdf"
    ROOT = "robot"
    RECORDS = frozenset({"link", "joint"})
    W = (0.15, 0.75, 0.10, 0.0)

    def validate(self, root: ET.Element) -> None:
        links = {e.get("name") for e in root if isinstance(e.tag, str) and _local(e.tag) == "link"}
        for j in (e for e in root if isinstance(e.tag, str) and _local(e.tag) == "joint"):
            for end in ("parent", "child"):
                ref = j.find(end)
                if ref is None or ref.get("link") not in links:
                    raise ValueError(f"joint {j.get('name')!r}: its {end} link is not defined")


class XSPFDomain(XMLDomain):
    """XSPF playlists (XSPF 1, xiph.org; xml.etree). Records: tracks (location, title, creator, album, trackNum,
    duration in ms by value). Document: the playlist's title, creator, date, annotation. File: 0.15 count + 0.70
    tracks + 0.10 document + 0.05 order (a playlist's order is its point). Oracle edits: text edits, reverse."""

    name = "xspf"
    ROOT = "playlist"
    RECORDS = frozenset({"track"})


class VOTableDomain(XMLDomain):
    """VOTable tables (IVOA VOTable 1.4, TABLEDATA serialisation; xml.etree). Records: the FIELD definitions
    (name, datatype, unit, ucd, description) and the table rows, a row's cells keyed by their FIELD's name (so a
    column's values follow its name) and compared by value (``1`` = ``1.0``). Document: RESOURCE / TABLE names,
    descriptions, INFO and PARAM elements. File: 0.15 count + 0.70 fields and rows + 0.10 document + 0.05 order. A
    seed's rows must hold one TD per FIELD. Oracle edits: text edits (rename a column, add or remove a row),
    reverse (rows)."""

    name = "votable"
    ROOT = "VOTABLE"
    RECORDS = frozenset({"FIELD", "TR"})
    CONTAINERS = frozenset({"RESOURCE", "TABLE"})

    def validate(self, root: ET.Element) -> None:
        for table in (e for e in root.iter() if isinstance(e.tag, str) and _local(e.tag) == "TABLE"):
            n = sum(1 for e in table if isinstance(e.tag, str) and _local(e.tag) == "FIELD")
            for tr in (e for e in table.iter() if isinstance(e.tag, str) and _local(e.tag) == "TR"):
                cells = sum(1 for e in tr if isinstance(e.tag, str) and _local(e.tag) == "TD")
                if cells != n:
                    raise ValueError(f"a row holds {cells} cells for {n} FIELDs")

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """The table rows (the FIELDs stay in place when rows are reversed or dropped)."""
        return [m.span() for m in re.finditer(r"(?ms)^[ \t]*<(?:\w+:)?TR\b.*?</(?:\w+:)?TR>[ \t]*\n", text)]

    def read(self, text: str) -> tuple[dict, list]:
        root, damage = readable_xml_root(text)
        doc = {"root": _local(root.tag), **self.flatten(root)}
        records: list = []
        for table in (e for e in root.iter() if isinstance(e.tag, str) and _local(e.tag) == "TABLE"):
            where = table.get("name") or table.get("ID") or ""
            names = []
            for f in (e for e in table if isinstance(e.tag, str) and _local(e.tag) == "FIELD"):
                records.append(self.record(f, where))
                names.append(f.get("name") or f.get("ID") or f"column {len(names) + 1}")
            for tr in (e for e in table.iter() if isinstance(e.tag, str) and _local(e.tag) == "TR"):
                cells = [e for e in tr if isinstance(e.tag, str) and _local(e.tag) == "TD"]
                row = {"kind": "TR", "in": where, "@xmlns": _namespace(tr.tag)}
                for i, td in enumerate(cells):
                    row[names[i] if i < len(names) else f"column {i + 1}"] = value_of(td.text or "")
                records.append(row)
        return doc, records + [UNREADABLE] * damage


# ---- e-mail ------------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^[!-9;-~]+:[ \t]*\S")  # an RFC 5322 header field: printable name, colon, a value
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")


def _words_ratio(a: str, b: str) -> float:
    if a == b:
        return 1.0
    r = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()
    return r if r >= 0.5 else 0.0


class EmailDomain(TextRecordDomain):
    """E-mail messages (.eml: RFC 5322 headers, MIME bodies; the standard library's ``email`` with the default
    policy). Document: the headers (address headers as the set of their addresses with display names, others
    unfolded text; Received and other transport headers included). Records: the paragraphs of the text parts (in
    order; a paragraph scores the word-sequence ratio of its text, 0 below one half) and the attachments (file name,
    type and content). File: 0.10 count + 0.50 paragraphs and attachments + 0.30 headers + 0.10 order. A seed needs
    From, To, Subject and Date headers and a body. Oracle edits: text edits (subject, recipients, a header, a
    sentence), rename the file."""

    name = "email"
    W = (0.10, 0.50, 0.30, 0.10)

    @staticmethod
    def _message(text: str):
        import email
        from email import policy

        return email.message_from_string(text, policy=policy.default)

    def load(self, text: str):
        msg = self._message(text)
        for h in ("From", "To", "Subject", "Date"):
            if msg[h] is None:
                raise ValueError(f"no {h} header")
        if msg.defects:
            raise ValueError(f"defects: {msg.defects}")
        if not any(self._parts(msg)):
            raise ValueError("no body")
        return msg

    @staticmethod
    def _header_value(name: str, value: Any) -> Any:
        if name in _ADDRESS_HEADERS and hasattr(value, "addresses"):
            return tuple(sorted(f"{a.display_name} <{a.addr_spec.lower()}>" for a in value.addresses))
        return " ".join(str(value).split())

    @staticmethod
    def _parts(msg) -> tuple[list, list]:
        """(paragraphs, attachments) of a message."""
        paragraphs, attachments = [], []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                content = part.get_content()
            except Exception:  # an undecodable part is kept as its raw payload
                content = part.get_payload()
            if part.get_content_disposition() == "attachment" or part.get_filename():
                attachments.append({"kind": "attachment", "filename": part.get_filename() or "",
                                    "type": part.get_content_type(),
                                    "content": content if isinstance(content, str) else bytes(content).hex()})
            elif part.get_content_maintype() == "text" and isinstance(content, str):
                for p in re.split(r"\n[ \t]*\n", content.replace("\r\n", "\n")):
                    if p.strip():
                        paragraphs.append({"kind": "paragraph", "text": " ".join(p.split())})
        return paragraphs, attachments

    @staticmethod
    def _header_start(text: str) -> int:
        """Where the header block starts: the first line that opens a run of header lines (``Name: value``, folded
        continuations allowed) holding a From, To, Subject or Date header; 0 when there is none (the text is read
        as it is). Text before it (a model's preamble, an mbox ``From `` line) is not part of the message."""
        lines = text.split("\n")
        offset = 0
        for i, line in enumerate(lines):
            if _HEADER.match(line):
                block = []
                for x in lines[i:]:
                    if _HEADER.match(x) or (block and x[:1] in (" ", "\t") and x.strip()):
                        block.append(x)
                    else:
                        break
                if any(re.match(r"(?i)(from|to|subject|date):", x) for x in block):
                    return offset
            offset += len(line) + 1
        return 0

    def read(self, text: str) -> tuple[dict, list]:
        """(the headers, the paragraphs and attachments); text before the header block (a preamble) is read past
        and counts as one unreadable record."""
        start = self._header_start(text)
        preamble = bool(text[:start].strip())
        msg = self._message(text[start:].lstrip("\n"))
        headers: dict[str, Any] = {}
        for name, value in msg.items():
            key = name.lower()
            try:
                v = self._header_value(key, value)
            except Exception:  # a header the policy cannot parse: its raw text
                v = " ".join(str(value).split())
            headers[key] = v if key not in headers else (headers[key], v)
        if not headers:  # without a header block everything is body text: no message
            raise ValueError("no headers")
        paragraphs, attachments = self._parts(msg)
        return headers, paragraphs + attachments + [UNREADABLE] * preamble

    def record_score(self, a: dict, b: dict) -> float:
        if a["kind"] != b["kind"]:
            return 0.0
        if a["kind"] == "paragraph":
            return _words_ratio(a["text"], b["text"])
        return field_similarity(a, b)

    def doc_score(self, a: dict, b: dict) -> float:
        return field_similarity(a, b)

    def blocks(self, text: str) -> list[tuple[int, int]]:
        """The body's paragraphs of a single-part message (each with the blank line after it)."""
        head_end = text.find("\n\n")
        if head_end < 0 or "multipart/" in text[:head_end].lower():
            return []
        return [(m.start() + head_end + 2, m.end() + head_end + 2)
                for m in re.finditer(r"(?s)\S.*?(?:\n[ \t]*\n|\Z)", text[head_end + 2:])]


MARKUP_DOMAINS = (EmailDomain(), SVGDomain(), KMLDomain(), URDFDomain(), XSPFDomain(), VOTableDomain())
