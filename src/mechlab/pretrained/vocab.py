"""The tokenizer a GGUF file describes, rebuilt as a ``tokenizers`` pipeline (llama.cpp's vocabulary metadata).

Two vocabulary models (``tokenizer.ggml.model``):
- ``gpt2``: byte-level BPE from ``tokenizer.ggml.tokens`` and ``tokenizer.ggml.merges``. The text is first split
  by the pre-tokenizer the file declares in ``tokenizer.ggml.pre`` (llama.cpp's names; the regular expressions
  are those of the model's own ``tokenizer.json``, which llama.cpp's ``llama-vocab.cpp`` restates per name).
  A name not in :data:`PRE_TOKENIZERS` is refused: another split gives other ids, and a model fed ids it never
  saw in training degrades silently. A file with no ``tokenizer.ggml.pre`` (written before llama.cpp added the
  key) is split with the GPT-2 expression, as transformers does, with a warning.
- ``llama``: SentencePiece BPE (Llama 2, Mistral, TinyLlama files): pieces with scores and token types; merges
  are recovered from the scores (a piece's score ranks the merge that makes it), unknown characters fall back
  to the ``<0xXX>`` byte tokens, spaces become ``▁`` and, with ``tokenizer.ggml.add_space_prefix`` (the default),
  a ``▁`` is prepended to the text; the same construction as transformers' ``LlamaTokenizer``.
- ``llama`` in a Gemma file (``general.architecture`` gemma, gemma2, gemma3): SentencePiece BPE as Gemma's own
  tokenizer has it, which differs in three ways: every space becomes ``▁`` (a normaliser, no prefix, no
  splitting), tokens made only of spaces (stored as real spaces, e.g. ``"  "``) are respelled with ``▁``, and
  merges are ranked by the file position of the piece they make (Gemma's scores do not follow its merge order);
  the facts transformers' GGUF loader records for Gemma files.
Token types (llama.cpp ``llama_token_type``): 1 normal, 2 unknown, 3 control (special: matched whole in text,
dropped when decoding), 4 user-defined (matched whole, kept when decoding, e.g. ``<think>``), 5 unused, 6 byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mechlab.errors import ConfigError

log = logging.getLogger(__name__)

GEMMA_ARCHS = ("gemma", "gemma2", "gemma3")
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT = r"\p{N}"

# llama.cpp pre-tokenizer name -> the regular expressions applied in turn (each splits the pieces of the last)
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("gpt-2", "gpt2", "mpt", "olmo", "jais"), (GPT2,)),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe", "falcon3", "pixtral", "chatglm-bpe"),
                    (LLAMA3,)),
    **dict.fromkeys(("qwen2", "stablelm2", "deepseek-r1-qwen"), (QWEN2,)),
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
                    (DIGIT, GPT2)),
    "tekken": (TEKKEN,),
}


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def pre_tokenizer(name: str | None):
    """The ``tokenizers`` pre-tokenizer of a llama.cpp pre-tokenizer name (byte-level alphabet last).
    Raises ConfigError for a name it does not know."""
    from tokenizers import Regex, pre_tokenizers

    if name is None or name == "default":
        log.warning("GGUF declares no pre-tokenizer (tokenizer.ggml.pre): splitting with the GPT-2 expression")
        name = "gpt-2"
    if name not in PRE_TOKENIZERS:
        raise ConfigError(f"GGUF pre-tokenizer {name!r} (tokenizer.ggml.pre) is not supported; mechlab splits text "
                          f"the ways of: {', '.join(sorted(PRE_TOKENIZERS))}")
    exprs = PRE_TOKENIZERS[name]
    if exprs == (GPT2,):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    splits = [pre_tokenizers.Split(Regex(e), behavior="isolated") for e in exprs]
    return pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _added(tok, tokens: list[str], types: list[int], skip: Callable[[str], bool] = lambda t: False) -> None:
    """Control tokens as special added tokens, user-defined ones as plain added tokens (both matched whole)."""
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == CONTROL and not skip(t)])
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == USER_DEFINED]
    if user:
        tok.add_tokens(user)


def _bpe(reader, tokens: list[str], types: list[int]):
    from tokenizers import Tokenizer, decoders, models

    from mechlab.data.tokenizers import byte_level_alphabet

    merges = _field(reader, "tokenizer.ggml.merges")
    if merges is None:
        raise ConfigError("GGUF tokenizer: a 'gpt2' (byte-level BPE) vocabulary needs tokenizer.ggml.merges, "
                          "which this file lacks")
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            raise ConfigError(f"GGUF tokenizer: merge {m!r} is not two tokens separated by one space")
        pairs.append((parts[0], parts[1]))
    index = {t: i for i, t in enumerate(tokens)}
    unknown = next((p for pair in pairs for p in pair if p not in index), None)
    if unknown is not None:
        raise ConfigError(f"GGUF tokenizer.ggml.merges names {unknown!r}, which is not in tokenizer.ggml.tokens")
    tok = Tokenizer(models.BPE(vocab=index, merges=pairs, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizer(_field(reader, "tokenizer.ggml.pre"))
    tok.decoder = decoders.ByteLevel()
    alphabet = set(byte_level_alphabet())
    # a control token spelled outside the byte alphabet is a mislabel of llama.cpp's converter (it cannot be a
    # real byte-level token); such tokens stay in the vocabulary but are not matched in text
    _added(tok, tokens, types, skip=lambda t: not set(t) <= alphabet)
    return tok


def spm_merges(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: every split of a piece into two pieces of the
    vocabulary is a merge ranked by the score of the piece it makes (higher first; ties: shorter left part,
    then shorter right part first, then the vocabulary order of the parts): the ranking of SentencePiece's BPE
    encoder, and the order transformers builds for the same vocabulary."""
    index = {t: i for i, t in enumerate(tokens)}
    merges = []
    for t, score in zip(tokens, scores):
        local = [(t[:k], t[k:]) for k in range(1, len(t)) if t[:k] in index and t[k:] in index]
        local.sort(key=lambda lr: (index[lr[0]], index[lr[1]]))
        merges.extend((score, left, right) for left, right in local)
    merges.sort(key=lambda m: (m[0], len(m[1]), len(m[2])), reverse=True)  # stable: ties keep the order above
    return [(left, right) for _, left, right in merges]


