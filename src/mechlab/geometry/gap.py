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
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mechlab.errors import ConfigError
from mechlab.geometry.manifolds import Manifold, check_int

METRICS = ("chordal", "geodesic")
GEODESIC_CANDIDATES = 8  # chordal neighbours examined before the exact ball search


def unit_ball_volume(d: int) -> float:
    """V_d = π^(d/2) / Γ(d/2 + 1), the volume of the unit ball of R^d (2, π, 4π/3 for d = 1, 2, 3); computed in
    log space (it underflows to 0.0 for d beyond about 340). ValueError unless d is an integer >= 1."""
    return math.exp(_log_unit_ball_volume(d))


def _log_unit_ball_volume(d: int) -> float:
    d = check_int(d, "dimension", 1)
    return d / 2 * math.log(math.pi) - math.lgamma(d / 2 + 1)


def _positive_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def point_process_gap(n: float | np.ndarray, d: int, volume: float, r: float = 1.0) -> float | np.ndarray:
    """Γ(1 + r/d)·(n·V_d/Vol)^(−r/d): the asymptotic E[dist(X, nearest of n uniform points)^r] on a compact
    d-manifold of volume ``volume`` (same length units as the distance; arXiv 2605.21692, random-codebook law).
    ``n`` may be an array. Computed in log space (lgamma), so any d works. Raises ValueError for n not finite
    numbers > 0 (strings and bools included), d not an integer >= 1 (bool excluded), volume or r not finite > 0."""
    if isinstance(n, (bool, np.bool_, str, bytes)):
        raise ValueError(f"point_process_gap: n must be a number or an array of numbers, got {n!r}")
    try:
        n_arr = np.asarray(n, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"point_process_gap: n must be a number or an array of numbers, got {n!r}") from None
    if n_arr.size == 0 or not np.all(np.isfinite(n_arr)) or np.any(n_arr <= 0):
        raise ValueError(f"point_process_gap needs every n finite and > 0, got n={n!r}")
    d = check_int(d, "point_process_gap: d", 1)
    volume, r = _positive_real(volume, "point_process_gap: volume"), _positive_real(r, "point_process_gap: r")
    log_out = (math.lgamma(1 + r / d)
               - (r / d) * (np.log(n_arr) + _log_unit_ball_volume(d) - math.log(volume)))
    out = np.exp(log_out)
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
    Raises ConfigError for an unknown metric or a geodesic without a :class:`Manifold` (a name is not one),
    ValueError for empty arrays, bad shapes, non-finite coordinates or (geodesic) points off the manifold."""
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
    if not isinstance(manifold, Manifold):
        raise ConfigError(f"manifold must be a Manifold (e.g. mechlab.geometry.manifold('S2')), got {manifold!r}")
    manifold.check_on(queries, "queries")
    manifold.check_on(points, "points")
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
        """The gap from the distances δ_j of the test points to the output set (shape (n_test,)). Raises ValueError
        unless the distances are a non-empty 1-D array of finite values >= 0 and r a finite number > 0."""
        r = _positive_real(r, "the gap's order r")
        dist = np.asarray(distances, dtype=np.float64)
        if dist.ndim != 1 or len(dist) == 0:
            raise ValueError(f"need a non-empty 1-D array of distances, got shape {dist.shape}")
        if not np.all(np.isfinite(dist)) or np.any(dist < 0):
            raise ValueError("distances must be finite and >= 0 (NaN, infinite or negative values given)")
        return cls(float(np.mean(dist**r)), float(dist.max()), float(r), len(dist))


def gap(test: np.ndarray, outputs: np.ndarray, r: float = 1.0, metric: str = "chordal",
        manifold: Manifold | None = None) -> Gap:
    """The mean (order r) and sup gap of the finite output set ``outputs`` (n, D) to test points ``test``
    (N, D) drawn from the data distribution: :func:`nearest_distances`, then :meth:`Gap.from_distances`.

    Raises ConfigError for an unknown metric, or ``metric="geodesic"`` without a :class:`Manifold` object (a name
    such as ``"S2"`` is refused: use ``manifold("S2")``); ValueError for empty or mis-shaped arrays, non-finite
    coordinates, geodesic points off the manifold (each sphere factor must be a unit vector), or r not finite > 0."""
    _positive_real(r, "the gap's order r")
    return Gap.from_distances(nearest_distances(test, outputs, metric, manifold), r)


def loglog_slope(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log y = intercept + slope·log n. ValueError for fewer than
    two distinct n, a non-positive y, or NaN/infinite values."""
    n, y = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(y))):
        raise ValueError("loglog_slope: n and y must be finite (NaN or infinite values given)")
    if n.shape != y.shape or len(np.unique(n)) < 2 or np.any(n <= 0) or np.any(y <= 0):
        raise ValueError("loglog_slope needs matching arrays of positive values with at least two distinct n")
    slope, intercept = np.polyfit(np.log(n), np.log(y), 1)
    return float(slope), float(intercept)
