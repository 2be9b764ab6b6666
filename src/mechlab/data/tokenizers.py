"""Tokenizers: byte-level (256 bytes + specials) and byte-level BPE trained locally with ``tokenizers``.

Both serialise to one ``tokenizer.json`` saved beside a model. Both know how many UTF-8 bytes each token stands
for (:meth:`token_byte_lengths`), which is what bits-per-byte needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from mechlab.errors import ConfigError, DataError
from mechlab.utils import atomic_path, sha256_bytes

SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer(Protocol):
    vocab_size: int
    bos_id: int
    eos_id: int
    add_bos: bool  # the model wants bos_id before a prompt or an evaluation window

    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def token_byte_lengths(self) -> np.ndarray: ...
    def to_json(self) -> str: ...


class ByteTokenizer:
    """Token i < 256 is byte i; the specials follow."""

    def __init__(self, specials: tuple[str, ...] = SPECIALS):
        self.specials = tuple(specials)
        self.vocab_size = 256 + len(self.specials)
        self.bos_id = 256 + self.specials.index("<|bos|>")
        self.eos_id = 256 + self.specials.index("<|eos|>")
        self.add_bos = False  # models trained here learn from raw byte streams

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_byte_lengths(self) -> np.ndarray:
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        lengths[:256] = 1
        return lengths

    def to_json(self) -> str:
        return json.dumps({"mechlab_tokenizer": "byte", "specials": list(self.specials)})

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size})"


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level map, inverted: printable stand-in character -> byte value."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class BPETokenizer:
    """A BPE of the ``tokenizers`` library: byte-level (GPT-2 style: no unknown tokens, exact round trip) or
    SentencePiece-style with byte fallback (imported Llama 2 / Mistral vocabularies).

    ``add_bos`` is the model's own setting (GGUF ``tokenizer.ggml.add_bos_token``, Hugging Face
    ``add_bos_token``), kept in ``tokenizer.json`` as a post-processor that puts ``bos_id`` first;
    ``encode(text, add_bos=True)`` applies it (prompts, evaluation windows), plain ``encode`` never does."""

    def __init__(self, tok):  # tok: tokenizers.Tokenizer
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.bos_id = self._special("<|bos|>")
        self.eos_id = self._special("<|eos|>")
        self.add_bos = False
        lead = _leading_special(tok)
        if lead is not None:
            self.bos_id, self.add_bos = lead, True

    def _special(self, name: str) -> int:
        i = self.tok.token_to_id(name)
        return -1 if i is None else i

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, specials: tuple[str, ...] = SPECIALS) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if not 256 + len(specials) < vocab_size <= 1 << 20:
            raise ConfigError(f"BPE vocab size must be between {257 + len(specials)} and 2^20, got {vocab_size}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text``; with ``add_bos`` and a model that asks for it, ``bos_id`` first."""
        return self.tok.encode(text, add_special_tokens=add_bos and self.add_bos).ids

    def encode_array(self, text: str) -> np.ndarray:
        out = self.tok.encode_batch(list(chunk_text(text)), add_special_tokens=False)
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.uint32
        return np.concatenate([np.asarray(e.ids, dtype=dtype) for e in out]) if out else np.zeros(0, dtype)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    @cached_property
    def _byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes per token: byte-level tokens count their alphabet characters; SentencePiece pieces
        count ``▁`` as the space it stands for and ``<0xXX>`` as one byte (the dummy prefix at the start of a
        text is counted as a byte too); special tokens count 0."""
        model = json.loads(self.tok.to_str()).get("model", {})
        specials = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        if model.get("byte_fallback"):
            for token, i in self.tok.get_vocab().items():
                if token not in specials:
                    lengths[i] = 1 if _BYTE_PIECE.fullmatch(token) else len(token.replace("\u2581", " ").encode())
            return lengths
        alphabet = byte_level_alphabet()
        for token, i in self.tok.get_vocab().items():
            if token not in specials:
                lengths[i] = sum(1 for ch in token if ch in alphabet)
        return lengths

    def token_byte_lengths(self) -> np.ndarray:
        return self._byte_lengths

    def to_json(self) -> str:
        return self.tok.to_str()

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _leading_special(tok) -> int | None:
    """The id a ``TemplateProcessing`` post-processor puts before every single text (a BOS), or None."""
    pp = json.loads(tok.to_str()).get("post_processor") or {}
    if pp.get("type") != "TemplateProcessing" or not pp.get("single"):
        return None
    first = pp["single"][0].get("SpecialToken")
    if first is None:
        return None
    ids = (pp.get("special_tokens", {}).get(first["id"]) or {}).get("ids") or []
    return ids[0] if len(ids) == 1 else None


def chunk_text(text: str, size: int = 1 << 16) -> Iterator[str]:
    """Pieces of about ``size`` characters cut after a newline, so batch encoding splits only between lines."""
    start, n = 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            nl = text.find("\n", end)
            end = n if nl < 0 else nl + 1
        yield text[start:end]
        start = end


def tokenizer_from_json(text: str) -> Tokenizer:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"tokenizer file is not valid JSON: {e}") from e
    if spec.get("mechlab_tokenizer") == "byte":
        return ByteTokenizer(tuple(spec["specials"]))
    if spec.get("mechlab_tokenizer") == "retrieval":  # the synthetic tasks' symbols (mechlab.data.retrieval)
        from mechlab.data.retrieval import RetrievalTokenizer

        return RetrievalTokenizer()
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(text))


def save_tokenizer(tok: Tokenizer, directory: str | Path) -> Path:
    path = Path(directory) / TOKENIZER_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(tok.to_json(), encoding="utf-8")
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load ``tokenizer.json`` (or the one inside a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(f"no tokenizer at {path}")
    return tokenizer_from_json(path.read_text(encoding="utf-8"))


def fingerprint(tok: Tokenizer) -> str:
    return sha256_bytes(tok.to_json().encode())[:16]
