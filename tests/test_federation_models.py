"""The pooling models of federated studies, on published examples and by hand.

- Univariate REML random effects on the BCG vaccine trials (Colditz et al. 1994, metafor's
  ``dat.bcg``): metafor's published ``rma(yi, vi, method="REML")`` result.
- Multivariate random effects on Berkey et al. (1998)'s periodontal trials (``dat.berkey1998``):
  metafor's ML result from its test suite, and REML against the restricted likelihood written out
  and maximised here, by hand, over (tau_1, tau_2, rho).
- GLMs pooled from per-part score and information: equal to statsmodels' fit on the union, and
  unchanged however the rows are split among sites (hypothesis).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from explorer.analysis.meta_analysis import random_effects
from explorer.analysis.regression import glm_sums, newton_from_sums
from explorer.errors import ExplorerError

# tpos, tneg, cpos, cneg of the 13 BCG trials (Colditz et al. 1994; metafor dat.bcg)
BCG = np.array([[4, 119, 11, 128], [6, 300, 29, 274], [3, 228, 11, 209], [62, 13536, 248, 12619], [33, 5036, 47, 5761],
                [180, 1361, 372, 1079], [8, 2537, 10, 619], [505, 87886, 499, 87892], [29, 7470, 45, 7232],
                [17, 1699, 65, 1600], [186, 50448, 141, 27197], [5, 2493, 3, 2338], [27, 16886, 29, 17825]], float)
# Berkey et al. 1998: (PD, AL) effects and their within-trial covariances
BERKEY_Y = np.array([[0.47, -0.32], [0.20, -0.60], [0.40, -0.12], [0.26, -0.31], [0.56, -0.39]])
BERKEY_S = [[[.0075, .0030], [.0030, .0077]], [[.0057, .0009], [.0009, .0008]], [[.0021, .0007], [.0007, .0014]],
            [[.0029, .0009], [.0009, .0015]], [[.0148, .0072], [.0072, .0304]]]


def bcg_log_risk_ratios():
    a, b, c, d = BCG.T
    return np.log((a / (a + b)) / (c / (c + d))), 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)


def test_bcg_reml_equals_metafor_published():
    y, v = bcg_log_risk_ratios()
    fit = random_effects(y, v, method="reml").table().iloc[0]
    # metafor: estimate -0.7145 (SE 0.1798), tau^2 0.3132, I^2 92.22%
    assert fit["estimate"] == pytest.approx(-0.7145, abs=5e-5)
    assert fit["se"] == pytest.approx(0.1798, abs=5e-5)
    assert fit["tau2"] == pytest.approx(0.3132, abs=5e-5)
    assert 100 * fit["i2"] == pytest.approx(92.22, abs=5e-3)


def test_univariate_reml_equals_the_fixed_point_by_hand():
    """Viechtbauer (2005), eq. 10: iterate tau2 <- sum w^2((y - mu)^2 - v) / sum w^2 + 1 / sum w."""
    y, v = bcg_log_risk_ratios()
    tau2 = 0.0
    for _ in range(500):
        w = 1 / (v + tau2)
        mu = (w * y).sum() / w.sum()
        tau2 = max(0.0, (w ** 2 * ((y - mu) ** 2 - v)).sum() / (w ** 2).sum() + 1 / w.sum())
    fit = random_effects(y, v)
    assert fit.tau2.iloc[0] == pytest.approx(tau2, rel=1e-6)
    assert fit.coef.iloc[0] == pytest.approx(mu, rel=1e-6)


def test_berkey_multivariate_ml_equals_metafor():
    fit = random_effects(BERKEY_Y, BERKEY_S, names=["PD", "AL"], method="ml")
    psi = fit.psi.to_numpy()
    # metafor rma.mv(..., struct="UN", method="ML"): coefficients (AL, PD) -0.3379, 0.3448; SE 0.0798, 0.0495;
    # tau^2 0.0261, 0.0070; rho 0.6992
    assert fit.coef["PD"] == pytest.approx(0.3448, abs=5e-5) and fit.coef["AL"] == pytest.approx(-0.3379, abs=5e-5)
    assert fit.se["PD"] == pytest.approx(0.0495, abs=5e-5) and fit.se["AL"] == pytest.approx(0.0798, abs=5e-5)
    assert psi[0, 0] == pytest.approx(0.0070, abs=5e-5) and psi[1, 1] == pytest.approx(0.0261, abs=5e-5)
    assert psi[0, 1] / np.sqrt(psi[0, 0] * psi[1, 1]) == pytest.approx(0.6992, abs=5e-4)


def test_berkey_multivariate_reml_equals_the_likelihood_by_hand():
    Y, S = BERKEY_Y, np.array(BERKEY_S)

    def minus_restricted(theta):
        t1, t2, z = theta
        rho = np.tanh(z)
        psi = np.array([[t1 ** 2, rho * abs(t1 * t2)], [rho * abs(t1 * t2), t2 ** 2]])
        total, information, weighted = 0.0, np.zeros((2, 2)), np.zeros(2)
        for y, s in zip(Y, S):
            w = np.linalg.inv(s + psi)
            total += np.linalg.slogdet(s + psi)[1]
            information += w
            weighted += w @ y
        beta = np.linalg.solve(information, weighted)
        total += sum((y - beta) @ np.linalg.inv(s + psi) @ (y - beta) for y, s in zip(Y, S))
        return 0.5 * (total + np.linalg.slogdet(information)[1])

    best = min((optimize.minimize(minus_restricted, start, method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
                for start in ([0.1, 0.15, 0.5], [0.05, 0.3, 0.0], [0.2, 0.1, 1.0])), key=lambda r: r.fun)
    fit = random_effects(Y, S, names=["PD", "AL"], method="reml")
    t1, t2, z = best.x
    assert fit.log_likelihood == pytest.approx(-best.fun, abs=1e-8)
    assert np.diag(fit.psi.to_numpy()) == pytest.approx([t1 ** 2, t2 ** 2], abs=1e-6)
    # and the published mvmeta REML fit: PD 0.3534 (0.0588), AL -0.3392 (0.0879)
    assert fit.coef.round(4).tolist() == [0.3534, -0.3392]
    assert fit.se.round(4).tolist() == [0.0588, 0.0879]


def test_one_coefficient_multivariate_path_equals_univariate():
    y, v = bcg_log_risk_ratios()
    uni = random_effects(y, v)
    from explorer.analysis import meta_analysis

    multi = meta_analysis._psi(y[:, None], v[:, None, None], "reml")
    assert multi[0, 0] == pytest.approx(uni.tau2.iloc[0], rel=1e-5)


def test_fixed_effect_and_homogeneous_sites():
    fit = random_effects([0.2, 0.4], [0.01, 0.01], method="fixed")
    assert fit.coef.iloc[0] == pytest.approx(0.3) and fit.se.iloc[0] ** 2 == pytest.approx(0.005)
    same = random_effects([0.3, 0.3, 0.3], [0.01, 0.02, 0.03])
    assert same.tau2.iloc[0] == 0.0 and same.i2.iloc[0] == 0.0 and same.q == pytest.approx(0.0)


def test_meta_analysis_refuses_bad_input():
    with pytest.raises(ExplorerError, match="covariance"):
        random_effects([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ExplorerError, match="not finite"):
        random_effects([np.nan, 1.0], [1.0, 1.0])
    with pytest.raises(ExplorerError, match="method"):
        random_effects([1.0], [1.0], method="dl")


# ------------------------------------------------------------------------------------ GLMs
def _data(seed: int, n: int = 900):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(8, 2, n), rng.integers(0, 2, n), rng.normal(50, 12, n)])
    eta = X @ np.array([1.5, -0.35, 0.4, 0.01])
    return X, (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float), eta + rng.normal(0, 1, n)


def _pooled(X, y, family, parts):
    bounds = [0, *sorted(int(p) for p in parts), len(y)]
    pieces = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return newton_from_sums(lambda beta: [glm_sums(x, t, beta, family) for x, t in pieces],
                            ["intercept", "steps", "female", "age"], family)


@pytest.mark.parametrize("family", ["binomial", "gaussian"])
def test_glm_from_site_sums_equals_the_fit_on_the_union(family):
    X, binary, continuous = _data(4)
    y = binary if family == "binomial" else continuous
    fit = _pooled(X, y, family, [250, 600])
    reference = sm.GLM(y, X, family=sm.families.Binomial() if family == "binomial" else sm.families.Gaussian()).fit()
    assert np.abs(fit.coef.to_numpy() - reference.params).max() < 1e-8
    assert np.abs(fit.se.to_numpy() - reference.bse).max() < 1e-8
    assert fit.deviance == pytest.approx(reference.deviance, rel=1e-10)


def test_glm_sums_by_hand():
    sums = glm_sums([[1.0, 0.0], [1.0, 1.0]], [0.0, 1.0], [0.0, 0.0], "binomial")
    # mu = 0.5 for both: score (0 - .5) + (1 - .5) = 0 and .5; information .25 * X'X; deviance 2 * 2 log 2
    assert sums.gradient.tolist() == [0.0, 0.5]
    assert sums.information.tolist() == [[0.5, 0.25], [0.25, 0.25]]
    assert sums.deviance == pytest.approx(4 * np.log(2))
    with pytest.raises(ExplorerError, match="family"):
        glm_sums([[1.0]], [1.0], [0.0], "poisson")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=20, max_value=880), min_size=0, max_size=4, unique=True), st.integers(0, 50))
def test_glm_fit_does_not_depend_on_how_rows_are_split_among_sites(cuts, seed):
    X, y, _ = _data(seed)
    whole = _pooled(X, y, "binomial", [])
    split = _pooled(X, y, "binomial", cuts)
    assert np.abs(whole.coef.to_numpy() - split.coef.to_numpy()).max() < 1e-9
    assert np.abs(whole.vcov.to_numpy() - split.vcov.to_numpy()).max() < 1e-10


def test_glm_that_cannot_converge_says_why():
    X = np.column_stack([np.ones(40), np.r_[np.zeros(20), np.ones(20)]])
    y = np.r_[np.zeros(20), np.ones(20)]  # the covariate separates the outcome perfectly
    with pytest.raises(ExplorerError, match="separate"):
        newton_from_sums(lambda beta: [glm_sums(X, y, beta, "binomial")], ["intercept", "x"], "binomial")
