"""The minute cube: every person's minutes as one xarray Dataset (person x minute) in Zarr,
chunked for Dask, so cohort-wide metrics run as lazy, chunked reductions (flox) instead of a
query per person.

Layout: dimensions ``person`` (pseudonyms, sorted) and ``minute`` (local wall-clock minutes from
the first local midnight to the last day's end), variables ``heart_rate`` and ``steps``
(float32, NaN where nothing was recorded), and ``heart_rate_readings`` (uint8, readings in the
minute). A minute recorded twice (the repeated autumn hour, lived twice) keeps the sum of its
steps, the mean of its heart rates and 2 readings, so the cube's daily totals equal the daily
summary's, which counts that hour twice. The store is written one block of persons at a time, so memory
stays at one block whatever the cohort, under ``arrays/wearable_minute_cube/`` in the lake,
named by the versions of the two minute tables it was built from: a new version of either is a
new store, and earlier stores stay readable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from explorer.errors import ExplorerError

STREAMS = {"heart_rate": ("heart_rate_minute", "heart_rate_value"), "steps": ("steps_minute", "steps")}
#: how a minute's rows combine: readings of heart rate average, steps add up
COMBINE = {"heart_rate": "avg", "steps": "sum"}
#: persons per chunk and days per chunk of the cube: 64 persons x 7 days is 2.6 MB per variable
CHUNK_PERSONS = 64
CHUNK_DAYS = 7


def cube_path(lake) -> Path:
    """Where the cube of the current minute tables lives (it may not be written yet)."""
    versions = "-".join(f"{table}@{lake.version(table)}" for table, _ in STREAMS.values())
    return Path(lake.root) / "arrays" / "wearable_minute_cube" / f"{versions}.zarr"


def write_minute_cube(lake, *, chunk_persons: int = CHUNK_PERSONS, chunk_days: int = CHUNK_DAYS,
                      progress=None) -> Path:
    """Build the cube of the lake's current minute tables (or return the existing one)."""
    for table, _ in STREAMS.values():
        if not lake.has_table(table):
            raise ExplorerError(f"the minute cube needs table {table!r}: ingest wearable data first (`explorer ingest PATH`)")
    path = cube_path(lake)
    if (path / "zarr.json").exists():
        return path
    bounds = lake.sql("""SELECT min(first) AS first, max(last) AS last FROM (
                             SELECT min(datetime) AS first, max(datetime) AS last FROM heart_rate_minute
                             UNION ALL SELECT min(datetime), max(datetime) FROM steps_minute)""").iloc[0]
    persons = sorted(set(lake.sql("SELECT DISTINCT person_id FROM heart_rate_minute")["person_id"])
                     | set(lake.sql("SELECT DISTINCT person_id FROM steps_minute")["person_id"]))
    if not persons or pd.isna(bounds["first"]):
        raise ExplorerError("the minute tables are empty: nothing to put in a cube")
    start = pd.Timestamp(bounds["first"]).normalize()
    n_days = (pd.Timestamp(bounds["last"]).normalize() - start).days + 1
    minutes = pd.date_range(start, periods=n_days * 1440, freq="1min")
    chunks = {"person": chunk_persons, "minute": chunk_days * 1440}
    variables = {name: (("person", "minute"), _lazy_full(len(persons), len(minutes), chunks, np.nan, "float32"))
                 for name in STREAMS}
    variables["heart_rate_readings"] = (("person", "minute"), _lazy_full(len(persons), len(minutes), chunks, 0, "uint8"))
    template = xr.Dataset(variables, coords={"person": np.asarray(persons, dtype=object), "minute": minutes})
    template["heart_rate"].attrs.update(units="1/min", long_name="heart rate")
    template["steps"].attrs.update(units="1/min", long_name="steps per minute")
    template["heart_rate_readings"].attrs.update(units="1", long_name="heart-rate readings in the minute")
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    template.to_zarr(tmp, compute=False, mode="w", zarr_format=3, consolidated=False, encoding={
        name: {"chunks": (chunk_persons, chunk_days * 1440)} for name in variables})
    blocks = range(0, len(persons), chunk_persons)
    for k, low in enumerate(blocks):
        block = persons[low:low + chunk_persons]
        values = {}
        for name, (table, column) in STREAMS.items():
            rows = lake.sql(f"""SELECT person_id, CAST(epoch(datetime - ?) // 60 AS BIGINT) AS offset,
                                       {COMBINE[name]}({column}) AS value, count(*) AS readings
                                FROM {table} WHERE person_id >= ? AND person_id <= ? AND datetime IS NOT NULL
                                      AND {column} IS NOT NULL
                                GROUP BY ALL""", [start.to_pydatetime(), block[0], block[-1]])
            grid = np.full((len(block), len(minutes)), np.nan, dtype="float32")
            at = (pd.Index(block).get_indexer(rows["person_id"]), rows["offset"].to_numpy())
            grid[at] = rows["value"].to_numpy("float32")
            values[name] = (("person", "minute"), grid)
            if name == "heart_rate":
                readings = np.zeros((len(block), len(minutes)), dtype="uint8")
                readings[at] = rows["readings"].clip(upper=255).to_numpy("uint8")
                values["heart_rate_readings"] = (("person", "minute"), readings)
        xr.Dataset(values).to_zarr(
            tmp, region={"person": slice(low, low + len(block)), "minute": slice(0, len(minutes))}, consolidated=False)
        if progress:
            progress(k + 1, len(blocks), f"minute cube: persons {low + len(block)}/{len(persons)}")
    tmp.rename(path)
    return path


