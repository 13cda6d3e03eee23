"""Non-parametric circadian rest-activity metrics: IS, IV, L5, M10, RA.

Each function takes ``series``, a regular, time-indexed pandas Series of activity counts or
steps (one value per epoch, usually a minute; missing epochs as NaN), and follows the
conventions of pyActigraphy 1.2.2 (Hammad et al. 2021) so results can be compared with it:

- ``binarize``: a value above ``threshold`` becomes 1, any other value 0, a missing one stays
  missing;
- resampling to ``freq`` sums the epochs of each bin, bins anchored at the first sample
  (``origin="start"``); a bin with no data sums to 0. A ``freq`` equal to the series' own is
  no resampling;
- variances are sample variances (``ddof=1``), as pandas computes them. Witting et al. wrote
  their formulas with population variances; ``ddof=0`` gives those, under which a perfectly
  periodic signal has IS = 1 exactly. Under ``ddof=1`` it has IS = (24 D - 1) / (23 D) for D
  days of hourly bins.

References
----------
Witting W, Kwa IH, Eikelenboom P, Mirmiran M, Swaab DF. Alterations in the circadian rest-activity
rhythm in aging and Alzheimer's disease. Biol Psychiatry. 1990;27(6):563-572.
Van Someren EJW, Swaab DF, Colenda CC, et al. Bright light therapy: improved sensitivity to its
effects on rest-activity rhythms in Alzheimer patients by application of nonparametric methods.
Chronobiol Int. 1999;16(4):505-518.
Hammad G, Reyt M, Beliy N, et al. pyActigraphy: Open-source python package for actigraphy data
visualization and analysis. PLoS Comput Biol. 2021;17(10):e1009514.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError


class ActivityWindow(NamedTuple):
    """Onset (time of day of the window's first epoch) and mean activity per epoch of L5 or M10."""

    onset: pd.Timedelta
    value: float


def _regular(series: pd.Series) -> pd.Series:
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ExplorerError("expected a Series indexed by time (a DatetimeIndex), one value per epoch")
    if series.index.freq is None:
        freq = pd.infer_freq(series.index) if len(series) >= 3 else None
        if freq is None:
            raise ExplorerError("the series is not regular: reindex it to one row per epoch (missing epochs as NaN), "
                                "e.g. series.asfreq('1min')")
        series = series.asfreq(freq)
    return series.astype("float64")


def binarized(series: pd.Series, threshold: float = 4) -> pd.Series:
    """1 where ``series > threshold``, else 0; missing stays missing."""
    series = _regular(series)
    return pd.Series(np.where(series > threshold, 1.0, 0.0), index=series.index).where(series.notna())


def _prepared(series: pd.Series, freq: str | None, binarize: bool, threshold: float) -> pd.Series:
    data = binarized(series, threshold) if binarize else _regular(series)
    if freq is None:
        return data
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    if step <= pd.Timedelta(data.index.freq):  # finer than the data, or the same: the data as they are
        return data
    return data.resample(freq, origin="start").sum()


def interdaily_stability(series: pd.Series, freq: str = "1h", binarize: bool = True, threshold: float = 4,
                         ddof: int = 1) -> float:
    r"""Interdaily stability: how alike the days are.

    .. math:: IS = \frac{\operatorname{var}_p(\bar{x}_h)}{\operatorname{var}_n(x_i)}

    the variance of the mean 24-h profile (:math:`\bar{x}_h`, the mean over days of each of the
    ``p`` bins of the day) over the variance of all ``n`` bins. Dimensionless, 0 (no daily
    pattern) to about 1 (every day the same). Witting et al. 1990.
    """
    data = _prepared(series, freq, binarize, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):  # no variance at all: NaN, as in pyActigraphy
        # np.divide: pandas may hand back Python floats (with bottleneck), and 0.0 / 0.0 must be NaN
        return float(np.divide(_mean_day(data).var(ddof=ddof), data.var(ddof=ddof)))


def intradaily_variability(series: pd.Series, freq: str = "1h", binarize: bool = True, threshold: float = 4,
                           ddof: int = 1) -> float:
    r"""Intradaily variability: how fragmented the rhythm is.

    .. math:: IV = \frac{\operatorname{mean}\left((x_i - x_{i-1})^2\right)}{\operatorname{var}_n(x_i)}

    the mean squared difference between successive bins over the variance. Dimensionless, 0 for
    a smooth profile, about 2 for white noise, higher for alternating rest and activity.
    Witting et al. 1990.
    """
    data = _prepared(series, freq, binarize, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.divide(data.diff(1).pow(2).mean(), data.var(ddof=ddof)))


def _mean_day(data: pd.Series) -> pd.Series:
    """Mean of each epoch of the day over the days (pyActigraphy's average daily activity)."""
    return data.groupby([data.index.hour, data.index.minute, data.index.second]).mean()


def _extreme_window(series: pd.Series, period: str, binarize: bool, threshold: float, lowest: bool) -> ActivityWindow:
    data = _prepared(series, None, binarize, threshold)
    return _window_of_profile(_mean_day(data), pd.Timedelta(data.index.freq), period, lowest)


def _window_of_profile(profile: pd.Series, epoch: pd.Timedelta, period: str, lowest: bool) -> ActivityWindow:
    # two copies of the mean day, so a window may run across midnight
    cyclic = pd.Series(np.concatenate([profile.to_numpy(), profile.to_numpy()]),
                       index=pd.timedelta_range(start="0 day", periods=2 * len(profile), freq=epoch))
    n_epochs = int(pd.Timedelta(period) / epoch)
    # sum over [t, t + period): the time-based rolling sum over (t - period, t], moved back
    sums = cyclic.rolling(period).sum().shift(-n_epochs + 1)
    onset = sums.idxmin() if lowest else sums.idxmax()
    return ActivityWindow(pd.Timedelta(onset), float(sums[onset] / n_epochs))


def l5(series: pd.Series, binarize: bool = True, threshold: float = 4) -> ActivityWindow:
    """The 5 least active hours of the mean day: onset and mean activity per epoch.
    Van Someren et al. 1999."""
    return _extreme_window(series, "5h", binarize, threshold, lowest=True)


def m10(series: pd.Series, binarize: bool = True, threshold: float = 4) -> ActivityWindow:
    """The 10 most active hours of the mean day: onset and mean activity per epoch.
    Van Someren et al. 1999."""
    return _extreme_window(series, "10h", binarize, threshold, lowest=False)


def relative_amplitude(series: pd.Series, binarize: bool = True, threshold: float = 4) -> float:
    r"""Relative amplitude, :math:`RA = (M10 - L5) / (M10 + L5)`: 0 (no rhythm) to 1 (complete
    rest in the least active 5 hours). Van Someren et al. 1999. NaN when there is no activity
    at all (M10 = L5 = 0), as pyActigraphy's numpy division gives."""
    return _amplitude(l5(series, binarize, threshold).value, m10(series, binarize, threshold).value)


def _amplitude(low: float, high: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.divide(np.float64(high) - low, np.float64(high) + low))


def sleep_regularity_index(asleep: pd.Series) -> float:
    r"""Sleep regularity index (SRI): how often the sleep/wake state is the same 24 h apart.

    .. math:: SRI = -100 + \frac{200}{K} \sum_{k} \delta\left(s_k, s_{k + 1\,\mathrm{day}}\right)

    over the ``K`` pairs of epochs one day apart where both states are known (``δ`` is 1 when
    they are equal). ``asleep`` is a regular, time-indexed Series: 1 asleep, 0 awake, missing
    where unknown (not worn). 100 for identical days, about 0 for random sleep, -100 when each
    day is the reverse of the one before. Phillips et al. 2017, who write it over ``M`` epochs
    of ``N`` days, which is the same sum when no epoch is missing. NaN with no pair.

    References
    ----------
    Phillips AJK, Clerx WM, O'Brien CS, et al. Irregular sleep/wake patterns are associated with
    poorer academic performance and delayed circadian and sleep/wake timing. Sci Rep.
    2017;7:3216.
    """
    data = _regular(asleep)
    epoch = pd.Timedelta(data.index.freq)
    if pd.Timedelta("1D") % epoch:
        raise ExplorerError(f"the epoch ({epoch}) must divide a day for epochs 24 h apart to pair up; resample first")
    per_day = int(pd.Timedelta("1D") / epoch)
    return _sri(data.to_numpy(), per_day)


def _sri(states: np.ndarray, per_day: int) -> float:
    now, later = states[:-per_day], states[per_day:]
    known = ~np.isnan(now) & ~np.isnan(later)
    if len(now) == 0 or not known.any():
        return float("nan")
    return float(200.0 * np.mean(now[known] == later[known]) - 100.0)


class CircadianSummary(NamedTuple):
    """Every circadian metric of one minute series (see :func:`summarize_minutes`)."""

    interdaily_stability: float
    intradaily_variability: float
    relative_amplitude: float
    l5: ActivityWindow
    m10: ActivityWindow


def summarize_minutes(values: np.ndarray, first_minute_of_day: int, bin_minutes: int = 60, binarize: bool = True,
                      threshold: float = 4) -> CircadianSummary:
    """IS, IV, RA, L5 and M10 of one regular minute series given as an array (``values``, NaN
    where missing, the first at ``first_minute_of_day`` minutes after midnight): the same
    numbers as :func:`interdaily_stability` and the others on the equivalent pandas Series
    (``freq`` of ``bin_minutes``), without building an index, a resampler or a groupby. This is
    what the ``wearable_circadian`` refresh step runs for every person and period."""
    x = np.asarray(values, dtype="float64")
    if len(x) == 0 or np.isnan(x).all():
        raise ExplorerError("summarize_minutes needs at least one recorded minute")
    if bin_minutes < 1 or not 0 <= first_minute_of_day < 1440:
        raise ExplorerError(f"bin_minutes must be >= 1 and first_minute_of_day in 0..1439, got {bin_minutes}, "
                            f"{first_minute_of_day}")
    if binarize:
        x = np.where(np.isnan(x), np.nan, (x > threshold).astype("float64"))
    n = len(x)
    minute_of_day = (first_minute_of_day + np.arange(n)) % 1440
    if bin_minutes > 1:  # sums of bins from the first sample; an empty bin sums to 0
        n_bins = -(-n // bin_minutes)
        padded = np.full(n_bins * bin_minutes, np.nan)
        padded[:n] = x
        binned = np.nansum(padded.reshape(n_bins, bin_minutes), axis=1)
        bin_minute_of_day = (first_minute_of_day + bin_minutes * np.arange(n_bins)) % 1440
    else:
        binned, bin_minute_of_day = x, minute_of_day
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two values: NaN, as pandas gives
        variance = np.nanvar(binned, ddof=1)
        stability = np.nanvar(_profile(binned, bin_minute_of_day), ddof=1) / variance
        variability = np.nanmean(np.diff(binned) ** 2) / variance
    profile = pd.Series(_profile(x, minute_of_day))
    low = _window_of_profile(profile, pd.Timedelta("1min"), "5h", lowest=True)
    high = _window_of_profile(profile, pd.Timedelta("1min"), "10h", lowest=False)
    return CircadianSummary(float(stability), float(variability), _amplitude(low.value, high.value), low, high)


def _profile(x: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    """Mean per time of day over the times present (NaN where every value is missing), in
    time-of-day order: pandas' groupby mean, by counting."""
    valid = ~np.isnan(x)
    present = np.bincount(minute_of_day, minlength=1440) > 0
    sums = np.bincount(minute_of_day[valid], weights=x[valid], minlength=1440)
    counts = np.bincount(minute_of_day[valid], minlength=1440)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means[present]


@dataclass(frozen=True)
class Metric:
    """A registry entry: what a metric is called, its unit and where it is defined."""

    identifier: str
    long_name: str
    units: str
    function: object
    reference: str


METRICS = {m.identifier: m for m in (
    Metric("interdaily_stability", "Interdaily stability (IS)", "1", interdaily_stability, "Witting et al. 1990"),
    Metric("intradaily_variability", "Intradaily variability (IV)", "1", intradaily_variability, "Witting et al. 1990"),
    Metric("relative_amplitude", "Relative amplitude (RA)", "1", relative_amplitude, "Van Someren et al. 1999"),
    Metric("l5", "Least active 5 hours (L5): onset, mean activity per epoch", "activity/epoch", l5, "Van Someren et al. 1999"),
    Metric("m10", "Most active 10 hours (M10): onset, mean activity per epoch", "activity/epoch", m10, "Van Someren et al. 1999"),
    Metric("sleep_regularity_index", "Sleep regularity index (SRI)", "1", sleep_regularity_index, "Phillips et al. 2017"),
)}
