"""Corpus registry: named text corpora with a canonical source (URL + sha256) and a train/validation split.

Where the files come from, in order:
1. ``data_dir`` (the CLI's ``--data-dir``) or the ``MECHLAB_DATA`` environment variable: a local directory laid
   out like the registry paths (``tinyshakespeare/input.txt``, ``gutenberg/*.txt``, ...). Nothing is downloaded.
2. Otherwise the cache directory (``MECHLAB_CACHE``, default ``~/.cache/mechlab``), filled on first use by a
   download from the entry's URL, checked against its sha256.

Every file is checked against its sha256 before use. The ``stdlib`` corpus needs no file at all: it reads the
``.py`` sources of the running interpreter's standard library. Any existing path (a text file or a directory of
``.txt`` files) can also be given in place of a registry name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sysconfig
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mechlab.errors import DataError
from mechlab.utils import atomic_path, sha256_file

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def cache_dir() -> Path:
    """Root of mechlab's cache (downloads, token shards, trained tokenizers)."""
    return Path(os.environ.get("MECHLAB_CACHE", Path.home() / ".cache" / "mechlab")).expanduser()


def _data_dir(data_dir: str | Path | None) -> Path | None:
    chosen = data_dir if data_dir is not None else os.environ.get("MECHLAB_DATA")
    return Path(chosen).expanduser() if chosen else None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a corpus: where it lives under a data directory, where to download it, its checksum."""

    path: str
    url: str
    sha256: str


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    license: str
    splits: tuple[str, ...]
    read: Callable[[list[Path], str], str] = field(repr=False)
    files: tuple[RemoteFile, ...] = ()
    split_rule: str = ""

    def text(self, split: str = "train", data_dir: str | Path | None = None) -> str:
        if split not in self.splits:
            raise DataError(f"corpus {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}")
        paths = [fetch(f, data_dir) for f in self.files]
        return self.read(paths, split)


def _download(url: str, dest: Path, sha256: str) -> None:
    log.info("downloading %s -> %s", url, dest)
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            got = sha256_file(tmp)
            if got != sha256:
                raise DataError(
                    f"download of {url} has sha256 {got}, expected {sha256}; the file was not kept. "
                    "The source may have changed: get the file by hand and pass its directory with --data-dir."
                )
    except DataError:
        raise
    except Exception as e:  # network, HTTP, disk
        raise DataError(
            f"could not download {url} to {dest}: {e}. Without network access, put the file at {dest} "
            "or pass a directory holding it with --data-dir (or MECHLAB_DATA)."
        ) from e


def fetch(f: RemoteFile, data_dir: str | Path | None = None) -> Path:
    """Local path of ``f``, checked against its sha256; downloads into the cache when no data dir is set."""
    root = _data_dir(data_dir)
    if root is not None:
        path = root / f.path
        if not path.is_file():
            raise DataError(
                f"{path} not found (data directory {root}). Put the file there (source: {f.url}), "
                "or drop --data-dir / MECHLAB_DATA to download it into the cache."
            )
    else:
        path = cache_dir() / "data" / f.path
        if not path.is_file():
            _download(f.url, path, f.sha256)
    got = sha256_file(path)
    if got != f.sha256:
        raise DataError(
            f"{path} has sha256 {got}, expected {f.sha256}: the file is corrupt or a different version. "
            f"Delete it and fetch it again from {f.url}."
        )
    return path


def _hash_fraction(key: str) -> float:
    """A deterministic number in [0, 1) for ``key`` (used to split by file)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16**8


# --- stdlib -------------------------------------------------------------------------------------------------

STDLIB_VALIDATION_FRACTION = 0.05


