"""Scaling-law fits with the robust recipe of arXiv 2604.21691 (docs/fits.md): Huber loss on log-loss, L-BFGS-B with
many restarts, bootstrap confidence intervals, R², and the restricted models.

Two laws:

* Chinchilla (Hoffmann et al. 2022, arXiv 2203.15556): L(N, D) = E + A·N^(−α) + B·D^(−β)
* iso-depth (arXiv 2604.21106, looped models): L = E + A·(N_once + r^φ·N_rec)^(−α) + B·D^(−β), where N_once are the
  parameters used once per token, N_rec those of the looped block, r the number of loops; φ = 1 says a loop is worth
  a unique block, φ = 0 that it is worth nothing. The restricted fits pin φ to 0 and to 1.

L is a loss in nats per token, N a parameter count, D a token count; every input is a 1-D array with one entry per
training run.

Each law is fitted in the log domain as in Hoffmann et al.: log L̂ = LSE(a − α·log N_eff, b − β·log D, e) with
A = e^a, B = e^b, E = e^e, minimising Σ Huber_δ(log L̂ − log L) (δ = 1e-3). Internally log N_eff and log D are centred
on their means (a' = a − α·mean log N_eff) so that a and α are not nearly collinear; the reported parameters are
the uncentred ones.

Convergence (Besiroglu et al. 2024, arXiv 2404.10102, found that Hoffmann et al.'s optimiser stopped early because
of the loss scale): the objective is ~1e-3 or smaller, and L-BFGS-B's relative stopping test
(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol is floored at |f| = 1, so on the raw objective it is an absolute
test that stops long before the minimum. Here the optimiser sees the objective divided by δ²·n (the mean Huber loss
in units of δ²). Even so, with δ = 1e-3 most residuals sit on the linear part of the Huber loss and L-BFGS-B's
relative test still often stops where the gradient is far from zero, so each L-BFGS-B run is finished by
projected Newton steps with the exact Hessian (up to POLISH_ITERS: a fit that wants E = 0 needs tens of them to walk
log E down to its floor), and a restart counts as converged only when the largest entry of the
projected gradient of the scaled objective is ≤ GTOL (1e-4). The point estimate is the best converged restart (none:
FitDidNotConverge); a bootstrap resample with no converged restart is counted in ``Fit.bootstrap_failed`` and left
out of the intervals. E has a floor of 1e-6 × the smallest loss (E = 0 in effect), so that fits which want E = 0
stop there instead of creeping towards log E = −∞. Fits that drift to α → 0 (a power law with a tiny exponent
standing in for E) have no minimum at finite parameters and are reported as not converged.

Restarts: the starting points are (i) the best points of a dense (α, β[, φ]) grid where, for each grid point, the
linear coefficients (A, B, E) of L ≈ E + A·N_eff^(−α) + B·D^(−β) are solved exactly by non-negative least squares
in relative error (variable projection), and (ii) a thinned copy of the restart grid of Hoffmann et al. Each bootstrap
resample (rows drawn with replacement) restarts from the full-data optimum and from the best point of a coarser grid
screened on the resample; the 2.5 and 97.5 percentiles of the converged refits are the 95% intervals.

Design: the law is additive, L = E + f(N) + g(D), so with only two distinct token counts D the data fix only
E + g(D_1) and g(D_2) − g(D_1): (B, β, E) has a flat direction and their intervals mean nothing (likewise A, α with
two N). :func:`fit_law` warns (DesignWarning) in that case and refuses a single level.

Degenerate fits: losses with no variation are refused (ConfigError: nothing to fit, R² would be 0/0; R² is NaN
whenever SS_tot = 0); a converged fit with alpha or beta at its lower bound 0, or with R² ≤ 0, warns
(DegenerateFitWarning) and is still returned.

Outliers: Besiroglu et al. drop the five highest-loss runs of the Chinchilla data before fitting; ``drop_highest=k``
does the same and records the dropped rows in ``Fit.dropped``.

Design checks: :func:`synthetic_recovery` draws losses from a law with known parameters at a proposed design, adds
log-normal noise of the size seen in real runs (``Fit.residual_sd``), refits each replicate with :func:`fit_law`
and reports how well a parameter is recovered (bias, spread, interval width and coverage).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mechlab.errors import ConfigError, MechlabError

HUBER_DELTA = 1e-3
# Optimiser settings, all on the objective scaled to units of δ²·n (Σ Huber / (δ²·n)):
FTOL = 1e-9  # L-BFGS-B's relative reduction test
LBFGS_GTOL = 1e-5  # L-BFGS-B's projected-gradient test
MAXITER = 200  # L-BFGS-B iterations per restart
POLISH_ITERS = 1000  # at most this many Newton steps after L-BFGS-B (a converged run stops at once; a fit that wants
#                     E = 0 walks down a valley where log E moves about one unit per step to the floor)
GTOL = 1e-4  # convergence: largest entry of the projected gradient (moving any of a, b, e, α, β, φ by 0.01 then
#              changes the scaled objective by < 1e-6)
PARAM_BOUNDS = {"alpha": (0.0, 3.0), "beta": (0.0, 3.0), "phi": (-1.0, 2.0)}
E_FLOOR = 1e-6  # E ≥ E_FLOOR · (smallest loss): E = 0 in effect


class DuplicateRowsWarning(UserWarning):
    """Identical rows (same loss and same design) were given to :func:`fit_law`: probably a run recorded twice."""


class DesignWarning(UserWarning):
    """A design that leaves some parameters undetermined (e.g. only two token counts: B, β and E have a flat
    direction)."""


class DegenerateFitWarning(UserWarning):
    """A converged fit that does not determine the law: an exponent (alpha or beta) at its lower bound 0, where its
    power-law term is a constant that merges with E, or R² ≤ 0 (the law explains none of the losses' variation)."""


DEGENERATE_EXP = 1e-6  # an exponent within this of its lower bound 0 counts as at the bound


class FitDidNotConverge(MechlabError):
    """No restart of the optimiser converged on the full data."""


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    return np.clip(r, -delta, delta)


@dataclass
class Fit:
    """A fitted law.

    ``params``: A, B, E (E in nats/token), alpha, beta[, phi]. ``objective``: Σ Huber_δ(log L̂ − log L) over the fitted
    rows (unscaled). ``r2``: R² = 1 − SS_res/SS_tot of L (not log L); NaN when SS_tot = 0 (losses with no variation,
    which :func:`fit_law` refuses, so in practice never). ``n``: rows fitted (after dropping). ``ci``: 95% bootstrap
    percentile intervals from the converged resamples. ``residual_sd``: sd of log L − log L̂ with n − p degrees of
    freedom (the multiplicative noise to give :func:`synthetic_recovery`; NaN when n ≤ p). ``dropped``: indices
    (into the arrays given to :func:`fit_law`) of the rows left out by ``drop_highest``. ``bootstrap``: resamples
    drawn; ``bootstrap_failed``: those with no converged restart (excluded from ``ci``). ``starts`` /
    ``starts_converged``: L-BFGS-B restarts for the point estimate and how many of them converged.
    """

    law: str
    params: dict[str, float]
    objective: float
    r2: float
    n: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    restricted: dict[str, Fit] = field(default_factory=dict)
    residual_sd: float = float("nan")
    dropped: list[int] = field(default_factory=list)
    bootstrap: int = 0
    bootstrap_failed: int = 0
    starts: int = 0
    starts_converged: int = 0

    def to_dict(self) -> dict:
        return {"law": self.law, "params": self.params, "objective": self.objective, "r2": self.r2, "n": self.n,
                "ci": {k: list(v) for k, v in self.ci.items()},
                "restricted": {k: v.to_dict() for k, v in self.restricted.items()},
                "residual_sd": self.residual_sd, "dropped": list(self.dropped), "bootstrap": self.bootstrap,
                "bootstrap_failed": self.bootstrap_failed, "starts": self.starts,
                "starts_converged": self.starts_converged}


# ---- the two laws in the log domain: theta -> log L̂ and its gradient -------------------------------------------
# theta = (a', b', e, α, β[, φ]) with a' = a − α·c_N, b' = b − β·c_D (c: the centring constants of _Data).

@dataclass
class _Data:
    """The design of one fit: log L and what the law needs, with log N_eff and log D centred by c_n and c_d."""

    law: str
    log_l: np.ndarray
    logd: np.ndarray  # log D − c_d
    logn: np.ndarray | None = None  # log N − c_n (Chinchilla)
    n_once: np.ndarray | None = None  # iso-depth
    n_rec: np.ndarray | None = None
    r: np.ndarray | None = None
    logr: np.ndarray | None = None
    c_n: float = 0.0
    c_d: float = 0.0
    e_min: float = -np.inf  # lower bound of e = log E

    def take(self, idx: np.ndarray) -> _Data:
        pick = {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return _Data(**pick)

    def logn_eff(self, phi: float) -> np.ndarray:
        if self.law == "chinchilla":
            return self.logn
        return np.log(self.n_once + self.r ** phi * self.n_rec) - self.c_n


def _lse_terms(a, alpha, logn, b, beta, logd, e):
    """log(e^(a − α·logn) + e^(b − β·logd) + e^e) and the three softmax weights, shape (3, n)."""
    z = np.empty((3, len(logn)))
    np.multiply(logn, -alpha, out=z[0])
    z[0] += a
    np.multiply(logd, -beta, out=z[1])
    z[1] += b
    z[2] = e
    m = z.max(axis=0)
    z -= m
    np.exp(z, out=z)
    s = z.sum(axis=0)
    z /= s
    return m + np.log(s), z


def _chinchilla(theta, data: _Data, phi_fixed=None):
    a, b, e, alpha, beta = theta
    out, w = _lse_terms(a, alpha, data.logn, b, beta, data.logd, e)
    grad = np.empty((5, len(out)))  # d out / d theta
    grad[:3] = w
    np.multiply(w[0], data.logn, out=grad[3])
    np.multiply(w[1], data.logd, out=grad[4])
    grad[3:] *= -1.0
    return out, grad


def _isodepth(theta, data: _Data, phi_fixed=None):
    if phi_fixed is None:
        a, b, e, alpha, beta, phi = theta
    else:
        (a, b, e, alpha, beta), phi = theta, phi_fixed
    rphi_nrec = data.r ** phi * data.n_rec
    neff = data.n_once + rphi_nrec
    logn = np.log(neff) - data.c_n
    out, w = _lse_terms(a, alpha, logn, b, beta, data.logd, e)
    grad = np.empty((5 if phi_fixed is not None else 6, len(out)))
    grad[:3] = w
    np.multiply(w[0], logn, out=grad[3])
    np.multiply(w[1], data.logd, out=grad[4])
    grad[3:5] *= -1.0
    if phi_fixed is None:
        grad[5] = w[0] * (-alpha) * rphi_nrec * data.logr / neff
    return out, grad


LAWS = {
    "chinchilla": (_chinchilla, ("A", "B", "E", "alpha", "beta")),
    "isodepth": (_isodepth, ("A", "B", "E", "alpha", "beta", "phi")),
}


def _objective(theta, fn, data: _Data, phi_fixed, scale: float = 1.0):
    """Σ Huber(log L̂ − log L) / scale and its gradient in theta."""
    pred, grad = fn(theta, data, phi_fixed)
    res = pred - data.log_l
    clipped = np.clip(res, -HUBER_DELTA, HUBER_DELTA)  # huber_grad; Huber = clipped·(res − clipped/2)
    return float(clipped @ (res - 0.5 * clipped)) / scale, (grad @ clipped) / scale


def _fgh(theta, data: _Data, phi_fixed):
    """Σ Huber(log L̂ − log L), its gradient (p,) and its Hessian (p, p) in theta (the Newton polish).

    With z = (a − α·ℓ, b − β·log D, e), ℓ = log N_eff − c_N, w = softmax(z) and G = ∂z/∂θ (3 × p per row):
    ∇ log L̂ = wᵀG = J, ∇² log L̂ = Σ_k w_k (G_k G_kᵀ + ∇²z_k) − J Jᵀ; the Huber objective's Hessian is
    Σ_i [1{|r_i| ≤ δ}·J_i J_iᵀ + clip(r_i)·∇² log L̂_i]. Only z_1 has second derivatives, through φ:
    ∂²z_1/∂α∂φ = −ℓ', ∂²z_1/∂φ² = −α·ℓ'' with ℓ' = q·log r, ℓ'' = q(1 − q)·log² r, q = r^φ·N_rec / N_eff."""
    free_phi = data.law == "isodepth" and phi_fixed is None
    a, b, e, alpha, beta = theta[:5]
    if data.law == "chinchilla":
        logn = data.logn
    else:
        phi = theta[5] if free_phi else phi_fixed
        rphi_nrec = data.r ** phi * data.n_rec
        neff = data.n_once + rphi_nrec
        logn = np.log(neff) - data.c_n
        q = rphi_nrec / neff
    n, p = len(logn), len(theta)
    out, w = _lse_terms(a, alpha, logn, b, beta, data.logd, e)
    G = np.zeros((n, 3, p))
    G[:, 0, 0], G[:, 1, 1], G[:, 2, 2] = 1.0, 1.0, 1.0
    G[:, 0, 3], G[:, 1, 4] = -logn, -data.logd
    if free_phi:
        dl = q * data.logr
        G[:, 0, 5] = -alpha * dl
    J = np.einsum("kn,nkp->np", w, G)
    res = out - data.log_l
    h1 = np.clip(res, -HUBER_DELTA, HUBER_DELTA)
    h2 = (np.abs(res) <= HUBER_DELTA).astype(float)
    f = float(h1 @ (res - 0.5 * h1))
    g = J.T @ h1
    H = np.einsum("n,np,nq->pq", h2 - h1, J, J) + np.einsum("kn,nkp,nkq->pq", w * h1, G, G)
    if free_phi:
        c = w[0] * h1
        H[3, 5] -= c @ dl
        H[5, 3] -= c @ dl
        H[5, 5] -= alpha * (c @ (q * (1.0 - q) * data.logr**2))
    return f, g, H


def _box(data: _Data, phi_fixed) -> tuple[np.ndarray, np.ndarray]:
    bounds = _bounds(data, phi_fixed)
    return (np.array([-np.inf if b[0] is None else b[0] for b in bounds]),
            np.array([np.inf if b[1] is None else b[1] for b in bounds]))


def _active(x, g, lo, hi) -> np.ndarray:
    """Parameters held at a bound by a gradient that points out of the box."""
    return ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))


