"""Two-stage random-effects meta-analysis of per-site estimates, univariate or multivariate.

Each site :math:`i` reports an estimate :math:`y_i` (a vector of :math:`k` coefficients: a
marker's ageing rate, the distributed-lag coefficients of a heat-response model) and its
covariance :math:`S_i`. The random-effects model is

.. math::

    y_i \\sim N(\\beta, S_i + \\Psi)

with between-site covariance :math:`\\Psi` (:math:`\\tau^2` when :math:`k = 1`). For a given
:math:`\\Psi`, with :math:`W_i = (S_i + \\Psi)^{-1}`,

.. math::

    \\hat\\beta = \\Big(\\sum_i W_i\\Big)^{-1} \\sum_i W_i y_i,\\quad
    \\mathrm{Cov}(\\hat\\beta) = \\Big(\\sum_i W_i\\Big)^{-1}

and :math:`\\Psi` maximises the restricted log-likelihood

.. math::

    \\ell_R(\\Psi) = -\\tfrac12\\Big[\\sum_i \\log|S_i + \\Psi| + \\log\\Big|\\sum_i W_i\\Big|
                     + \\sum_i (y_i - \\hat\\beta)' W_i (y_i - \\hat\\beta)\\Big]

(the maximum likelihood version drops the middle term). :math:`\\Psi = LL'` is searched over its
Cholesky factor, so it stays positive semi-definite; with one coefficient :math:`\\tau^2 \\ge 0`
is searched directly on a bounded interval.

Heterogeneity: Cochran's :math:`Q = \\sum_i (y_i - \\bar y)' S_i^{-1} (y_i - \\bar y)` about the
fixed-effect estimate, on :math:`(n - 1)k` degrees of freedom, and for each coefficient
:math:`I^2 = \\hat\\tau^2 / (\\hat\\tau^2 + s^2)` with the typical within-site variance
:math:`s^2 = (n - 1)\\sum w_i / ((\\sum w_i)^2 - \\sum w_i^2)`, :math:`w_i = 1/S_{i,jj}`
(Higgins & Thompson 2002, as metafor reports it).

References
----------
Viechtbauer W. Bias and efficiency of meta-analytic variance estimators in the random-effects
model. J Educ Behav Stat. 2005;30:261-293. Jackson D, Riley R, White IR. Multivariate
meta-analysis: potential and promise. Stat Med. 2011;30:2481-2498. Gasparrini A, Armstrong B,
Kenward MG. Multivariate meta-analysis for non-linear and other multi-parameter associations.
Stat Med. 2012;31:3821-3839. Higgins JPT, Thompson SG. Quantifying heterogeneity in a
meta-analysis. Stat Med. 2002;21:1539-1558.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from explorer.errors import ExplorerError

METHODS = ("reml", "ml", "fixed")


@dataclass(frozen=True)
class MetaAnalysis:
    """A pooled estimate and its heterogeneity.

    Attributes
    ----------
    coef : pandas.Series
        Pooled coefficients :math:`\\hat\\beta`.
    vcov : pandas.DataFrame
        Their covariance :math:`(\\sum W_i)^{-1}`.
    psi : pandas.DataFrame
        Between-site covariance :math:`\\hat\\Psi` (``tau2`` is its diagonal).
    q, q_df, q_p : float
        Cochran's Q, its degrees of freedom and p-value.
    sites : pandas.DataFrame
        Each site's estimate and standard error, long (site, coefficient, estimate, se).
    method : str
        ``reml``, ``ml`` or ``fixed``.
    log_likelihood : float
        The maximised (restricted) log-likelihood, constants left out.
    """

    coef: pd.Series
    vcov: pd.DataFrame
    psi: pd.DataFrame
    q: float
    q_df: int
    q_p: float
    sites: pd.DataFrame = field(repr=False)
    method: str = "reml"
    log_likelihood: float = float("nan")

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.coef.index)

    @property
    def tau2(self) -> pd.Series:
        return pd.Series(np.diag(self.psi.to_numpy()), index=self.coef.index)

    @property
    def i2(self) -> pd.Series:
        """Per coefficient, the share of the total variance that lies between sites (0..1)."""
        out = {}
        for j, name in enumerate(self.coef.index):
            rows = self.sites[self.sites["coefficient"] == name]
            w = 1.0 / rows["se"].to_numpy(float) ** 2
            n = len(w)
            typical = (n - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum()) if n > 1 else np.nan
            tau2 = self.psi.iat[j, j]
            out[name] = tau2 / (tau2 + typical) if n > 1 and tau2 + typical > 0 else 0.0
        return pd.Series(out)

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """coefficient, estimate, se, lower, upper, z, p, tau2, i2."""
        z = stats.norm.ppf(0.5 + level / 2)
        se = self.se
        return pd.DataFrame({"coefficient": self.coef.index, "estimate": self.coef.to_numpy(), "se": se.to_numpy(),
                             "lower": (self.coef - z * se).to_numpy(), "upper": (self.coef + z * se).to_numpy(),
                             "z": (self.coef / se).to_numpy(), "p": 2 * stats.norm.sf(np.abs((self.coef / se).to_numpy())),
                             "tau2": self.tau2.to_numpy(), "i2": self.i2.to_numpy()})


def random_effects(estimates, covariances, *, sites=None, names=None, method: str = "reml") -> MetaAnalysis:
    """Pool per-site estimates by a random-effects model (the module notes give the model).

    Parameters
    ----------
    estimates : sequence of array-like
        One vector of ``k`` coefficients per site (a scalar for ``k = 1``).
    covariances : sequence of array-like
        Each site's ``k x k`` covariance (a variance for ``k = 1``).
    sites, names : sequence of str, optional
        Site labels and coefficient names.
    method : {"reml", "ml", "fixed"}
        How :math:`\\Psi` is estimated; ``fixed`` sets it to 0 (the fixed-effect model).

    Returns
    -------
    MetaAnalysis

    Examples
    --------
    Two sites, one coefficient, equal variances: the pooled estimate is their mean.

    >>> fit = random_effects([0.2, 0.4], [0.01, 0.01], method="fixed")
    >>> round(float(fit.coef.iloc[0]), 6), round(float(fit.se.iloc[0]) ** 2, 6)
    (0.3, 0.005)
    """
    if method not in METHODS:
        raise ExplorerError(f"meta-analysis method {method!r}; expected one of {', '.join(METHODS)}")
    y = [np.atleast_1d(np.asarray(e, dtype=float)) for e in estimates]
    if not y:
        raise ExplorerError("meta-analysis of no sites: at least one estimate is needed")
    k = len(y[0])
    S = [np.asarray(c, dtype=float) for c in covariances]
    if len(S) != len(y) or any(len(v) != k for v in y) or any(s.size != k * k for s in S):
        raise ExplorerError(f"meta-analysis: {len(y)} estimates and {len(S)} covariances; each site needs a vector of "
                            f"{k} coefficients and a {k} x {k} covariance")
    S = [s.reshape(k, k) for s in S]
    if not all(np.all(np.isfinite(v)) for v in y) or not all(np.all(np.isfinite(s)) for s in S):
        raise ExplorerError("meta-analysis: a site's estimate or covariance is not finite")
    sites = list(sites) if sites is not None else [f"site {i + 1}" for i in range(len(y))]
    names = list(names) if names is not None else ([f"b{j + 1}" for j in range(k)] if k > 1 else ["estimate"])
    Y, S = np.stack(y), np.stack(S)
    n = len(Y)

    fixed_beta, _ = _pooled(Y, S, np.zeros((k, k)))
    q = float(sum((Y[i] - fixed_beta) @ np.linalg.solve(S[i], Y[i] - fixed_beta) for i in range(n)))
    q_df = (n - 1) * k

    if method == "fixed" or n == 1:
        psi = np.zeros((k, k))
    elif k == 1:
        psi = _tau2(Y, S, method)
    else:
        psi = _psi(Y, S, method)
    beta, vcov = _pooled(Y, S, psi)
    long = pd.DataFrame([{"site": s, "coefficient": name, "estimate": Y[i, j], "se": float(np.sqrt(S[i, j, j]))}
                         for i, s in enumerate(sites) for j, name in enumerate(names)])
    return MetaAnalysis(pd.Series(beta, index=names), pd.DataFrame(vcov, index=names, columns=names),
                        pd.DataFrame(psi, index=names, columns=names), q, q_df,
                        float(stats.chi2.sf(q, q_df)) if q_df > 0 else np.nan, long, method,
                        -_objective(Y, S, psi, method) if method != "fixed" else np.nan)


def _pooled(Y: np.ndarray, S: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W = np.linalg.inv(S + psi)
    information = W.sum(axis=0)
    vcov = np.linalg.inv(information)
    return vcov @ np.einsum("ijk,ik->j", W, Y), vcov


def _objective(Y: np.ndarray, S: np.ndarray, psi: np.ndarray, method: str) -> float:
    """Minus the (restricted) log-likelihood at ``psi``, constants left out."""
    total = S + psi
    signs, logdets = np.linalg.slogdet(total)
    if np.any(signs <= 0):
        return np.inf
    W = np.linalg.inv(total)
    information = W.sum(axis=0)
    beta = np.linalg.solve(information, np.einsum("ijk,ik->j", W, Y))
    residual = Y - beta
    value = logdets.sum() + np.einsum("ij,ijk,ik->", residual, W, residual)
    if method == "reml":
        value += np.linalg.slogdet(information)[1]
    return 0.5 * float(value)


def _tau2(Y: np.ndarray, S: np.ndarray, method: str) -> np.ndarray:
    """:math:`\\tau^2` on ``[0, upper]`` by Brent's bounded search, 0 kept when it is better."""
    spread = float(np.var(Y[:, 0], ddof=1)) if len(Y) > 1 else 0.0
    upper = 10 * max(spread, float(S[:, 0, 0].max()), 1e-12)

    def objective(t):
        return _objective(Y, S, np.array([[t]]), method)

    best = optimize.minimize_scalar(objective, bounds=(0.0, upper), method="bounded",
                                    options={"xatol": 1e-12 * max(upper, 1e-12), "maxiter": 500})
    tau2 = float(best.x) if objective(best.x) < objective(0.0) else 0.0
    return np.array([[tau2]])


