"""Memorising predictors and their G-equivariant versions, with orbits computed exactly in quotient coordinates.

A predictor that fits its n training points exactly has the output set Ω_f = {x_i} (the empirical optimal
denoiser of a diffusion model generates its training points); a G-equivariant one generates their orbits,
Ω_f = ∪_i G·x_i ("virtual augmentation"). The distance of a point x to an orbit G·y is computed exactly from
quotient coordinates q(x) ∈ S^k (or a half circle) in which the orbit distance is a monotone function of the
Euclidean distance c = |q(x) − q(y)|, so a cKDTree over q(x_i) finds the nearest orbit.

Actions (each of a one-dimensional group, dim G = 1; quotient dimension d − 1):

* ``SO2-S2``: rotations of S2 about the third axis; orbits are latitude circles (the poles are fixed points, so the
  action is not free). q = (ρ, z), ρ = sqrt(x² + y²): the orbit's nearest point has the query's azimuth, so the
  chordal distance is c and the geodesic one the polar-angle difference 2·arcsin(c/2). Quotient: the half circle
  [0, π] of polar angles with density sin(φ)/2.
* ``SO2-T2``: rotations of the first circle of T2; q = the second circle's point; chordal c, geodesic 2·arcsin(c/2).
  Quotient: S1, length 2π, uniform.
* ``SO2-S1xS2``: rotations of the S1 factor of S1 × S2; q = the S2 factor; chordal c, geodesic 2·arcsin(c/2).
  Quotient: S2, area 4π, uniform.
* ``U1-S3``: the Hopf action z ↦ e^(iθ)·z on S3 ⊂ C² (free). q = the Hopf map (2·z1·conj(z2), |z1|² − |z2|²) ∈ S2
  (unit). With α the angle between q(x) and q(y), |⟨x, y⟩_C| = cos(α/2), so the orbit distance is
  min_θ |x − e^(iθ)y| = 2·sin(α/4) (chordal) and α/2 = arcsin(c/2) (geodesic). Quotient: S2 of radius 1/2 in the
  geodesic metric, area π, uniform.

Under the point-process law the gap of the equivariant memoriser decays as n^(−r/(d − dim G)), with the quotient
in place of the manifold (:meth:`GroupAction.predicted_gap`). Source: "Representation Gap" (Perera et al.,
arXiv 2605.21692).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mechlab.errors import ConfigError
from mechlab.geometry.gap import METRICS, _as_points, nearest_distances, point_process_gap
from mechlab.geometry.manifolds import Manifold, manifold


class Memoriser:
    """The output set of a predictor that reproduces its training points exactly: Ω_f = {x_i}, shape (n, D)
    (arXiv 2605.21692's memorising predictor; with ``manifold``, the points in its intrinsic coordinates, the
    geodesic metric is available too).

    Raises ValueError for ``train`` not a non-empty (n, D) array of finite values; ConfigError for a ``manifold``
    that is not a :class:`Manifold`."""

    def __init__(self, train: np.ndarray, manifold: Manifold | None = None):
        self.train = _as_points(train, "training points")
        if manifold is not None and not isinstance(manifold, Manifold):
            raise ConfigError(f"manifold must be a Manifold (e.g. mechlab.geometry.manifold('S2')), got {manifold!r}")
        self.manifold = manifold

    def distances(self, test: np.ndarray, metric: str = "chordal") -> np.ndarray:
        """dist(X_j, Ω_f) for every test point, (N,) (:func:`mechlab.geometry.gap.nearest_distances`). Raises
        ConfigError for an unknown metric or the geodesic one without a manifold; ValueError for empty,
        mis-shaped or non-finite test points, or (geodesic) points off the manifold."""
        return nearest_distances(test, self.train, metric, self.manifold)


def _rotate_pair(x: np.ndarray, cols: slice, theta: float) -> np.ndarray:
    y = x.copy()
    a, b = x[..., cols.start], x[..., cols.start + 1]
    c, s = math.cos(theta), math.sin(theta)
    y[..., cols.start], y[..., cols.start + 1] = c * a - s * b, s * a + c * b
    return y


def _hopf(x: np.ndarray) -> np.ndarray:
    z1, z2 = x[..., 0] + 1j * x[..., 1], x[..., 2] + 1j * x[..., 3]
    w = 2 * z1 * np.conj(z2)
    return np.stack([w.real, w.imag, np.abs(z1) ** 2 - np.abs(z2) ** 2], axis=-1)


def _hopf_act(x: np.ndarray, theta: float) -> np.ndarray:
    return _rotate_pair(_rotate_pair(x, slice(0, 2), theta), slice(2, 4), theta)


@dataclass(frozen=True)
class GroupAction:
    """A one-parameter group acting on a manifold, with the quotient map that makes orbit distances exact.

    ``quotient(x)``: intrinsic coordinates (n, m) → quotient coordinates (n, k); ``chordal(c)``, ``geodesic(c)``:
    the orbit distances as functions of the Euclidean distance c between quotient coordinates; ``act(x, θ)``: the
    group element θ applied to points (for tests and plots); ``quotient_volume``: the Vol of the point-process
    formula on the quotient (its length or area in the geodesic metric); ``uniform_quotient``: whether the data
    measure pushed to the quotient is uniform (else the constant is density-free only for r = quotient_dim)."""

    name: str
    manifold_name: str
    group_dim: int
    free: bool
    quotient_volume: float
    uniform_quotient: bool
    quotient: Callable[[np.ndarray], np.ndarray]
    chordal: Callable[[np.ndarray], np.ndarray]
    geodesic: Callable[[np.ndarray], np.ndarray]
    act: Callable[[np.ndarray, float], np.ndarray]

    @property
    def manifold(self) -> Manifold:
        """The :class:`~mechlab.geometry.manifolds.Manifold` the group acts on (looked up by ``manifold_name``)."""
        return manifold(self.manifold_name)

    @property
    def quotient_dim(self) -> int:
        """d − dim G, the dimension of Ω/G."""
        return self.manifold.dim - self.group_dim

    def orbit_distances(self, queries: np.ndarray, points: np.ndarray, metric: str = "chordal") -> np.ndarray:
        """min_i dist(query, G·x_i) for every query: (N, m) and (n, m) intrinsic coordinates → (N,), exact.
        Raises ConfigError for an unknown metric; ValueError for empty or non-finite arrays, a shape other than
        (·, m), or points off the manifold (the orbit formulas hold on it only)."""
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; use one of {METRICS}")
        m = self.manifold
        queries, points = _as_points(queries, "queries"), _as_points(points, "points")
        qq = self.quotient(m.check_on(queries, "queries"))
        qp = self.quotient(m.check_on(points, "points"))
        c = cKDTree(qp).query(qq, k=1)[0]
        return self.chordal(c) if metric == "chordal" else self.geodesic(c)

    def predicted_gap(self, n: float | np.ndarray, r: float = 1.0) -> float | np.ndarray:
        """The point-process law on the quotient, Γ(1 + r/k)·(n·V_k / Vol_Q)^(−r/k), k = d − dim G (geodesic
        distance). Raises ConfigError where the quotient measure is not uniform and r ≠ k (the constant then
        depends on the density)."""
        k = self.quotient_dim
        if not self.uniform_quotient and r != k:
            raise ConfigError(f"{self.name}: the quotient measure is not uniform; the constant is given for r = {k} "
                              "only")
        return point_process_gap(n, k, self.quotient_volume, r)


def _arc(c: np.ndarray) -> np.ndarray:
    return 2 * np.arcsin(np.minimum(np.asarray(c) / 2, 1.0))


def _identity(c: np.ndarray) -> np.ndarray:
    return np.asarray(c, dtype=np.float64)


def _s2_quotient(x: np.ndarray) -> np.ndarray:
    return np.stack([np.hypot(x[:, 0], x[:, 1]), x[:, 2]], axis=1)


def _hopf_chordal(c: np.ndarray) -> np.ndarray:
    return 2 * np.sin(_arc(c) / 4)


def _hopf_geodesic(c: np.ndarray) -> np.ndarray:
    return _arc(c) / 2


ACTIONS: dict[str, GroupAction] = {a.name: a for a in [
    GroupAction("SO2-S2", "S2", 1, False, math.pi, False, _s2_quotient, _identity, _arc,
                lambda x, t: _rotate_pair(x, slice(0, 2), t)),
    GroupAction("SO2-T2", "T2", 1, True, 2 * math.pi, True, lambda x: x[:, 2:4], _identity, _arc,
                lambda x, t: _rotate_pair(x, slice(0, 2), t)),
    GroupAction("SO2-S1xS2", "S1xS2", 1, True, 4 * math.pi, True, lambda x: x[:, 2:5], _identity, _arc,
                lambda x, t: _rotate_pair(x, slice(0, 2), t)),
    GroupAction("U1-S3", "S3", 1, True, math.pi, True, _hopf, _hopf_chordal, _hopf_geodesic, _hopf_act),
]}


def group_action(name: str) -> GroupAction:
    """The action called ``name`` (one of :data:`ACTIONS`); ConfigError otherwise."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown group action {name!r}; known: {', '.join(ACTIONS)}") from None


class EquivariantMemoriser:
    """The output set of a G-equivariant predictor that reproduces its training points: Ω_f = ∪_i G·x_i, with
    ``train`` (n, m) in the intrinsic coordinates of ``action``'s manifold (arXiv 2605.21692, "virtual
    augmentation").

    Raises ValueError, as :class:`Memoriser` does, for ``train`` not a non-empty (n, m) array of finite values, or
    for training points off the manifold; ConfigError for an ``action`` that is not a :class:`GroupAction`."""

    def __init__(self, train: np.ndarray, action: GroupAction):
        if not isinstance(action, GroupAction):
            raise ConfigError(f"action must be a GroupAction (e.g. mechlab.geometry.group_action('SO2-S2')), "
                              f"got {action!r}")
        self.train = action.manifold.check_on(_as_points(train, "training points"), "training points")
        self.action = action

    def distances(self, test: np.ndarray, metric: str = "chordal") -> np.ndarray:
        """dist(X_j, ∪_i G·x_i) for every test point (intrinsic coordinates), (N,), exact. Raises ConfigError for
        an unknown metric; ValueError for empty, mis-shaped or non-finite (NaN) test points or points off the
        manifold."""
        return self.action.orbit_distances(test, self.train, metric)
