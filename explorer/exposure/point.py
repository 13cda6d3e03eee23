"""Exposure at one place, from the lake's grids: heat waves at a latitude and longitude.

This is what ``explorer exposure heat-waves`` prints; a notebook calls it to get the same table.
"""

from __future__ import annotations

import pandas as pd

from explorer.errors import ExplorerError
from explorer.exposure.climate import heat_waves
from explorer.exposure.daily import open_grids
from explorer.exposure.linkage import location_series
from explorer.lake import Lake

HEAT_WAVE_GRIDS = ("tasmax", "tasmin")


def heat_waves_at(lake: Lake, lat: float, lon: float, *, tasmin: float = 22.0, tasmax: float = 30.0, window: int = 3,
                  freq: str = "YS") -> pd.DataFrame:
    """Heat-wave frequency, longest heat wave and total heat-wave days per period at one place.

    Parameters
    ----------
    lake : explorer.Lake
        A lake holding daily ``tasmax`` and ``tasmin`` grids (table ``array_store``).
    lat, lon : float
        The place, in degrees north and degrees east; the nearest grid cell is used.
    tasmin, tasmax : float, optional
        Thresholds in degC that the daily minimum and maximum temperature must both exceed
        (default 22 and 30).
    window : int, optional
        Minimum number of consecutive hot days that make a heat wave (default 3).
    freq : str, optional
        The periods, as a pandas offset alias: ``YS`` (calendar years, default), ``MS``
        (months), ``QS-DEC`` (meteorological seasons).

    Returns
    -------
    pandas.DataFrame
        Indexed by the first day of each period (``time``), with ``frequency`` (heat waves
        starting in the period, count), ``max_length`` (days of the longest) and
        ``total_length`` (days in heat waves).

    Raises
    ------
    explorer.ExplorerError
        When the lake has no grid, lacks ``tasmax`` or ``tasmin``, or has no temperature at the
        place (the message gives the area the grids cover).

    Notes
    -----
    A heat wave is a run of at least ``window`` consecutive days with
    :math:`T_{min} > \\text{tasmin}` and :math:`T_{max} > \\text{tasmax}`, computed by xclim
    (:func:`explorer.exposure.climate.heat_waves`) on the nearest cell's daily series. A day
    missing from the grid stays in the series as not hot, so it ends a run rather than joining
    the days on either side of it.

    References
    ----------
    The definition: Robinson PJ (2001), J Appl Meteorol 40:762-775, and Casati B et al. (2013),
    J Appl Meteorol Climatol 52:2669-2698; the indices: xclim's ``heat_wave_frequency``,
    ``heat_wave_max_length`` and ``heat_wave_total_length`` (Bourgault P et al. (2023), J Open
    Source Softw 8(85):5415), as in :func:`explorer.exposure.climate.heat_waves`.
    """
    if not lake.has_table("array_store"):
        raise ExplorerError("no grid in this lake: ingest NetCDF or Zarr grids of tasmax and tasmin first")
    grids = open_grids(lake.sql("SELECT * FROM array_store"), lake.storage, HEAT_WAVE_GRIDS)
    if set(grids) != set(HEAT_WAVE_GRIDS):
        raise ExplorerError(f"heat waves need tasmax and tasmin grids; the lake has {', '.join(grids) or 'neither'}")
    # missing days stay in (xclim counts them as not hot): dropping them would join runs across them
    series = {name: location_series(grid, [lat], [lon]).isel(location=0) for name, grid in grids.items()}
    if any(bool(s.isnull().all()) for s in series.values()):
        grid = grids["tasmax"]
        raise ExplorerError(f"no temperature at {lat}, {lon}: the grid covers latitudes "
                            f"{float(grid.lat.min()):g} to {float(grid.lat.max()):g} and longitudes "
                            f"{float(grid.lon.min()):g} to {float(grid.lon.max()):g}")
    found = heat_waves(series["tasmin"].assign_attrs(units="degC"), series["tasmax"].assign_attrs(units="degC"),
                       thresh_tasmin=f"{tasmin} degC", thresh_tasmax=f"{tasmax} degC", window=window, freq=freq)
    return found.to_dataframe()[["frequency", "max_length", "total_length"]]
