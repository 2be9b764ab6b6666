"""Intrinsic dimension of a point cloud: one entry point over the estimators of scikit-dimension (``skdim``).

* ``"twonn"``: TWO-NN (Facco, d'Errico, Rodriguez & Laio 2017, Sci. Rep. 7:12140, arXiv 1803.06992): for a locally
  uniform density the ratio μ = r2/r1 of the second to the first neighbour distance is Pareto with index d,
  F(μ) = 1 − μ^(−d); d is the slope of −log(1 − F) against log μ, fitted through the origin after discarding the
  largest 10% of the ratios (``skdim.id.TwoNN``).
* ``"mle"``: the Levina–Bickel maximum-likelihood estimator (NeurIPS 2004) from the k nearest neighbours of every
  point, combined over points by averaging inverses (the MacKay–Ghahramani correction; ``skdim.id.MLE`` with
  ``comb="mle"``), k = ``n_neighbors``.

Exact duplicate rows are dropped first (a zero first-neighbour distance makes both estimators infinite; hidden
states of a repeated token at the embedding layer are such duplicates). The estimators measure the dimension at
the scale of the neighbour distances, so noise or curvature at that scale bias them.
"""

from __future__ import annotations

import numpy as np

from mechlab.errors import ConfigError

ESTIMATORS = ("twonn", "mle")
MIN_POINTS = 10


def intrinsic_dimension(x: np.ndarray, method: str = "twonn", n_neighbors: int = 20) -> float:
    """The intrinsic dimension of the rows of ``x`` (n, D) by ``method`` (``"twonn"`` or ``"mle"``), a float.

    Raises ConfigError for an unknown method or n_neighbors < 2, ValueError for a non-2-D array, non-finite values
    or fewer than ``MIN_POINTS`` distinct rows (or, for MLE, no more distinct rows than ``n_neighbors``)."""
    if method not in ESTIMATORS:
        raise ConfigError(f"unknown intrinsic-dimension estimator {method!r}; use one of {ESTIMATORS}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 2:
        raise ConfigError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"intrinsic_dimension needs an (n, D) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("intrinsic_dimension: the points hold NaN or infinite values")
    x = np.unique(x, axis=0)
    need = max(MIN_POINTS, n_neighbors + 1 if method == "mle" else 3)
    if len(x) < need:
        raise ValueError(f"intrinsic_dimension ({method}) needs at least {need} distinct points, got {len(x)}")
    if x.shape[1] == 1:  # skdim wants two features; a zero column changes no distance
        x = np.concatenate([x, np.zeros_like(x)], axis=1)
    import skdim  # imported here: it loads numba and scikit-learn (about 2 s)

    if method == "twonn":
        return float(skdim.id.TwoNN().fit(x).dimension_)
    return float(skdim.id.MLE().fit(x, n_neighbors=n_neighbors, comb="mle").dimension_)
