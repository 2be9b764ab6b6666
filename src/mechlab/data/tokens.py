"""Tokenised corpora cached as numpy memmaps, and tokenizers built for a corpus.

Cache layout (under :func:`mechlab.data.corpora.cache_dir`)::

    tokenizers/{corpus}-{spec}-{text hash}.json    BPE tokenizers trained on a corpus's train split
    tokens/{corpus}-{split}-{tokenizer hash}-{text hash}.bin   token ids (uint16, or uint32 past 65,536 ids)

Keys include content hashes, so a changed corpus or tokenizer never reuses a stale shard.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechlab.data.corpora import cache_dir, load_text
from mechlab.data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer, chunk_text, fingerprint, load_tokenizer
from mechlab.errors import ConfigError
from mechlab.utils import atomic_path, sha256_bytes

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:]


def build_tokenizer(spec: str, corpus: str = "stdlib", data_dir: str | Path | None = None) -> Tokenizer:
    """``"byte"``, ``"bpe:N"`` (BPE of vocabulary N trained on the corpus's train split, cached) or a file path."""
    if spec == "byte":
        return ByteTokenizer()
    if m := re.fullmatch(r"bpe:(\d+)", spec):
        vocab = int(m.group(1))
        text = load_text(corpus, "train", data_dir)
        path = cache_dir() / "tokenizers" / f"{_safe(corpus)}-bpe{vocab}-{sha256_bytes(text.encode())[:12]}.json"
        if path.is_file():
            return load_tokenizer(path)
        log.info("training a BPE tokenizer of %d tokens on %s (%.1f MB)", vocab, corpus, len(text) / 1e6)
        tok = BPETokenizer.train(chunk_text(text), vocab)
        with atomic_path(path) as tmp:
            tmp.write_text(tok.to_json(), encoding="utf-8")
        return tok
    if Path(spec).exists():
        return load_tokenizer(spec)
    raise ConfigError(f"unknown tokenizer {spec!r}: use 'byte', 'bpe:VOCAB' (e.g. bpe:4096) or a tokenizer.json path")


@dataclass
class TokenStream:
    """Token ids of one corpus split and the number of UTF-8 bytes each id stands for."""

    ids: np.ndarray  # memmap, 1-D
    token_bytes: np.ndarray  # per vocabulary id

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_bytes(self) -> int:
        return int(self.token_bytes[self.ids].sum())


def encode_to_array(tok: Tokenizer, text: str) -> np.ndarray:
    if hasattr(tok, "encode_array"):
        return tok.encode_array(text)
    return np.asarray(tok.encode(text), dtype=np.uint32)


def token_stream(corpus: str, split: str, tok: Tokenizer, data_dir: str | Path | None = None) -> TokenStream:
    """The tokenised split, from the memmap cache when it is there (written atomically otherwise)."""
    text = load_text(corpus, split, data_dir)
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    key = f"{_safe(corpus)}-{split}-{fingerprint(tok)[:12]}-{sha256_bytes(text.encode())[:12]}"
    path = cache_dir() / "tokens" / f"{key}.{np.dtype(dtype).name}.bin"
    if not path.is_file():
        ids = encode_to_array(tok, text).astype(dtype)
        with atomic_path(path) as tmp:
            ids.tofile(tmp)
    ids = np.memmap(path, dtype=dtype, mode="r")
    return TokenStream(ids, tok.token_byte_lengths())
