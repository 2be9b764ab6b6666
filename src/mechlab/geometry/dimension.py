"""Intrinsic dimension of a point cloud: one entry point over the estimators of scikit-dimension (``skdim``).

* ``"twonn"``: TWO-NN (Facco, d'Errico, Rodriguez & Laio 2017, Sci. Rep. 7:12140, arXiv 1803.06992): for a locally
  uniform density the ratio μ = r2/r1 of the second to the first neighbour distance is Pareto with index d,
  F(μ) = 1 − μ^(−d); d is the slope of −log(1 − F) against log μ, fitted through the origin after discarding the
  largest 10% of the ratios (``skdim.id.TwoNN``).
* ``"mle"``: the Levina–Bickel maximum-likelihood estimator (NeurIPS 2004) from the k nearest neighbours of every
  point, combined over points by averaging inverses (the MacKay–Ghahramani correction; ``skdim.id.MLE`` with
  ``comb="mle"``), k = ``n_neighbors``.

The points are rescaled first (divided by their largest absolute coordinate, centred, then divided by the median
nearest-neighbour distance): the estimate is scale invariant, and the rescaling keeps x·1e300 or x·1e-300 from
overflowing or underflowing in the estimators' squared distances, so ID(c·x) = ID(x) for every c > 0.

Ties: on lattice-like data (grids, equally spaced points, bool vectors) the first and second neighbour distances
are equal at most points, TWO-NN's ratios μ = 1 carry no information and it would return 0.0; the estimators are
undefined there, and :func:`intrinsic_dimension` raises ValueError when more than half of the points have tied first
and second neighbours (relative difference below 1e-9), whichever the method.

Exact duplicate rows are dropped first (a zero first-neighbour distance makes both estimators infinite; hidden
states of a repeated token at the embedding layer are such duplicates). The estimators measure the dimension at
the scale of the neighbour distances, so noise or curvature at that scale bias them.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.spatial import cKDTree

from mechlab.errors import ConfigError

ESTIMATORS = ("twonn", "mle")
MIN_POINTS = 10
TIE_FRACTION = 0.5  # more tied first/second neighbours than this: ValueError (the estimators are undefined)


def intrinsic_dimension(x: np.ndarray, method: str = "twonn", n_neighbors: int = 20) -> float:
    """The intrinsic dimension of the rows of ``x`` (n, D) by ``method`` (``"twonn"`` or ``"mle"``), a float.

    ``n_neighbors`` is any integer (numpy integers included, bool excluded). Raises ConfigError for an unknown method
    or n_neighbors not an integer >= 2, ValueError for a non-2-D array, non-finite values, fewer than
    ``MIN_POINTS`` distinct rows (or, for MLE, no more distinct rows than ``n_neighbors``), or tied neighbour
    distances at more than half of the points (lattice-like data, see the module docstring)."""
    if method not in ESTIMATORS:
        raise ConfigError(f"unknown intrinsic-dimension estimator {method!r}; use one of {ESTIMATORS}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, numbers.Integral) or n_neighbors < 2:
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
    n_neighbors = int(n_neighbors)
    x = _rescale(x)
    r = cKDTree(x).query(x, k=3)[0]
    tied = np.mean(r[:, 2] - r[:, 1] <= 1e-9 * r[:, 2])
    if tied > TIE_FRACTION:
        raise ValueError(f"intrinsic_dimension is undefined on these points: {tied:.0%} of them have tied first and "
                         "second neighbour distances (lattice-like, equally spaced or discrete data), so the "
                         "neighbour-distance ratios carry no dimension")
    if x.shape[1] == 1:  # skdim wants two features; a zero column changes no distance
        x = np.concatenate([x, np.zeros_like(x)], axis=1)
    import skdim  # imported here: it loads numba and scikit-learn (about 2 s)

    if method == "twonn":
        return float(skdim.id.TwoNN().fit(x).dimension_)
    return float(skdim.id.MLE().fit(x, n_neighbors=n_neighbors, comb="mle").dimension_)


def _rescale(x: np.ndarray) -> np.ndarray:
    """``x`` (distinct finite rows) divided by its largest absolute value, centred, then divided by the median
    nearest-neighbour distance: the same dimension, distances of order one whatever the scale of ``x``."""
    x = x / np.abs(x).max()  # no overflow in the mean or the squared distances that follow
    x = x - x.mean(axis=0)
    nn = cKDTree(x).query(x, k=2)[0][:, 1]
    scale = np.median(nn)
    return x / scale if scale > 0 else x
