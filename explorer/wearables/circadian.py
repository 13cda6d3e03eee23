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
from typing import NamedTuple

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError


class ActivityWindow(NamedTuple):
    """The least (L5) or most (M10) active window of the mean day.

    Attributes
    ----------
    onset : pandas.Timedelta
        Time of day of the window's first epoch (``Timedelta(0)`` is midnight; a window may run
        across midnight).
    value : float
        Mean activity per epoch over the window, in the units of the series (steps per minute),
        or, when binarised, the share of active epochs (0 to 1).
    """

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
    """Active (1) or not (0) per epoch, as pyActigraphy's ``binarized_data``.

    Parameters
    ----------
    series : pandas.Series
        Regular, time-indexed activity counts or steps per epoch; missing epochs as NaN.
    threshold : float, default 4
        Counts (steps per epoch) above which an epoch is active.

    Returns
    -------
    pandas.Series
        1.0 where ``series > threshold``, 0.0 elsewhere, NaN where ``series`` is missing
        (dimensionless).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables.circadian import binarized
    >>> steps = pd.Series([0, 4, 5, np.nan, 100], index=pd.date_range("2024-01-01", periods=5, freq="1min"))
    >>> binarized(steps).tolist()
    [0.0, 0.0, 1.0, nan, 1.0]
    """
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
    r"""Interdaily stability (IS): how alike the days are.

    Parameters
    ----------
    series : pandas.Series
        Regular, time-indexed activity counts or steps per epoch (usually a minute); missing
        epochs as NaN.
    freq : str, default "1h"
        Bin width the epochs are summed to first (a pandas offset); bins start at the first
        sample. ``None`` or the series' own epoch: no resampling.
    binarize : bool, default True
        Count each epoch as active (1) or not (0) first (:func:`binarized`); the parameter keeps
        pyActigraphy's name.
    threshold : float, default 4
        Counts per epoch above which an epoch is active, when ``binarize``.
    ddof : int, default 1
        Delta degrees of freedom of both variances: 1 as pyActigraphy (pandas), 0 for the
        population variances of Witting et al.

    Returns
    -------
    float
        IS, dimensionless: about 0 with no daily pattern, 1 when every day is the same (under
        ``ddof=1`` slightly above 1 for identical days, see Notes); NaN when the series never
        varies.

    Notes
    -----
    With :math:`x_i` the :math:`n` bins, :math:`\bar{x}_h` the mean over days of the
    :math:`h`-th of the :math:`p` bins of the day (the mean 24-h profile) and :math:`\bar{x}`
    the overall mean,

    .. math::

        IS = \frac{\frac{1}{p - d}\sum_{h=1}^{p} (\bar{x}_h - \bar{x})^2}
                  {\frac{1}{n - d}\sum_{i=1}^{n} (x_i - \bar{x})^2}

    with :math:`d` = ``ddof``. Witting et al. (1990) wrote it with :math:`d = 0`, under which a
    perfectly periodic signal has IS = 1; pyActigraphy uses :math:`d = 1`, which gives
    :math:`(24 D - 1) / (23 D)` for :math:`D` identical days of hourly bins.

    References
    ----------
    Witting W, Kwa IH, Eikelenboom P, Mirmiran M, Swaab DF. Alterations in the circadian
    rest-activity rhythm in aging and Alzheimer's disease. Biol Psychiatry. 1990;27:563-572.
    Van Someren EJW, Swaab DF, Colenda CC, et al. Bright light therapy: improved sensitivity to
    its effects on rest-activity rhythms in Alzheimer patients by application of nonparametric
    methods. Chronobiol Int. 1999;16:505-518.

    Examples
    --------
    Seven identical days:

    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import interdaily_stability
    >>> day = [0] * 8 + [30] * 10 + [0] * 6      # 30 steps a minute from 08:00 to 18:00, then rest
    >>> steps = pd.Series(np.repeat(day * 7, 60), dtype=float,
    ...                   index=pd.date_range("2024-01-01", periods=7 * 1440, freq="1min"))
    >>> round(interdaily_stability(steps, ddof=0), 6)
    1.0
    >>> round(interdaily_stability(steps), 4)    # (24 * 7 - 1) / (23 * 7)
    1.0373
    """
    data = _prepared(series, freq, binarize, threshold)
    with np.errstate(invalid="ignore", divide="ignore"):  # no variance at all: NaN, as in pyActigraphy
        # np.divide: pandas may hand back Python floats (with bottleneck), and 0.0 / 0.0 must be NaN
        return float(np.divide(_mean_day(data).var(ddof=ddof), data.var(ddof=ddof)))


