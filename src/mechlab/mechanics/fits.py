"""Scaling-law fits with the robust recipe of papers/learning-mechanics.md: Huber loss on log-loss, L-BFGS-B with
many restarts, bootstrap confidence intervals, R², and the restricted models.

Two laws:

* Chinchilla: L(N, D) = E + A·N^(−α) + B·D^(−β)
* iso-depth (papers/hyperloop.md, looped models): L = E + A·(N_once + r^φ·N_rec)^(−α) + B·D^(−β), where N_once are
  the parameters used once per token, N_rec those of the looped block, r the number of loops; φ = 1 says a loop is
  worth a unique block, φ = 0 that it is worth nothing. The restricted fits pin φ to 0 and to 1.

Each law is fitted in the log domain as in Hoffmann et al.: log L̂ = LSE(a − α·log N_eff, b − β·log D, e) with
A = e^a, B = e^b, E = e^e, minimising Σ Huber_δ(log L̂ − log L) (δ = 1e-3) from a grid of starting points; the
best of all restarts is the fit. Bootstrap: refit on resampled rows (with replacement) for percentile intervals.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mechlab.errors import ConfigError

HUBER_DELTA = 1e-3


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    return np.clip(r, -delta, delta)


@dataclass
class Fit:
    """A fitted law: parameters by name, the objective, R² of L (not log L), and bootstrap intervals."""

    law: str
    params: dict[str, float]
    objective: float
    r2: float
    n: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    restricted: dict[str, "Fit"] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"law": self.law, "params": self.params, "objective": self.objective, "r2": self.r2, "n": self.n,
                "ci": {k: list(v) for k, v in self.ci.items()},
                "restricted": {k: v.to_dict() for k, v in self.restricted.items()}}


# ---- the two laws in the log domain: theta -> log L̂ and its gradient -------------------------------------------

def _lse3(x1, x2, x3):
    m = np.maximum(np.maximum(x1, x2), x3)
    e1, e2, e3 = np.exp(x1 - m), np.exp(x2 - m), np.exp(x3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), e1 / s, e2 / s, e3 / s


def _chinchilla(theta, N, D, *_):
    a, b, e, alpha, beta = theta
    logn, logd = np.log(N), np.log(D)
    out, w1, w2, w3 = _lse3(a - alpha * logn, b - beta * logd, np.full_like(logn, e))
    grad = np.stack([w1, w2, w3, -w1 * logn, -w2 * logd])  # d out / d theta, (5, n)
    return out, grad


def _isodepth(theta, N_once, D, N_rec, r, phi_fixed=None):
    if phi_fixed is None:
        a, b, e, alpha, beta, phi = theta
    else:
        (a, b, e, alpha, beta), phi = theta, phi_fixed
    rphi = r ** phi
    neff = N_once + rphi * N_rec
    logn, logd = np.log(neff), np.log(D)
    out, w1, w2, w3 = _lse3(a - alpha * logn, b - beta * logd, np.full_like(logn, e))
    rows = [w1, w2, w3, -w1 * logn, -w2 * logd]
    if phi_fixed is None:
        dlogn_dphi = rphi * np.log(r) * N_rec / neff
        rows.append(-w1 * alpha * dlogn_dphi)
    return out, np.stack(rows)


LAWS = {
    "chinchilla": (_chinchilla, ("A", "B", "E", "alpha", "beta")),
    "isodepth": (_isodepth, ("A", "B", "E", "alpha", "beta", "phi")),
}


def _objective(theta, fn, args, log_l):
    pred, grad = fn(theta, *args)
    res = pred - log_l
    return float(huber(res).sum()), grad @ huber_grad(res)


def _starts(law: str, phi_fixed: float | None) -> list[np.ndarray]:
    """The restart grid (in a, b, e, α, β[, φ]) of Hoffmann et al., widened for small models."""
    grid = itertools.product((0.0, 5.0, 10.0, 15.0), (0.0, 5.0, 10.0, 15.0), (-1.0, 0.0, 1.0),
                             (0.1, 0.3, 0.5, 0.8), (0.1, 0.3, 0.5, 0.8))
    starts = [np.array(g, dtype=float) for g in grid]
    if law == "isodepth" and phi_fixed is None:
        starts = [np.append(s, phi) for s in starts[::4] for phi in (0.0, 0.5, 1.0)]
    return starts


def _fit_once(law: str, args: tuple, log_l: np.ndarray, phi_fixed: float | None, starts: list[np.ndarray]):
    from scipy.optimize import minimize

    fn = LAWS[law][0]
    call_args = args + ((phi_fixed,) if law == "isodepth" else ())
    bounds = [(None, None)] * 3 + [(0.0, 3.0), (0.0, 3.0)] + ([(-1.0, 2.0)] if law == "isodepth" and phi_fixed is None else [])
    best = None
    for x0 in starts:
        res = minimize(_objective, x0, args=(fn, call_args, log_l), jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    return best.x, float(best.fun)


def _to_params(law: str, x: np.ndarray, phi_fixed: float | None) -> dict[str, float]:
    names = LAWS[law][1]
    vals = [math.exp(x[0]), math.exp(x[1]), math.exp(x[2]), x[3], x[4]]
    if law == "isodepth":
        vals.append(x[5] if phi_fixed is None else phi_fixed)
    return dict(zip(names, map(float, vals)))


def predict(law: str, params: dict[str, float], N, D, N_rec=None, r=None) -> np.ndarray:
    """L̂ of a fitted law at the given points (N is N_once for the iso-depth law)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    if law == "chinchilla":
        neff = N
    else:
        neff = N + np.asarray(r, float) ** params["phi"] * np.asarray(N_rec, float)
    return params["E"] + params["A"] * neff ** -params["alpha"] + params["B"] * D ** -params["beta"]