def _lazy_full(n_persons: int, n_minutes: int, chunks: dict, value, dtype: str):
    import dask.array as da

    return da.full((n_persons, n_minutes), value, dtype=dtype, chunks=(chunks["person"], chunks["minute"]))


def open_minute_cube(lake, *, build: bool = True) -> xr.Dataset:
    """The cube of the current minute tables as a Dask-backed Dataset (nothing is read until a
    result is computed); built first if ``build`` and it is not there yet."""
    path = cube_path(lake)
    if not (path / "zarr.json").exists():
        if not build:
            raise ExplorerError(f"no minute cube for the current tables at {path}: run write_minute_cube(lake) first")
        write_minute_cube(lake)
    return xr.open_zarr(path, chunks={}, zarr_format=3, consolidated=False)


def daily_totals(cube: xr.Dataset, valid_wear_minutes: int = 600) -> xr.Dataset:
    """Per person and local day, lazily (flox groupby over the minute axis): ``steps`` (sum),
    ``wear_minutes`` (minutes with heart rate), ``mean_hr`` and ``valid_day`` - the daily
    summary's columns that need no window, in one pass over the cube."""
    from flox.xarray import xarray_reduce

    day = cube["minute"].dt.floor("D").rename("date")
    readings = cube["heart_rate_readings"].astype("int64")
    steps = xarray_reduce(cube["steps"], day, func="nansum", dim="minute")
    wear = xarray_reduce(readings, day, func="sum", dim="minute")
    heart_sum = xarray_reduce((cube["heart_rate"].astype("float64") * readings).fillna(0), day, func="sum", dim="minute")
    mean_hr = heart_sum / wear.where(wear > 0)
    return xr.Dataset({"steps": steps, "wear_minutes": wear, "mean_hr": mean_hr,
                       "valid_day": wear >= valid_wear_minutes})


def mean_day_profile(cube: xr.Dataset, variable: str = "steps", bin_minutes: int = 60) -> xr.DataArray:
    """Each person's mean day: the mean of ``variable`` per ``bin_minutes`` of the local day over
    all days (flox groupby on time of day), lazily; dims person x time_of_day (minutes)."""
    from flox.xarray import xarray_reduce

    if 1440 % bin_minutes:
        raise ExplorerError(f"bin_minutes must divide a day (1440 minutes), got {bin_minutes}")
    minute = cube["minute"]
    time_of_day = ((minute.dt.hour * 60 + minute.dt.minute) // bin_minutes * bin_minutes).rename("time_of_day")
    return xarray_reduce(cube[variable], time_of_day, func="nanmean", dim="minute",
                         expected_groups=np.arange(0, 1440, bin_minutes))