def stdlib_files() -> list[tuple[str, Path]]:
    """(relative path, path) of the interpreter's standard-library .py files, sorted, site-packages excluded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if rel.parts[0] in ("site-packages", "dist-packages") or "__pycache__" in rel.parts:
            continue
        files.append((rel.as_posix(), p))
    files.sort()
    if not files:
        raise DataError(f"no .py files found under the standard library at {root}")
    return files


def _read_stdlib(_: list[Path], split: str) -> str:
    want_val = split == "validation"
    parts = []
    for rel, p in stdlib_files():
        if (_hash_fraction(rel) < STDLIB_VALIDATION_FRACTION) == want_val:
            parts.append(p.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


# --- files in the registry ------------------------------------------------------------------------------------

def _read_tinyshakespeare(paths: list[Path], split: str) -> str:
    text = paths[0].read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    return text[:cut] if split == "train" else text[cut:]


def normalise_wikitext(raw: str) -> str:
    """The usual WikiText-2 raw form from a copy holding only the non-empty rows, CRLF-joined.

    Hugging Face's ``wikitext-2-raw-v1`` rows end in ``"\\n"`` and the usual evaluation joins them with ``"\\n\\n"``;
    the copy in the registry lost the empty rows and the row endings, so this rebuilds
    ``"\\n\\n".join(row + "\\n" for row in non-empty rows)``.
    """
    rows = [r for r in raw.replace("\r\n", "\n").split("\n") if r]
    return "\n\n".join(row + "\n" for row in rows)


def _read_wikitext(paths: list[Path], split: str) -> str:
    return normalise_wikitext(paths[0].read_bytes().decode("utf-8"))


def _read_wikitext_tokens(paths: list[Path], split: str) -> str:
    """The ``wiki.valid.tokens`` form (blank rows are a single space) in the same row layout as the raw test split."""
    rows = paths[0].read_text(encoding="utf-8").split("\n")
    return normalise_wikitext("\n".join(r for r in rows if r.strip()))


def _read_tinystories(paths: list[Path], split: str) -> str:
    stories = [s.strip() for s in paths[0].read_text(encoding="utf-8").split("<|endoftext|>")]
    stories = [s for s in stories if s]
    keep = [s for i, s in enumerate(stories) if (i % 20 == 19) == (split == "validation")]
    return "\n\n".join(keep) + "\n"


_PG_START = re.compile(r"^[ \t]*\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M)
_PG_END = re.compile(r"^[ \t]*\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M)
GUTENBERG_VALIDATION_FRACTION = 0.1


def strip_gutenberg_boilerplate(text: str) -> str:
    """Body text between the ``*** START OF`` and ``*** END OF`` lines, where the book has them."""
    start, end = _PG_START.search(text), _PG_END.search(text)
    if start and end and start.end() < end.start():
        return text[start.end() : end.start()].strip("\n") + "\n"
    return text


def _read_gutenberg(paths: list[Path], split: str) -> str:
    parts = []
    for p in sorted(paths, key=lambda p: p.name):
        if (_hash_fraction(p.name) < GUTENBERG_VALIDATION_FRACTION) == (split == "validation"):
            with open(p, encoding="utf-8-sig") as f:  # universal newlines: CRLF -> LF
                parts.append(strip_gutenberg_boilerplate(f.read()))
    return "\n\n".join(parts)


def _gutenberg_files() -> tuple[RemoteFile, ...]:
    rows = json.loads(resources.files("mechlab.data").joinpath("gutenberg.json").read_text(encoding="utf-8"))
    return tuple(RemoteFile(f"gutenberg/{r['file']}", r["url"], r["sha256"]) for r in rows)


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


REGISTRY: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus(
            "stdlib",
            "the .py sources of this interpreter's standard library (no download)",
            "PSF License",
            ("train", "validation"),
            _read_stdlib,
            split_rule="by file: sha1(relative path) < 5% -> validation",
        ),
        Corpus(
            "tinyshakespeare",
            "Tiny Shakespeare, 1.1 MB of plays (char-rnn)",
            "public domain text",
            ("train", "validation"),
            _read_tinyshakespeare,
            (RemoteFile(
                "tinyshakespeare/input.txt",
                _gh("karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e", "data/tinyshakespeare/input.txt"),
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ),),
            split_rule="first 90% of characters -> train, last 10% -> validation",
        ),
        Corpus(
            "wikitext2-test",
            "WikiText-2 raw test split, normalised to the usual \\n\\n-joined rows",
            "CC BY-SA 3.0 / GFDL",
            ("test",),
            _read_wikitext,
            (RemoteFile(
                "wikitext-2-raw/wiki.test.raw",
                _gh("Tylogi/TyloQuant", "7989d038b13ca737da11a95fb90e77ae059f33c0", "data/wikitext-2-raw/wiki.test.raw"),
                "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c",
            ),),
            split_rule="test only",
        ),
        Corpus(
            "wikitext2-valid",
            "WikiText-2 validation split, tokenised form (rare words are <unk>), rows laid out like wikitext2-test",
            "CC BY-SA 3.0 / GFDL",
            ("validation",),
            _read_wikitext_tokens,
            (RemoteFile(
                "wikitext-2/valid.txt",
                _gh("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8",
                    "word_language_model/data/wikitext-2/valid.txt"),
                "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            ),),
            split_rule="validation only (other articles than the test split)",
        ),
        Corpus(
            "tinystories-sample",
            "the first 2 MiB of the TinyStories training split",
            "CDLA-Sharing-1.0",
            ("train", "validation"),
            _read_tinystories,
            (RemoteFile(
                "tinystories/tinystories_sample.txt",
                _gh("gusjengis/toy-RNN", "e4c7ff8bba4ff7989e69a3a816ebe4b14813b41e", "data/tinystories_sample.txt"),
                "5352b299dcb1a32898b2d779b145b5a05f3e1265953fd21c264c9f9f9c9ae33d",
            ),),
            split_rule="every 20th story -> validation",
        ),
        Corpus(
            "gutenberg",
            "67 public-domain English books from Project Gutenberg (37.8 MB), PG boilerplate stripped",
            "public domain in the USA",
            ("train", "validation"),
            _read_gutenberg,
            _gutenberg_files(),
            split_rule="by book: sha1(file name) < 10% -> validation",
        ),
    ]
}


def _read_local(root: Path) -> Corpus:
    files = [root] if root.is_file() else sorted(root.rglob("*.txt"))
    if not files:
        raise DataError(f"{root} holds no .txt files")

    def read(_: list[Path], split: str) -> str:
        if len(files) == 1:
            text = files[0].read_text(encoding="utf-8-sig")
            cut = int(len(text) * 0.9)
            return text[:cut] if split == "train" else text[cut:]
        chosen = [f for f in files if (_hash_fraction(f.name) < 0.1) == (split == "validation")]
        return "\n\n".join(f.read_text(encoding="utf-8-sig") for f in chosen)

    return Corpus(str(root), f"local text at {root}", "as the files", ("train", "validation"), read,
                  split_rule="one file: last 10% -> validation; many: sha1(name) < 10% -> validation")


def get_corpus(name: str) -> Corpus:
    """A registry entry by name, or a local text file / directory of .txt files by path."""
    if name in REGISTRY:
        return REGISTRY[name]
    if Path(name).expanduser().exists():
        return _read_local(Path(name).expanduser())
    raise DataError(f"unknown corpus {name!r}: choose one of {', '.join(REGISTRY)} or give a path to .txt files")


def load_text(name: str, split: str = "train", data_dir: str | Path | None = None) -> str:
    """The text of one split of a corpus (see the module docstring for where files come from)."""
    return get_corpus(name).text(split, data_dir)
