"""Distributed-lag non-linear models: an exposure's effect that is non-linear in its level and spread
over the days after it.

The cross-basis of an exposure history :math:`x_{t-\\ell},\\ \\ell = \\ell_0..L`, an exposure basis
:math:`f_1..f_{v_x}` and a lag basis :math:`c_1..c_{v_\\ell}` evaluated at the integer lags is

.. math::

    w_{t,(j,k)} = \\sum_{\\ell=\\ell_0}^{L} f_j(x_{t-\\ell})\\, c_k(\\ell)

(Gasparrini, Armstrong & Kenward 2010, eq. 5; the columns ordered exposure-major as in R's
``dlnm::crossbasis``). A regression on :math:`w_t` with coefficients :math:`\\theta` gives, at exposure
:math:`x` against a reference :math:`x_0`,

- the lag-specific effect :math:`\\beta_{x,\\ell} = [(f(x) - f(x_0)) \\otimes c(\\ell)]'\\theta`,
- the overall cumulative effect :math:`\\beta_x = [(f(x) - f(x_0)) \\otimes \\sum_\\ell c(\\ell)]'\\theta`,

each with variance :math:`a'Va` for its vector :math:`a` (``dlnm::crosspred``). On the log link
these are log relative risks; on the identity link, differences in the outcome's units.

Attributable risk (Gasparrini & Leone 2014): in the backward perspective the number of events on day
:math:`t` due to the exposures of the :math:`L` days before it is

.. math:: AN_t = n_t\\left(1 - \\exp\\left(-\\textstyle\\sum_\\ell \\beta_{x_{t-\\ell},\\ell}\\right)\\right)

and in the forward perspective the events on the next days due to today's exposure,

.. math:: AN_t = \\left(1 - e^{-\\beta_{x_t}}\\right) \\frac{1}{L - \\ell_0 + 1}\\sum_\\ell n_{t+\\ell}.

:math:`AN = \\sum_t AN_t` over the days whose exposure is in the range of interest (exposures outside
it are set to the reference, as in ``attrdl``), and :math:`AF = AN / \\sum_t n_t`. Empirical 95%
intervals come from coefficients drawn from :math:`N(\\hat\\theta, V)`.

References
----------
Gasparrini A, Armstrong B, Kenward MG. Distributed lag non-linear models. Stat Med.
2010;29:2224-2234. Gasparrini A. Distributed lag linear and non-linear models in R: the package dlnm.
J Stat Softw. 2011;43(8):1-20. Gasparrini A, Leone M. Attributable risk from distributed lag models.
BMC Med Res Methodol. 2014;14:55. Gasparrini A, et al. Mortality risk attributable to high and low
ambient temperature: a multicountry observational study. Lancet. 2015;386:369-375.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explorer.analysis.regression import LinearFit, quasi_poisson, random_intercept
from explorer.analysis.splines import Basis, natural_spline
from explorer.errors import ExplorerError

_BLOCK_ROWS = 65_536


@dataclass(frozen=True)
class CrossBasis:
    """An exposure basis crossed with a lag basis over lags ``min_lag..max_lag`` (days).

    Attributes
    ----------
    exposure : Basis
        Shape of the exposure-response (e.g. a natural spline of temperature, no intercept).
    lag : Basis
        Shape of the lag-response, evaluated at the integer lags (usually with an intercept).
    max_lag, min_lag : int
        The lag window in days.
    name : str
        Prefix of the column names (``cb`` gives ``cb.v1.l1``, ...).
    """

    exposure: Basis
    lag: Basis
    max_lag: int
    min_lag: int = 0
    name: str = "cb"

    def __post_init__(self):
        if self.min_lag < 0 or self.max_lag < self.min_lag:
            raise ExplorerError(f"cross-basis: lags {self.min_lag}..{self.max_lag}; expected 0 <= min_lag <= max_lag")

    @property
    def lags(self) -> np.ndarray:
        return np.arange(self.min_lag, self.max_lag + 1)

    @property
    def lag_matrix(self) -> np.ndarray:
        """The lag basis at the integer lags: shape ``(n_lags, lag.df)``."""
        return self.lag(self.lags)

    @property
    def df(self) -> int:
        return self.exposure.df * self.lag.df

    @property
    def columns(self) -> list[str]:
        return [f"{self.name}.v{j + 1}.l{k + 1}" for j in range(self.exposure.df) for k in range(self.lag.df)]

    def __call__(self, history: np.ndarray) -> np.ndarray:
        """The cross-basis of exposure histories: ``history[t, i]`` is the exposure at lag ``lags[i]``.

        Rows with any missing lag are NaN (they are dropped from a fit).
        """
        history = np.asarray(history, dtype=float)
        if history.ndim != 2 or history.shape[1] != len(self.lags):
            raise ExplorerError(f"cross-basis: exposure history of shape {history.shape}; expected (rows, {len(self.lags)})")
        lag_matrix = self.lag_matrix
        out = np.empty((len(history), self.df))
        for start in range(0, len(history), _BLOCK_ROWS):
            block = history[start:start + _BLOCK_ROWS]
            values = self.exposure(block.ravel()).reshape(len(block), len(self.lags), self.exposure.df)
            out[start:start + len(block)] = np.einsum("nlv,lk->nvk", values, lag_matrix).reshape(len(block), -1)
        return out

    def contrast(self, at, centre: float, lag=None) -> np.ndarray:
        """Rows :math:`(f(x) - f(x_0)) \\otimes c` for each ``x`` in ``at``: at one lag, or summed over lags."""
        at = np.atleast_1d(np.asarray(at, dtype=float))
        shift = self.exposure(at) - self.exposure(np.array([centre]))
        lag_row = self.lag_matrix.sum(axis=0) if lag is None else self.lag(np.array([float(lag)]))[0]
        return np.einsum("nv,k->nvk", shift, lag_row).reshape(len(at), -1)


def exposure_history(frame: pd.DataFrame, exposure: str, date: str, lags, group: str | None = None) -> np.ndarray:
    """The exposure on each row's day minus each lag, for the same group (NaN where that day is absent).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per day (and group); days may be missing.
    exposure, date : str
        The exposure column and the date column (dates or datetimes; the calendar day is used).
    lags : array-like of int
        Lags in days.
    group : str, optional
        A person or location column: histories never cross from one group to another.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(frame), len(lags))``.
    """
    when = pd.to_datetime(frame[date])
    if when.isna().any():
        bad = frame.index[when.isna().to_numpy()][0]
        raise ExplorerError(f"exposure history: row {bad} has no {date!r}; every row needs its day")
    days = when.to_numpy().astype("datetime64[D]").astype(np.int64)
    codes = pd.factorize(frame[group])[0].astype(np.int64) if group else np.zeros(len(frame), np.int64)
    span = int(days.max() - days.min()) + 1 + int(np.max(lags)) + 1 if len(days) else 1
    keys = codes * span + (days - (days.min() if len(days) else 0))
    if len(np.unique(keys)) != len(keys):
        raise ExplorerError(f"exposure history: {exposure!r} has more than one row for a day"
                            + (f" of the same {group!r}" if group else "") + "; expected one row per day")
    order = np.argsort(keys)
    sorted_keys = keys[order]
    values = frame[exposure].to_numpy(dtype=float)[order]
    out = np.full((len(frame), len(lags)), np.nan)
    for i, lag in enumerate(lags):
        wanted = keys - int(lag)
        position = np.clip(np.searchsorted(sorted_keys, wanted), 0, len(sorted_keys) - 1)
        found = sorted_keys[position] == wanted
        out[found, i] = values[position[found]]
    return out


@dataclass
class CrossPrediction:
    """Predictions of a fitted cross-basis at exposures ``at`` against ``centre``.

    Attributes
    ----------
    at : numpy.ndarray
        Exposure values (exposure units).
    centre : float
        Reference exposure (the minimum-risk exposure, or the one given).
    lags : numpy.ndarray
        Lags of the lag-specific effects (days).
    overall, overall_se : numpy.ndarray
        Overall cumulative effect over all lags at each ``at`` and its standard error (log relative
        risk on the log link; outcome units on the identity link).
    lag_specific, lag_specific_se : numpy.ndarray
        Shape ``(len(at), len(lags))``: the effect at each exposure and lag.
    link : str
        ``log`` or ``identity``.
    """

    at: np.ndarray
    centre: float
    lags: np.ndarray
    overall: np.ndarray
    overall_se: np.ndarray
    lag_specific: np.ndarray
    lag_specific_se: np.ndarray
    link: str

    def _scale(self, value):
        return np.exp(value) if self.link == "log" else value

    def overall_frame(self) -> pd.DataFrame:
        """``exposure``, ``effect`` (relative risk on the log link), ``low``, ``high`` (95% CI)."""
        return pd.DataFrame({"exposure": self.at, "effect": self._scale(self.overall),
                             "low": self._scale(self.overall - 1.96 * self.overall_se),
                             "high": self._scale(self.overall + 1.96 * self.overall_se)})

    def lag_frame(self) -> pd.DataFrame:
        """Long form: ``exposure``, ``lag``, ``effect``, ``low``, ``high`` for every exposure and lag."""
        at = np.repeat(self.at, len(self.lags))
        lag = np.tile(self.lags, len(self.at))
        value, se = self.lag_specific.ravel(), self.lag_specific_se.ravel()
        return pd.DataFrame({"exposure": at, "lag": lag, "effect": self._scale(value),
                             "low": self._scale(value - 1.96 * se), "high": self._scale(value + 1.96 * se)})


@dataclass
class DlnmFit:
    """A fitted distributed-lag non-linear model.

    Attributes
    ----------
    crossbasis : CrossBasis
    coef : numpy.ndarray
        Cross-basis coefficients :math:`\\hat\\theta`.
    vcov : numpy.ndarray
        Their covariance :math:`V`.
    link : str
        ``log`` (quasi-Poisson counts) or ``identity`` (mixed model of a person-level outcome).
    model : LinearFit
        The whole regression (time, day of week and covariates included).
    data : pandas.DataFrame
        The rows fitted: date, outcome, group, and the exposure history (for attributable risk).
    """

    crossbasis: CrossBasis
    coef: np.ndarray
    vcov: np.ndarray
    link: str
    model: LinearFit
    data: pd.DataFrame = field(repr=False)
    history: np.ndarray = field(repr=False)
    outcome: str = ""

    @property
    def exposure_values(self) -> np.ndarray:
        """The exposure on the day of each row fitted, for ranges and percentiles."""
        return self.data["_exposure_today"].to_numpy()

    def predict(self, at=None, centre: float | None = None, lags=None) -> CrossPrediction:
        """Overall cumulative and lag-specific effects at ``at`` (default: 50 values over the 1st-99th
        percentile of the exposure) against ``centre`` (default: the minimum-risk exposure on the log
        link, the median otherwise), at ``lags`` (default: every integer lag)."""
        if at is None:
            low, high = np.nanpercentile(self.exposure_values, [1, 99])
            at = np.linspace(low, high, 50)
        at = np.atleast_1d(np.asarray(at, dtype=float))
        if centre is None:
            centre = self.minimum_risk() if self.link == "log" else float(np.nanmedian(self.exposure_values))
        lags = self.crossbasis.lags if lags is None else np.atleast_1d(np.asarray(lags, dtype=float))
        overall, overall_se = self._linear(self.crossbasis.contrast(at, centre))
        lag_specific = np.empty((len(at), len(lags)))
        lag_specific_se = np.empty_like(lag_specific)
        for i, lag in enumerate(lags):
            lag_specific[:, i], lag_specific_se[:, i] = self._linear(self.crossbasis.contrast(at, centre, lag=lag))
        return CrossPrediction(at, float(centre), np.asarray(lags), overall, overall_se, lag_specific, lag_specific_se, self.link)

    def _linear(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value = rows @ self.coef
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows, self.vcov, rows), 0))
        return value, se

    def minimum_risk(self, percentiles=(1, 99), points: int = 981) -> float:
        """The exposure of lowest overall cumulative effect within the given percentiles of the exposure
        (Gasparrini et al. 2015 use the 1st-99th percentiles), searched on a fine grid."""
        low, high = np.nanpercentile(self.exposure_values, percentiles)
        grid = np.linspace(low, high, points)
        value = self.crossbasis.contrast(grid, grid[0]) @ self.coef
        return float(grid[int(np.argmin(value))])

    def attributable(self, centre: float | None = None, exposure_range=None, perspective: str = "backward",
                     simulations: int = 1000, seed: int = 0) -> "Attributable":
        """Attributable number and fraction of the outcome's events (Gasparrini & Leone 2014).

        Parameters
        ----------
        centre : float, optional
            The reference exposure (default: the minimum-risk exposure).
        exposure_range : (float, float) or "above" or "below", optional
            Exposures counted: a range, above the centre (heat), below it (cold), or all (default).
        perspective : {"backward", "forward"}
        simulations : int
            Coefficient draws for the empirical 95% interval.
        seed : int

        Returns
        -------
        Attributable
        """
        if self.link != "log":
            raise ExplorerError("attributable risk is defined for counts on the log link (a quasi-Poisson time series); "
                                "this model has an identity link: use predict() for effects in the outcome's units")
        if perspective not in ("backward", "forward"):
            raise ExplorerError(f"attributable: perspective {perspective!r}; expected 'backward' or 'forward'")
        centre = self.minimum_risk() if centre is None else float(centre)
        if exposure_range is None:
            low, high = -np.inf, np.inf
        elif isinstance(exposure_range, str):
            if exposure_range not in ("above", "below"):
                raise ExplorerError(f"attributable: exposure_range {exposure_range!r}; expected 'above', 'below' or (low, high)")
            low, high = (centre, np.inf) if exposure_range == "above" else (-np.inf, centre)
        else:
            low, high = map(float, exposure_range)
        counts = self.data[self.outcome].to_numpy(dtype=float)
        history = self.history.copy()
        keep = (history >= low) & (history <= high)
        history[~keep] = centre
        if perspective == "backward":
            rows = self.crossbasis(history) - self.crossbasis(np.full((1, history.shape[1]), centre))
            weights = counts
        else:
            today = self.data["_exposure_today"].to_numpy(dtype=float)
            today = np.where((today >= low) & (today <= high), today, centre)
            rows = self.crossbasis.contrast(today, centre)
            weights = self._future_mean_counts()
        usable = np.isfinite(weights) & np.all(np.isfinite(rows), axis=1)
        rows, weights = rows[usable], weights[usable]
        total = float(counts.sum())
        number = float(np.sum(weights * (1 - np.exp(-(rows @ self.coef)))))
        draws = np.random.default_rng(seed).multivariate_normal(self.coef, self.vcov, size=simulations, method="cholesky")
        simulated = (weights[:, None] * (1 - np.exp(-(rows @ draws.T)))).sum(axis=0)
        low_n, high_n = np.percentile(simulated, [2.5, 97.5])
        return Attributable(number, number / total, float(low_n), float(high_n), float(low_n) / total,
                            float(high_n) / total, total, centre, perspective, (low, high))

    def _future_mean_counts(self) -> np.ndarray:
        frame = self.data
        group = "_group" if "_group" in frame else None
        future = exposure_history(frame.assign(_count=frame[self.outcome].astype(float)), "_count", "_date",
                                  -self.crossbasis.lags, group)
        return future.mean(axis=1)


@dataclass(frozen=True)
class Attributable:
    """Events attributable to the exposure in a range, with empirical 95% intervals.

    Attributes
    ----------
    number, number_low, number_high : float
        Attributable number of events (AN).
    fraction, fraction_low, fraction_high : float
        Attributable fraction of all events (AF = AN / total).
    total : float
        All events in the rows fitted.
    centre : float
        Reference exposure.
    perspective : str
    exposure_range : tuple of float
    """

    number: float
    fraction: float
    number_low: float
    number_high: float
    fraction_low: float
    fraction_high: float
    total: float
    centre: float
    perspective: str
    exposure_range: tuple

    def __str__(self) -> str:
        return (f"{self.fraction:.2%} of {self.total:,.0f} events (95% eCI {self.fraction_low:.2%} to {self.fraction_high:.2%}); "
                f"{self.number:,.0f} attributable ({self.number_low:,.0f} to {self.number_high:,.0f}), "
                f"{self.perspective} perspective, reference {self.centre:g}")


def _time_terms(dates: pd.Series, df_per_year: float, day_of_week: bool) -> pd.DataFrame:
    day = pd.to_datetime(dates).to_numpy().astype("datetime64[D]").astype(np.int64).astype(float)
    columns = {}
    years = (day.max() - day.min() + 1) / 365.25
    df = int(round(df_per_year * years))
    if df >= 1:
        basis = natural_spline(day, df=df)
        for i, column in enumerate(basis(day).T):
            columns[f"time{i + 1}"] = column
    if day_of_week:
        weekday = pd.to_datetime(dates).dt.day_of_week.to_numpy()
        for d in range(1, 7):
            columns[f"dow{d}"] = (weekday == d).astype(float)
    return pd.DataFrame(columns, index=dates.index)


def _design(frame: pd.DataFrame, crossbasis: CrossBasis, exposure: str, date: str, group: str | None,
            df_per_year: float, day_of_week: bool, covariates, outcome: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The design of the rows that can be fitted (outcome, whole history, covariates), and their histories."""
    missing = [c for c in (exposure, date, *(covariates or ()), *([group] if group else [])) if c not in frame]
    if missing:
        raise ExplorerError(f"distributed-lag model: column(s) {missing} not in the frame; it has {list(frame.columns)}")
    history = exposure_history(frame, exposure, date, crossbasis.lags, group)
    cb = crossbasis(history)
    extra = frame[list(covariates or ())].astype(float)
    usable = (np.isfinite(frame[outcome].to_numpy(dtype=float)) & np.all(np.isfinite(cb), axis=1)
              & np.all(np.isfinite(extra.to_numpy()), axis=1))
    # the seasonal spline spans the days fitted, not every exposure day kept for the lags
    index = frame.index[usable]
    design = pd.concat([pd.DataFrame({"intercept": 1.0}, index=index),
                        pd.DataFrame(cb[usable], columns=crossbasis.columns, index=index),
                        _time_terms(frame.loc[usable, date], df_per_year, day_of_week) if usable.any() else None,
                        extra.loc[usable]], axis=1)
    return design, history, usable


