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

from pathlib import Path

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
    """The lake's grids as lazy xarray DataArrays (Dask over Zarr), one per variable: the stores
    ``array_store`` lists, joined along time, each day at midnight. A day two stores hold keeps
    the value of the store whose time range starts later (a re-issued file that starts earlier
    than the one it replaces should be re-ingested alone)."""
    import xarray as xr

    from explorer.exposure.linkage import daily_time

    grids = {}
    for variable in variables:
        rows = array_store[array_store["variable"] == variable]
        if rows.empty:
            continue
        parts = []
        for store in rows.sort_values("time_start")["store"]:
            path = (Path(lake_root) / store).resolve()
            if not path.is_relative_to(Path(lake_root).resolve()):
                raise ExplorerError(f"array_store lists {store!r} for {variable}, which is outside the lake: refused "
                                    "(a store must live under the lake's arrays/ folder)")
            if not path.exists():
                raise ExplorerError(f"array_store lists {store} for {variable}, but {path} does not exist: "
                                    "run `explorer verify` and re-ingest the grid file")
            parts.append(daily_time(xr.open_zarr(path, consolidated=False)[variable]))
        grid = xr.concat(parts, dim="time") if len(parts) > 1 else parts[0]
        grids[variable] = grid.drop_duplicates("time", keep="last").sortby("time")
    return grids


def exposure_daily(residence: pd.DataFrame, grids: dict, *, method: str = "nearest",
                   baseline: tuple[int, int] | None = None, heat_wave: dict | None = None,
                   persons=None, days: tuple | None = None) -> pd.DataFrame:
    """Per person and day: the columns of ``exposure_daily`` (see the module notes).

    ``grids`` maps tasmax, tasmin (degC) and pm25 (ug/m3) to DataArrays (time, lat, lon); a
    missing one gives an empty column. ``heat_wave`` overrides the thresholds of
    :func:`heat_wave_days` (degC). ``days`` limits the rows returned (the anomaly and heat
    waves still see the whole series).
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
