import numpy as np
import pytest

from mechlab.data import (
    BPETokenizer,
    ByteTokenizer,
    build_tokenizer,
    load_text,
    load_tokenizer,
    save_tokenizer,
    token_stream,
)
from mechlab.errors import ConfigError

SAMPLE = "Héllo wörld — naïve café ✓\n  indented\tline 123\n"


def test_byte_tokenizer_round_trip_and_byte_lengths():
    tok = ByteTokenizer()
    assert tok.vocab_size == 259 and tok.bos_id == 256 and tok.eos_id == 257
    ids = tok.encode(SAMPLE)
    assert tok.decode(ids) == SAMPLE
    assert tok.token_byte_lengths()[ids].sum() == len(SAMPLE.encode())


@pytest.fixture(scope="module")
def bpe():
    return build_tokenizer("bpe:600", "tinyshakespeare")


def test_bpe_round_trip_vocab_and_byte_lengths(bpe):
    assert isinstance(bpe, BPETokenizer) and bpe.vocab_size == 600
    text = load_text("tinyshakespeare", "validation")[:20000] + SAMPLE
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert len(ids) < len(text.encode()) / 1.5  # it actually merges
    assert bpe.token_byte_lengths()[ids].sum() == len(text.encode())
    assert bpe.token_byte_lengths()[bpe.bos_id] == 0


def test_bpe_save_load_encodes_identically(bpe, tmp_path):
    save_tokenizer(bpe, tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(SAMPLE) == bpe.encode(SAMPLE)
    save_tokenizer(ByteTokenizer(), tmp_path / "b")
    assert isinstance(load_tokenizer(tmp_path / "b"), ByteTokenizer)


def test_token_stream_is_a_cached_memmap(bpe):
    s1 = token_stream("tinyshakespeare", "validation", bpe)
    s2 = token_stream("tinyshakespeare", "validation", bpe)
    assert isinstance(s1.ids, np.memmap) and s1.ids.filename == s2.ids.filename
    text = load_text("tinyshakespeare", "validation")
    assert s1.n_bytes == len(text.encode())
    assert bpe.decode(np.asarray(s1.ids).tolist()) == text


def test_unknown_tokenizer_spec():
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        build_tokenizer("wordpiece", "tinyshakespeare")
    with pytest.raises(ConfigError, match="vocab size"):
        BPETokenizer.train(["abc"], 100)
