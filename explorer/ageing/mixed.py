"""A linear mixed model with a random intercept and slope per group, fitted in one vectorised
pass over per-group sufficient statistics.

Model, for group :math:`i` with :math:`n_i` observations :math:`(t_{ij}, y_{ij})`:

.. math::

    y_{ij} = \\beta_0 + \\beta_1 t_{ij} + b_{0i} + b_{1i} t_{ij} + \\varepsilon_{ij},\\quad
    b_i \\sim N(0, D),\\ \\varepsilon_{ij} \\sim N(0, \\sigma^2)

the model of ``statsmodels.MixedLM(y, [1, t], groups, exog_re=[1, t])``. With :math:`D =
\\sigma^2 \\Psi` and :math:`Z_i = X_i = [1, t_i]`, everything the (restricted) likelihood needs
from a group is :math:`A_i = Z_i'Z_i`, :math:`c_i = Z_i'y_i`, :math:`d_i = y_i'y_i` and
:math:`n_i`. Woodbury's identity gives, with :math:`B_i = I + \\Psi A_i` (2 x 2),

.. math::

    X'V^{-1}X = \\sigma^{-2}\\sum_i (A_i - A_i B_i^{-1}\\Psi A_i),\\quad
    \\log|V_i| = n_i\\log\\sigma^2 + \\log|B_i|,

and likewise for :math:`X'V^{-1}y` and :math:`y'V^{-1}y`. :math:`\\sigma^2` and :math:`\\beta`
are profiled out, so one evaluation of the profile (restricted) log-likelihood in the three
parameters of :math:`\\Psi = LL'` is a handful of array operations over the groups, whatever
their sizes: no per-group loop, no N x N matrix. The optimum is found by BFGS and polished by
Newton steps on a numerical Hessian. Time and the outcome are centred and scaled for the fit
(the optimum does not move; a level large against its noise would otherwise cancel in the
quadratic forms) and the results, the log-likelihood included, are transformed back exactly.

Reference: Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics.
1982;38:963-974. Lindstrom MJ, Bates DM. Newton-Raphson and EM algorithms for linear
mixed-effects models for repeated-measures data. JASA. 1988;83:1014-1022.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

_LOG_2PI = np.log(2 * np.pi)


@dataclass
class MixedFit:
    """Result of :func:`ageing_rates`, in the units of its ``value`` and ``time`` columns.

    Attributes
    ----------
    fixed : pandas.Series
        ``intercept`` (value at time 0) and ``slope`` (value per unit of time).
    fixed_se : pandas.Series
        Their standard errors.
    variance : pandas.Series
        ``intercept`` and ``slope``: the random-effect variances (value^2, (value/time)^2);
        ``corr``: their correlation; ``residual``: the residual variance (value^2).
    per_group : pandas.DataFrame
        Indexed by group: ``intercept`` and ``slope``, fixed plus random effects (each group's
        own line, the best linear unbiased predictions), and ``n_obs``.
    log_likelihood : float
        The (restricted) log-likelihood at the optimum, as statsmodels reports it.
    reml : bool
        Whether REML (True) or ML was fitted.
    n_obs, n_groups : int
        Observations and groups used.
    converged : bool
        Whether a Newton step could gain no more and the Hessian is positive definite.
    iterations : int
        Optimiser iterations.
    fixed_cov : pandas.DataFrame
        Covariance matrix of the fixed effects.
    """

    fixed: pd.Series  # intercept, slope
    fixed_se: pd.Series  # intercept, slope
    variance: pd.Series  # intercept, slope (random-effect variances), corr, residual
    per_group: pd.DataFrame  # index: group; intercept, slope (fixed + random); n_obs
    log_likelihood: float
    reml: bool
    n_obs: int
    n_groups: int
    converged: bool
    iterations: int = 0
    fixed_cov: pd.DataFrame = field(default=None, repr=False)

    @property
    def slope_z(self) -> float:
        """Wald z statistic of the fixed slope, ``slope / slope_se``."""
        return float(self.fixed["slope"] / self.fixed_se["slope"])

    @property
    def slope_p_value(self) -> float:
        """Two-sided Wald p-value of the fixed slope (normal reference, as statsmodels)."""
        from scipy.stats import norm

        return float(2 * norm.sf(abs(self.slope_z)))


class _Groups:
    """Per-group sufficient statistics of (1, t) and y, time centred."""

    def __init__(self, group_codes: np.ndarray, t: np.ndarray, y: np.ndarray, n_groups: int):
        count = np.bincount(group_codes, minlength=n_groups).astype(float)
        st = np.bincount(group_codes, weights=t, minlength=n_groups)
        stt = np.bincount(group_codes, weights=t * t, minlength=n_groups)
        sy = np.bincount(group_codes, weights=y, minlength=n_groups)
        sty = np.bincount(group_codes, weights=t * y, minlength=n_groups)
        syy = np.bincount(group_codes, weights=y * y, minlength=n_groups)
        self.a11, self.a12, self.a22 = count, st, stt
        self.c1, self.c2, self.d = sy, sty, syy
        self.n = count
        self.N = float(count.sum())

    def pieces(self, psi: np.ndarray):
        """For Psi (2 x 2): per-group log|B_i| and the sums S_xx (2x2), s_xy (2), s_yy."""
        p11, p12, p22 = psi[0, 0], psi[0, 1], psi[1, 1]
        a11, a12, a22 = self.a11, self.a12, self.a22
        # B = I + Psi A
        b11 = 1 + p11 * a11 + p12 * a12
        b12 = p11 * a12 + p12 * a22
        b21 = p12 * a11 + p22 * a12
        b22 = 1 + p12 * a12 + p22 * a22
        det = b11 * b22 - b12 * b21
        # W = B^{-1} Psi = (Psi^{-1} + A)^{-1}: symmetric
        w11 = (b22 * p11 - b12 * p12) / det
        w12 = (b22 * p12 - b12 * p22) / det
        w22 = (-b21 * p12 + b11 * p22) / det
        # A W A, A W c, c W c
        aw11 = a11 * w11 + a12 * w12
        aw12 = a11 * w12 + a12 * w22
        aw21 = a12 * w11 + a22 * w12
        aw22 = a12 * w12 + a22 * w22
        s11 = (a11 - (aw11 * a11 + aw12 * a12)).sum()
        s12 = (a12 - (aw11 * a12 + aw12 * a22)).sum()
        s22 = (a22 - (aw21 * a12 + aw22 * a22)).sum()
        x1 = (self.c1 - (aw11 * self.c1 + aw12 * self.c2)).sum()
        x2 = (self.c2 - (aw21 * self.c1 + aw22 * self.c2)).sum()
        wc1 = w11 * self.c1 + w12 * self.c2
        wc2 = w12 * self.c1 + w22 * self.c2
        syy = (self.d - (self.c1 * wc1 + self.c2 * wc2)).sum()
        return det, np.array([[s11, s12], [s12, s22]]), np.array([x1, x2]), syy, (w11, w12, w22)


def _psi(theta: np.ndarray) -> np.ndarray:
    lower = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    return lower @ lower.T


def _profile(theta, groups: _Groups, reml: bool) -> float:
    """Minus the profiled (restricted) log-likelihood."""
    det, sxx, sxy, syy, _ = groups.pieces(_psi(theta))
    if np.any(det <= 0):
        return np.inf
    try:
        beta = np.linalg.solve(sxx, sxy)
    except np.linalg.LinAlgError:
        return np.inf
    quadratic = syy - sxy @ beta
    dof = groups.N - (2 if reml else 0)
    if quadratic <= 0:
        return np.inf
    sigma2 = quadratic / dof
    value = -0.5 * (dof * (np.log(sigma2) + 1 + _LOG_2PI) + np.log(det).sum())
    if reml:
        sign, logdet = np.linalg.slogdet(sxx)
        if sign <= 0:
            return np.inf
        value -= 0.5 * logdet
    return -value


def _loglik_free_beta(params, groups: _Groups, reml: bool) -> float:
    """The log-likelihood with sigma^2 profiled out but beta free, as statsmodels' ``loglike``
    (constants left out): its Hessian in (beta, theta) gives the standard errors statsmodels
    reports, which account for the variance parameters being estimated too."""
    beta, theta = params[:2], params[2:]
    det, sxx, _, _, (w11, w12, w22) = groups.pieces(_psi(theta))
    e1 = groups.c1 - (groups.a11 * beta[0] + groups.a12 * beta[1])
    e2 = groups.c2 - (groups.a12 * beta[0] + groups.a22 * beta[1])
    plain = (groups.d - 2 * (beta[0] * groups.c1 + beta[1] * groups.c2)
             + beta[0] ** 2 * groups.a11 + 2 * beta[0] * beta[1] * groups.a12 + beta[1] ** 2 * groups.a22)
    quadratic = (plain - (e1 * (w11 * e1 + w12 * e2) + e2 * (w12 * e1 + w22 * e2))).sum()
    dof = groups.N - (2 if reml else 0)
    value = -0.5 * np.log(det).sum() - 0.5 * dof * np.log(quadratic)
    if reml:
        value -= 0.5 * np.linalg.slogdet(sxx)[1]
    return value


def _numerical_hessian(function, x, step=1e-4):
    """Central differences, a step per parameter scaled to its size."""
    k = len(x)
    steps = step * np.maximum(1.0, np.abs(x))
    hessian = np.zeros((k, k))
    f0 = function(x)
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * steps[i], np.eye(k)[j] * steps[j]
            if i == j:
                hessian[i, i] = (function(x + ei) - 2 * f0 + function(x - ei)) / steps[i] ** 2
            else:
                hessian[i, j] = hessian[j, i] = (function(x + ei + ej) - function(x + ei - ej)
                                                 - function(x - ei + ej) + function(x - ei - ej)) / (4 * steps[i] * steps[j])
    return hessian


def _gradient(function, x, step=1e-5):
    steps = step * np.maximum(1.0, np.abs(x))
    return np.array([(function(x + e) - function(x - e)) / (2 * h) for e, h in zip(np.diag(steps), steps)])


def ageing_rates(frame: pd.DataFrame, value: str, time: str, group: str, reml: bool = True) -> MixedFit:
    """Fit ``value ~ time + (1 + time | group)``, a random intercept and slope per group.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per observation.
    value : str
        The outcome column (a marker, in its unit).
    time : str
        The time column (age in years, say).
    group : str
        The grouping column (person_id).
    reml : bool, default True
        Restricted maximum likelihood; False for maximum likelihood.

    Returns
    -------
    MixedFit
        ``fixed`` and ``fixed_se`` (Series indexed intercept, slope), ``variance`` (Series
        indexed intercept, slope, corr, residual: the two random-effect variances, their
        correlation and the residual variance) and ``per_group`` (DataFrame indexed by group
        with ``intercept`` and ``slope``, fixed plus random effects: each group's own line, the
        best linear unbiased predictions). Units: those of ``value`` and ``time`` (a slope is
        value per unit of time). Rows with a missing value, time or group are left out
        (``n_obs`` says how many were used).

    Raises
    ------
    explorer.errors.ExplorerError
        A column is missing, fewer than 4 observations or 2 groups, a time that never changes,
        or fewer than 2 groups observed at two times or more.

    Notes
    -----
    The model of the module notes,
    :math:`y_{ij} = \\beta_0 + \\beta_1 t_{ij} + b_{0i} + b_{1i} t_{ij} + \\varepsilon_{ij}`,
    :math:`b_i \\sim N(0, D)`, :math:`\\varepsilon_{ij} \\sim N(0, \\sigma^2)`: the fit of
    ``statsmodels.MixedLM(y, [1, t], groups, exog_re=[1, t])`` (same estimates, standard errors
    and log-likelihood), computed from per-group sufficient statistics in one vectorised pass.
    Standard errors come from the Hessian of the log-likelihood in the fixed effects and the
    variance parameters, as statsmodels reports them; the p-value
    (:attr:`MixedFit.slope_p_value`) is the two-sided Wald test with a normal reference.

    References
    ----------
    Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics.
    1982;38:963-974.
    Lindstrom MJ, Bates DM. Newton-Raphson and EM algorithms for linear mixed-effects models for
    repeated-measures data. J Am Stat Assoc. 1988;83:1014-1022.

    Examples
    --------
    Twenty persons, five yearly visits, each with their own level and a rate around 0.5 a year:

    >>> import numpy as np, pandas as pd
    >>> from explorer.ageing import ageing_rates
    >>> rng = np.random.default_rng(0)
    >>> visits = pd.DataFrame({"person_id": np.repeat([f"p{i:02d}" for i in range(20)], 5),
    ...                        "years": np.tile(np.arange(5.0), 20)})
    >>> rate = np.repeat(rng.normal(0.5, 0.2, 20), 5)
    >>> visits["value"] = (100 + np.repeat(rng.normal(0, 5, 20), 5) + rate * visits["years"]
    ...                    + rng.normal(0, 0.5, 100))
    >>> fit = ageing_rates(visits, "value", "years", "person_id")
    >>> round(float(fit.fixed["slope"]), 2), round(float(fit.fixed_se["slope"]), 2), fit.converged, fit.n_obs, fit.n_groups
    (0.46, 0.06, True, 100, 20)
    >>> fit.per_group.round(2).head(2)
           intercept  slope  n_obs
    group
    p00        99.53   0.57      5
    p01       107.16   0.61      5
    """
    from scipy.optimize import minimize

    missing = [c for c in (value, time, group) if c not in frame.columns]
    if missing:
        raise ExplorerError(f"ageing_rates: column(s) {', '.join(missing)} missing; have {', '.join(map(str, frame.columns))}")
    rows = frame[[value, time, group]].dropna()
    y = rows[value].to_numpy(dtype=float)
    t_raw = rows[time].to_numpy(dtype=float)
    codes, labels = pd.factorize(rows[group], sort=True)
    n_groups = len(labels)
    if len(rows) < 4 or n_groups < 2:
        raise ExplorerError(f"ageing_rates: {len(rows)} observations in {n_groups} group(s) of {value!r}: a random "
                            "intercept and slope need at least 2 groups and 4 observations")
    if np.ptp(t_raw) == 0:
        raise ExplorerError(f"ageing_rates: {time!r} never changes, so no slope can be fitted")
    repeated = pd.Series(t_raw).groupby(codes).nunique()
    if (repeated >= 2).sum() < 2:
        raise ExplorerError(f"ageing_rates: {int((repeated >= 2).sum())} group(s) of {value!r} measured at two "
                            "times or more: a random slope needs at least 2 persons with two visits or more")
    centre, scale = float(t_raw.mean()), float(t_raw.std())
    t = (t_raw - centre) / scale  # centred and scaled for the fit; transformed back below
    # the outcome too: a level large against its noise would cancel in y'y - c'Wc otherwise
    y_centre, y_scale = float(y.mean()), float(y.std()) or 1.0
    y = (y - y_centre) / y_scale
    groups = _Groups(codes, t, y, n_groups)

    def objective(theta):
        return _profile(theta, groups, reml)

    start = _start(groups, codes, t, y, n_groups)
    found = minimize(objective, start, method="BFGS", options={"gtol": 1e-9, "maxiter": 500})
    theta, iterations = found.x, found.nit
    decrement = np.inf
    for _ in range(20):  # Newton polish: BFGS stops when the gradient is small, not the step
        gradient = _gradient(objective, theta)
        hessian = _numerical_hessian(objective, theta)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        decrement = float(gradient @ step)  # the Newton decrement: how much a full step would gain
        if not np.isfinite(decrement) or abs(decrement) < 1e-12:
            break
        candidate = theta - step
        if not np.isfinite(objective(candidate)) or objective(candidate) > objective(theta):
            break
        theta = candidate
        iterations += 1
    # converged: what a Newton step could still gain is negligible (the Hessian positive: a minimum)
    converged = bool(np.isfinite(decrement) and abs(decrement) < 1e-8
                     and np.all(np.linalg.eigvalsh(_numerical_hessian(objective, theta)) > 0))
    return _results(theta, groups, codes, labels, reml, (centre, scale), (y_centre, y_scale), objective(theta),
                    converged, iterations)


def _start(groups: _Groups, codes, t, y, n_groups) -> np.ndarray:
    """Moment start: per-group least-squares lines' spread relative to the residual variance."""
    beta = np.linalg.lstsq(np.column_stack([np.ones_like(t), t]), y, rcond=None)[0]
    residual = y - beta[0] - beta[1] * t
    by_group = pd.Series(residual).groupby(codes)
    spread = max(float(by_group.mean().var()), 1e-6)
    noise = max(float(by_group.var().mean()) if len(by_group) else 1.0, 1e-6)
    return np.array([np.sqrt(spread / noise), 0.0, 0.1])


