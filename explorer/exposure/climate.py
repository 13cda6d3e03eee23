"""Temperature anomaly and heat waves: pure functions on xarray (or pandas) daily series.

References
----------
Parks RM, Bennett JE, Tamura-Wicks H, et al. Anomalously warm temperatures are associated with
increased injury deaths. Nat Med. 2020;26:65-70. (anomaly: the day's temperature minus the local
long-term mean of that calendar month)
Xclim: heat_wave_frequency, heat_wave_max_length, heat_wave_total_length (Ouranos); the
definition follows Robine et al. / Environment Canada: tasmin and tasmax both above their
thresholds for at least ``window`` consecutive days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

OPERATORS = (">", ">=", "gt", "ge")


def daily_mean_temperature(tasmax, tasmin):
    """Daily mean temperature as the mean of the daily maximum and minimum (degC in, degC out),
    the usual estimate where hourly data are not available."""
    mean = (tasmax + tasmin) / 2
    if hasattr(mean, "attrs"):
        mean.attrs = {"units": tasmax.attrs.get("units", "degC"), "long_name": "Daily mean temperature, (tasmax + tasmin) / 2"}
    return mean.rename("tas") if hasattr(mean, "rename") else mean


def baseline_years(time) -> tuple[int, int]:
    """The default baseline: every complete calendar year of ``time`` (all of it if none is)."""
    index = pd.DatetimeIndex(time)
    counts = pd.Series(1, index=index).groupby(index.year).size()
    complete = [year for year, n in counts.items() if n >= (366 if pd.Timestamp(year=year, month=12, day=31).is_leap_year else 365)]
    years = complete or sorted(counts.index)
    return int(min(years)), int(max(years))


def temperature_anomaly(tas, baseline: tuple[int, int] | None = None):
    """Temperature anomaly (K): the day's temperature minus the mean of the same calendar month
    over the ``baseline`` years (inclusive; default :func:`baseline_years`) at the same place.

    .. math:: a_{d} = T_{d} - \\overline{T}_{m(d),\\,baseline}

    ``tas`` is an xarray DataArray with a ``time`` dimension (any other dimensions are kept, so a
    whole grid works at once). A calendar month with no baseline day gives NaN. Parks et al. 2020.
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

    A heat wave is at least ``window`` consecutive days on which tasmin and tasmax both exceed
    their thresholds (``op`` ">" or ">="). Inputs are xarray DataArrays (or pandas Series with a
    DatetimeIndex) of daily values with a ``units`` attribute (K, degC, degF: converted by
    xclim); thresholds are quantities with units. Returns an xarray Dataset with ``frequency``
    (events), ``max_length`` and ``total_length`` (days) per period of ``freq``.
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
    """Whether each day lies in a heat wave (the definition of :func:`heat_waves`), for many
    series at once: values in degC along the last axis, or flat with ``run_id`` marking where
    one series ends and the next begins (a run never crosses a change of ``run_id``). Missing
    values break a run. Vectorised with cumulative sums, no loop over series."""
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