def fit_law(law: str, loss: Sequence[float], N: Sequence[float], D: Sequence[float],
            N_rec: Sequence[float] | None = None, r: Sequence[float] | None = None, phi: float | None = None,
            bootstrap: int = 200, seed: int = 0, restricted: bool = True, max_starts: int | None = None) -> Fit:
    """Fit ``law`` ('chinchilla' or 'isodepth') to observed losses; ``phi`` pins φ (iso-depth only).

    ``bootstrap`` resamples give 95% percentile intervals for every parameter (with fewer restarts: the best
    full-data fit and a few grid points). For the iso-depth law with free φ, ``restricted`` also fits φ = 0 and
    φ = 1."""
    if law not in LAWS:
        raise ConfigError(f"unknown law {law!r}; choose {', '.join(LAWS)}")
    loss, N, D = (np.asarray(v, dtype=float) for v in (loss, N, D))
    if law == "isodepth":
        if N_rec is None or r is None:
            raise ConfigError("the iso-depth law needs N_rec and r for every row")
        args = (N, D, np.asarray(N_rec, float), np.asarray(r, float))
    else:
        args = (N, D)
    if np.any(loss <= 0) or np.any(N <= 0) or np.any(D <= 0):
        raise ConfigError("losses, parameter counts and token counts must be positive")
    n_free = len(LAWS[law][1]) - (1 if law == "isodepth" and phi is not None else 0)
    if len(loss) < n_free + 1:
        raise ConfigError(f"{len(loss)} points cannot determine {n_free} parameters")
    log_l = np.log(loss)
    starts = _starts(law, phi)
    if max_starts is not None:
        starts = starts[:: max(1, len(starts) // max_starts)]
    x, obj = _fit_once(law, args, log_l, phi, starts)
    params = _to_params(law, x, phi)
    pred = predict(law, params, N, D, *(args[2:] if law == "isodepth" else ()))
    r2 = 1.0 - float(((loss - pred) ** 2).sum() / max(((loss - loss.mean()) ** 2).sum(), 1e-300))
    out = Fit(law if phi is None else f"{law}(phi={phi:g})", params, obj, r2, len(loss))
    if bootstrap:
        rng = np.random.default_rng(seed)
        boot_starts = [x] + starts[:: max(1, len(starts) // 8)]
        draws = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(loss), len(loss))
            xb, _ = _fit_once(law, tuple(a[idx] for a in args), log_l[idx], phi, boot_starts)
            draws.append(_to_params(law, xb, phi))
        out.ci = {k: (float(np.percentile([d[k] for d in draws], 2.5)), float(np.percentile([d[k] for d in draws], 97.5)))
                  for k in params}
    if restricted and law == "isodepth" and phi is None:
        for pinned in (0.0, 1.0):
            out.restricted[f"phi={pinned:g}"] = fit_law(law, loss, N, D, N_rec, r, phi=pinned, bootstrap=0,
                                                        restricted=False, max_starts=max_starts)
    return out
