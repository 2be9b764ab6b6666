"""How good a map is (docs/maps.md).

With labels: adjusted Rand index (ARI; Hubert & Arabie 1985) and adjusted mutual information (AMI; Vinh et al.
2010) of the clusters against the labels, computed twice: with the noise documents dropped, and with noise as one
more cluster; the noise share beside them. k-NN label accuracy (leave-one-out, k = 10, cosine) in the embedding
and in the 2-D picture says how much of the label structure each space keeps, clusters aside.
Without labels: DBCV (Moulavi et al. 2014; hdbscan.validity.validity_index, Euclidean, on the clustered UMAP
space, noise left out as the library does), seed stability (mean ARI between the clusterings of runs with different
seeds, noise as its own cluster) and trustworthiness of the 2-D picture (scikit-learn).
Cluster words: NPMI coherence (Bouma 2009; Lau et al. 2014) of each cluster's top words from document
co-occurrence in the mapped documents, averaged over word pairs and clusters, and topic diversity (Dieng et al.
2020): the share of unique words among all clusters' top-k words.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mechlab.errors import DataError


def _encode(values) -> np.ndarray:
    _, inv = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return inv


def label_agreement(labels_true, clusters) -> dict[str, float]:
    """ARI and AMI of ``clusters`` (−1 noise) against ``labels_true``: ``*_noise_dropped`` over the clustered
    documents only (NaN-free: 0.0 when nothing or a single document is clustered), ``*_noise_cluster`` with noise
    as its own cluster; and ``noise_share``. DataError for unequal lengths."""
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    y = _encode(labels_true)
    c = np.asarray(clusters)
    if len(y) != len(c):
        raise DataError(f"{len(y)} labels for {len(c)} clustered documents")
    keep = c != -1
    out = {"noise_share": float(1 - keep.mean()),
           "ari_noise_cluster": float(adjusted_rand_score(y, c)),
           "ami_noise_cluster": float(adjusted_mutual_info_score(y, c))}
    if keep.sum() >= 2:
        out["ari_noise_dropped"] = float(adjusted_rand_score(y[keep], c[keep]))
        out["ami_noise_dropped"] = float(adjusted_mutual_info_score(y[keep], c[keep]))
    else:
        out["ari_noise_dropped"] = out["ami_noise_dropped"] = 0.0
    return out


def knn_accuracy(x: np.ndarray, labels, k: int = 10, metric: str = "cosine") -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote (ties to the smaller label code) of
    ``labels`` in the space x (N, D); the chance level is the largest label share."""
    from sklearn.neighbors import NearestNeighbors

    y = _encode(labels)
    k = min(k, len(y) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(x)
    idx = nn.kneighbors(x, return_distance=False)
    hits = 0
    for i, row in enumerate(idx):
        nbrs = [j for j in row if j != i][:k]
        votes = np.bincount(y[nbrs], minlength=y.max() + 1)
        hits += int(np.argmax(votes) == y[i])
    return hits / len(y)


def dbcv(x: np.ndarray, clusters) -> float:
    """Density-based clustering validation in [−1, 1] of ``clusters`` (−1 noise) on x (N, d), Euclidean
    (hdbscan.validity.validity_index). NaN-free: 0.0 with fewer than two clusters."""
    from hdbscan.validity import validity_index

    c = np.asarray(clusters)
    if len(set(c.tolist()) - {-1}) < 2:
        return 0.0
    v = float(validity_index(np.asarray(x, dtype=np.float64), c, metric="euclidean"))
    return v if math.isfinite(v) else 0.0


def seed_stability(clusterings: list[np.ndarray]) -> dict[str, float]:
    """Mean, min and max ARI over all pairs of ``clusterings`` of the same documents (noise as its own cluster)."""
    from sklearn.metrics import adjusted_rand_score

    if len(clusterings) < 2:
        raise DataError("seed stability needs at least two clusterings")
    aris = [adjusted_rand_score(a, b) for a, b in itertools.combinations(clusterings, 2)]
    return {"mean": float(np.mean(aris)), "min": float(np.min(aris)), "max": float(np.max(aris)), "pairs": len(aris)}


def npmi_coherence(texts: list[str], topics: list[list[str]], top: int = 10) -> float:
    """Mean NPMI over the pairs of each topic's ``top`` words and over topics, with document co-occurrence in
    ``texts`` as the probabilities: NPMI(a, b) = log(p(a,b) / (p(a) p(b))) / −log p(a,b), −1 for a pair that never
    co-occurs. 0.0 when no topic has two words."""
    from sklearn.feature_extraction.text import CountVectorizer

    words = sorted({w for t in topics for w in t[:top]})
    if not words:
        return 0.0
    cv = CountVectorizer(vocabulary=words, binary=True, lowercase=True)
    d = cv.transform(texts).toarray().astype(bool)
    col = {w: i for i, w in enumerate(words)}
    n = len(texts)
    scores = []
    for t in topics:
        pair_scores = []
        for a, b in itertools.combinations(t[:top], 2):
            pa, pb = d[:, col[a]].mean(), d[:, col[b]].mean()
            pab = (d[:, col[a]] & d[:, col[b]]).sum() / n
            if pab == 0 or pa == 0 or pb == 0:
                pair_scores.append(-1.0)
            elif pab == 1:
                pair_scores.append(1.0)
            else:
                pair_scores.append(math.log(pab / (pa * pb)) / -math.log(pab))
        if pair_scores:
            scores.append(float(np.mean(pair_scores)))
    return float(np.mean(scores)) if scores else 0.0


def topic_diversity(topics: list[list[str]], top: int = 25) -> float:
    """Unique share of all topics' top-``top`` words (1.0: no word shared); 0.0 with no words."""
    allw = [w for t in topics for w in t[:top]]
    return len(set(allw)) / len(allw) if allw else 0.0


def map_quality(texts: list[str], embeddings: np.ndarray, result, labels: dict[str, list] | None = None) -> dict:
    """The unlabelled measures of one map (noise share, clusters, DBCV, coherence, diversity, trustworthiness of
    the picture) and, for each label name in ``labels`` ({name: per-document values}), :func:`label_agreement`
    and k-NN accuracy in the embedding and the picture."""
    from sklearn.manifold import trustworthiness

    topics = [[w for w, _ in ws] for ws in result.words.values()]
    q = {"noise_share": result.noise_share, "n_clusters": result.n_clusters,
         "dbcv": dbcv(result.reduced, result.labels),
         "npmi": npmi_coherence(texts, topics), "topic_diversity": topic_diversity(topics),
         "trustworthiness_2d": float(trustworthiness(embeddings, result.coords,
                                                     n_neighbors=min(10, len(texts) // 2 - 1), metric="cosine"))}
    for name, values in (labels or {}).items():
        q[name] = label_agreement(values, result.labels) | {
            "knn_embedding": knn_accuracy(embeddings, values),
            "knn_2d": knn_accuracy(result.coords, values, metric="euclidean"),
            "chance": float(np.max(np.unique(_encode(values), return_counts=True)[1]) / len(values))}
    return q


def bootstrap_ci(values: list[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement, ``n_boot`` times)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return [float(v.mean()), float(v.mean())] if len(v) else [0.0, 0.0]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def _summarise(rows: list[dict]) -> dict:
    """{measure: {mean, std, per_seed, ci}} over seeds for every numeric (possibly nested) field of ``rows``."""
    out: dict = {}
    for k, v in rows[0].items():
        if isinstance(v, dict):
            out[k] = _summarise([r[k] for r in rows])
        elif isinstance(v, (int, float)):
            vals = [float(r[k]) for r in rows]
            out[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                      "per_seed": vals, "ci": bootstrap_ci(vals)}
    return out


def seed_sweep(texts: list[str], embeddings: np.ndarray, seeds: list[int], config=None,
               labels: dict[str, list] | None = None, picture_seed: int | None = None, progress: bool = True):
    """Maps of the same embeddings with each of ``seeds`` (UMAP's random_state; everything else as ``config``):
    ({"per_seed": [map_quality...], "summary": {measure: mean, std, per_seed, 95% bootstrap ci over seeds},
    "stability": :func:`seed_stability` of the clusterings}, the MapResult of ``picture_seed`` (with its 2-D
    picture; the others are not drawn) or None)."""
    from dataclasses import replace

    from tqdm import tqdm

    from mechlab.maps.pipeline import MapConfig, build_map

    config = config or MapConfig()
    rows, clusterings, kept = [], [], None
    for s in tqdm(seeds, desc="seeds", disable=not progress):
        r = build_map(texts, embeddings, replace(config, seed=s), picture=(s == picture_seed))
        q = map_quality(texts, embeddings, r, labels)
        q["seconds"] = sum(r.timings.values())
        rows.append(q)
        clusterings.append(r.labels)
        if s == picture_seed:
            kept = r
    return {"per_seed": rows, "summary": _summarise(rows), "stability": seed_stability(clusterings),
            "seeds": list(seeds), "config": config.to_dict()}, kept
