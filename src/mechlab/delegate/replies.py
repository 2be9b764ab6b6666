"""Files in and out of a prompt: serialising a file set as fenced blocks, and reading the files back from a reply
written the way real models write them (DELEGATE-52, arXiv 2604.15597: one fenced block per file, labelled with
its filename).

Fences follow CommonMark 0.31 §4.5 (https://spec.commonmark.org/0.31.2/#fenced-code-blocks): an opening fence is
three or more backticks or tildes, indented by at most three spaces, with an optional info string (no backtick in
a backtick fence's info); the block ends at a line of the same character, at least as long, with nothing but
spaces after it. A file is written in a fence one backtick longer than the longest backtick run inside it, so a
file that itself holds a fence line survives the round trip.

A reply is read leniently, as models answer: a byte-order mark, CRLF and lone-CR line endings are normalised;
``<think>…</think>`` (or ``<thinking>``) drafts are dropped, and so is everything before a lone closing
``</think>`` (the chat template put the opener in the prompt) and everything from an unclosed ``<think>`` to the
end (a reply cut off while reasoning gives no file from its draft); the filename may be in the info string (```` ```name.json ````,
```` ```json name.json ````, ```` ```file=name.json ````), on the nearest prose line before the fence
(``**name.json**``, ```` `name.json` ````, ``### name.json``, ``File: name.json``, ``name.json:``,
``<file_name>name.json</file_name>``), or alone on the first line inside the fence (``name.json``,
``# name.json``, ``// name.json``, ``File: name.json``, or a known name without an extension such as
``Dockerfile``; that line is then not part of the file). A 3-backtick
block whose content holds tagged inner fences (a Markdown file written in too short a fence) is read with its
inner fences nested when that closes every block. When exactly one required file is missing and exactly one
unnamed block came back, that block is taken for it. When a name repeats, the block kept is the longest of those
the domain can parse (or the longest, if none parses), which keeps the complete file over a repeated excerpt.
A prose line that mentions several known filenames (``Here are a.csv and b.csv:``) names no block; a block labelled
with a path whose last component is a required name (``**output/data.csv**``) is taken for that file. Every such
choice is written to the notes that go into the trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

Files = dict[str, str]

_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$")
_THINK = re.compile(r"<(think|thinking)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking)>", re.IGNORECASE)
_NAME = r"[\w][\w.\-/]*\.[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*"  # a path with an extension (not a number like 2.5)
_TAG = re.compile(r"<file_?name>\s*(" + _NAME + r")\s*</file_?name>", re.IGNORECASE)
# a label line: optional heading/list/comment marks and emphasis, an optional "File:"-like word, the name, an
# optional colon; nothing else
_LABEL = re.compile(r"^\s*(?:#{1,6}\s*|[-*+]\s+|//\s*|--\s*|<!--\s*|;\s*|%\s*)?[*_`'\"]*\s*"
                    r"(?:(?:file(?:name)?|path|name)\s*[:=]\s*)?[*_`'\"]*\s*(" + _NAME + r")\s*[*_`'\"]*\s*:?\s*"
                    r"[*_`'\"]*\s*(?:-->)?\s*$", re.IGNORECASE)
_INFO_KEY = re.compile(r"^(?:file(?:name)?|path|name|title)\s*[:=]\s*", re.IGNORECASE)


def fence_for(text: str) -> str:
    """The backtick fence for ``text``: one backtick longer than its longest backtick run, at least three."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def format_files(files: Files) -> str:
    """Each file as a fenced block whose opening fence carries its name (trailing whitespace of a file dropped,
    one final newline kept)."""
    blocks = []
    for name, text in files.items():
        fence = fence_for(text)
        blocks.append(f"{fence}{name}\n{text.rstrip()}\n{fence}")
    return "\n\n".join(blocks) + "\n"


def normalise(text: str) -> str:
    """A reply's text with the byte-order mark dropped and CRLF / lone CR line endings made LF."""
    return (text or "").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Block:
    """One fenced block of a reply: its info string, the prose line before it, its content lines, and whether a
    closing fence ended it."""

    info: str
    before: str
    lines: list[str]
    closed: bool


def _blocks(lines: list[str], nested: bool) -> list[Block]:
    out, prose, i = [], "", 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m or (m.group(2)[0] == "`" and "`" in m.group(3)):
            if lines[i].strip():
                prose = lines[i]
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3)
        body, depth, closed, i = [], 0, False, i + 1
        while i < len(lines):
            inner = _OPEN.match(lines[i])
            if inner and inner.group(2)[0] == fence[0] and len(inner.group(2)) >= len(fence):
                if not inner.group(3):
                    if depth == 0:
                        closed = True
                        i += 1
                        break
                    depth -= 1
                elif nested and len(inner.group(2)) == len(fence):
                    depth += 1
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            i += 1
        out.append(Block(info, prose, body, closed))
        prose = ""
    return out


def _label(line: str) -> str | None:
    """The filename of a line that is only a label (``**a.json**``, ``# a.json``, ``File: a.json``, a tag)."""
    tag = _TAG.search(line)
    m = _LABEL.match(line)
    return tag.group(1) if tag else m.group(1) if m else None