def fit_time_series(frame: pd.DataFrame, outcome: str, exposure: str, crossbasis: CrossBasis, date: str = "date",
                    df_per_year: float = 7, day_of_week: bool = True, covariates=(), group: str | None = None) -> DlnmFit:
    """A DLNM of daily counts: quasi-Poisson regression on the cross-basis, a natural spline of time
    with ``df_per_year`` degrees of freedom a year (seasonality and trend) and day of week.

    The design of Gasparrini et al. (Lancet 2015): ``counts ~ cb + ns(time, 7/year) + dow``.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per day (per ``group`` if given): the count ``outcome``, the ``exposure`` and ``date``.
    outcome, exposure, date : str
    crossbasis : CrossBasis
    df_per_year : float, default 7
    day_of_week : bool, default True
    covariates : sequence of str
        Further columns entered linearly.
    group : str, optional
        Several series (e.g. locations) fitted together, histories kept apart.

    Returns
    -------
    DlnmFit
        Rows without a whole exposure history (the first ``max_lag`` days) or with a missing value
        are left out; ``model.n_obs`` says how many were used.
    """
    return _fit(frame, outcome, exposure, crossbasis, date, df_per_year, day_of_week, covariates, group, "log")


def fit_person_days(frame: pd.DataFrame, outcome: str, exposure: str, crossbasis: CrossBasis, date: str = "date",
                    person: str = "person_id", time: str = "day", df_per_year: float = 4, covariates=()) -> DlnmFit:
    """A DLNM of a person-level daily outcome (resting heart rate, sleep, steps) on each person's own
    exposure history, with a random intercept per person, fitted by REML
    (:func:`explorer.analysis.regression.random_intercept`).

    Parameters
    ----------
    time : {"day", "spline"}, default "day"
        ``day``: a fixed effect per calendar day, which removes everything the persons share on a
        day (season, weekday, holidays, what everyone does when it is hot); the exposure effect is
        then learnt from persons exposed differently on the same day and from each person's own
        days. ``spline``: ``ns(date, df_per_year/year) + day of week`` instead, for few persons or
        one place.

    Returns
    -------
    DlnmFit
        Effects in the outcome's units (e.g. beats per minute) against the reference exposure.
    """
    if time not in ("day", "spline"):
        raise ExplorerError(f"fit_person_days: time={time!r}; expected 'day' (a fixed effect per day) or 'spline'")
    if time == "day":
        return _fit(frame, outcome, exposure, crossbasis, date, 0, False, covariates, person, "identity", day_effects=True)
    return _fit(frame, outcome, exposure, crossbasis, date, df_per_year, True, covariates, person, "identity")