def intradaily_variability(series: pd.Series, freq: str = "1h", binarize: bool = True, threshold: float = 4,
                           ddof: int = 1) -> float:
    r"""Intradaily variability (IV): how fragmented the rhythm is.

    Parameters
    ----------
    series, freq, binarize, threshold, ddof
        As :func:`interdaily_stability`.

    Returns
    -------
    float
        IV, dimensionless: near 0 for a smooth profile, about 2 for white noise, higher for
        rest and activity alternating from bin to bin; NaN when the series never varies.

    Notes
    -----
    With :math:`x_i` the :math:`n` bins and :math:`\bar{x}` their mean,

    .. math::

        IV = \frac{\frac{1}{n - 1}\sum_{i=2}^{n} (x_i - x_{i-1})^2}
                  {\frac{1}{n - d}\sum_{i=1}^{n} (x_i - \bar{x})^2}

    with :math:`d` = ``ddof``: Witting et al.'s formula with :math:`d = 0`, pyActigraphy's
    (the ratio of the two sums) with :math:`d = 1`. A missing bin drops the differences it
    takes part in.

    References
    ----------
    Witting W, Kwa IH, Eikelenboom P, Mirmiran M, Swaab DF. Alterations in the circadian
    rest-activity rhythm in aging and Alzheimer's disease. Biol Psychiatry. 1990;27:563-572.
    Van Someren EJW, Swaab DF, Colenda CC, et al. Chronobiol Int. 1999;16:505-518.

    Examples
    --------
    One change from rest to activity and one back each day of hourly bins:

    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import intradaily_variability
    >>> day = [0] * 8 + [30] * 10 + [0] * 6      # 30 steps a minute from 08:00 to 18:00, then rest
    >>> steps = pd.Series(np.repeat(day * 7, 60), dtype=float,
    ...                   index=pd.date_range("2024-01-01", periods=7 * 1440, freq="1min"))
    >>> round(intradaily_variability(steps), 4)   # 14 jumps between rest and activity in 168 hourly bins
    0.3429
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
    """L5: the 5 least active consecutive hours of the mean day.

    Parameters
    ----------
    series : pandas.Series
        Regular, time-indexed activity counts or steps per epoch; missing epochs as NaN.
    binarize, threshold
        As :func:`interdaily_stability` (L5 is computed on the epochs, not on hourly bins).

    Returns
    -------
    ActivityWindow
        ``onset``, the time of day the window starts (a :class:`pandas.Timedelta`; the first
        such window of the day on a tie), and ``value``, the mean activity per epoch in it
        (steps per minute; binarised, the share of active minutes, 0 to 1).

    Notes
    -----
    The mean day is the mean of each epoch of the day over the days with a value there; it is
    laid twice end to end so a window may run across midnight, and

    .. math:: L5 = \\min_t \\frac{1}{m} \\sum_{k=0}^{m-1} \\bar{x}_{t+k}

    over the :math:`m` epochs of 5 hours starting at each epoch :math:`t` of the day.

    References
    ----------
    Van Someren EJW, Swaab DF, Colenda CC, et al. Bright light therapy: improved sensitivity to
    its effects on rest-activity rhythms in Alzheimer patients by application of nonparametric
    methods. Chronobiol Int. 1999;16:505-518.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import l5
    >>> day = [0] * 8 + [30] * 10 + [0] * 6      # 30 steps a minute from 08:00 to 18:00, then rest
    >>> steps = pd.Series(np.repeat(day * 7, 60), dtype=float,
    ...                   index=pd.date_range("2024-01-01", periods=7 * 1440, freq="1min"))
    >>> l5(steps)
    ActivityWindow(onset=Timedelta('0 days 00:00:00'), value=0.0)
    """
    return _extreme_window(series, "5h", binarize, threshold, lowest=True)


def m10(series: pd.Series, binarize: bool = True, threshold: float = 4) -> ActivityWindow:
    """M10: the 10 most active consecutive hours of the mean day.

    Parameters
    ----------
    series, binarize, threshold
        As :func:`l5`.

    Returns
    -------
    ActivityWindow
        ``onset`` (time of day) and ``value`` (mean activity per epoch, or share of active
        epochs when binarised) of the window.

    Notes
    -----
    As :func:`l5`, the maximum over windows of 10 hours:
    :math:`M10 = \\max_t \\frac{1}{m} \\sum_{k=0}^{m-1} \\bar{x}_{t+k}`.

    References
    ----------
    Van Someren EJW, Swaab DF, Colenda CC, et al. Chronobiol Int. 1999;16:505-518.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import m10
    >>> day = [0] * 8 + [30] * 10 + [0] * 6      # 30 steps a minute from 08:00 to 18:00, then rest
    >>> steps = pd.Series(np.repeat(day * 7, 60), dtype=float,
    ...                   index=pd.date_range("2024-01-01", periods=7 * 1440, freq="1min"))
    >>> m10(steps)
    ActivityWindow(onset=Timedelta('0 days 08:00:00'), value=1.0)
    """
    return _extreme_window(series, "10h", binarize, threshold, lowest=False)


def relative_amplitude(series: pd.Series, binarize: bool = True, threshold: float = 4) -> float:
    r"""Relative amplitude (RA) of the rest-activity rhythm.

    Parameters
    ----------
    series, binarize, threshold
        As :func:`l5`.

    Returns
    -------
    float
        RA, dimensionless: 0 (no rhythm) to 1 (complete rest in the least active 5 hours);
        NaN when there is no activity at all (M10 = L5 = 0), as pyActigraphy's numpy division
        gives.

    Notes
    -----
    .. math:: RA = \frac{M10 - L5}{M10 + L5}

    with the values of :func:`m10` and :func:`l5`.

    References
    ----------
    Van Someren EJW, et al. Chronobiol Int. 1999;16:505-518 (see :func:`l5`).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import relative_amplitude
    >>> day = [0] * 8 + [30] * 10 + [0] * 6      # 30 steps a minute from 08:00 to 18:00, then rest
    >>> steps = pd.Series(np.repeat(day * 7, 60), dtype=float,
    ...                   index=pd.date_range("2024-01-01", periods=7 * 1440, freq="1min"))
    >>> relative_amplitude(steps)
    1.0
    """
    return _amplitude(l5(series, binarize, threshold).value, m10(series, binarize, threshold).value)


def _amplitude(low: float, high: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.divide(np.float64(high) - low, np.float64(high) + low))


def sleep_regularity_index(asleep: pd.Series) -> float:
    r"""Sleep regularity index (SRI): how often the sleep/wake state is the same 24 h apart.

    Parameters
    ----------
    asleep : pandas.Series
        Regular, time-indexed sleep/wake state per epoch: 1 asleep, 0 awake, NaN where unknown
        (not worn). The epoch must divide a day.

    Returns
    -------
    float
        SRI, dimensionless, -100 to 100: 100 for identical days, about 0 for random sleep,
        -100 when each day is the reverse of the one before; NaN with no pair of known epochs.

    Notes
    -----
    .. math:: SRI = -100 + \frac{200}{K} \sum_{k} \delta\left(s_k, s_{k + 1\,\mathrm{day}}\right)

    over the :math:`K` pairs of epochs one day apart where both states are known
    (:math:`\delta` is 1 when they are equal, else 0). Phillips et al. write it over :math:`M`
    epochs of :math:`N` days, which is the same sum when no epoch is missing.

    Examples
    --------
    Asleep from midnight to 07:00, then a day that sleeps an hour longer (60 of the 2880 pairs
    of minutes 24 h apart differ):

    >>> import numpy as np, pandas as pd
    >>> from explorer.wearables import sleep_regularity_index
    >>> night = np.r_[np.ones(7 * 60), np.zeros(17 * 60)]
    >>> later = np.r_[np.ones(8 * 60), np.zeros(16 * 60)]
    >>> minutes = pd.date_range("2024-01-01", periods=3 * 1440, freq="1min")
    >>> sleep_regularity_index(pd.Series(np.tile(night, 3), index=minutes))
    100.0
    >>> round(sleep_regularity_index(pd.Series(np.r_[night, night, later], index=minutes)), 4)
    95.8333

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
    """Every circadian metric of one minute series (see :func:`summarise_minutes`): IS and IV
    (dimensionless), RA (dimensionless, 0 to 1), and the :class:`ActivityWindow` of L5 and M10."""

    interdaily_stability: float
    intradaily_variability: float
    relative_amplitude: float
    l5: ActivityWindow
    m10: ActivityWindow


