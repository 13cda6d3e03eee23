"""Person-day exposure: every day of every person at the environment of their home.

For each person and day of the grids' time range: daily maximum and minimum temperature and
PM2.5 at the residence (:mod:`explorer.exposure.linkage`, nearest cell or bilinear), the
temperature anomaly against the local monthly climatology of the baseline years
(:func:`explorer.exposure.climate.temperature_anomaly`, on the mean of tasmax and tasmin), and
whether the day lies in a heat wave (:func:`explorer.exposure.climate.heat_wave_days`, on the
person's own series, so a run continues across a move if both homes are hot). Gap and overlap
days (:func:`explorer.exposure.residence.residence_days`) keep their row, flagged, with no value.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError
from explorer.exposure.climate import daily_mean_temperature, heat_wave_days, temperature_anomaly
from explorer.exposure.linkage import location_series
from explorer.exposure.residence import OK, residence_days

GRID_VARIABLES = ("tasmax", "tasmin", "pm25")
#: the home's coordinates stay out: a day's exposure is what the table is for, not where someone lives
COLUMNS = ["person_id", "date", "tasmax", "tasmin", "pm25", "tas_anomaly", "heat_wave", "residence_status"]


def open_grids(array_store: pd.DataFrame, lake_root, variables=GRID_VARIABLES) -> dict:
    """The lake's grids as lazy xarray DataArrays (Dask over Zarr), one per variable.

    Parameters
    ----------
    array_store : pandas.DataFrame
        The lake's ``array_store`` table: variable, store (a path under the lake), time_start.
    lake_root : str, pathlib.Path or explorer.lake.storage.Storage
        The lake's root folder (or ``s3://`` prefix), or its storage (``lake.storage``).
    variables : iterable of str, default :data:`GRID_VARIABLES`
        The variables to open (tasmax, tasmin in degC; pm25 in ug/m3).

    Returns
    -------
    dict of str to xarray.DataArray
        Per variable found: the stores listed for it joined along time, each day at midnight.
        A day two stores hold keeps the value of the store whose time range starts later (a
        re-issued file that starts earlier than the one it replaces should be re-ingested
        alone); of two starting together, a daily extreme of hourly extremes (ERA5 ``mx2t``,
        ``mn2t``) is kept over one of hourly instants (``t2m``), marked ``extremes_of_instants``.

    Raises
    ------
    explorer.errors.ExplorerError
        A listed store lies outside the lake or does not exist.

    Examples
    --------
    >>> grids = open_grids(lake.sql("SELECT * FROM array_store"), lake.storage)  # doctest: +SKIP
    >>> sorted(grids)                                                         # doctest: +SKIP
    ['pm25', 'tasmax', 'tasmin']
    """
    import xarray as xr

    from explorer.exposure.linkage import daily_time
    from explorer.lake.storage import open_storage

    storage = open_storage(lake_root)

    grids = {}
    for variable in variables:
        rows = array_store[array_store["variable"] == variable]
        if rows.empty:
            continue
        parts = []
        for start, store in rows.sort_values("time_start")[["time_start", "store"]].itertuples(index=False):
            key = PurePosixPath(str(store).replace("\\", "/"))
            if key.is_absolute() or ".." in key.parts or not key.parts or key.parts[0] != "arrays":
                raise ExplorerError(f"array_store lists {store!r} for {variable}, which is outside the lake: refused "
                                    "(a store must live under the lake's arrays/ folder)")
            if not storage.exists(f"{key}/zarr.json"):
                raise ExplorerError(f"array_store lists {store} for {variable}, but {storage.uri(str(key))} does not "
                                    "exist: run `explorer verify` and re-ingest the grid file")
            opened = xr.open_zarr(storage.zarr_store(str(key), read_only=True), consolidated=False, zarr_format=3)
            grid = daily_time(opened[variable])
            # the hourly maximum of instants understates the day's peak: a store of the true hourly
            # extremes (ERA5 mx2t/mn2t, which the new CDS delivers in a file of their own) wins its days
            parts.append((start, grid.attrs.get("extremes_of_instants") != "yes", grid))
        parts = [grid for _, _, grid in sorted(parts, key=lambda part: part[:2])]
        grid = xr.concat(parts, dim="time") if len(parts) > 1 else parts[0]
        grids[variable] = grid.drop_duplicates("time", keep="last").sortby("time")
    return grids


def exposure_daily(residence: pd.DataFrame, grids: dict, *, method: str = "nearest",
                   baseline: tuple[int, int] | None = None, heat_wave: dict | None = None,
                   persons=None, days: tuple | None = None) -> pd.DataFrame:
    """Per person and day, the environment at home: the rows of ``exposure_daily``.

    Parameters
    ----------
    residence : pandas.DataFrame
        The ``residence`` table (see :func:`explorer.exposure.residence_days`).
    grids : dict of str to xarray.DataArray
        ``tasmax``, ``tasmin`` (degC) and ``pm25`` (ug/m3) grids with dims time, lat, lon
        (:func:`open_grids`); a missing one gives an empty column.
    method : {"nearest", "bilinear"}, default "nearest"
        How a home takes a grid value (:func:`explorer.exposure.grid_values`).
    baseline : tuple of int, optional
        Years of the anomaly's climatology (default: every complete year of the grids).
    heat_wave : dict, optional
        Keyword arguments of :func:`explorer.exposure.heat_wave_days` (thresholds in degC,
        window, op) overriding its defaults (22 degC, 30 degC, 3 days).
    persons : iterable of str, optional
        The persons to cover (default: everyone in ``residence``).
    days : iterable of datetime.date, optional
        The rows to return (the anomaly and heat waves still see the whole series).

    Returns
    -------
    pandas.DataFrame
        One row per person and day of the grids' time range, columns :data:`COLUMNS`: tasmax,
        tasmin (degC), pm25 (ug/m3), tas_anomaly (K), heat_wave (boolean, empty where tasmin or
        tasmax is) and residence_status; gap and overlap days keep their row, with no value.

    Raises
    ------
    explorer.errors.ExplorerError
        No grid, or a grid in another unit than the one expected.

    Notes
    -----
    ``tas_anomaly`` is :func:`explorer.exposure.temperature_anomaly` of
    :math:`(T_{max} + T_{min}) / 2` at each home; ``heat_wave`` is
    :func:`explorer.exposure.heat_wave_days` on the person's own series, so a run continues
    across a move if both homes are hot.

    References
    ----------
    Parks RM, et al. Nat Med. 2020;26:65-70 (anomaly). Bourgault P, et al. J Open Source Softw.
    2023;8(85):5415 and Casati B, et al. J Appl Meteorol Climatol. 2013;52:2669-2698 (heat waves).

    Examples
    --------
    Three hot July days on a 2 x 2 grid; p2 moves in on the second, so two hot days are no
    heat wave for them:

    >>> from datetime import date
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.exposure import exposure_daily
    >>> days = pd.date_range("2024-07-01", periods=3, freq="D")
    >>> def grid(values):
    ...     return xr.DataArray(np.broadcast_to(np.asarray(values, float)[:, None, None], (3, 2, 2)),
    ...                         dims=("time", "lat", "lon"), attrs={"units": "degC"},
    ...                         coords={"time": days, "lat": [40.0, 41.0], "lon": [-75.0, -74.0]})
    >>> residence = pd.DataFrame({"person_id": ["p1", "p2"], "start_date": [date(2020, 1, 1), date(2024, 7, 2)],
    ...                           "end_date": [None, None], "latitude": [40.2, 40.8], "longitude": [-74.8, -74.2]})
    >>> rows = exposure_daily(residence, {"tasmax": grid([31, 32, 33]), "tasmin": grid([23, 23, 23])})
    >>> rows[["person_id", "date", "tasmax", "tas_anomaly", "heat_wave", "residence_status"]]
      person_id        date  tasmax  tas_anomaly  heat_wave residence_status
    0        p1  2024-07-01    31.0         -0.5       True               ok
    1        p1  2024-07-02    32.0          0.0       True               ok
    2        p1  2024-07-03    33.0          0.5       True               ok
    3        p2  2024-07-01     NaN          NaN       <NA>              gap
    4        p2  2024-07-02    32.0          0.0      False               ok
    5        p2  2024-07-03    33.0          0.5      False               ok
    """
    if not grids:
        raise ExplorerError("no grid to link: ingest gridded tasmax, tasmin or pm25 (NetCDF or Zarr) first")
    for name, grid in grids.items():
        expected = "ug/m3" if name == "pm25" else "degC"
        if grid.attrs.get("units", expected) != expected:
            raise ExplorerError(f"the {name} grid is in {grid.attrs['units']!r}; exposure_daily expects {expected} "
                                f"(ingest converts; for a grid of your own, e.g. xclim.core.units.convert_units_to)")
    stamped = [pd.DatetimeIndex(g["time"].values).normalize() for g in grids.values()]
    # every day from the first to the last: a day no grid holds has no value, not a neighbour's
    times = pd.date_range(min(t.min() for t in stamped), max(t.max() for t in stamped), freq="D")
    rows = residence_days(residence, times[0].date(), times[-1].date(), persons=persons)
    ok = (rows["residence_status"] == OK).to_numpy()
    places, location = np.unique(rows.loc[ok, ["latitude", "longitude"]].to_numpy(dtype=float), axis=0,
                                 return_inverse=True)
    day = times.get_indexer(pd.DatetimeIndex(pd.to_datetime(rows["date"])))
    series = {}
    for variable in GRID_VARIABLES:
        if variable in grids and len(places):
            found = location_series(grids[variable], places[:, 0], places[:, 1], method=method)
            series[variable] = found.reindex(time=times)
    if "tasmax" in series and "tasmin" in series:
        series["tas_anomaly"] = temperature_anomaly(daily_mean_temperature(series["tasmax"], series["tasmin"]),
                                                    baseline=baseline)
    for variable in (*GRID_VARIABLES, "tas_anomaly"):
        values = np.full(len(rows), np.nan)
        if variable in series:
            values[ok] = series[variable].values[day[ok], location.ravel()]
        rows[variable] = values
    order = np.lexsort((pd.to_datetime(rows["date"]).to_numpy(), rows["person_id"].to_numpy(dtype=object)))
    rows = rows.iloc[order].reset_index(drop=True)
    flags = heat_wave_days(rows["tasmin"].to_numpy(), rows["tasmax"].to_numpy(), run_id=rows["person_id"].to_numpy(),
                           **(heat_wave or {}))
    rows["heat_wave"] = pd.array(flags, dtype="boolean")
    rows.loc[rows[["tasmin", "tasmax"]].isna().any(axis=1), "heat_wave"] = pd.NA
    if days is not None:
        rows = rows[pd.to_datetime(rows["date"]).dt.date.isin(set(days))]
    return rows[COLUMNS].reset_index(drop=True)
