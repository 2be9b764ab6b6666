"""Documents for a map: TinyStories stories, Gutenberg paragraphs labelled by book, text files, JSONL rows.

A :class:`Document` is one text with optional labels (``{"book": ..., "author": ...}`` for Gutenberg paragraphs,
``{"writer": ...}`` for generated stories, the weak labels of :func:`weak_story_labels` for TinyStories).
:func:`load_documents` reads any of the sources ``mechlab map`` accepts:

* ``tinystories`` (the ``tinystories-sample`` corpus, split on ``<|endoftext|>``; the cut last story is dropped);
* ``gutenberg`` (paragraphs of ``min_words``–``max_words`` words of every book, PG boilerplate stripped, each
  labelled by its book and author; at most ``per_book`` per book, taken evenly through the book);
* a ``.jsonl`` file: one JSON object per line with a ``"text"`` field; every other string field is a label;
* a ``.txt`` file: documents separated by ``<|endoftext|>`` lines if it has them, else by blank lines;
* a directory: every ``*.txt`` file under it is one document, labelled by its parent folder's name.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from mechlab.errors import DataError

EOT = "<|endoftext|>"


@dataclass(frozen=True)
class Document:
    """One text of a map and its labels (label name -> value; empty when the source has none)."""

    text: str
    labels: dict[str, str] = field(default_factory=dict)


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def tinystories_documents(data_dir: str | Path | None = None) -> list[Document]:
    """The stories of the ``tinystories-sample`` corpus (2,316 complete stories of the 2 MiB sample; the last one,
    cut mid-sentence by the sample, is dropped), each with its :func:`weak_story_labels`. DataError if absent."""
    from mechlab.data.corpora import REGISTRY, fetch

    path = fetch(REGISTRY["tinystories-sample"].files[0], data_dir)
    parts = path.read_text(encoding="utf-8").split(EOT)
    stories = [" ".join(s.split()) for s in parts[:-1]]  # the last part is cut mid-sentence
    return [Document(s, weak_story_labels(s)) for s in stories if s]


def gutenberg_documents(per_book: int = 100, min_words: int = 40, max_words: int = 300,
                        books: list[str] | None = None, data_dir: str | Path | None = None) -> list[Document]:
    """Paragraphs of the Gutenberg books labelled ``book`` (file stem) and ``author`` (the stem's first part):
    paragraphs of ``min_words``..``max_words`` words, at most ``per_book`` per book spread evenly through it.
    ``books`` restricts to those file stems (ConfigError-like DataError for an unknown one)."""
    from mechlab.data.corpora import REGISTRY, fetch, strip_gutenberg_boilerplate

    files = REGISTRY["gutenberg"].files
    stems = {Path(f.path).stem: f for f in files}
    if books is not None:
        unknown = [b for b in books if b not in stems]
        if unknown:
            raise DataError(f"unknown Gutenberg book(s) {unknown}: choose among {sorted(stems)}")
        chosen = [stems[b] for b in books]
    else:
        chosen = list(files)
    docs = []
    for f in chosen:
        with open(fetch(f, data_dir), encoding="utf-8-sig") as fh:
            paras = [p for p in _paragraphs(strip_gutenberg_boilerplate(fh.read()))
                     if min_words <= len(p.split()) <= max_words and not p.isupper()]
        if len(paras) > per_book:
            step = len(paras) / per_book
            paras = [paras[int(i * step)] for i in range(per_book)]
        stem = Path(f.path).stem
        docs += [Document(p, {"book": stem, "author": stem.split("_")[0]}) for p in paras]
    return docs


_NAME = re.compile(r"\b(?:named|called)\s+([A-Z][a-z]+)")
_OPENINGS = (("once upon a time", "once upon a time"), ("one day", "one day"), ("there was", "there was"),
             ("there once was", "there was"))


def weak_story_labels(text: str) -> dict[str, str]:
    """Labels computed from a story's text, weak by construction (they read surface features, not the generation
    prompt's features): ``dialogue`` (a double quote is present), ``moral`` (the word "moral"), ``opening`` (once
    upon a time / one day / there was / other) and ``character`` (the first name after "named"/"called", or the
    first capitalised word that is not the first word of a sentence, else "none")."""
    low = text.lower()
    opening = next((lab for pre, lab in _OPENINGS if low.startswith(pre)), "other")
    m = _NAME.search(text)
    if m:
        name = m.group(1)
    else:
        words = re.findall(r"(?<![.!?\"]\s)(?<!^)\b([A-Z][a-z]{2,})\b", text)
        name = next((w for w in words if w not in ("The", "She", "They", "Once", "One", "There", "But", "And")), "none")
    return {"dialogue": "yes" if '"' in text or "\u201c" in text else "no",
            "moral": "yes" if re.search(r"\bmoral\b", low) else "no",
            "opening": opening, "character": name}


def _text(path: Path, encoding: str = "utf-8-sig") -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): convert it (e.g. iconv -t utf-8) "
                        f"or leave it out") from None


def read_documents(path: str | Path) -> list[Document]:
    """Documents of a ``.jsonl`` file, a text file or a directory of ``.txt`` files (see the module docstring).
    DataError for a missing path, an empty source, or a JSONL row that is not an object with a string ``text``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist: give a corpus name (tinystories, gutenberg), a .jsonl file, a text "
                        "file or a directory of .txt files")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        docs = [Document(" ".join(_text(f).split()), {"folder": f.parent.name}) for f in files]
    elif path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{i}: not JSON ({e})") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{i}: each line must be a JSON object with a string field \"text\"")
            labels = {k: str(v) for k, v in row.items() if k != "text" and isinstance(v, (str, int, bool))}
            docs.append(Document(" ".join(row["text"].split()), labels))
    else:
        text = _text(path)
        parts = text.split(EOT) if EOT in text else re.split(r"\n\s*\n", text)
        docs = [Document(" ".join(p.split())) for p in parts]
    docs = [d for d in docs if d.text]
    if not docs:
        raise DataError(f"{path} holds no non-empty documents")
    return docs


def load_documents(source: str, max_docs: int | None = None, seed: int = 0,
                   data_dir: str | Path | None = None) -> list[Document]:
    """The documents of ``source`` (``tinystories``, ``gutenberg`` or a path; see the module docstring), at most
    ``max_docs`` of them drawn without replacement by ``seed`` (order kept). DataError for an unknown source."""
    if source in ("tinystories", "tinystories-sample"):
        docs = tinystories_documents(data_dir)
    elif source == "gutenberg":
        docs = gutenberg_documents(data_dir=data_dir)
    else:
        docs = read_documents(source)
    if max_docs is not None:
        if max_docs <= 0:
            raise DataError(f"max_docs must be positive, got {max_docs}")
        if len(docs) > max_docs:
            keep = sorted(random.Random(seed).sample(range(len(docs)), max_docs))
            docs = [docs[i] for i in keep]
    return docs
