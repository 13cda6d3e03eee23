"""Time-stratified case-crossover: each event's exposure compared with the same person's exposure
on referent days of the same year, month and day of week.

Each case day :math:`c` of person :math:`i` forms a stratum with its referents
:math:`R(c) = \\{d \\ne c: \\mathrm{year}(d) = \\mathrm{year}(c),\\ \\mathrm{month}(d) = \\mathrm{month}(c),\\
\\mathrm{weekday}(d) = \\mathrm{weekday}(c)\\}` (3 or 4 days), which removes confounding by
anything fixed in the person, by long-term trend, season and day of week, and avoids the
overlap bias of other referent schemes. Conditional logistic regression maximises

.. math::

    \\ell(\\beta) = \\sum_{s} \\left[ x_{c_s}'\\beta - \\log \\sum_{d \\in \\{c_s\\} \\cup R(c_s)} e^{x_d'\\beta} \\right]

with :math:`x_d` the exposure on day :math:`d` minus each lag (or its mean over a lag window), so
:math:`e^{\\beta}` is the odds ratio per unit of exposure (statsmodels' ``ConditionalLogit``).

References
----------
Maclure M. The case-crossover design: a method for studying transient effects on the risk of acute
events. Am J Epidemiol. 1991;133:144-153. Janes H, Sheppard L, Lumley T. Case-crossover analyses
of air pollution exposure data: referent selection strategies and their implications for bias.
Epidemiology. 2005;16:717-726.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from explorer.analysis.dlnm import exposure_history
from explorer.errors import ExplorerError


def time_stratified_referents(events: pd.DataFrame, person: str = "person_id", date: str = "date") -> pd.DataFrame:
    """The case day and its referents (same year, month and weekday) for every event.

    Parameters
    ----------
    events : pandas.DataFrame
        One row per event: the person and the event's date.

    Returns
    -------
    pandas.DataFrame
        ``stratum`` (one per event), ``person``, ``date`` and ``case`` (True on the event's day).
    """
    missing = [c for c in (person, date) if c not in events]
    if missing:
        raise ExplorerError(f"case-crossover: column(s) {missing} not in the events; it has {list(events.columns)}")
    days = pd.to_datetime(events[date]).dt.normalize()
    if days.isna().any():
        bad = int(np.flatnonzero(days.isna().to_numpy())[0])
        raise ExplorerError(f"case-crossover: event row {bad} has no {date!r}; every event needs its date")
    month_start = days.dt.to_period("M").dt.start_time
    weekday = days.dt.day_of_week
    first = month_start + pd.to_timedelta((weekday - month_start.dt.day_of_week) % 7, unit="D")
    rows = []
    for k in range(5):
        candidate = first + pd.to_timedelta(7 * k, unit="D")
        keep = candidate.dt.month == days.dt.month
        rows.append(pd.DataFrame({"stratum": np.arange(len(events))[keep.to_numpy()],
                                  person: events[person].to_numpy()[keep.to_numpy()],
                                  date: candidate[keep].to_numpy(),
                                  "case": (candidate == days)[keep].to_numpy()}))
    out = pd.concat(rows, ignore_index=True).sort_values(["stratum", date], kind="stable").reset_index(drop=True)
    return out


@dataclass(frozen=True)
class CaseCrossover:
    """Odds ratios of :func:`case_crossover`.

    Attributes
    ----------
    table : pandas.DataFrame
        Per term: ``coef`` (log odds ratio per exposure unit), ``se``, ``odds_ratio``, ``low``, ``high``
        (95% CI), ``p``.
    n_events : int
        Strata used (events with their exposure known on the case day and at least one referent).
    n_dropped : int
        Events left out, and why is in ``dropped``.
    dropped : pandas.Series
        Reason by event row.
    """

    table: pd.DataFrame
    n_events: int
    n_dropped: int
    dropped: pd.Series


def case_crossover(events: pd.DataFrame, exposures: pd.DataFrame, exposure: str, lags=(0,), person: str = "person_id",
                   date: str = "date", window_mean: bool = False, exposure_person: str | None = None) -> CaseCrossover:
    """Time-stratified case-crossover by conditional logistic regression.

    Parameters
    ----------
    events : pandas.DataFrame
        One row per event (person, date).
    exposures : pandas.DataFrame
        Daily exposure per person (``person``, ``date``, ``exposure``), e.g. ``exposure_daily``.
    exposure : str
        The exposure column.
    lags : sequence of int, default (0,)
        Lags in days: one term per lag (``exposure_lag2``), or with ``window_mean`` one term, the
        mean over the lags (``exposure_lag0_2``).
    window_mean : bool, default False
    exposure_person : str, optional
        The person column of ``exposures`` when it differs from ``person``.

    Returns
    -------
    CaseCrossover
        Events whose case day or all referents lack the exposure are left out and counted.
    """
    from statsmodels.discrete.conditional_models import ConditionalLogit

    exposure_person = exposure_person or person
    for column in (exposure_person, date, exposure):
        if column not in exposures:
            raise ExplorerError(f"case-crossover: column {column!r} not in the exposures; it has {list(exposures.columns)}")
    lags = [int(lag) for lag in lags]
    design = time_stratified_referents(events, person, date)
    daily = exposures[[exposure_person, date, exposure]].rename(columns={exposure_person: person})
    daily = daily.assign(**{date: pd.to_datetime(daily[date]).dt.normalize()})
    if daily.duplicated([person, date]).any():
        raise ExplorerError("case-crossover: the exposures have more than one row for a person and day; expected one")
    # every design day gets a row (its exposure missing if not measured), then its lagged values
    lookup = pd.concat([daily, design[[person, date]].assign(**{exposure: np.nan})], ignore_index=True) \
        .drop_duplicates([person, date], keep="first").reset_index(drop=True)
    lookup[[f"_lag{lag}" for lag in lags]] = exposure_history(lookup, exposure, date, lags, person)
    design = design.merge(lookup.drop(columns=[exposure]), on=[person, date], how="left")
    lag_columns = [f"_lag{lag}" for lag in lags]
    if window_mean:
        names = [f"{exposure}_lag{lags[0]}_{lags[-1]}" if len(lags) > 1 else f"{exposure}_lag{lags[0]}"]
        design[names[0]] = design[lag_columns].mean(axis=1, skipna=False)
    else:
        names = [f"{exposure}_lag{lag}" for lag in lags]
        design[names] = design[lag_columns].to_numpy()
    known = design[names].notna().all(axis=1)
    case_known = design[design.case].set_index("stratum")[names].notna().all(axis=1)
    referents_known = design[~design.case & known].groupby("stratum").size()
    reason = pd.Series("", index=range(len(events)), dtype=object)
    reason[~case_known.reindex(reason.index, fill_value=False)] = "no exposure on the case day"
    no_referent = ~reason.index.isin(referents_known.index) & (reason == "")
    reason[no_referent] = "no referent day with the exposure"
    usable = reason[reason == ""].index
    data = design[design.stratum.isin(usable) & known]
    if data.stratum.nunique() < 2:
        raise ExplorerError(f"case-crossover: {data.stratum.nunique()} usable event(s) of {len(events)}; each needs "
                            f"{exposure!r} on its day and on a referent day of the same month and weekday")
    result = ConditionalLogit(data.case.astype(float).to_numpy(), data[names].to_numpy(dtype=float),
                              groups=data.stratum.to_numpy()).fit(disp=False)
    coef, se = np.asarray(result.params), np.asarray(result.bse)
    table = pd.DataFrame({"coef": coef, "se": se, "odds_ratio": np.exp(coef), "low": np.exp(coef - 1.96 * se),
                          "high": np.exp(coef + 1.96 * se), "p": 2 * stats.norm.sf(np.abs(coef / se))}, index=names)
    dropped = reason[reason != ""]
    return CaseCrossover(table, len(usable), len(dropped), dropped)