def _fit(frame, outcome, exposure, crossbasis, date, df_per_year, day_of_week, covariates, group, link,
         day_effects: bool = False) -> DlnmFit:
    if outcome not in frame:
        raise ExplorerError(f"distributed-lag model: outcome {outcome!r} not in the frame; it has {list(frame.columns)}")
    frame = frame.reset_index(drop=True)
    design, history, usable = _design(frame, crossbasis, exposure, date, group, df_per_year, day_of_week, covariates, outcome)
    y = frame[outcome].to_numpy(dtype=float)
    if usable.sum() <= design.shape[1]:
        raise ExplorerError(f"distributed-lag model: {int(usable.sum())} usable rows of {len(frame)} for {design.shape[1]} "
                            f"coefficients; each row needs {outcome!r} and {len(crossbasis.lags)} days of {exposure!r} "
                            "(fewer lags or a longer series)")
    if link == "log":
        model = quasi_poisson(design, y[usable])
    else:
        days = pd.to_datetime(frame.loc[usable, date]).to_numpy().astype("datetime64[D]") if day_effects else None
        model = random_intercept(design, y[usable], frame.loc[usable, group].to_numpy(), levels=days)
    columns = crossbasis.columns
    data = pd.DataFrame({"_date": frame.loc[usable, date].to_numpy(), outcome: y[usable]})
    if group:
        data["_group"] = frame.loc[usable, group].to_numpy()
    data["_exposure_today"] = frame.loc[usable, exposure].to_numpy(dtype=float)
    return DlnmFit(crossbasis, model.coef[columns].to_numpy(), model.vcov.loc[columns, columns].to_numpy(), link, model,
                   data, history[usable], outcome)
