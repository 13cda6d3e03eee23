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
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from explorer.errors import ExplorerError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

STREAMS = {"heart_rate": ("heart_rate_minute", "heart_rate_value"), "steps": ("steps_minute", "steps")}
#: how a minute's rows combine: readings of heart rate average, steps add up
COMBINE = {"heart_rate": "avg", "steps": "sum"}
#: persons per chunk and days per chunk of the cube: 64 persons x 7 days is 2.6 MB per variable
CHUNK_PERSONS = 64
CHUNK_DAYS = 7


def cube_path(lake: Lake) -> Path:
    """Where the cube of the lake's current minute tables lives (it may not be written yet).

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake; the path is named by the versions of ``heart_rate_minute`` and ``steps_minute``.

    Returns
    -------
    pathlib.Path
        ``<lake>/arrays/wearable_minute_cube/heart_rate_minute@V-steps_minute@W.zarr``.

    Examples
    --------
    >>> cube_path(lake).name  # doctest: +SKIP
    'heart_rate_minute@3-steps_minute@3.zarr'
    """
    return lake.root / cube_key(lake)


def cube_key(lake: Lake) -> str:
    """The cube's key in the lake's storage (on object storage as in a folder)."""
    versions = "-".join(f"{table}@{lake.version(table)}" for table, _ in STREAMS.values())
    return f"arrays/wearable_minute_cube/{versions}.zarr"


def write_minute_cube(lake: Lake, *, chunk_persons: int = CHUNK_PERSONS, chunk_days: int = CHUNK_DAYS,
                      progress=None) -> Path:
    """Build the cube of the lake's current minute tables (or return the existing one).

    Parameters
    ----------
    lake : explorer.lake.Lake
        A lake holding ``heart_rate_minute`` and ``steps_minute``.
    chunk_persons : int, default :data:`CHUNK_PERSONS`
        Persons per Zarr chunk (and per block written).
    chunk_days : int, default :data:`CHUNK_DAYS`
        Days per Zarr chunk along the minute axis.
    progress : callable, optional
        Called as ``progress(done, total, text)`` after each block of persons.

    Returns
    -------
    pathlib.Path
        The Zarr v3 store (:func:`cube_path`): variables ``heart_rate`` (/min, the mean of the
        minute's readings), ``steps`` (/min, the sum) and ``heart_rate_readings`` (count), dims
        person x minute, NaN (0 readings) where nothing was recorded.

    Raises
    ------
    explorer.errors.ExplorerError
        A minute table is missing or empty.

    Notes
    -----
    Written to a ``.partial`` store one block of persons at a time and renamed when whole, so
    a reader never opens half a cube.

    Examples
    --------
    >>> path = write_minute_cube(lake)  # doctest: +SKIP
    """
    for table, _ in STREAMS.values():
        if not lake.has_table(table):
            raise ExplorerError(f"the minute cube needs table {table!r}: ingest wearable data first (`explorer ingest PATH`)")
    key = cube_key(lake)
    if not lake.is_local:  # built in a local folder, then uploaded with its root metadata last
        if lake.storage.exists(f"{key}/zarr.json"):
            return lake.storage.uri(key)
        with tempfile.TemporaryDirectory(prefix="explorer-cube-") as folder:
            built = _write_cube(lake, Path(folder) / "cube.zarr", chunk_persons, chunk_days, progress)
            lake.storage.put_tree(key, built)
        return lake.storage.uri(key)
    path = cube_path(lake)
    if (path / "zarr.json").exists():
        return path
    return _write_cube(lake, path, chunk_persons, chunk_days, progress)


def _write_cube(lake: Lake, path: Path, chunk_persons: int, chunk_days: int, progress) -> Path:
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


def open_minute_cube(lake: Lake, *, build: bool = True) -> xr.Dataset:
    """The cube of the lake's current minute tables as a lazy, Dask-backed Dataset.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    build : bool, default True
        Build the cube first (:func:`write_minute_cube`) when it is not there yet; False raises
        instead.

    Returns
    -------
    xarray.Dataset
        Dims person x minute, variables ``heart_rate`` and ``steps`` (/min, float32) and
        ``heart_rate_readings`` (count, uint8); nothing is read until a result is computed.

    Examples
    --------
    >>> cube = open_minute_cube(lake)                 # doctest: +SKIP
    >>> daily_totals(cube)["steps"].mean().compute()  # doctest: +SKIP
    """
    key = cube_key(lake)
    if not lake.storage.exists(f"{key}/zarr.json"):
        if not build:
            raise ExplorerError(f"no minute cube for the current tables at {lake.storage.uri(key)}: run "
                                "write_minute_cube(lake) first")
        write_minute_cube(lake)
    return xr.open_zarr(lake.storage.zarr_store(key, read_only=True), chunks={}, zarr_format=3, consolidated=False)