def summarise_minutes(values: np.ndarray, first_minute_of_day: int, bin_minutes: int = 60, binarize: bool = True,
                      threshold: float = 4) -> CircadianSummary:
    """IS, IV, RA, L5 and M10 of one regular minute series given as a plain array.

    The same numbers as :func:`interdaily_stability`, :func:`intradaily_variability`,
    :func:`relative_amplitude`, :func:`l5` and :func:`m10` (``ddof=1``) on the equivalent pandas
    Series, computed by counting (``numpy.bincount``) without building an index, a resampler or a
    groupby: what the ``wearable_circadian`` refresh step runs for every person and period.

    Parameters
    ----------
    values : numpy.ndarray
        Activity counts or steps per minute, one per consecutive minute, NaN where missing.
    first_minute_of_day : int
        Minutes after midnight of the first value (0 to 1439).
    bin_minutes : int, default 60
        Minutes summed into one bin for IS and IV (the ``freq`` of the pandas functions).
    binarize : bool, default True
        Count each minute as active (1) or not (0) first, as :func:`binarized`.
    threshold : float, default 4
        Counts per minute above which a minute is active.

    Returns
    -------
    CircadianSummary
        IS, IV, RA (dimensionless) and the L5 and M10 windows (onset as time of day, value in
        activity per minute or share of active minutes).

    Raises
    ------
    explorer.errors.ExplorerError
        No recorded minute, or ``bin_minutes``/``first_minute_of_day`` out of range.

    Notes
    -----
    The formulas are those of the pandas functions (see their Notes); bins are summed from the
    first sample and an empty bin sums to 0, as pyActigraphy resamples.

    References
    ----------
    Witting W, et al. Biol Psychiatry. 1990;27:563-572 (IS, IV). Van Someren EJW, et al.
    Chronobiol Int. 1999;16:505-518 (L5, M10, RA). Hammad G, et al. pyActigraphy. PLoS Comput
    Biol. 2021;17:e1009514 (conventions).

    Examples
    --------
    >>> import numpy as np
    >>> from explorer.wearables import summarise_minutes
    >>> day = np.repeat([0] * 8 + [30] * 10 + [0] * 6, 60)   # steps a minute, midnight to midnight
    >>> summary = summarise_minutes(np.tile(day, 7).astype(float), first_minute_of_day=0)
    >>> round(summary.interdaily_stability, 4), round(summary.intradaily_variability, 4), summary.relative_amplitude
    (1.0373, 0.3429, 1.0)
    >>> summary.m10
    ActivityWindow(onset=Timedelta('0 days 08:00:00'), value=1.0)
    """
    x = np.asarray(values, dtype="float64")
    if len(x) == 0 or np.isnan(x).all():
        raise ExplorerError("summarise_minutes needs at least one recorded minute")
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


#: the earlier, American spelling of :func:`summarise_minutes`, kept so existing notebooks run
summarize_minutes = summarise_minutes
