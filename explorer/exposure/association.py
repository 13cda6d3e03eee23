"""Exposure-outcome association: a linear mixed model of a daily outcome on an exposure with a
random intercept per person.

.. math:: y_{id} = \\beta_0 + \\beta_1 x_{id} + u_i + \\varepsilon_{id},\\quad
          u_i \\sim N(0, \\sigma_u^2),\\ \\varepsilon_{id} \\sim N(0, \\sigma^2)

fitted by REML (statsmodels ``MixedLM``). The person intercept absorbs each person's own level
(fitness, age, medication), so the slope is learnt from how the same person's outcome moves
with the exposure from day to day. The worked example is daily resting heart rate on the
temperature anomaly at home, the effect ``explorer synth`` plants (``heat_effect_bpm_per_k``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError


@dataclass(frozen=True)
class Association:
    """The exposure slope of :func:`association` with its standard error and 95% confidence interval.

    Attributes
    ----------
    outcome, exposure : str
        The columns fitted.
    slope : float
        Fixed effect of the exposure: outcome units per exposure unit (bpm per K for resting
        heart rate on the temperature anomaly).
    slope_se, ci_low, ci_high : float
        Its standard error and Wald 95% confidence interval (same units).
    p_value : float
        Two-sided Wald p-value of the slope.
    n_obs, n_persons : int
        Rows (person-days) and groups (persons) used.
    person_sd, residual_sd : float
        SD of the person intercepts and of the residuals (outcome units).
    """

    outcome: str
    exposure: str
    slope: float
    slope_se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_obs: int
    n_persons: int
    person_sd: float
    residual_sd: float

    def __str__(self) -> str:
        return (f"{self.outcome} on {self.exposure}: {self.slope:+.3f} per unit (95% CI {self.ci_low:+.3f} to "
                f"{self.ci_high:+.3f}, p = {self.p_value:.2g}); {self.n_obs:,} person-days of {self.n_persons:,} "
                f"persons; person SD {self.person_sd:.2f}, residual SD {self.residual_sd:.2f}")


def association(frame: pd.DataFrame, outcome: str, exposure: str, group: str = "person_id") -> Association:
    """Fit ``outcome ~ exposure + (1 | group)``, a linear mixed model, by REML.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per observation (a person-day).
    outcome : str
        The outcome column (e.g. ``resting_hr``, /min).
    exposure : str
        The exposure column (e.g. ``tas_anomaly``, K).
    group : str, default "person_id"
        The grouping column of the random intercept.

    Returns
    -------
    Association
        The slope in outcome units per exposure unit, its standard error, 95% CI and p-value,
        the counts used and the two SDs. Rows missing the outcome, exposure or group are left
        out.

    Raises
    ------
    explorer.errors.ExplorerError
        A column is missing, or fewer than 3 rows, 2 groups, or an exposure that never varies.

    Notes
    -----
    .. math:: y_{id} = \\beta_0 + \\beta_1 x_{id} + u_i + \\varepsilon_{id},\\quad
              u_i \\sim N(0, \\sigma_u^2),\\ \\varepsilon_{id} \\sim N(0, \\sigma^2)

    fitted by restricted maximum likelihood (statsmodels ``MixedLM``); the slope is
    :math:`\\beta_1`, its interval :math:`\\hat\\beta_1 \\pm 1.96\\,\\mathrm{SE}`,
    ``person_sd`` is :math:`\\hat\\sigma_u` and ``residual_sd`` :math:`\\hat\\sigma`.

    References
    ----------
    Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics.
    1982;38:963-974.
    Seabold S, Perktold J. statsmodels: econometric and statistical modeling with Python. Proc
    9th Python in Science Conf. 2010:92-96.

    Examples
    --------
    Twenty persons with their own resting heart rate, each 0.5 /min higher per K of anomaly:

    >>> import numpy as np, pandas as pd
    >>> from explorer.exposure import association
    >>> rng = np.random.default_rng(0)
    >>> anomaly = rng.normal(0, 3, 600)
    >>> frame = pd.DataFrame({"person_id": np.repeat([f"p{i}" for i in range(20)], 30), "tas_anomaly": anomaly,
    ...                       "resting_hr": np.repeat(rng.normal(60, 5, 20), 30) + 0.5 * anomaly
    ...                                     + rng.normal(0, 1, 600)})
    >>> fit = association(frame, "resting_hr", "tas_anomaly")
    >>> round(fit.slope, 2), fit.ci_low < 0.5 < fit.ci_high, fit.n_obs, fit.n_persons
    (0.5, True, 600, 20)
    """
    import statsmodels.api as sm

    missing = [c for c in (outcome, exposure, group) if c not in frame.columns]
    if missing:
        raise ExplorerError(f"association: column(s) {', '.join(missing)} missing; have {', '.join(frame.columns)}")
    rows = frame[[outcome, exposure, group]].dropna()
    persons = rows[group].nunique()
    if len(rows) < 3 or persons < 2 or rows[exposure].std() == 0:
        raise ExplorerError(f"association: {len(rows)} rows with both {outcome} and {exposure} from {persons} "
                            "person(s), or an exposure that never varies: too little to fit; refresh the "
                            "aggregates (`explorer refresh`) or widen the cohort")
    design = sm.add_constant(rows[[exposure]].to_numpy(dtype=float))
    fit = sm.MixedLM(rows[outcome].to_numpy(dtype=float), design, groups=rows[group].to_numpy()).fit(reml=True)
    slope, se = float(fit.fe_params[1]), float(fit.bse_fe[1])
    low, high = slope - 1.959963984540054 * se, slope + 1.959963984540054 * se  # Wald, normal quantile
    return Association(outcome, exposure, slope, se, low, high, float(fit.pvalues[1]), len(rows), int(persons),
                       float(np.sqrt(np.asarray(fit.cov_re)[0, 0])), float(np.sqrt(fit.scale)))


def resting_hr_on_anomaly(con) -> Association:
    """The worked example: resting heart rate on the temperature anomaly at home.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection with the views ``wearable_daily`` and ``exposure_daily``.

    Returns
    -------
    Association
        :func:`association` of the valid days' ``resting_hr`` (/min) on the same day's
        ``tas_anomaly`` (K) where the residence is known (``residence_status = 'ok'``), one
        random intercept per person: a slope in /min per K.

    Examples
    --------
    >>> print(resting_hr_on_anomaly(lake.connection()))  # doctest: +SKIP
    resting_hr on tas_anomaly: +0.512 per unit (95% CI ...)
    """
    frame = con.execute("""
        SELECT w.person_id, w.resting_hr, e.tas_anomaly
        FROM wearable_daily w JOIN exposure_daily e USING (person_id, date)
        WHERE w.valid_day AND e.residence_status = 'ok'""").df()
    return association(frame, "resting_hr", "tas_anomaly")
