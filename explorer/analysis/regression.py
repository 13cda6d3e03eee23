"""The two regressions the distributed-lag models are fitted with: a quasi-Poisson GLM for daily
counts and a linear mixed model with a random intercept per person for person-level daily outcomes.

The mixed model is fitted by restricted maximum likelihood from sufficient statistics, so a year of
person-days for thousands of persons costs one pass over the design matrix and a one-dimensional
search. For group :math:`i` with :math:`n_i` rows,

.. math::

    y_i = X_i\\beta + u_i 1 + \\varepsilon_i,\\quad u_i \\sim N(0, \\psi\\sigma^2),\\
    \\varepsilon_i \\sim N(0, \\sigma^2 I)

so :math:`V_i = \\sigma^2 (I + \\psi J)` and :math:`V_i^{-1} = \\sigma^{-2}(I - w_i J)` with
:math:`w_i = \\psi / (1 + \\psi n_i)`. With :math:`s_i = X_i'1` and :math:`t_i = y_i'1`,

.. math::

    M = X'X - \\sum_i w_i s_i s_i',\\quad m = X'y - \\sum_i w_i t_i s_i,\\quad
    q = y'y - \\sum_i w_i t_i^2

give :math:`\\hat\\beta = M^{-1} m`, :math:`\\mathrm{RSS} = q - m'\\hat\\beta`,
:math:`\\hat\\sigma^2 = \\mathrm{RSS}/(N - p)` and the profile restricted log-likelihood

.. math::

    \\ell_R(\\psi) = -\\tfrac12\\left[(N - p)(\\log\\hat\\sigma^2 + 1) + \\sum_i \\log(1 + \\psi n_i)
                    + \\log|M| + (N - p)\\log 2\\pi\\right]

maximised over :math:`\\log\\psi`. :math:`\\mathrm{Cov}(\\hat\\beta) = \\hat\\sigma^2 M^{-1}`, as
statsmodels' ``MixedLM`` reports for the same model.

References
----------
Harville DA. Maximum likelihood approaches to variance component estimation and to related
problems. JASA. 1977;72:320-338. Laird NM, Ware JH. Random-effects models for longitudinal data.
Biometrics. 1982;38:963-974.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from explorer.errors import ExplorerError


@dataclass(frozen=True)
class LinearFit:
    """Coefficients and their covariance from :func:`random_intercept` or :func:`quasi_poisson`.

    Attributes
    ----------
    coef : pandas.Series
        Fixed effects by column name.
    vcov : pandas.DataFrame
        Their covariance matrix.
    n_obs : int
        Rows used.
    n_groups : int
        Persons (random intercept) or 1 (GLM).
    scale : float
        Residual variance (mixed model) or the Pearson dispersion (quasi-Poisson).
    group_variance : float
        Variance of the person intercepts (mixed model); 0 for the GLM.
    log_likelihood : float
        Restricted log-likelihood (mixed model) or the Poisson log-likelihood (GLM).
    """

    coef: pd.Series
    vcov: pd.DataFrame
    n_obs: int
    n_groups: int
    scale: float
    group_variance: float
    log_likelihood: float

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.coef.index)


def random_intercept(X: pd.DataFrame, y, groups, levels=None) -> LinearFit:
    """Fit :math:`y = X\\beta + \\gamma_{\\ell} + u_{g} + \\varepsilon` by REML (the module notes give the algebra).

    Parameters
    ----------
    X : pandas.DataFrame
        The fixed-effect design, an intercept column included. Rows with a missing value in
        ``X``, ``y`` or ``groups`` must be removed by the caller.
    y : array-like
        The outcome.
    groups : array-like
        The person of each row.
    levels : array-like, optional
        A categorical fixed effect :math:`\\gamma_\\ell` with many levels (the calendar day of a
        person-day panel), entered as indicators of every level but the first without forming them:
        its blocks of :math:`X'X` are per-level sums and counts.

    Returns
    -------
    LinearFit
        The coefficients of ``X`` (the level effects are estimated but not returned).
    """
    names = list(X.columns)
    design = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    codes, uniques = pd.factorize(np.asarray(groups))
    n, p = design.shape
    counts = np.bincount(codes).astype(float)
    sums_x = np.zeros((len(uniques), p))
    _group_sums(design, codes, sums_x)
    sums_y = np.bincount(codes, weights=y)
    xtx, xty, yty = design.T @ design, design.T @ y, float(y @ y)
    if levels is not None:
        xtx, xty, sums_x = _with_levels(design, y, codes, len(uniques), np.asarray(levels), xtx, xty, sums_x)
    if n <= xtx.shape[0]:
        raise ExplorerError(f"mixed model: {n} rows for {xtx.shape[0]} coefficients; the model needs more rows than coefficients")
    _require_full_rank(xtx, names)

    def parts(log_psi: float):
        psi = np.exp(log_psi)
        w = psi / (1 + psi * counts)
        m_mat = xtx - (sums_x * w[:, None]).T @ sums_x
        m_vec = xty - sums_x.T @ (w * sums_y)
        q = yty - float(np.sum(w * sums_y ** 2))
        return psi, m_mat, m_vec, q

    def negative_reml(log_psi: float) -> float:
        psi, m_mat, m_vec, q = parts(log_psi)
        sign, log_det = np.linalg.slogdet(m_mat)
        if sign <= 0:
            return np.inf
        beta = np.linalg.solve(m_mat, m_vec)
        rss = q - m_vec @ beta
        if rss <= 0:
            return np.inf
        dof = n - len(m_vec)
        return 0.5 * (dof * (np.log(rss / dof) + 1 + np.log(2 * np.pi)) + np.sum(np.log1p(psi * counts)) + log_det)

    best = optimize.minimize_scalar(negative_reml, bounds=(-20.0, 10.0), method="bounded", options={"xatol": 1e-9})
    psi, m_mat, m_vec, q = parts(best.x)
    beta = np.linalg.solve(m_mat, m_vec)
    sigma2 = (q - m_vec @ beta) / (n - len(m_vec))
    vcov = sigma2 * np.linalg.inv(m_mat)[:p, :p]
    return LinearFit(pd.Series(beta[:p], index=names), pd.DataFrame(vcov, index=names, columns=names), n, len(uniques),
                     float(sigma2), float(psi * sigma2), float(-best.fun))


def _with_levels(design, y, codes, n_groups, levels, xtx, xty, sums_x):
    """Append the indicators of ``levels`` (all but the first) to the sufficient statistics."""
    level_codes, _ = pd.factorize(levels, sort=True)
    n_levels = int(level_codes.max()) + 1
    per_level = np.zeros((n_levels, design.shape[1]))
    _group_sums(design, level_codes, per_level)
    level_counts = np.bincount(level_codes, minlength=n_levels).astype(float)
    level_y = np.bincount(level_codes, weights=y, minlength=n_levels)
    cross = per_level[1:].T  # X'D: p x (levels - 1)
    top = np.hstack([xtx, cross])
    bottom = np.hstack([cross.T, np.diag(level_counts[1:])])
    group_level = np.zeros((n_groups, n_levels))
    np.add.at(group_level, (codes, level_codes), 1.0)
    return np.vstack([top, bottom]), np.concatenate([xty, level_y[1:]]), np.hstack([sums_x, group_level[:, 1:]])


def _require_full_rank(xtx: np.ndarray, names: list[str]) -> None:
    """Refuse a design whose columns are zero on every row or collinear, naming them."""
    diagonal = np.diag(xtx)
    empty = [names[i] if i < len(names) else f"level {i - len(names) + 2}" for i in np.flatnonzero(diagonal <= 0)]
    if empty:
        raise ExplorerError(f"model design: column(s) {empty[:5]} are zero on every row fitted; drop them")
    scale = np.sqrt(diagonal)
    if np.linalg.matrix_rank(xtx / np.outer(scale, scale), tol=1e-10) < len(diagonal):
        raise ExplorerError("model design: its columns are collinear (one is a combination of others, e.g. a covariate "
                            "constant within the rows fitted, or day of week beside day effects); drop one")


def _group_sums(design: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    for j in range(design.shape[1]):
        out[:, j] = np.bincount(codes, weights=design[:, j], minlength=out.shape[0])


def quasi_poisson(X: pd.DataFrame, counts) -> LinearFit:
    """A Poisson GLM with log link and the Pearson dispersion (quasi-Poisson), by statsmodels.

    The standard errors are the Poisson ones times :math:`\\sqrt{\\phi}`, :math:`\\phi = X^2 / (n - p)`,
    as R's ``glm(family = quasipoisson)`` reports them.
    """
    import statsmodels.api as sm

    counts = np.asarray(counts, dtype=float)
    if np.any(counts < 0):
        raise ExplorerError("quasi-Poisson model: the outcome has negative values; expected counts (0, 1, 2, ...)")
    result = sm.GLM(counts, np.asarray(X, dtype=float), family=sm.families.Poisson()).fit(scale="X2")
    names = list(X.columns)
    return LinearFit(pd.Series(result.params, index=names), pd.DataFrame(result.cov_params(), index=names, columns=names),
                     int(result.nobs), 1, float(result.scale), 0.0, float(result.llf))


# ---------------------------------------------------------------- GLMs pooled from per-site sums
GLM_FAMILIES = ("gaussian", "binomial")


@dataclass(frozen=True)
class GlmSums:
    """What one site returns for a GLM at coefficients :math:`\\beta`: the score
    :math:`X'(y - \\mu)`, the information :math:`X'WX`, the deviance and the number of rows. Sums
    over sites are the whole data's, so Newton's method on them is the fit on the union."""

    gradient: np.ndarray
    information: np.ndarray
    deviance: float
    n: int


def glm_sums(X, y, beta, family: str) -> GlmSums:
    """Score, information and deviance of a GLM with canonical link at ``beta``.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Design, intercept column included.
    y : array-like
        Outcome: any real (``gaussian``) or 0/1 (``binomial``).
    beta : array-like, shape (p,)
    family : {"gaussian", "binomial"}

    Returns
    -------
    GlmSums

    Notes
    -----
    Gaussian (identity link): :math:`X'(y - X\\beta)`, :math:`X'X` and the residual sum of squares.
    Binomial (logit link): with :math:`\\mu = 1/(1 + e^{-X\\beta})`, :math:`X'(y - \\mu)`,
    :math:`X'\\mathrm{diag}(\\mu(1 - \\mu))X` and
    :math:`-2\\sum [y\\log\\mu + (1 - y)\\log(1 - \\mu)]` (McCullagh & Nelder 1989, ch. 2 and 4).

    Examples
    --------
    >>> sums = glm_sums([[1.0, 0.0], [1.0, 1.0]], [1.0, 3.0], [0.0, 0.0], "gaussian")
    >>> sums.gradient.tolist(), sums.deviance
    ([4.0, 3.0], 10.0)
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    eta = X @ np.asarray(beta, dtype=float)
    if family == "gaussian":
        residual = y - eta
        return GlmSums(X.T @ residual, X.T @ X, float(residual @ residual), len(y))
    if family == "binomial":
        mu = 1.0 / (1.0 + np.exp(-eta))
        weight = mu * (1.0 - mu)
        # log(1 + e^eta) - y * eta, computed without overflow, is minus the Bernoulli log-likelihood
        deviance = 2.0 * float(np.sum(np.logaddexp(0.0, eta) - y * eta))
        return GlmSums(X.T @ (y - mu), (X * weight[:, None]).T @ X, deviance, len(y))
    raise ExplorerError(f"GLM family {family!r}; expected one of {', '.join(GLM_FAMILIES)}")