def _prose_name(line: str, known: set[str], notes: list[str] | None = None) -> str | None:
    """The filename a prose line names: its label, else the one known name mentioned in it (a line that mentions
    several known names names none, noted: which of them labels the block is a guess)."""
    name = _label(line)
    if name or not line.strip():
        return name
    hits = {k for k in known
            for m in re.finditer(r"(?<![\w.\-/])" + re.escape(k) + r"(?![\w\-/]|\.\w)", line)}
    if len(hits) > 1:
        if notes is not None:
            notes.append(f"a prose line names {', '.join(sorted(hits))}: it labels no block")
        return None
    return next(iter(hits)) if hits else None


def _known_label(line: str, known: set[str]) -> str | None:
    """The known filename without an extension (``Dockerfile``, ``Makefile``) that a label line holds, in the
    label forms of ``_LABEL`` (``Dockerfile``, ``# Dockerfile``, ``File: Dockerfile``); None otherwise."""
    plain = sorted((k for k in known if not re.fullmatch(_NAME, k)), key=len, reverse=True)
    if not plain or not line.strip():
        return None
    names = "|".join(re.escape(k) for k in plain)
    m = re.match(_LABEL.pattern.replace("(" + _NAME + ")", f"({names})"), line, re.IGNORECASE)
    if not m:
        return None
    return next((k for k in plain if k.lower() == m.group(1).lower()), None)


def _info_name(info: str, known: set[str]) -> str | None:
    tokens = [_INFO_KEY.sub("", t).strip("\"'`*:") for t in re.split(r"[\s:]+", info) if t]
    for t in tokens:
        if t in known:
            return t
    names = [t for t in tokens if re.fullmatch(_NAME, t)]
    return names[-1] if names else None


@dataclass
class ParsedReply:
    """The files read from a reply, and notes on every guess made reading them (for the trace)."""

    files: Files
    notes: list[str] = field(default_factory=list)


def parse_reply(text: str | bytes, required: list[str] | None = None, known: set[str] | None = None,
                parses: Callable[[str, str], bool] | None = None) -> ParsedReply:
    """Read the files of a reply (the module docstring's rules). ``required``: the files the answer must hold
    (shell wildcards allowed: a name alone on a block's first line that matches one is taken as its name);
    ``known``: every filename of the context (and the required ones); ``parses(name, text)``: whether the domain
    can read a candidate, used to choose among blocks that repeat a name. An unclosed last block (a reply cut off)
    gives no file. ``bytes`` are decoded as UTF-8 (invalid bytes replaced). Never raises on any text."""
    from fnmatch import fnmatchcase

    patterns = [f for f in required or [] if any(c in f for c in "*?[")]
    required = [f for f in required or [] if f not in patterns]
    known = set(known or ()) | set(required)
    notes: list[str] = []
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = "" if text is None else str(text)
    text = normalise(text)
    if _THINK.search(text):
        text = _THINK.sub("", text)
        notes.append("dropped a <think> section")
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # a closing tag without its opener: the template put <think> in the prompt
        text = text[closes[-1].end():]
        notes.append("dropped everything before a lone </think> (its <think> was in the prompt)")
    opener = _THINK_OPEN.search(text)
    if opener:  # an opener never closed: the reply was cut off while reasoning
        text = text[:opener.start()]
        notes.append("dropped an unclosed <think> section to the end of the reply (cut off while reasoning)")
    lines = text.split("\n")
    blocks = _blocks(lines, nested=True)
    if any(not b.closed for b in blocks):
        strict = _blocks(lines, nested=False)
        if sum(b.closed for b in strict) >= sum(b.closed for b in blocks):
            blocks = strict
    candidates: dict[str, list[str]] = {}
    unnamed: list[str] = []
    for b in blocks:
        if not b.closed:
            notes.append("dropped an unclosed block (a reply cut off)")
            continue
        body = b.lines
        name = _info_name(b.info, known) or _prose_name(b.before, known, notes)
        first = (_label(body[0]) or _known_label(body[0], known)) if body else None
        expected = first in known or any(fnmatchcase(first or "", p) for p in patterns)
        if first and (first == name or (name is None and expected)):
            name, body = first, body[1:]
        content = "\n".join(body).lstrip("\ufeff")
        content = content + "\n" if body else ""
        if name:
            candidates.setdefault(name, []).append(content)
        else:
            unnamed.append(content)
    for name in list(candidates):  # a path whose last component is a required name: that file
        base = name.rsplit("/", 1)[-1]
        if name not in known and base != name and base in required and base not in candidates:
            candidates[base] = candidates.pop(name)
            notes.append(f"{base}: taken from the block labelled {name}")
    files: Files = {}
    for name, texts in candidates.items():
        if len(texts) == 1:
            files[name] = texts[0]
            continue
        ok = [t for t in texts if parses is None or parses(name, t)]
        pick = max(ok or texts, key=len)
        files[name] = pick
        notes.append(f"{name}: {len(texts)} blocks, kept block {texts.index(pick) + 1} "
                     f"({'the longest that parses' if ok else 'the longest; none parses'}, {len(pick)} chars)")
    missing = [f for f in required if f not in files]
    if len(missing) == 1 and len(unnamed) == 1:
        files[missing[0]] = unnamed[0]
        notes.append(f"{missing[0]}: taken from the one unnamed block")
    return ParsedReply(files, notes)
