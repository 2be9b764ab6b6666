"""The representation gap of a predictor's output set to the data manifold, and its point-process prediction.

For test points X_j drawn from the data distribution on Ω and a predictor's output set Ω_f (a finite set of points
here, or a union of orbits, :mod:`mechlab.geometry.predictors`), with δ_j = dist(X_j, Ω_f):

* mean gap of order r: (1/N) Σ_j δ_j^r, an estimate of E[dist(X, Ω_f)^r];
* sup gap: max_j δ_j, an estimate (from below) of the directed Hausdorff distance sup_{x ∈ Ω} dist(x, Ω_f).

Distances are chordal (Euclidean in the ambient space: :func:`nearest_distances` with ``metric="chordal"``) or
geodesic on a :class:`~mechlab.geometry.manifolds.Manifold` (``metric="geodesic"``, points in its intrinsic
coordinates). Nearest neighbours come from ``scipy.spatial.cKDTree``; the geodesic search is exact: it takes the k
chordal nearest neighbours, and since chordal ≤ geodesic on these manifolds, any point closer in geodesic
distance than the best candidate g lies in the chordal ball of radius g, which is searched whenever the candidates
do not already cover it.

Point-process (random-codebook) law: for X uniform on a compact d-manifold of volume Vol and n i.i.d. uniform
points x_i (a memorising predictor's output set),
    E[dist(X, {x_i})^r] ~ Γ(1 + r/d) · (n·V_d / Vol)^(−r/d),   V_d = π^(d/2) / Γ(d/2 + 1),
as n → ∞ (:func:`point_process_gap`): locally the points are a Poisson process of intensity n/Vol, and
P(δ > t) → exp(−(n/Vol)·V_d·t^d). The worst case (sup) decays as (log n / n)^(1/d) instead. Source: the law the
"Representation Gap" paper (Perera et al., arXiv 2605.21692) points to; the constant is the nearest-neighbour
distance of a Poisson process, not Zador's optimal-quantiser constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mechlab.errors import ConfigError
from mechlab.geometry.manifolds import Manifold

METRICS = ("chordal", "geodesic")
GEODESIC_CANDIDATES = 8  # chordal neighbours examined before the exact ball search


def unit_ball_volume(d: int) -> float:
    """V_d = π^(d/2) / Γ(d/2 + 1), the volume of the unit ball of R^d (2, π, 4π/3 for d = 1, 2, 3)."""
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    return math.pi ** (d / 2) / math.gamma(d / 2 + 1)


def point_process_gap(n: float | np.ndarray, d: int, volume: float, r: float = 1.0) -> float | np.ndarray:
    """Γ(1 + r/d)·(n·V_d/Vol)^(−r/d): the asymptotic E[dist(X, nearest of n uniform points)^r] on a compact
    d-manifold of volume ``volume`` (same length units as the distance; arXiv 2605.21692, random-codebook law).
    ``n`` may be an array. Raises ValueError for n <= 0, d < 1, volume <= 0 or r <= 0."""
    n_arr = np.asarray(n, dtype=np.float64)
    if np.any(n_arr <= 0) or d < 1 or not volume > 0 or not r > 0:
        raise ValueError(f"point_process_gap needs n > 0, d >= 1, volume > 0, r > 0; got n={n}, d={d}, "
                         f"volume={volume}, r={r}")
    out = math.gamma(1 + r / d) * (n_arr * unit_ball_volume(d) / volume) ** (-r / d)
    return float(out) if np.ndim(n) == 0 else out


def _as_points(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{what} must be a non-empty (n, dims) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} hold NaN or infinite coordinates")
    return x


def nearest_distances(queries: np.ndarray, points: np.ndarray, metric: str = "chordal",
                      manifold: Manifold | None = None) -> np.ndarray:
    """Distance from every query to its nearest point: (n_q, D) and (n_p, D) arrays → (n_q,) float64.

    ``metric="chordal"``: Euclidean (cKDTree). ``metric="geodesic"``: the product-sphere geodesic of ``manifold``
    (queries and points in its intrinsic coordinates, on the manifold); exact, see the module docstring.
    Raises ConfigError for an unknown metric or a geodesic without a manifold, ValueError for bad shapes."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use one of {METRICS}")
    queries, points = _as_points(queries, "queries"), _as_points(points, "points")
    if queries.shape[1] != points.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} coordinates, points {points.shape[1]}")
    tree = cKDTree(points)
    if metric == "chordal":
        return tree.query(queries, k=1)[0]
    if manifold is None:
        raise ConfigError("the geodesic metric needs the manifold the points lie on")
    manifold.check(queries, "queries")
    k = min(GEODESIC_CANDIDATES, len(points))
    chord, idx = tree.query(queries, k=k)
    chord, idx = chord.reshape(len(queries), k), idx.reshape(len(queries), k)
    geo = manifold.geodesic(queries[:, None, :], points[idx])
    best = geo.min(axis=1)
    if k < len(points):  # rows whose geodesic ball reaches beyond the k chordal candidates
        for i in np.flatnonzero(best > chord[:, -1]):
            ball = tree.query_ball_point(queries[i], best[i] * (1 + 1e-12) + 1e-300)
            best[i] = manifold.geodesic(queries[i], points[ball]).min()
    return best


@dataclass(frozen=True)
class Gap:
    """The gap of an output set to test points: ``mean`` = mean of δ^r, ``sup`` = max δ, over ``n_test`` points."""

    mean: float
    sup: float
    r: float
    n_test: int

    @classmethod
    def from_distances(cls, distances: np.ndarray, r: float = 1.0) -> Gap:
        """The gap from the distances δ_j of the test points to the output set (shape (n_test,))."""
        dist = np.asarray(distances, dtype=np.float64)
        if dist.ndim != 1 or len(dist) == 0 or not r > 0:
            raise ValueError(f"need a non-empty 1-D array of distances and r > 0, got shape {dist.shape}, r={r}")
        return cls(float(np.mean(dist**r)), float(dist.max()), float(r), len(dist))


def gap(test: np.ndarray, outputs: np.ndarray, r: float = 1.0, metric: str = "chordal",
        manifold: Manifold | None = None) -> Gap:
    """The mean (order r) and sup gap of the finite output set ``outputs`` (n, D) to test points ``test``
    (N, D) drawn from the data distribution: :func:`nearest_distances`, then :meth:`Gap.from_distances`."""
    return Gap.from_distances(nearest_distances(test, outputs, metric, manifold), r)


def loglog_slope(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log y = intercept + slope·log n. ValueError for fewer than
    two distinct n or a non-positive y."""
    n, y = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if n.shape != y.shape or len(np.unique(n)) < 2 or np.any(n <= 0) or np.any(y <= 0):
        raise ValueError("loglog_slope needs matching arrays of positive values with at least two distinct n")
    slope, intercept = np.polyfit(np.log(n), np.log(y), 1)
    return float(slope), float(intercept)