def _gemma(reader, tokens: list[str], types: list[int]):
    """Gemma's SentencePiece BPE: spaces → ``▁`` by a normaliser, space-only tokens respelled with ``▁``, merges
    ranked by file position (earlier first), byte fallback, no prefix space."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    _byte_fallback_complete(tokens)
    if _field(reader, "tokenizer.ggml.add_space_prefix", False):
        raise ConfigError("GGUF tokenizer.ggml.add_space_prefix = true in a Gemma file is not supported (Gemma's "
                          "tokenizer adds no prefix space)")
    # a whitespace-only token with a space ("  ", " \n") is looked up as that many ▁
    spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
    if len(set(spelled)) != len(spelled):
        raise ConfigError("GGUF tokenizer: respelling Gemma's space-only tokens with ▁ makes two tokens equal")
    unk = next((t for t, ty in zip(spelled, types) if ty == UNKNOWN), None)
    merges = spm_merges(spelled, [-float(i) for i in range(len(spelled))])
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(spelled)}, merges=merges, unk_token=unk,
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    _added(tok, spelled, types)
    return tok


def _byte_fallback_complete(tokens: list[str]) -> None:
    present = set(tokens)
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in present]
    if missing:
        raise ConfigError(f"GGUF tokenizer: the SentencePiece vocabulary lacks byte-fallback tokens (e.g. "
                          f"{missing[0]}); mechlab needs all 256")


def _spm(reader, tokens: list[str], types: list[int]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    scores = _field(reader, "tokenizer.ggml.scores")
    if scores is None:
        raise ConfigError("GGUF tokenizer: a 'llama' (SentencePiece) vocabulary needs tokenizer.ggml.scores, "
                          "which this file lacks")
    scores = [float(s) for s in scores]
    if len(scores) != len(tokens):
        raise ConfigError(f"GGUF tokenizer: {len(scores)} scores for {len(tokens)} tokens")
    _byte_fallback_complete(tokens)
    unk = next((t for t, ty in zip(tokens, types) if ty == UNKNOWN), None)
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=spm_merges(tokens, scores),
                               unk_token=unk, fuse_unk=True, byte_fallback=True))
    prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix", True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first" if prefix else "never",
                                                 split=False)
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    _added(tok, tokens, types)
    return tok


def gguf_tokenizer(reader) -> tuple[Any, list[str]]:
    """(mechlab tokenizer, the file's token strings) from a GGUF reader. Raises ConfigError for a vocabulary
    model, pre-tokenizer or tokenizer setting it does not implement, or missing / inconsistent metadata."""
    from mechlab.data.tokenizers import BPETokenizer

    kind = _field(reader, "tokenizer.ggml.model")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise ConfigError("GGUF file has no tokenizer (tokenizer.ggml.model and tokenizer.ggml.tokens are required)")
    tokens = list(tokens)
    types = [int(t) for t in _field(reader, "tokenizer.ggml.token_type", [NORMAL] * len(tokens))]
    if len(types) != len(tokens):
        raise ConfigError(f"GGUF tokenizer: {len(types)} token types for {len(tokens)} tokens")
    if _field(reader, "tokenizer.ggml.add_eos_token"):
        raise ConfigError("GGUF tokenizer.ggml.add_eos_token = true (an end-of-sequence token appended to every "
                          "encoded text) is not supported")
    builders = {"gpt2": _bpe, "llama": _spm}
    if kind == "llama" and _field(reader, "general.architecture") in GEMMA_ARCHS:
        builders["llama"] = _gemma
    if kind not in builders:
        raise ConfigError(f"GGUF tokenizer model {kind!r} is not supported (byte-level BPE 'gpt2' and "
                          f"SentencePiece 'llama' are)")
    if kind == "llama":
        for key in ("tokenizer.ggml.precompiled_charsmap",):
            if _field(reader, key) not in (None, [], b""):
                raise ConfigError(f"GGUF {key} (a SentencePiece normaliser) is not supported")
        if _field(reader, "tokenizer.ggml.remove_extra_whitespaces"):
            raise ConfigError("GGUF tokenizer.ggml.remove_extra_whitespaces = true is not supported")
    tok = builders[kind](reader, tokens, types)
    if _field(reader, "tokenizer.ggml.add_bos_token", kind == "llama"):  # llama.cpp's default: SentencePiece adds
        bos = _field(reader, "tokenizer.ggml.bos_token_id")
        if bos is None or not 0 <= int(bos) < len(tokens):
            raise ConfigError(f"GGUF tokenizer.ggml.add_bos_token is set but the BOS id {bos!r} is not a token")
        from tokenizers.processors import TemplateProcessing

        name = tokens[int(bos)]
        tok.post_processor = TemplateProcessing(single=f"{name} $A", pair=f"{name} $A $B", special_tokens=[(name, int(bos))])
    return BPETokenizer(tok), tokens


__all__ = ["PRE_TOKENIZERS", "gguf_tokenizer", "pre_tokenizer", "spm_merges"]