@dataclass(frozen=True)
class GlmFit:
    """A GLM fitted by Newton's method on summed :class:`GlmSums`.

    Attributes
    ----------
    coef : pandas.Series
    vcov : pandas.DataFrame
        :math:`\\phi (\\sum X'WX)^{-1}`, with :math:`\\phi` = RSS / (N - p) (gaussian) or 1 (binomial).
    n_obs : int
    deviance : float
    iterations : int
        Newton steps taken (each one round of requests to every site).
    family : str
    """

    coef: pd.Series
    vcov: pd.DataFrame
    n_obs: int
    deviance: float
    iterations: int
    family: str

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.coef.index)


def newton_from_sums(evaluate, names, family: str, *, tolerance: float = 1e-10, max_iterations: int = 30) -> GlmFit:
    """Fit a GLM from sums: ``evaluate(beta)`` returns the :class:`GlmSums` of every part of the
    data (sites) at ``beta``; their sums drive Newton's method, :math:`\\beta \\leftarrow \\beta +
    (\\sum X'WX)^{-1}\\sum X'(y - \\mu)`, until no coefficient moves more than ``tolerance``.

    Parameters
    ----------
    evaluate : callable
        ``beta (numpy.ndarray) -> list of GlmSums``.
    names : sequence of str
        Coefficient names.
    family : {"gaussian", "binomial"}

    Returns
    -------
    GlmFit
        The same coefficients and covariance as the fit on the pooled rows.

    References
    ----------
    Wolfson M, Wallace SE, Masca N, et al. DataSHIELD: resolving a conflict in contemporary
    bioscience. Int J Epidemiol. 2010;39:1372-1382 (the distributed GLM by summed score and
    information).
    """
    if family not in GLM_FAMILIES:
        raise ExplorerError(f"GLM family {family!r}; expected one of {', '.join(GLM_FAMILIES)}")
    names = list(names)
    beta = np.zeros(len(names))
    for iteration in range(1, max_iterations + 1):
        parts = evaluate(beta)
        gradient = sum(p.gradient for p in parts)
        information = sum(p.information for p in parts)
        _require_full_rank(information, names)
        step = np.linalg.solve(information, gradient)
        beta = beta + step
        if np.max(np.abs(step)) < tolerance * (1 + np.max(np.abs(beta))):
            break
    else:
        raise ExplorerError(f"GLM did not converge in {max_iterations} Newton steps (last step {np.max(np.abs(step)):.3g}); "
                            "a covariate may separate the outcome perfectly: drop it or merge its levels")
    parts = evaluate(beta)
    information = sum(p.information for p in parts)
    n = sum(p.n for p in parts)
    deviance = float(sum(p.deviance for p in parts))
    dispersion = deviance / (n - len(names)) if family == "gaussian" else 1.0
    vcov = dispersion * np.linalg.inv(information)
    return GlmFit(pd.Series(beta, index=names), pd.DataFrame(vcov, index=names, columns=names), n, deviance,
                  iteration, family)
