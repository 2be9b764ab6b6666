"""Known manifolds: products of unit spheres, sampled uniformly and embedded isometrically in R^D.

Every manifold here is a product S^k1 × … × S^kj of unit spheres (S^k ⊂ R^(k+1)): S1, S2, S3, the flat tori
T2 = S1 × S1 and T3 = S1 × S1 × S1, and S1 × S2. A point is stored in *intrinsic coordinates*, the concatenation of
its factors' unit vectors, an array of shape (n, m) with m = Σ (k_i + 1); the intrinsic dimension is d = Σ k_i.

* uniform sampling (the normalised volume measure): each factor a normalised standard Gaussian vector in R^(k+1),
  independent across factors (the product of uniform measures is uniform on the product);
* volume: Π |S^k_i|, |S^k| = 2 π^((k+1)/2) / Γ((k+1)/2) (2π, 4π, 2π² for k = 1, 2, 3);
* chordal distance: the Euclidean distance in R^m (or in R^D after a random rotation, which preserves it);
* geodesic distance of the product metric: sqrt(Σ_i θ_i²), θ_i = 2·arcsin(|a_i − b_i| / 2) the great-circle angle
  in factor i. Every factor's chord is at most its angle, so chordal ≤ geodesic (used by the exact nearest
  geodesic search of :mod:`mechlab.geometry.gap`).

:func:`random_embedding` returns an (m, D) matrix with orthonormal rows, the first m rows of a Haar-random
rotation of R^D: ``X @ E`` embeds isometrically, ``Y @ E.T`` maps an embedded point back.

Source: the setting of "Representation Gap" (Perera et al., arXiv 2605.21692), with the manifolds of known
dimension on which its law is checked.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from mechlab.errors import ConfigError

# tolerance on |factor| = 1 for points said to lie on a manifold: derived from float64's epsilon, loose enough for
# points rounded through float32 (relative error ~6e-8 per coordinate), tight enough to catch scaled points
ON_MANIFOLD_TOL = 64 * math.sqrt(np.finfo(np.float64).eps)  # about 9.5e-7


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int if it is an integer (numbers.Integral, numpy integers included, bool excluded) of at
    least ``minimum``; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def sphere_volume(k: int) -> float:
    """Surface volume |S^k| of the unit k-sphere in R^(k+1): 2 π^((k+1)/2) / Γ((k+1)/2). Raises ValueError for
    k not an integer (bool excluded) or k < 1."""
    k = check_int(k, "sphere dimension", 1)
    return 2 * math.pi ** ((k + 1) / 2) / math.gamma((k + 1) / 2)


@dataclass(frozen=True)
class Manifold:
    """A product of unit spheres S^k1 × … × S^kj (``factors`` = (k1, …, kj)) in intrinsic coordinates R^m."""

    name: str
    factors: tuple[int, ...]

    @property
    def dim(self) -> int:
        """Intrinsic dimension d = Σ k_i."""
        return sum(self.factors)

    @property
    def coord_dim(self) -> int:
        """m = Σ (k_i + 1), the columns of a point in intrinsic coordinates."""
        return sum(k + 1 for k in self.factors)

    @property
    def volume(self) -> float:
        """Riemannian volume Π |S^k_i| (unit radii)."""
        return math.prod(sphere_volume(k) for k in self.factors)

    def slices(self) -> list[slice]:
        """The column slice of each factor in intrinsic coordinates."""
        out, start = [], 0
        for k in self.factors:
            out.append(slice(start, start + k + 1))
            start += k + 1
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points drawn uniformly (volume measure), shape (n, m), float64. Raises ValueError for n not an integer
        (bool excluded) or n < 1."""
        n = check_int(n, "sample size", 1)
        parts = []
        for k in self.factors:
            g = rng.standard_normal((n, k + 1))
            parts.append(g / np.linalg.norm(g, axis=1, keepdims=True))
        return np.concatenate(parts, axis=1)

    def check(self, x: np.ndarray, what: str = "points") -> np.ndarray:
        """``x`` as a float64 (n, m) array; ValueError if the shape is not (n, m)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.coord_dim:
            raise ValueError(f"{what} must have shape (n, {self.coord_dim}) in {self.name}'s intrinsic coordinates, "
                             f"got {x.shape}")
        return x

    def check_on(self, x: np.ndarray, what: str = "points") -> np.ndarray:
        """:meth:`check`, and ValueError unless every row lies on the manifold: finite, each factor a unit vector
        within :data:`ON_MANIFOLD_TOL` (distances computed off the manifold would be silently wrong)."""
        x = self.check(x, what)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} hold NaN or infinite coordinates")
        for s in self.slices():
            dev = np.abs(np.linalg.norm(x[:, s], axis=1) - 1.0)
            if dev.size and dev.max() > ON_MANIFOLD_TOL:
                i = int(dev.argmax())
                raise ValueError(f"{what} do not lie on {self.name}: row {i} has a factor of norm "
                                 f"{np.linalg.norm(x[i, s]):.6g}, not 1 (tolerance {ON_MANIFOLD_TOL:.1e}); give "
                                 "points in its intrinsic coordinates, each sphere factor a unit vector")
        return x

    def geodesic(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Geodesic distance of the product metric between rows of ``a`` and ``b`` (broadcast, (..., m) each):
        sqrt(Σ_i (2·arcsin(|a_i − b_i|/2))²), in radians of unit spheres. Points are assumed to lie on the
        manifold (each factor a unit vector)."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        total = 0.0
        for s in self.slices():
            chord = np.linalg.norm(a[..., s] - b[..., s], axis=-1)
            total = total + (2 * np.arcsin(np.minimum(chord / 2, 1.0))) ** 2
        return np.sqrt(total)


MANIFOLDS: dict[str, Manifold] = {m.name: m for m in [
    Manifold("S1", (1,)), Manifold("S2", (2,)), Manifold("S3", (3,)),
    Manifold("T2", (1, 1)), Manifold("T3", (1, 1, 1)), Manifold("S1xS2", (1, 2)),
]}


def manifold(name: str) -> Manifold:
    """The manifold called ``name`` (one of :data:`MANIFOLDS`: S1, S2, S3, T2, T3, S1xS2); ConfigError otherwise
    (a name that is not a string included)."""
    if not isinstance(name, str):
        raise ConfigError(f"a manifold name must be a string (one of {', '.join(MANIFOLDS)}), got {name!r}")
    try:
        return MANIFOLDS[name]
    except KeyError:
        raise ConfigError(f"unknown manifold {name!r}; known: {', '.join(MANIFOLDS)}") from None


def random_embedding(m: int, D: int, rng: np.random.Generator) -> np.ndarray:
    """An (m, D) matrix with orthonormal rows: the first m rows of a Haar-random orthogonal matrix (QR of a
    Gaussian matrix with the signs of R's diagonal folded in, Mezzadri 2007, arXiv math-ph/0609050). ``X @ E``
    embeds (n, m) points isometrically in R^D. Raises ValueError unless m and D are integers (bool excluded) with
    1 <= m <= D."""
    m, D = check_int(m, "m", 1), check_int(D, "D", 1)
    if not 1 <= m <= D:
        raise ValueError(f"cannot embed R^{m} isometrically in R^{D}: need 1 <= m <= D")
    q, r = np.linalg.qr(rng.standard_normal((D, D)))
    q = q * np.sign(np.diag(r))
    return q[:m].copy()