def daily_totals(cube: xr.Dataset, valid_wear_minutes: int = 600) -> xr.Dataset:
    """Per person and local day, the daily summary's columns that need no window, lazily.

    Parameters
    ----------
    cube : xarray.Dataset
        A minute cube (:func:`open_minute_cube`): ``heart_rate``, ``steps`` and
        ``heart_rate_readings`` over person x minute.
    valid_wear_minutes : int, default 600
        Wear minutes that make a day valid.

    Returns
    -------
    xarray.Dataset
        Dims person x date: ``steps`` (count, the day's sum), ``wear_minutes`` (minutes with a
        heart-rate reading, a minute read twice counting twice), ``mean_hr`` (/min, weighted by
        readings; NaN without any) and ``valid_day`` (``wear_minutes >= valid_wear_minutes``):
        the values of :func:`explorer.wearables.daily_summary` for those columns.

    Notes
    -----
    One pass over the cube, a flox groupby of the minute axis by its local day:
    ``mean_hr = sum(heart_rate * readings) / sum(readings)``.

    References
    ----------
    Master H, et al. Nat Med. 2022;28:2301-2308 (valid day: at least 10 h of wear).

    Examples
    --------
    A cube of one person and two days (heart rate from 08:00 to 20:00, then 08:00 to 15:00;
    100 steps a minute from 10:00 to 11:00 on the first day):

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.wearables.cube import daily_totals
    >>> minutes = pd.date_range("2024-01-01", periods=2 * 1440, freq="1min")
    >>> heart = np.full((1, 2 * 1440), np.nan, dtype="float32")
    >>> heart[0, 480:1200], heart[0, 1440 + 480:1440 + 900] = 60, 70
    >>> steps = np.zeros((1, 2 * 1440), dtype="float32")
    >>> steps[0, 600:660] = 100
    >>> cube = xr.Dataset({"heart_rate": (("person", "minute"), heart), "steps": (("person", "minute"), steps),
    ...                    "heart_rate_readings": (("person", "minute"), (~np.isnan(heart)).astype("uint8"))},
    ...                   coords={"person": ["p1"], "minute": minutes})
    >>> daily_totals(cube).to_dataframe()
                      steps  wear_minutes  mean_hr  valid_day
    person date
    p1     2024-01-01  6000.0           720     60.0       True
           2024-01-02     0.0           420     70.0      False
    """
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
    """Each person's mean day: the mean of ``variable`` per time of day, over all days, lazily.

    Parameters
    ----------
    cube : xarray.Dataset
        A minute cube (:func:`open_minute_cube`).
    variable : str, default "steps"
        The variable to average (its units are kept: steps or heart rate per minute).
    bin_minutes : int, default 60
        Width of a time-of-day bin in minutes; must divide 1440.

    Returns
    -------
    xarray.DataArray
        Dims person x time_of_day (the bin's first minute after midnight): the mean of
        ``variable`` over the recorded minutes of the bin on every day (NaN where none).

    Examples
    --------
    A cube of one person and two days (heart rate from 08:00 to 20:00, then 08:00 to 15:00;
    100 steps a minute from 10:00 to 11:00 on the first day):

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.wearables.cube import mean_day_profile
    >>> minutes = pd.date_range("2024-01-01", periods=2 * 1440, freq="1min")
    >>> heart = np.full((1, 2 * 1440), np.nan, dtype="float32")
    >>> heart[0, 480:1200], heart[0, 1440 + 480:1440 + 900] = 60, 70
    >>> steps = np.zeros((1, 2 * 1440), dtype="float32")
    >>> steps[0, 600:660] = 100
    >>> cube = xr.Dataset({"heart_rate": (("person", "minute"), heart), "steps": (("person", "minute"), steps),
    ...                    "heart_rate_readings": (("person", "minute"), (~np.isnan(heart)).astype("uint8"))},
    ...                   coords={"person": ["p1"], "minute": minutes})
    >>> profile = mean_day_profile(cube, "steps", bin_minutes=360)
    >>> profile["time_of_day"].values.tolist()
    [0, 360, 720, 1080]
    >>> [round(float(v), 3) for v in profile.sel(person="p1").values]   # 6000 steps / 720 minutes
    [0.0, 8.333, 0.0, 0.0]
    """
    from flox.xarray import xarray_reduce

    if 1440 % bin_minutes:
        raise ExplorerError(f"bin_minutes must divide a day (1440 minutes), got {bin_minutes}")
    minute = cube["minute"]
    time_of_day = ((minute.dt.hour * 60 + minute.dt.minute) // bin_minutes * bin_minutes).rename("time_of_day")
    return xarray_reduce(cube[variable], time_of_day, func="nanmean", dim="minute",
                         expected_groups=np.arange(0, 1440, bin_minutes))
