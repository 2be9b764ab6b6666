"""The map pipeline (BERTopic's, arXiv 2203.05794): embeddings -> UMAP to a few dimensions -> HDBSCAN -> cluster
words by class-based TF-IDF, and a separate 2-D UMAP for the picture.

* UMAP (McInnes et al. 2018, arXiv 1802.03426; umap-learn): ``n_neighbors`` 15, ``n_components`` 5, ``min_dist``
  0.0, cosine metric for clustering (BERTopic's settings); the picture's 2-D UMAP uses ``min_dist`` 0.1 (umap-learn's
  default). A fixed ``random_state`` makes umap-learn single-threaded and reproducible on one machine.
* HDBSCAN (Campello et al. 2013; scikit-learn >= 1.3): ``min_cluster_size`` 10, ``min_samples`` (default: as
  ``min_cluster_size``), excess-of-mass selection; label −1 is noise.
* Class-based TF-IDF (Grootendorst 2022, eq. 1): for term t and cluster c,
  W_{t,c} = tf_{t,c} · log(1 + A / f_t), tf_{t,c} the frequency of t in the concatenated text of c divided by the
  cluster's word count (L1), f_t the frequency of t over all clusters, A the mean number of words per cluster.
  Noise documents take no part. English stop words are dropped.

:func:`build_map` runs it on given embeddings; :func:`mechlab.maps.run_map` is the one entry point from documents
to files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mechlab.errors import ConfigError, DataError


@dataclass(frozen=True)
class MapConfig:
    """Settings of one map (see the module docstring for the defaults' sources)."""

    n_neighbors: int = 15
    n_components: int = 5
    min_dist: float = 0.0
    metric: str = "cosine"
    min_cluster_size: int = 10
    min_samples: int | None = None
    cluster_selection_method: str = "eom"
    plot_min_dist: float = 0.1
    top_words: int = 10
    seed: int = 0

    def validate(self, n_docs: int | None = None) -> None:
        """ConfigError naming the field for a value the pipeline cannot use; DataError for too few documents."""
        for name in ("n_neighbors", "n_components", "min_cluster_size", "top_words"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name != "top_words" else 1):
                least = 2 if name != "top_words" else 1
                raise ConfigError(f"map config: {name} must be an integer >= {least}, got {v!r}")
        if self.min_samples is not None and (not isinstance(self.min_samples, int) or self.min_samples < 1):
            raise ConfigError(f"map config: min_samples must be a positive integer, got {self.min_samples!r}")
        for name in ("min_dist", "plot_min_dist"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"map config: {name} must lie in [0, 1], got {v!r}")
        if self.cluster_selection_method not in ("eom", "leaf"):
            raise ConfigError("map config: cluster_selection_method must be 'eom' or 'leaf', got "
                              f"{self.cluster_selection_method!r}")
        if self.metric not in ("cosine", "euclidean"):
            raise ConfigError(f"map config: metric must be 'cosine' or 'euclidean', got {self.metric!r}")
        need = max(self.n_neighbors, self.n_components + 1, self.min_cluster_size) + 1
        if n_docs is not None and n_docs < need:
            raise DataError(f"{n_docs} documents are too few for a map with n_neighbors={self.n_neighbors}, "
                            f"n_components={self.n_components} and min_cluster_size={self.min_cluster_size} (it needs "
                            f"at least {need}): give more documents or smaller settings")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MapResult:
    """A map of N documents: ``reduced`` (N, n_components) UMAP coordinates clustered, ``coords`` (N, 2) for the
    picture, ``labels`` (N,) cluster ids (−1 noise), ``probabilities`` (N,) HDBSCAN membership strengths, ``words``
    {cluster id: [(word, c-TF-IDF weight), ...]} and the config it was made with."""

    reduced: np.ndarray
    coords: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    words: dict[int, list[tuple[str, float]]]
    config: MapConfig
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))

    @property
    def noise_share(self) -> float:
        return float(np.mean(self.labels == -1))


