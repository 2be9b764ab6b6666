import hashlib

import pytest

from mechlab.data import REGISTRY, get_corpus, load_text
from mechlab.data.corpora import RemoteFile, fetch, normalise_wikitext, stdlib_files, strip_gutenberg_boilerplate
from mechlab.errors import DataError


def test_every_registry_file_has_a_source_and_matches_the_shared_copy(shared_data):
    for corpus in REGISTRY.values():
        for f in corpus.files:
            assert f.url.startswith("https://") and len(f.sha256) == 64
            assert fetch(f, shared_data).is_file()
    assert len(REGISTRY["gutenberg"].files) == 67


def test_every_split_reads(shared_data):
    for name, corpus in REGISTRY.items():
        for split in corpus.splits:
            text = load_text(name, split)
            assert len(text) > 50_000, (name, split)
            assert "\r" not in text or name == "stdlib"


def test_stdlib_is_deterministic_and_split_by_file():
    files = stdlib_files()
    assert files == sorted(files) and len(files) > 500
    assert not any("site-packages" in rel for rel, _ in files)
    train, val = load_text("stdlib", "train"), load_text("stdlib", "validation")
    assert load_text("stdlib", "validation") == val
    assert 0.02 < len(val) / (len(train) + len(val)) < 0.1


def test_wikitext_normalisation():
    assert normalise_wikitext("a \r\nb\r\n") == "a \n\n\nb\n"
    text = load_text("wikitext2-test", "test")
    assert text.startswith(" = Robert Boulter = \n\n\n Robert Boulter is")
    assert text.count("\n\n") == 2890  # 2,891 non-empty rows
    valid = load_text("wikitext2-valid", "validation")  # blank rows are " " in the tokenised form
    assert valid.startswith(" = Homarus gammarus = \n\n\n Homarus gammarus , known as")
    assert "\n\n\n\n" not in valid and valid.count("\n\n") == 3760 - 1299 - 1
    assert "Robert Boulter" not in valid  # other articles than the test split


def test_gutenberg_reads_as_utf8_sig_without_boilerplate():
    text = load_text("gutenberg", "validation") + load_text("gutenberg", "train")
    assert "\ufeff" not in text and "\r" not in text
    assert "*** START OF THE PROJECT GUTENBERG" not in text
    book = "x\n*** START OF THE PROJECT GUTENBERG EBOOK FOO ***\nbody\n*** END OF THE PROJECT GUTENBERG EBOOK FOO ***\nlicense"
    assert strip_gutenberg_boilerplate(book) == "body\n"


def test_missing_file_and_bad_checksum_are_clear_errors(tmp_path):
    f = RemoteFile("x/data.txt", "https://example.invalid/data.txt", hashlib.sha256(b"hello").hexdigest())
    with pytest.raises(DataError, match="data.txt not found"):
        fetch(f, tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.txt").write_bytes(b"hellO")
    with pytest.raises(DataError, match="sha256"):
        fetch(f, tmp_path)
    (tmp_path / "x" / "data.txt").write_bytes(b"hello")
    assert fetch(f, tmp_path).read_bytes() == b"hello"


def test_download_into_cache_checks_sha256_and_keeps_nothing_bad(tmp_path, monkeypatch):
    monkeypatch.delenv("MECHLAB_DATA")
    monkeypatch.setenv("MECHLAB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src.txt"
    src.write_bytes(b"corpus text")
    good = RemoteFile("c/src.txt", src.as_uri(), hashlib.sha256(b"corpus text").hexdigest())
    assert fetch(good).read_bytes() == b"corpus text"
    assert fetch(good).parent == tmp_path / "cache" / "data" / "c"
    bad = RemoteFile("c/other.txt", src.as_uri(), "0" * 64)
    with pytest.raises(DataError, match="expected 0000"):
        fetch(bad)
    assert list((tmp_path / "cache" / "data" / "c").iterdir()) == [tmp_path / "cache" / "data" / "c" / "src.txt"]
    unreachable = RemoteFile("c/gone.txt", (tmp_path / "nothing").as_uri(), "0" * 64)
    with pytest.raises(DataError, match="could not download"):
        fetch(unreachable)


def test_unknown_corpus_and_split():
    with pytest.raises(DataError, match="unknown corpus"):
        get_corpus("no-such-corpus")
    with pytest.raises(DataError, match="no split"):
        load_text("wikitext2-test", "train")


def test_local_directory_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 100)
    (tmp_path / "b.txt").write_text("beta " * 100)
    text = load_text(str(tmp_path), "train") + load_text(str(tmp_path), "validation")
    assert "alpha" in text and "beta" in text
