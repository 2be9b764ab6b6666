"""Scaling-law fits recover known parameters from noisy synthetic data."""

import numpy as np
import pytest

from mechlab.errors import ConfigError
from mechlab.mechanics.fits import fit_law, huber, predict


def test_huber_is_quadratic_then_linear():
    r = np.array([0.0, 5e-4, -2e-3])
    assert np.allclose(huber(r, 1e-3), [0.0, 0.5 * 25e-8, 1e-3 * (2e-3 - 5e-4)])


def test_chinchilla_fit_recovers_the_exponents():
    rng = np.random.default_rng(0)
    true = dict(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)
    N = np.repeat([1e6, 3e6, 1e7, 3e7, 1e8], 4)
    D = np.tile([1e7, 3e7, 1e8, 3e8], 5)
    loss = predict("chinchilla", true, N, D) * np.exp(rng.normal(0, 0.005, len(N)))
    fit = fit_law("chinchilla", loss, N, D, bootstrap=30, max_starts=48)
    assert fit.r2 > 0.99
    for k in ("alpha", "beta", "E"):
        lo, hi = fit.ci[k]
        assert lo <= true[k] <= hi, (k, fit.ci[k])
    assert abs(fit.params["alpha"] - 0.34) < 0.04 and abs(fit.params["beta"] - 0.28) < 0.04


def test_isodepth_fit_recovers_phi_and_beats_the_restricted_models():
    rng = np.random.default_rng(0)
    true = dict(E=1.8, A=300.0, alpha=0.3, B=400.0, beta=0.3, phi=0.46)
    rows = [(no, nr, r, d) for no in (2e6, 8e6) for nr in (2e6, 8e6, 3e7) for r in (1, 2, 4) for d in (3e7, 1e8)]
    n_once, n_rec, loops, tokens = map(np.array, zip(*rows))
    loss = predict("isodepth", true, n_once, tokens, n_rec, loops) * np.exp(rng.normal(0, 0.003, len(rows)))
    fit = fit_law("isodepth", loss, n_once, tokens, N_rec=n_rec, r=loops, bootstrap=20, max_starts=48)
    lo, hi = fit.ci["phi"]
    assert abs(fit.params["phi"] - 0.46) < 0.03 and lo <= 0.46 <= hi and hi - lo < 0.1
    assert fit.restricted["phi=0"].objective > 3 * fit.objective
    assert fit.restricted["phi=1"].objective > 3 * fit.objective
    assert fit.to_dict()["restricted"]["phi=1"]["params"]["phi"] == 1.0


def test_fit_errors():
    with pytest.raises(ConfigError, match="N_rec"):
        fit_law("isodepth", [3.0] * 8, [1e6] * 8, [1e7] * 8)
    with pytest.raises(ConfigError, match="cannot determine"):
        fit_law("chinchilla", [3.0, 2.9], [1e6, 2e6], [1e7, 1e7])
    with pytest.raises(ConfigError, match="unknown law"):
        fit_law("kaplan", [3.0], [1e6], [1e7])