def umap_reduce(x: np.ndarray, n_components: int, n_neighbors: int = 15, min_dist: float = 0.0,
                metric: str = "cosine", seed: int = 0) -> np.ndarray:
    """(N, n_components) float32 UMAP embedding of x (N, D) with umap-learn at a fixed random_state ``seed``
    (single-threaded, reproducible). NUMBA_CACHE_DIR is set first (:func:`mechlab.maps.embed.set_numba_cache`)."""
    from mechlab.maps.embed import set_numba_cache

    set_numba_cache()
    import umap

    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), n_components=n_components, min_dist=min_dist,
                        metric=metric, random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.asarray(x, dtype=np.float32)).astype(np.float32)


def hdbscan_cluster(x: np.ndarray, min_cluster_size: int = 10, min_samples: int | None = None,
                    method: str = "eom") -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int, −1 noise; probabilities (N,)) of scikit-learn's HDBSCAN on x (N, d), Euclidean."""
    from sklearn.cluster import HDBSCAN

    h = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method=method,
                copy=True).fit(x)
    return h.labels_.astype(int), h.probabilities_.astype(float)


def class_tfidf(texts: list[str], labels: np.ndarray, top: int = 10) -> dict[int, list[tuple[str, float]]]:
    """{cluster id: the ``top`` words by class-based TF-IDF, with weights} over the non-noise clusters (module
    docstring, eq. 1 of arXiv 2203.05794). Words are sklearn CountVectorizer tokens, English stop words dropped."""
    from sklearn.feature_extraction.text import CountVectorizer

    labels = np.asarray(labels)
    clusters = sorted(set(labels.tolist()) - {-1})
    if not clusters:
        return {}
    joined = [" ".join(t for t, lab in zip(texts, labels) if lab == c) for c in clusters]
    try:
        cv = CountVectorizer(stop_words="english")
        counts = cv.fit_transform(joined).toarray().astype(float)
    except ValueError:  # only stop words
        return {c: [] for c in clusters}
    vocab = cv.get_feature_names_out()
    words_per_cluster = counts.sum(1)
    tf = counts / np.maximum(words_per_cluster[:, None], 1.0)
    f = counts.sum(0)
    a = words_per_cluster.mean()
    w = tf * np.log1p(a / np.maximum(f, 1.0))
    out = {}
    for row, c in enumerate(clusters):
        best = np.argsort(-w[row], kind="stable")[:top]
        out[c] = [(str(vocab[j]), float(w[row, j])) for j in best if w[row, j] > 0]
    return out


def build_map(texts: list[str], embeddings: np.ndarray, config: MapConfig = MapConfig(),
              picture: bool = True) -> MapResult:
    """The map of ``texts`` with ``embeddings`` (N, D): UMAP to ``config.n_components``, HDBSCAN, c-TF-IDF words and
    (``picture``) a 2-D UMAP with ``plot_min_dist``; else ``coords`` is the first two reduced dimensions.
    Errors: ConfigError/DataError from :meth:`MapConfig.validate`; DataError for non-finite or mismatched input."""
    import time

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(texts):
        raise DataError(f"embeddings of shape {x.shape} do not match {len(texts)} documents")
    if not np.isfinite(x).all():
        raise DataError("embeddings hold NaN or infinite values")
    config.validate(len(texts))
    t = {}
    t0 = time.perf_counter()
    reduced = umap_reduce(x, config.n_components, config.n_neighbors, config.min_dist, config.metric, config.seed)
    t["umap_cluster_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, probs = hdbscan_cluster(reduced, config.min_cluster_size, config.min_samples,
                                    config.cluster_selection_method)
    t["hdbscan_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    words = class_tfidf(texts, labels, config.top_words)
    t["ctfidf_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if picture:
        coords = umap_reduce(x, 2, config.n_neighbors, config.plot_min_dist, config.metric, config.seed)
    else:
        coords = reduced[:, :2].copy()
    t["umap_picture_s"] = time.perf_counter() - t0
    return MapResult(reduced, coords, labels, probs, words, config, t)