def _psi(Y: np.ndarray, S: np.ndarray, method: str) -> np.ndarray:
    """:math:`\\Psi = LL'` over the lower triangle of ``L``, started from the spread of the estimates
    less the mean within-site covariance (its positive part)."""
    k = Y.shape[1]
    rows, cols = np.tril_indices(k)
    moment = np.cov(Y.T, ddof=1) - S.mean(axis=0) if len(Y) > 1 else np.zeros((k, k))
    values, vectors = np.linalg.eigh((moment + moment.T) / 2)
    start = vectors @ np.diag(np.clip(values, 0, None)) @ vectors.T + 1e-4 * np.diag(np.diag(S.mean(axis=0)))
    start_l = np.linalg.cholesky(start + 1e-12 * np.eye(k))[rows, cols]

    def psi_of(theta):
        factor = np.zeros((k, k))
        factor[rows, cols] = theta
        return factor @ factor.T

    def objective(theta):
        return _objective(Y, S, psi_of(theta), method)

    best = None
    for first in (start_l, np.zeros_like(start_l) + 1e-3 * start_l):
        fit = optimize.minimize(objective, first, method="BFGS", options={"gtol": 1e-10, "maxiter": 2000})
        fit = optimize.minimize(objective, fit.x, method="Nelder-Mead",
                                options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 20000, "maxfev": 40000})
        if best is None or fit.fun < best.fun:
            best = fit
    psi = psi_of(best.x)
    return psi if objective(best.x) < _objective(Y, S, np.zeros((k, k)), method) else np.zeros((k, k))
