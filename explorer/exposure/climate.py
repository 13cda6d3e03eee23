"""Temperature anomaly and heat waves: pure functions on xarray (or pandas) daily series.

References
----------
Parks RM, Bennett JE, Tamura-Wicks H, et al. Anomalously warm temperatures are associated with
increased injury deaths. Nat Med. 2020;26:65-70. (anomaly: the day's temperature minus the local
long-term mean of that calendar month)
Bourgault P, Huard D, Smith TJ, et al. xclim: xarray-based climate data analytics. J Open Source
Softw. 2023;8(85):5415. (heat waves: ``xclim.indices.heat_wave_frequency``,
``heat_wave_max_length``, ``heat_wave_total_length``: tasmin and tasmax both above their
thresholds for at least ``window`` consecutive days)
Casati B, Yagouti A, Chaumont D. Regional climate projections of extreme heat events in nine pilot
Canadian communities for public health planning. J Appl Meteorol Climatol. 2013;52:2669-2698.
(the Health Canada thresholds xclim cites: 22 degC at night, 30 degC by day, the defaults here)
Robinson PJ. On the definition of a heat wave. J Appl Meteorol. 2001;40:762-775.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

OPERATORS = (">", ">=", "gt", "ge")


def daily_mean_temperature(tasmax, tasmin):
    """Daily mean temperature estimated from the daily maximum and minimum.

    Parameters
    ----------
    tasmax, tasmin : xarray.DataArray, pandas.Series or float
        Daily maximum and minimum near-surface air temperature, in one unit (degC or K).

    Returns
    -------
    xarray.DataArray, pandas.Series or float
        ``tas`` in the unit of the inputs (a DataArray keeps ``tasmax``'s ``units`` attribute,
        default degC, and is named ``tas``).

    Notes
    -----
    :math:`T_{mean} = (T_{max} + T_{min}) / 2`, the usual estimate where hourly data are not
    available.

    Examples
    --------
    >>> import xarray as xr
    >>> from explorer.exposure import daily_mean_temperature
    >>> daily_mean_temperature(30.0, 20.0)
    25.0
    >>> tasmax = xr.DataArray([30.0, 32.0], dims="time", attrs={"units": "degC"})
    >>> tasmin = xr.DataArray([20.0, 21.0], dims="time", attrs={"units": "degC"})
    >>> tas = daily_mean_temperature(tasmax, tasmin)
    >>> tas.name, tas.values.tolist(), tas.attrs["units"]
    ('tas', [25.0, 26.5], 'degC')
    """
    mean = (tasmax + tasmin) / 2
    if hasattr(mean, "attrs"):
        mean.attrs = {"units": tasmax.attrs.get("units", "degC"), "long_name": "Daily mean temperature, (tasmax + tasmin) / 2"}
    return mean.rename("tas") if hasattr(mean, "rename") else mean


def baseline_years(time) -> tuple[int, int]:
    """The default baseline of :func:`temperature_anomaly`: every complete calendar year of ``time``.

    Parameters
    ----------
    time : array-like of datetime
        The daily time axis (one value per day).

    Returns
    -------
    tuple of int
        First and last year (inclusive) with a value on every day of the year (365 or 366
        days); with no complete year, the first and last year present.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.exposure import baseline_years
    >>> baseline_years(pd.date_range("2022-07-01", "2024-12-31", freq="D"))   # 2022 is half a year
    (2023, 2024)
    """
    index = pd.DatetimeIndex(time)
    counts = pd.Series(1, index=index).groupby(index.year).size()
    complete = [year for year, n in counts.items() if n >= (366 if pd.Timestamp(year=year, month=12, day=31).is_leap_year else 365)]
    years = complete or sorted(counts.index)
    return int(min(years)), int(max(years))


def temperature_anomaly(tas, baseline: tuple[int, int] | None = None):
    """Temperature anomaly: the day's temperature less the local mean of its calendar month.

    Parameters
    ----------
    tas : xarray.DataArray
        Daily (mean) temperature in degC or K, with a ``time`` dimension; any other dimensions
        (a location, a whole grid) are kept and each point gets its own climatology.
    baseline : tuple of int, optional
        First and last year (inclusive) of the climatology; default :func:`baseline_years`.

    Returns
    -------
    xarray.DataArray
        ``tas_anomaly`` in K (a difference of degC is one of K; a series in degF would give
        degF differences, so convert it first), with ``attrs["baseline"]``. A calendar month
        with no baseline day gives NaN.

    Raises
    ------
    explorer.errors.ExplorerError
        ``tas`` has no time dimension, or the baseline holds no day of it.

    Notes
    -----
    .. math:: a_{d} = T_{d} - \\overline{T}_{m(d),\\,\\mathrm{baseline}}

    where :math:`\\overline{T}_{m,\\,\\mathrm{baseline}}` is the mean over the baseline years of
    the days of calendar month :math:`m` at the same place.

    References
    ----------
    Parks RM, Bennett JE, Tamura-Wicks H, et al. Anomalously warm temperatures are associated
    with increased injury deaths. Nat Med. 2020;26:65-70.

    Examples
    --------
    A place at 10 degC throughout 2023 and 12 degC throughout 2024:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.exposure import temperature_anomaly
    >>> time = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    >>> tas = xr.DataArray(np.where(time.year == 2023, 10.0, 12.0), dims="time", coords={"time": time},
    ...                    attrs={"units": "degC"})
    >>> anomaly = temperature_anomaly(tas)
    >>> float(anomaly.sel(time="2023-07-15")), float(anomaly.sel(time="2024-07-15")), anomaly.attrs["units"]
    (-1.0, 1.0, 'K')
    >>> float(temperature_anomaly(tas, baseline=(2023, 2023)).sel(time="2024-07-15"))
    2.0
    """
    if "time" not in getattr(tas, "dims", ()):
        raise ExplorerError("temperature_anomaly needs an xarray DataArray with a time dimension")
    first, last = baseline or baseline_years(tas["time"].values)
    base = tas.sel(time=slice(f"{first}-01-01", f"{last}-12-31"))
    if base.sizes["time"] == 0:
        raise ExplorerError(f"the baseline {first}-{last} holds no day of the series "
                            f"({pd.Timestamp(tas['time'].values[0]).date()} to {pd.Timestamp(tas['time'].values[-1]).date()})")
    climatology = base.groupby("time.month").mean("time")
    anomaly = (tas.groupby("time.month") - climatology).drop_vars("month", errors="ignore")
    anomaly.attrs = {"units": "K", "long_name": f"Temperature anomaly against the {first}-{last} monthly mean",
                     "baseline": f"{first}-{last}"}
    return anomaly.rename("tas_anomaly")


def _as_dataarray(series, name: str):
    import xarray as xr

    if isinstance(series, pd.Series):
        units = series.attrs.get("units")
        series = xr.DataArray(series.to_numpy(dtype=float), coords={"time": pd.DatetimeIndex(series.index).to_numpy()},
                              dims="time", name=name, attrs={"units": units} if units else {})
    if not isinstance(series, xr.DataArray):
        raise ExplorerError(f"{name}: expected an xarray DataArray or a pandas Series, got {type(series).__name__}")
    if not series.attrs.get("units"):
        raise ExplorerError(f"{name} has no units attribute: set e.g. {name}.attrs['units'] = 'degC' (or 'K', 'degF')")
    return series


def heat_waves(tasmin, tasmax, thresh_tasmin: str = "22 degC", thresh_tasmax: str = "30 degC", window: int = 3,
               op: str = ">", freq: str = "YS"):
    """Heat-wave frequency, longest heat wave and total heat-wave days per period, by xclim.

    Parameters
    ----------
    tasmin, tasmax : xarray.DataArray or pandas.Series
        Daily minimum and maximum temperature on a daily time axis (a DatetimeIndex for a
        Series), each with a ``units`` attribute (K, degC or degF: xclim converts).
    thresh_tasmin, thresh_tasmax : str, default "22 degC", "30 degC"
        Thresholds as quantities with units (the Health Canada values xclim cites).
    window : int, default 3
        Minimum number of consecutive days above both thresholds.
    op : {">", ">=", "gt", "ge"}, default ">"
        Comparison with the thresholds.
    freq : str, default "YS"
        Period of the result (a pandas offset: "YS" per year, "MS" per month).

    Returns
    -------
    xarray.Dataset
        Per period of ``freq``: ``frequency`` (number of heat waves), ``max_length`` (days of
        the longest) and ``total_length`` (days in heat waves).

    Notes
    -----
    A day is hot when :math:`T_{min} > \\theta_{min}` and :math:`T_{max} > \\theta_{max}`
    (``>=`` with ``op=">="``); a heat wave is a run of at least ``window`` hot days. The three
    indices are ``xclim.indices.heat_wave_frequency``, ``heat_wave_max_length`` and
    ``heat_wave_total_length``, called with these arguments.

    References
    ----------
    Bourgault P, et al. xclim: xarray-based climate data analytics. J Open Source Softw.
    2023;8(85):5415. Casati B, Yagouti A, Chaumont D. J Appl Meteorol Climatol.
    2013;52:2669-2698. Robinson PJ. On the definition of a heat wave. J Appl Meteorol.
    2001;40:762-775.

    Examples
    --------
    Eight July days at 31 degC by day; the nights are above 22 degC except the fourth, so two
    heat waves, of 3 and 4 days (importing xclim takes several seconds, so this one is not run
    as a doctest; :func:`heat_wave_days` flags the same days):

    >>> import pandas as pd
    >>> from explorer.exposure import heat_waves
    >>> days = pd.date_range("2024-07-01", periods=8, freq="D")
    >>> tasmin = pd.Series([23, 23, 23, 20, 23, 23, 23, 23], index=days, dtype=float)
    >>> tasmax = pd.Series(31.0, index=days)
    >>> tasmin.attrs["units"] = tasmax.attrs["units"] = "degC"
    >>> found = heat_waves(tasmin, tasmax)                                       # doctest: +SKIP
    >>> [found[name].values.tolist() for name in ("frequency", "max_length", "total_length")]  # doctest: +SKIP
    [[2], [4.0], [7]]
    """
    import xarray as xr
    from xclim import indices

    if op not in OPERATORS:
        raise ExplorerError(f"op {op!r} is not one of {', '.join(OPERATORS)}")
    if int(window) < 1:
        raise ExplorerError(f"window must be at least 1 day, got {window}")
    tasmin, tasmax = _as_dataarray(tasmin, "tasmin"), _as_dataarray(tasmax, "tasmax")
    options = dict(thresh_tasmin=thresh_tasmin, thresh_tasmax=thresh_tasmax, window=int(window), freq=freq, op=op)
    return xr.Dataset({"frequency": indices.heat_wave_frequency(tasmin, tasmax, **options),
                       "max_length": indices.heat_wave_max_length(tasmin, tasmax, **options),
                       "total_length": indices.heat_wave_total_length(tasmin, tasmax, **options)})


def heat_wave_days(tasmin_degc: np.ndarray, tasmax_degc: np.ndarray, *, thresh_tasmin: float = 22.0,
                   thresh_tasmax: float = 30.0, window: int = 3, op: str = ">", run_id=None) -> np.ndarray:
    """Whether each day lies in a heat wave (the definition of :func:`heat_waves`), for many series at once.

    Parameters
    ----------
    tasmin_degc, tasmax_degc : array-like
        Daily minimum and maximum temperature in degC, consecutive days along the last axis
        (one series per row of a 2-D array), or flat with ``run_id``.
    thresh_tasmin, thresh_tasmax : float, default 22.0, 30.0
        Thresholds in degC.
    window : int, default 3
        Minimum number of consecutive hot days.
    op : {">", ">=", "gt", "ge"}, default ">"
        Comparison with the thresholds.
    run_id : array-like, optional
        For flat input: a label per day (a person, say); a run never crosses a change of label.

    Returns
    -------
    numpy.ndarray of bool
        The shape of the inputs: True on each day of a run of at least ``window`` hot days.
        A missing value is not hot, so it breaks a run.

    Notes
    -----
    Day :math:`d` is hot when :math:`T_{min,d} > \\theta_{min}` and
    :math:`T_{max,d} > \\theta_{max}`, and flagged when its run of consecutive hot days is at
    least ``window`` long: the days :func:`heat_waves` (xclim's ``heat_wave_total_length``)
    counts. Vectorised with cumulative sums, no loop over series.

    References
    ----------
    Bourgault P, et al. J Open Source Softw. 2023;8(85):5415 (xclim). Casati B, et al. J Appl
    Meteorol Climatol. 2013;52:2669-2698.

    Examples
    --------
    >>> from explorer.exposure import heat_wave_days
    >>> heat_wave_days([23, 23, 23, 20, 23, 23, 23, 23], [31] * 8).astype(int).tolist()
    [1, 1, 1, 0, 1, 1, 1, 1]

    Two persons' days end to end: the run does not continue from one to the other.

    >>> heat_wave_days([23] * 6, [31] * 6, run_id=["a", "a", "b", "b", "b", "b"]).astype(int).tolist()
    [0, 0, 1, 1, 1, 1]
    """
    if op not in OPERATORS:
        raise ExplorerError(f"op {op!r} is not one of {', '.join(OPERATORS)}")
    strict = op in (">", "gt")
    low, high = np.asarray(tasmin_degc, dtype=float), np.asarray(tasmax_degc, dtype=float)
    with np.errstate(invalid="ignore"):
        hot = ((low > thresh_tasmin) & (high > thresh_tasmax)) if strict else ((low >= thresh_tasmin) & (high >= thresh_tasmax))
    shape = hot.shape
    hot = hot.reshape(-1, shape[-1]) if run_id is None else hot.reshape(1, -1)
    breaks = np.zeros(hot.shape, dtype=bool)
    breaks[:, 0] = True
    breaks[:, 1:] = hot[:, 1:] != hot[:, :-1]
    if run_id is not None:
        ids = np.asarray(run_id).reshape(1, -1)
        breaks[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    run = np.cumsum(breaks.ravel()).reshape(hot.shape)  # a number per run of equal values
    length = np.bincount(run.ravel())[run]
    return (hot & (length >= int(window))).reshape(shape)