def _projected_gradient(x, data: _Data, phi_fixed) -> float:
    """Largest entry of the projected gradient of the scaled objective Σ Huber / (δ²·n): the convergence measure."""
    lo, hi = _box(data, phi_fixed)
    g = _fgh(np.asarray(x, float), data, phi_fixed)[1] / (HUBER_DELTA**2 * len(data.log_l))
    return float(np.max(np.abs(np.where(_active(x, g, lo, hi), 0.0, g))))


def _newton_polish(x, data: _Data, phi_fixed, max_iter: int = POLISH_ITERS) -> tuple[np.ndarray, float, bool]:
    """Finish a minimisation with projected Newton steps (Levenberg-Marquardt damping, bounds by projection) on the
    objective scaled to units of δ²·n, until the projected gradient's largest entry is ≤ GTOL. Returns
    (theta, unscaled objective, converged)."""
    scale = HUBER_DELTA**2 * len(data.log_l)
    lo, hi = _box(data, phi_fixed)
    x = np.clip(np.asarray(x, float), lo, hi)
    f, g, H = (v / scale for v in _fgh(x, data, phi_fixed))
    lam = 1e-12
    for _ in range(max_iter):
        active = _active(x, g, lo, hi)
        if not np.all(np.isfinite(g)):
            return x, f * scale, False
        if np.max(np.abs(np.where(active, 0.0, g))) <= GTOL:
            return x, f * scale, True
        free = ~active
        Hf, gf = H[np.ix_(free, free)], g[free]
        diag = np.maximum(np.abs(np.diag(Hf)), 1e-12)
        while True:
            try:
                chol = np.linalg.cholesky(Hf + lam * np.diag(diag))
            except np.linalg.LinAlgError:
                lam *= 10.0
                if lam > 1e12:
                    return x, f * scale, False
                continue
            step = np.zeros_like(x)
            step[free] = -np.linalg.solve(chol.T, np.linalg.solve(chol, gf))
            xn = np.clip(x + step, lo, hi)
            fn, gn, Hn = (v / scale for v in _fgh(xn, data, phi_fixed))
            if fn <= f + 4 * np.finfo(float).eps * abs(f) and np.all(np.isfinite(gn)):
                x, f, g, H = xn, fn, gn, Hn
                lam = max(lam / 10.0, 1e-12)
                break
            lam *= 10.0
            if lam > 1e12:
                return x, f * scale, False
    return x, f * scale, False