def _results(theta, groups: _Groups, codes, labels, reml, time_shift, value_shift, minus_loglik, converged, iterations):
    centre, scale = time_shift
    y_centre, y_scale = value_shift
    psi = _psi(theta)
    det, sxx, sxy, syy, (w11, w12, w22) = groups.pieces(psi)
    beta = np.linalg.solve(sxx, sxy)
    dof = groups.N - (2 if reml else 0)
    sigma2 = (syy - sxy @ beta) / dof
    # standard errors from the Hessian in (beta, theta), as statsmodels: the beta block of its
    # inverse (whatever parametrisation theta has, at the optimum)
    full = np.r_[beta, theta]
    hessian = _numerical_hessian(lambda x: _loglik_free_beta(x, groups, reml), full)
    try:
        cov_beta = np.linalg.inv(-hessian)[:2, :2]
    except np.linalg.LinAlgError:  # a variance on its boundary: the GLS covariance
        cov_beta = sigma2 * np.linalg.inv(sxx)
    if not np.all(np.isfinite(cov_beta)) or np.any(np.diag(cov_beta) <= 0):
        cov_beta = sigma2 * np.linalg.inv(sxx)
    # BLUPs: b_i = Psi (e_i - A_i W_i e_i), e_i = c_i - A_i beta
    e1 = groups.c1 - (groups.a11 * beta[0] + groups.a12 * beta[1])
    e2 = groups.c2 - (groups.a12 * beta[0] + groups.a22 * beta[1])
    we1, we2 = w11 * e1 + w12 * e2, w12 * e1 + w22 * e2
    r1 = e1 - (groups.a11 * we1 + groups.a12 * we2)
    r2 = e2 - (groups.a12 * we1 + groups.a22 * we2)
    b0 = psi[0, 0] * r1 + psi[0, 1] * r2
    b1 = psi[0, 1] * r1 + psi[1, 1] * r2
    # back to the original time and value: t = centre + scale * u and y = y_centre + y_scale * v,
    # so on t the line is y_centre + y_scale ((beta0 - beta1 centre / scale) + (beta1 / scale) t),
    # and the same for each group's effects
    back = np.array([[1.0, -centre / scale], [0.0, 1.0 / scale]])
    fixed = y_scale * (back @ beta) + np.array([y_centre, 0.0])
    fixed_cov = y_scale ** 2 * (back @ cov_beta @ back.T)
    d = y_scale ** 2 * (back @ (sigma2 * psi) @ back.T)
    intercepts = y_centre + y_scale * (back[0] @ beta + b0 - b1 * centre / scale)
    slopes = y_scale * (back[1] @ beta + b1 / scale)
    sigma2 = y_scale ** 2 * sigma2
    # the likelihood of the data as given (statsmodels' loglike to 1e-12): the density of y scales
    # by 1 / y_scale per observation, per error contrast for REML, whose log|X'V^-1 X| term also
    # moves with the scale of time
    n = groups.N
    if reml:
        log_likelihood = -minus_loglik - (n - 2) * np.log(y_scale) - np.log(scale)
    else:
        log_likelihood = -minus_loglik - n * np.log(y_scale)
    index = pd.Index(labels, name="group")
    names = ["intercept", "slope"]
    return MixedFit(
        fixed=pd.Series(fixed, index=names), fixed_se=pd.Series(np.sqrt(np.diag(fixed_cov)), index=names),
        variance=pd.Series({"intercept": d[0, 0], "slope": d[1, 1],
                            "corr": d[0, 1] / np.sqrt(d[0, 0] * d[1, 1]) if d[0, 0] > 0 and d[1, 1] > 0 else np.nan,
                            "residual": sigma2}),
        per_group=pd.DataFrame({"intercept": intercepts, "slope": slopes, "n_obs": groups.n.astype(int)}, index=index),
        log_likelihood=float(log_likelihood), reml=reml, n_obs=int(groups.N),
        n_groups=len(labels), converged=converged, iterations=int(iterations),
        fixed_cov=pd.DataFrame(fixed_cov, index=names, columns=names))
