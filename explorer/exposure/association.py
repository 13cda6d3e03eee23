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
    """The exposure slope with its standard error and 95% confidence interval."""

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
    """Fit ``outcome ~ exposure + (1 | group)`` by REML on the rows where both are known."""
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
    """The worked example: valid days' resting heart rate (``wearable_daily``) on the day's
    temperature anomaly at home (``exposure_daily``), one random intercept per person."""
    frame = con.execute("""
        SELECT w.person_id, w.resting_hr, e.tas_anomaly
        FROM wearable_daily w JOIN exposure_daily e USING (person_id, date)
        WHERE w.valid_day AND e.residence_status = 'ok'""").df()
    return association(frame, "resting_hr", "tas_anomaly")