def _bounds(data: _Data, phi_fixed: float | None) -> list[tuple[float | None, float | None]]:
    """a', b' free; e ≥ log(E_FLOOR·min L) (E = 0 in effect: without the floor, fits that want E = 0 creep towards
    e = −∞ and never converge); α, β, φ as PARAM_BOUNDS."""
    free_phi = data.law == "isodepth" and phi_fixed is None
    return ([(None, None), (None, None), (data.e_min, None), PARAM_BOUNDS["alpha"], PARAM_BOUNDS["beta"]]
            + ([PARAM_BOUNDS["phi"]] if free_phi else []))


def _hoffmann_starts(law: str, phi_fixed: float | None, data: _Data) -> list[np.ndarray]:
    """The restart grid (in a, b, e, α, β[, φ]) of Hoffmann et al., widened for small models, centred."""
    grid = itertools.product((0.0, 5.0, 10.0, 15.0), (0.0, 5.0, 10.0, 15.0), (-1.0, 0.0, 1.0),
                             (0.1, 0.3, 0.5, 0.8), (0.1, 0.3, 0.5, 0.8))
    starts = [np.array(g, dtype=float) for g in grid]
    if law == "isodepth" and phi_fixed is None:
        starts = [np.append(s, phi) for s in starts[::4] for phi in (0.0, 0.5, 1.0)]
    for s in starts:
        s[0] -= s[3] * data.c_n
        s[1] -= s[4] * data.c_d
    return starts


_GRID_EXP = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.3, 1.7, 2.2])
_GRID_PHI = np.array([-0.75, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
_COARSE_EXP, _COARSE_PHI = _GRID_EXP[::2], _GRID_PHI[::2]  # for the bootstrap resamples
_SUBSETS = [s for k in (3, 2, 1) for s in itertools.combinations(range(3), k)]


def _screen(data: _Data, phi_fixed: float | None, k: int, weights: np.ndarray | None = None,
            coarse: bool = False) -> list[list[np.ndarray]]:
    """Starting points by variable projection: on a grid of (α, β[, φ]), the linear coefficients (A, B, E) of
    L ≈ E + A·N_eff^(−α) + B·D^(−β) are solved by exact non-negative least squares of (L̂ − L)/L (every subset of
    the three columns, the best feasible one kept); the grid points are ranked by the Huber objective.

    ``weights``: (R, n) row multiplicities, one row per resample (default: one resample, every row once). Returns,
    for each resample, its k best starts (theta vectors)."""
    free_phi = data.law == "isodepth" and phi_fixed is None
    exps = _COARSE_EXP if coarse else _GRID_EXP
    phis = (_COARSE_PHI if coarse else _GRID_PHI) if free_phi else [0.0 if phi_fixed is None else phi_fixed]
    w = np.ones((1, len(data.log_l))) if weights is None else np.asarray(weights, float)
    ga, gb = np.meshgrid(exps, exps, indexing="ij")
    ga, gb = ga.ravel(), gb.ravel()
    inv_l = np.exp(-data.log_l)
    x2 = np.exp(-gb[:, None] * data.logd[None, :])  # (G, n)
    l_min = np.exp(np.where(w > 0, data.log_l, np.inf).min(axis=1))  # (R,) smallest loss of each resample
    cands, objs = [], []
    for phi in phis:
        logn = data.logn_eff(phi)
        x1 = np.exp(-ga[:, None] * logn[None, :])
        X = np.stack([x1, x2, np.ones_like(x1)], axis=-1) * inv_l[None, :, None]  # (G, n, 3): relative error
        best_coef = np.zeros((len(w), len(ga), 3))
        best_rss = np.full((len(w), len(ga)), np.inf)
        for sub in _SUBSETS:
            Xs = X[:, :, sub]  # (G, n, s)
            gram = np.einsum("rn,gns,gnt->rgst", w, Xs, Xs)
            gram += 1e-12 * np.trace(gram, axis1=2, axis2=3)[..., None, None] * np.eye(len(sub))
            coef = np.linalg.solve(gram, np.einsum("rn,gns->rgs", w, Xs)[..., None])[..., 0]  # (R, G, s)
            fitted = np.einsum("gns,rgs->rgn", Xs, coef)
            rss = np.einsum("rn,rgn->rg", w, (fitted - 1.0) ** 2)
            ok = np.all(coef > 0, axis=-1) & (rss < best_rss)
            full = np.zeros_like(best_coef)
            full[..., list(sub)] = coef
            best_coef[ok], best_rss[ok] = full[ok], rss[ok]
        # floor zero coefficients at a negligible contribution (E at its bound) so the logs stay finite
        col_max = np.stack([x1.max(1), x2.max(1), np.ones(len(ga))], axis=1)  # (G, 3)
        floor = E_FLOOR * l_min[:, None, None] / col_max[None]
        logc = np.log(np.maximum(best_coef, floor))  # (R, G, 3)
        z = np.stack([logc[..., :1] - ga[:, None] * logn, logc[..., 1:2] - gb[:, None] * data.logd,
                      np.broadcast_to(logc[..., 2:3], (len(w), len(ga), len(logn)))])
        m = z.max(axis=0)
        pred = m + np.log(np.exp(z - m).sum(axis=0))  # (R, G, n)
        objs.append(np.einsum("rn,rgn->rg", w, huber(pred - data.log_l)))
        tail = [np.broadcast_to(ga, logc.shape[:2]), np.broadcast_to(gb, logc.shape[:2])]
        if free_phi:
            tail.append(np.full(logc.shape[:2], phi))
        cands.append(np.concatenate([logc, np.stack(tail, axis=-1)], axis=-1))  # (R, G, p)
    cands, objs = np.concatenate(cands, axis=1), np.concatenate(objs, axis=1)
    order = np.argsort(objs, axis=1, kind="stable")[:, :k]
    return [[cands[i, j] for j in order[i]] for i in range(len(w))]


@dataclass
class _Run:
    """One restart's end: theta, the unscaled objective, and whether the projected gradient reached GTOL."""

    x: np.ndarray
    fun: float
    success: bool


@contextlib.contextmanager
def _single_threaded_blas():
    """Run scipy's BLAS on one thread for the duration. scipy >= 1.15's L-BFGS-B calls BLAS/LAPACK on 6-vectors, and
    a multi-threaded OpenBLAS makes each iteration ~50x slower on a busy machine (scipy issues 22438, 23191). Uses
    threadpoolctl when installed, else the thread setter of the OpenBLAS bundled in scipy's wheel; a no-op
    otherwise."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    import scipy

    lib = None
    for path in glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so*")):
        with contextlib.suppress(OSError):
            lib = ctypes.CDLL(path)
            break
    getter = getattr(lib, "scipy_openblas_get_num_threads", None)
    setter = getattr(lib, "scipy_openblas_set_num_threads", None)
    if getter is None or setter is None:
        yield
        return
    before = getter()
    setter(1)
    try:
        yield
    finally:
        setter(before)


def _minimize(x0, data: _Data, phi_fixed: float | None) -> _Run:
    """One restart: L-BFGS-B on the scaled objective, then the Newton polish, which decides ``success``."""
    from scipy.optimize import minimize

    scale = HUBER_DELTA**2 * len(data.log_l)
    res = minimize(_objective, x0, args=(LAWS[data.law][0], data, phi_fixed, scale), jac=True, method="L-BFGS-B",
                   bounds=_bounds(data, phi_fixed), options={"ftol": FTOL, "gtol": LBFGS_GTOL, "maxiter": MAXITER})
    if not np.all(np.isfinite(res.x)):
        return _Run(res.x, float("inf"), False)
    x, fun, ok = _newton_polish(res.x, data, phi_fixed)
    return _Run(x, fun, ok and math.isfinite(fun))


def _fit_starts(data: _Data, phi_fixed: float | None, starts: list[np.ndarray]) -> list[_Run]:
    """Every restart, converged ones first and each group sorted by objective."""
    runs = [_minimize(x0, data, phi_fixed) for x0 in starts]
    return sorted(runs, key=lambda run: (not run.success, run.fun))


def _to_params(law: str, x: np.ndarray, phi_fixed: float | None, data: _Data) -> dict[str, float]:
    names = LAWS[law][1]
    a, b = x[0] + x[3] * data.c_n, x[1] + x[4] * data.c_d
    vals = [math.exp(a), math.exp(b), math.exp(x[2]), x[3], x[4]]
    if law == "isodepth":
        vals.append(x[5] if phi_fixed is None else phi_fixed)
    return dict(zip(names, map(float, vals)))


def predict(law: str, params: dict[str, float], N, D, N_rec=None, r=None) -> np.ndarray:
    """L̂ (nats/token) of a law at the given points: arrays of shape (n,) or broadcastable (N is N_once for the
    iso-depth law)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    if law == "chinchilla":
        neff = N
    else:
        neff = N + np.asarray(r, float) ** params["phi"] * np.asarray(N_rec, float)
    return params["E"] + params["A"] * neff ** -params["alpha"] + params["B"] * D ** -params["beta"]


# ---- input checks ------------------------------------------------------------------------------------------------

_WHAT = {"loss": "losses (nats/token)", "N": "parameter counts", "D": "token counts", "N_rec": "parameter counts of "
         "the looped block", "r": "loop counts"}


def _column(name: str, values, n: int | None) -> np.ndarray:
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a 1-D sequence of numbers, one per run: {exc}") from None
    if raw.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D sequence with one value per run, got shape {raw.shape}")
    arr = _real_array(name, raw)
    if n is not None and len(arr) != n:
        raise ConfigError(f"{name} has {len(arr)} values but loss has {n}: give one value per run "
                          "(length-1 arrays are not broadcast)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ConfigError(f"{name}[{bad[0]}] is {arr[bad[0]]}{_more(bad)}: {_WHAT[name]} must be finite; drop or "
                          "rerun that run")
    bad = np.flatnonzero(arr <= 0)
    if len(bad):
        raise ConfigError(f"{name}[{bad[0]}] = {arr[bad[0]]:g}{_more(bad)}: {_WHAT[name]} must be positive")
    return arr


def _real_array(name: str, raw: np.ndarray) -> np.ndarray:
    """A 1-D array of real numbers as float64; ConfigError for complex, bool, string or other non-real entries
    (instead of numpy's silent casts) and for values too large for a float64."""
    kind = raw.dtype.kind
    if kind in "iu":
        return raw.astype(float)
    if kind == "f":
        with np.errstate(over="ignore"):
            arr = raw.astype(float)
        big = np.flatnonzero(np.isfinite(raw) & ~np.isfinite(arr))
        if len(big):
            raise ConfigError(f"{name}[{big[0]}] = {str(raw[big[0]])} is too large for a float64 (max ~1.8e308)")
        return arr
    if kind == "O":
        out = np.empty(len(raw))
        for i, v in enumerate(raw):
            out[i] = _real_entry(f"{name}[{i}]", v)
        return out
    what = {"c": "complex numbers", "b": "booleans", "U": "strings", "S": "bytes"}.get(kind, f"dtype {raw.dtype}")
    raise ConfigError(f"{name} must be a 1-D sequence of numbers, one per run: got {what} (dtype {raw.dtype}); "
                      f"{_WHAT[name]} are real numbers")


def _real_entry(label: str, v) -> float:
    """One entry of an object array (mixed or huge Python numbers) as a float; ConfigError if it is not a real
    number or overflows a float64."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        kind = "complex number" if isinstance(v, numbers.Complex) else type(v).__name__
        raise ConfigError(f"{label} = {v!r} is a {kind}: give real numbers")
    return _real_number(label, v)


def _real_number(label: str, v) -> float:
    """A real scalar (Python or numpy, not bool) as a float; ConfigError naming ``label`` and the type otherwise."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ConfigError(f"{label} must be a real number, got {type(v).__name__} {v!r}")
    try:
        return float(v)
    except OverflowError:
        raise ConfigError(f"{label} is too large for a float64 (an integer of {len(str(abs(int(v))))} digits; max "
                          "~1.8e308)") from None


def _more(bad: np.ndarray) -> str:
    return f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""


def _check_law(law) -> None:
    if not isinstance(law, str):
        raise ConfigError(f"law must be a string ({', '.join(LAWS)}), got {type(law).__name__} {law!r}")
    if law not in LAWS:
        raise ConfigError(f"unknown law {law!r}; choose {', '.join(LAWS)}")


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed = {seed!r} must be an integer >= 0")


def _check_inputs(law, loss, N, D, N_rec, r, phi, drop_highest, bootstrap, max_starts,
                  seed=0) -> tuple[dict[str, np.ndarray], int]:
    """The columns as float arrays of one length, every value finite and positive, and the number of free
    parameters; ConfigError otherwise."""
    _check_law(law)
    if law == "isodepth" and (N_rec is None or r is None):
        raise ConfigError("the iso-depth law needs N_rec and r for every row")
    if law == "chinchilla" and (N_rec is not None or r is not None or phi is not None):
        raise ConfigError("N_rec, r and phi belong to the iso-depth law: drop them or use law='isodepth'")
    if phi is not None:
        if isinstance(phi, (bool, np.bool_)) or not isinstance(phi, numbers.Real):
            raise ConfigError(f"phi must be a real number in {list(PARAM_BOUNDS['phi'])} or None (fitted), got "
                              f"{type(phi).__name__} {phi!r}")
        if not (math.isfinite(_real_number("phi", phi)) and PARAM_BOUNDS["phi"][0] <= phi <= PARAM_BOUNDS["phi"][1]):
            raise ConfigError(f"phi = {phi} must be a finite number in {list(PARAM_BOUNDS['phi'])}")
    for name, v, least in (("drop_highest", drop_highest, 0), ("bootstrap", bootstrap, 0),
                           ("max_starts", 1 if max_starts is None else max_starts, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
            raise ConfigError(f"{name} = {v!r} must be an integer >= {least}")
    _check_seed(seed)
    cols = {"loss": _column("loss", loss, None)}
    n = len(cols["loss"])
    if n == 0:
        raise ConfigError("loss is empty: there are no runs to fit; give one loss (and one N, D"
                          f"{', N_rec, r' if law == 'isodepth' else ''}) per training run")
    cols["N"], cols["D"] = _column("N", N, n), _column("D", D, n)
    if law == "isodepth":
        cols["N_rec"], cols["r"] = _column("N_rec", N_rec, n), _column("r", r, n)
    n_free = len(LAWS[law][1]) - (1 if law == "isodepth" and phi is not None else 0)
    return cols, n_free


def _warn_duplicates(cols: dict[str, np.ndarray]) -> None:
    rows = np.column_stack(list(cols.values()))
    _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    if np.all(counts == 1):
        return
    groups = [np.flatnonzero(inverse.ravel() == g).tolist() for g in np.flatnonzero(counts > 1)]
    groups.sort()
    shown = "; ".join(f"rows {', '.join(map(str, g))}" for g in groups[:5]) + ("; ..." if len(groups) > 5 else "")
    warnings.warn(f"duplicated rows (same loss, {', '.join(list(cols)[1:])}): {shown}. A run recorded twice counts "
                  "twice in the fit and the bootstrap; remove the copies unless they are genuine repeats",
                  DuplicateRowsWarning, stacklevel=3)


def _check_design(law: str, cols: dict[str, np.ndarray], n_free: int, phi: float | None, dropped: int) -> None:
    design = np.column_stack([v for k, v in cols.items() if k != "loss"])
    n, n_distinct = len(design), len(np.unique(design, axis=0))
    after = f" after dropping {dropped}" if dropped else ""
    loss = cols["loss"]
    if np.ptp(loss) <= 1e-12 * loss.max():
        raise ConfigError(f"loss takes one value ({loss[0]:g}) in every run{after}: there is no variation for the law "
                          "to explain (R² would be 0/0, and any fit is degenerate); check that these are the runs' "
                          "final losses")
    names = ", ".join(LAWS[law][1][:n_free])
    if n_distinct < n_free + 1:
        raise ConfigError(f"{n} points{after} ({n_distinct} distinct designs) cannot determine {n_free} free "
                          f"parameters ({names}): need at least {n_free + 1} distinct (N, D"
                          f"{', N_rec, r' if law == 'isodepth' else ''}) points")
    n_axis = cols["N"] if law == "chinchilla" else cols["N"] + cols["N_rec"] * cols["r"]
    for name, v, what in (("N", n_axis, "A, alpha and E"), ("D", cols["D"], "B, beta and E")):
        if len(np.unique(v)) < 2:
            label = name if law == "chinchilla" else "N + r·N_rec"
            raise ConfigError(f"{label} takes one value ({v[0]:g}) in every run{after}: {what} cannot be told apart; "
                              f"add runs with other {name}")
    if law == "isodepth" and phi is None and len(np.unique(cols["r"])) < 2:
        raise ConfigError(f"r takes one value ({cols['r'][0]:g}) in every run{after}: phi cannot be determined; add "
                          "runs with other loop counts or pin phi")
    n_levels = len(np.unique(n_axis)) if law == "chinchilla" else len(np.unique(design[:, [0, 2, 3]], axis=0))
    for label, levels, what in (("N" if law == "chinchilla" else "(N, N_rec, r)", n_levels, "A, alpha and E"),
                                ("D", len(np.unique(cols["D"])), "B, beta and E")):
        if levels == 2:
            warnings.warn(f"{label} takes only 2 distinct values{after}: {what} are not separately determined (one "
                          "flat direction), so their values and intervals mean nothing; add a third level",
                          DesignWarning, stacklevel=3)


def _data(law: str, cols: dict[str, np.ndarray]) -> _Data:
    logd = np.log(cols["D"])
    e_min = float(np.log(E_FLOOR * cols["loss"].min()))
    if law == "chinchilla":
        logn = np.log(cols["N"])
        return _Data(law, np.log(cols["loss"]), logd - logd.mean(), logn=logn - logn.mean(), c_n=float(logn.mean()),
                     c_d=float(logd.mean()), e_min=e_min)
    c_n = float(np.log(cols["N"] + cols["N_rec"]).mean())
    return _Data(law, np.log(cols["loss"]), logd - logd.mean(), n_once=cols["N"], n_rec=cols["N_rec"], r=cols["r"],
                 logr=np.log(cols["r"]), c_n=c_n, c_d=float(logd.mean()), e_min=e_min)


# ---- the fit -----------------------------------------------------------------------------------------------------

DEFAULT_STARTS = 32  # L-BFGS-B restarts for the point estimate: half grid-screened, half from the Hoffmann grid
BOOT_SCREENED = 1  # bootstrap restarts besides the full-data optimum: best points of a coarse grid on the resample


def _point_fit(law: str, data: _Data, phi: float | None, max_starts: int) -> tuple[list[_Run], list[np.ndarray]]:
    """All restarts on the full data (converged first, best first) and their starting points."""
    n_screen = max(1, (max_starts + 1) // 2)
    hoff = _hoffmann_starts(law, phi, data)
    n_hoff = max_starts - n_screen
    starts = _screen(data, phi, n_screen)[0] + (hoff[:: max(1, len(hoff) // n_hoff)][:n_hoff] if n_hoff else [])
    return _fit_starts(data, phi, starts), starts


def fit_law(law: str, loss: Sequence[float], N: Sequence[float], D: Sequence[float],
            N_rec: Sequence[float] | None = None, r: Sequence[float] | None = None, phi: float | None = None,
            bootstrap: int = 200, seed: int = 0, restricted: bool = True, max_starts: int | None = None,
            drop_highest: int = 0) -> Fit:
    """Fit ``law`` ('chinchilla' or 'isodepth') to observed losses.

    Args:
        loss: shape (n,), final losses in nats/token (positive, finite).
        N: shape (n,), parameter counts (N_once, the parameters used once per token, for the iso-depth law).
        D: shape (n,), training tokens.
        N_rec, r: shape (n,), the looped block's parameters and the loop count (iso-depth law only).
        phi: pins φ (iso-depth only); None fits it.
        bootstrap: resamples of the rows (with replacement) for 95% percentile intervals; 0 for none.
        seed: seed of the resampling.
        restricted: for the iso-depth law with free φ, also fit φ = 0 and φ = 1 (``Fit.restricted``; one that
            does not converge is left out with a RuntimeWarning).
        max_starts: L-BFGS-B restarts for the point estimate (default 32).
        drop_highest: leave out the k highest-loss rows before fitting (Besiroglu et al. 2024, arXiv 2404.10102,
            drop 5 of the Chinchilla runs); their indices go to ``Fit.dropped``.

    Returns a :class:`Fit`. Sources: Hoffmann et al. 2022 (arXiv 2203.15556) for the law and the Huber/L-BFGS-B
    recipe, Besiroglu et al. 2024 (arXiv 2404.10102) for the convergence of the optimiser and the dropping of
    outliers, arXiv 2604.21106 for the iso-depth law.

    Raises:
        ConfigError: unknown law; N_rec/r missing for the iso-depth law or given to the Chinchilla law; an input
            that is not 1-D, whose length differs from ``loss`` (no broadcasting), or that holds a NaN, an infinity
            or a value ≤ 0 (the message names the argument and the first offending index and value); empty inputs;
            values that are not real numbers (complex, bool, strings) or too large for a float64; fewer distinct
            design points than free parameters + 1; N (N_once + r·N_rec), D or, with free φ, r taking a single value;
            losses with no variation (all equal up to a relative 1e-12: there is nothing to fit, and R² would be
            0/0); a ``law`` that is not one of the names; bad ``phi`` (not a real number, bools and strings
            included, or outside [-1, 2]), ``drop_highest``, ``bootstrap``, ``max_starts`` or ``seed`` (an integer
            ≥ 0).
        FitDidNotConverge: no restart converged on the full data.

    Warns:
        DuplicateRowsWarning: rows identical in every column (loss included).
        DesignWarning: only two levels of N or D.
        DegenerateFitWarning: the converged fit (or a restricted one) has alpha or beta at its lower bound 0 or
            R² ≤ 0; the fit is still returned.
    """
    cols, n_free = _check_inputs(law, loss, N, D, N_rec, r, phi, drop_highest, bootstrap, max_starts, seed)
    phi = None if phi is None else float(phi)
    from scipy.optimize import minimize  # noqa: F401  (loads scipy's BLAS before _single_threaded_blas looks for it)

    n_all = len(cols["loss"])
    if drop_highest >= n_all:
        raise ConfigError(f"drop_highest = {drop_highest} would drop all {n_all} rows")
    _warn_duplicates(cols)
    dropped = sorted(np.argsort(-cols["loss"], kind="stable")[:drop_highest].tolist())
    if dropped:
        keep = np.setdiff1d(np.arange(n_all), dropped)
        cols = {k: v[keep] for k, v in cols.items()}
    _check_design(law, cols, n_free, phi, drop_highest)
    data = _data(law, cols)
    with _single_threaded_blas():
        return _fit(law, data, cols, phi, bootstrap, seed, restricted, max_starts or DEFAULT_STARTS, dropped)


def _fit(law: str, data: _Data, cols: dict[str, np.ndarray], phi: float | None, bootstrap: int, seed: int,
         restricted: bool, max_starts: int, dropped: list[int]) -> Fit:
    """The point estimate, the bootstrap and the restricted fits on checked data (see fit_law)."""
    runs, starts = _point_fit(law, data, phi, max_starts)
    best = runs[0]
    n_ok = sum(run.success for run in runs)
    if not best.success:
        raise FitDidNotConverge(f"none of {len(runs)} L-BFGS-B restarts converged for the {law} law on "
                                f"{len(cols['loss'])} points; check the data (units, outliers) or raise max_starts")
    params = _to_params(law, best.x, phi, data)
    loss = cols["loss"]
    pred = predict(law, params, cols["N"], cols["D"], cols.get("N_rec"), cols.get("r"))
    ss_tot = float(((loss - loss.mean()) ** 2).sum())
    r2 = 1.0 - float(((loss - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    n_free = len(best.x)
    dof = len(loss) - n_free
    res_sd = float(np.sqrt(((np.log(pred) - data.log_l) ** 2).sum() / dof)) if dof > 0 else float("nan")
    out = Fit(law if phi is None else f"{law}(phi={phi:g})", params, best.fun, r2, len(loss), residual_sd=res_sd,
              dropped=dropped, bootstrap=bootstrap, starts=len(runs), starts_converged=n_ok)
    _warn_degenerate(out)
    if bootstrap:
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, len(loss), (bootstrap, len(loss)))
        counts = np.stack([np.bincount(idx, minlength=len(loss)) for idx in rows])
        screened = _screen(data, phi, BOOT_SCREENED, weights=counts, coarse=True)
        draws = []
        for idx, extra in zip(rows, screened):
            brun = _fit_starts(data.take(idx), phi, [best.x] + extra)[0]
            if brun.success:
                draws.append(_to_params(law, brun.x, phi, data))
        out.bootstrap_failed = bootstrap - len(draws)
        if draws:
            out.ci = {k: (float(np.percentile([d[k] for d in draws], 2.5)),
                          float(np.percentile([d[k] for d in draws], 97.5))) for k in params}
        if out.bootstrap_failed > 0.05 * bootstrap:
            warnings.warn(f"{out.bootstrap_failed} of {bootstrap} bootstrap refits did not converge; the intervals "
                          "use the others. Many failures mean the design does not pin the law down (see "
                          "synthetic_recovery)", RuntimeWarning, stacklevel=3)
    if restricted and law == "isodepth" and phi is None:
        for pinned in (0.0, 1.0):
            try:
                out.restricted[f"phi={pinned:g}"] = _fit(law, data, cols, pinned, 0, seed, False, max_starts, dropped)
            except FitDidNotConverge as e:  # a comparison fit: the free fit stands without it
                warnings.warn(f"the restricted fit phi = {pinned:g} did not converge and is left out of "
                              f"Fit.restricted ({e})", RuntimeWarning, stacklevel=3)
    return out


def _warn_degenerate(fit: Fit) -> None:
    """DegenerateFitWarning when alpha or beta sits at its lower bound 0 or R² ≤ 0 (see DegenerateFitWarning)."""
    why = []
    for k, term, other in (("alpha", "A·N^(-alpha)", "A"), ("beta", "B·D^(-beta)", "B")):
        lo = PARAM_BOUNDS[k][0]
        if fit.params[k] - lo <= DEGENERATE_EXP:
            why.append(f"{k} = {fit.params[k]:.3g} is at its lower bound {lo:g}, so {term} is a constant that merges "
                       f"with E ({other}, {k} and E are not determined)")
    if not fit.r2 > 0:
        why.append(f"R² = {fit.r2:.3g} <= 0: the law explains none of the variation of the losses")
    if why:
        warnings.warn(f"degenerate {fit.law} fit: {'; '.join(why)}. Its parameters and intervals mean nothing; check "
                      "the losses (do they fall with N and D?) and the design (see synthetic_recovery)",
                      DegenerateFitWarning, stacklevel=4)


# ---- design checks -----------------------------------------------------------------------------------------------

@dataclass
class Recovery:
    """How well :func:`fit_law` recovers ``param`` at a design: over the replicates that fitted, the estimates'
    mean, sd and bias (mean − true), the median width of the 95% bootstrap interval and the fraction of intervals
    that contain the true value (NaN without bootstrap). ``failed``: replicates with no converged fit."""

    param: str
    true: float
    estimates: np.ndarray  # (n_rep − failed,)
    mean: float
    sd: float
    bias: float
    median_ci_width: float
    coverage: float
    n_rep: int
    failed: int
    bootstrap_failed: int  # bootstrap refits that did not converge, all replicates together
    noise: float  # the sd of log-loss noise used
    bootstrap: int  # resamples per replicate

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "estimates"}
        d["estimates"] = [float(x) for x in self.estimates]
        return d


def synthetic_recovery(law: str, params: Mapping[str, float], design: Mapping[str, Sequence[float]], noise: float,
                       param: str | None = None, n_rep: int = 50, bootstrap: int = 50, seed: int = 0,
                       drop_highest: int = 0, max_starts: int | None = None) -> Recovery:
    """Check a design before running it: can ``fit_law`` recover ``param`` there?

    Args:
        law: 'chinchilla' or 'isodepth'.
        params: the true parameters (A, B, E, alpha, beta[, phi]).
        design: arrays of shape (n,) under the names N, D (and N_rec, r for the iso-depth law): one entry per
            planned run; repeated entries are repeated runs (other seeds).
        noise: sd of the multiplicative noise in log-loss, log L = log L_law + noise·z, z ~ N(0, 1). Estimate it
            from real runs as ``Fit.residual_sd`` of a fit.
        param: the parameter of interest (default phi for the iso-depth law, alpha for Chinchilla).
        n_rep: synthetic replicates of the whole experiment.
        bootstrap, drop_highest, max_starts: passed to :func:`fit_law` for each replicate (restricted fits off).
        seed: seeds the noise and each replicate's bootstrap.

    Returns a :class:`Recovery`. Raises ConfigError when the design itself is refused by :func:`fit_law` (too few
    distinct points, non-positive values, ...), or for a bad law, parameter name, noise (a real number ≥ 0, Python
    or numpy), n_rep or seed; for ``params`` that is not a mapping, lacks a parameter of the law or has others, holds
    a value that is not a finite real number, or a true value outside the fit's bounds (A, B > 0, E ≥ 0, alpha and
    beta in [0, 3], phi in [-1, 2]: the fit could not reach it); for ``design`` that is not a mapping.
    """
    _check_law(law)
    names = LAWS[law][1]
    if not isinstance(params, Mapping):
        raise ConfigError(f"params must be a mapping (e.g. a dict or Fit.params) of the {law} law's parameters "
                          f"({', '.join(names)}), got {type(params).__name__}")
    missing = [k for k in names if k not in params]
    if missing:
        raise ConfigError(f"params lacks {', '.join(missing)}: give every parameter of the {law} law "
                          f"({', '.join(names)})")
    extra = [repr(k) for k in params if k not in names]
    if extra:
        raise ConfigError(f"params has {', '.join(extra)}, not a parameter of the {law} law ({', '.join(names)})")
    true_params = {k: _real_number(f"params[{k!r}]", params[k]) for k in names}
    bounds = {"A": (0.0, math.inf, "> 0"), "B": (0.0, math.inf, "> 0"), "E": (0.0, math.inf, ">= 0"),
              **{k: (lo, hi, f"in [{lo:g}, {hi:g}]") for k, (lo, hi) in PARAM_BOUNDS.items()}}
    outside = []
    for k, v in true_params.items():
        lo, hi, rule = bounds[k]
        if not math.isfinite(v) or v < lo or v > hi or (rule == "> 0" and v == lo):
            outside.append(f"{k} = {v:g} (must be {rule})")
    if outside:
        raise ConfigError(f"true parameters outside the fit's bounds: {'; '.join(outside)}. The fit cannot reach "
                          "them (it would stop at the bound), so the recovery would be meaningless")
    param = param or ("phi" if law == "isodepth" else "alpha")
    if param not in names:
        raise ConfigError(f"param {param!r} is not a parameter of the {law} law ({', '.join(names)})")
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, numbers.Real):
        raise ConfigError(f"noise must be a real number (the sd of log-loss noise), got {type(noise).__name__} "
                          f"{noise!r}")
    if not (math.isfinite(_real_number("noise", noise)) and noise >= 0):
        raise ConfigError(f"noise = {noise!r} must be a finite sd >= 0 (of log-loss)")
    noise = float(noise)
    if isinstance(n_rep, bool) or not isinstance(n_rep, (int, np.integer)) or n_rep < 1:
        raise ConfigError(f"n_rep = {n_rep!r} must be a positive integer")
    _check_seed(seed)
    keys = ("N", "D", "N_rec", "r") if law == "isodepth" else ("N", "D")
    if not isinstance(design, Mapping):
        raise ConfigError(f"design must be a mapping (e.g. a dict) of arrays under {', '.join(keys)}, one entry per "
                          f"planned run; got {type(design).__name__}")
    extra = set(design) - set(keys)
    if extra or any(k not in design for k in keys):
        raise ConfigError(f"design must hold exactly {', '.join(keys)} for the {law} law; got {', '.join(design)}")
    cols = {k: _column(k, design[k], None) for k in keys}
    n = len(cols["N"])
    for k in keys[1:]:
        if len(cols[k]) != n:
            raise ConfigError(f"design[{k!r}] has {len(cols[k])} values but design['N'] has {n}: one per run")
    true_l = predict(law, true_params, cols["N"], cols["D"], cols.get("N_rec"), cols.get("r"))
    if not np.all(np.isfinite(true_l) & (true_l > 0)):
        raise ConfigError("the law gives a non-positive or non-finite loss at this design with these params")
    rng = np.random.default_rng(seed)
    est, covered, widths, failed, boot_failed = [], [], [], 0, 0
    true = true_params[param]
    for rep in range(n_rep):
        loss = true_l * np.exp(noise * rng.standard_normal(n))
        try:
            with warnings.catch_warnings():  # counted below; repeated design points with noise 0 are not duplicates
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.simplefilter("ignore", DuplicateRowsWarning)
                fit = fit_law(law, loss, cols["N"], cols["D"], cols.get("N_rec"), cols.get("r"), bootstrap=bootstrap,
                              seed=seed + rep, restricted=False, max_starts=max_starts, drop_highest=drop_highest)
        except FitDidNotConverge:
            failed += 1
            continue
        est.append(fit.params[param])
        boot_failed += fit.bootstrap_failed
        if param in fit.ci:
            lo, hi = fit.ci[param]
            widths.append(hi - lo)
            covered.append(lo <= true <= hi)
    est_arr = np.array(est)
    nan = float("nan")
    return Recovery(param, true, est_arr, float(est_arr.mean()) if len(est) else nan,
                    float(est_arr.std(ddof=1)) if len(est) > 1 else nan,
                    float(est_arr.mean() - true) if len(est) else nan,
                    float(np.median(widths)) if widths else nan, float(np.mean(covered)) if covered else nan,
                    n_rep, failed, boot_failed, float(noise), bootstrap)
