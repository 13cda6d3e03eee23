"""Climate grids as services deliver them (NetCDF4/HDF5, NetCDF3, Zarr) into daily Zarr v3 arrays.

Names. A grid's axes are found by name (``time``/``valid_time``, ``lat``/``latitude``,
``lon``/``longitude``) or by their CF attributes (``standard_name`` time/latitude/longitude,
``axis`` T/Y/X, ``units`` degrees_north/degrees_east). Its variables are found by the suite's own
names (tasmax, tasmin, tas, pm25), by ERA5's short names (``t2m`` hourly 2 m temperature,
``mx2t``/``mn2t`` maximum/minimum 2 m temperature since the previous post-processing, CAMS
``pm2p5``), or by CF ``standard_name`` (``air_temperature``, whose ``cell_methods`` ``time:
maximum``/``time: minimum`` say tasmax/tasmin; ``mass_concentration_of_pm2p5_ambient_aerosol_
particles_in_air``). A variable of none of these (ERA5's ``d2m``, say) is counted as ignored, by
name; a file with no axis or no variable the suite stores is refused, naming what was looked for.

Units. Each variable must carry ``units``: temperatures in K, degC or degF are stored in degC,
PM2.5 in ug/m3 (kg m-3 converted). A missing or foreign unit refuses the file: a temperature read
as degC when it was K would be 273 degrees off. Packed integers (``scale_factor``,
``add_offset``, ``_FillValue``/``missing_value``, as older CDS NetCDF files are) are unpacked by
xarray's CF decoding before any of this.

Space. Longitudes on 0..360 (ERA5) are stored on -180..180 and both axes ascending (ERA5's
latitude runs north to south), so every store reads the same way.

Hourly data and the local day. The suite's grids are daily and a day is the residence's local
calendar day (a heat wave is lived from local midnight to midnight, and exposure_daily matches
a person's local day). Hourly steps (stamped in UTC, as ERA5 is) are reduced to days at ingest,
each grid cell in the IANA time zone in which its centre lies (``tzfpy``, the time-zone lookup the
ingest already uses for residences), daylight saving time included: a cell in America/Phoenix
has days of 07:00 to 07:00 UTC all year; one in America/Denver 06:00 to 06:00 UTC in summer and
07:00 to 07:00 in winter. The residents of a cell are in its zone except for a cell astride a
zone border, where the centre decides. From instantaneous hourly temperature (``t2m``): ``tas``
the mean of the day's hours, ``tasmax``/``tasmin`` their maximum and minimum, unless the file
also holds ``mx2t``/``mn2t``, whose value stamped ``t`` is the extreme over the hour ending at
``t`` (so a local day takes the hours ending 01:00 to 24:00) and which catch a peak between two
hourly values: they then give tasmax/tasmin. Hourly PM2.5 gives the daily mean. A day keeps a
value only where every hour of it (23 or 25 on a clock-change day) is present and not missing;
the partial days at both ends of a UTC file are left out. Doing it at ingest keeps one daily
store per variable, which every later step reads unchanged; it is vectorised (one
reshape and reduction per run of equal-length days, no loop over days) and is what
``benchmarks/bench_era5.py`` measures against a per-day loop in xarray.

Stores are content-addressed (``arrays/<variable>/<sha256[:16]>.zarr``) and each becomes one row
of the ``array_store`` table, which carries versions and lineage.

References
----------
ERA5: data documentation, Copernicus Knowledge Base (ECMWF confluence), parameters 167 ``2t``/``t2m``,
201 ``mx2t``, 202 ``mn2t``; "GRIB to netCDF conversion on new CDS and ADS systems" (2024: dims
``valid_time``, ``latitude``, ``longitude``; ``GRIB_*`` attributes).
NetCDF Climate and Forecast (CF) Metadata Conventions 1.11: 3.1 units, 3.3 standard_name, 4
coordinate types (``axis``, degrees_north/east), 7.3 cell_methods, 8.1 packed data.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

NETCDF3 = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
HDF5 = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"

TEMPERATURE = {"K": lambda v: v - 273.15, "degC": lambda v: v, "Celsius": lambda v: v, "deg_C": lambda v: v,
               "°C": lambda v: v, "C": lambda v: v, "degF": lambda v: (v - 32.0) * 5.0 / 9.0, "°F": lambda v: (v - 32.0) * 5.0 / 9.0}
CONCENTRATION = {"ug/m3": lambda v: v, "ug m-3": lambda v: v, "µg/m3": lambda v: v, "ug/m^3": lambda v: v,
                 "kg m-3": lambda v: v * 1e9, "kg/m3": lambda v: v * 1e9}
# the UDUNITS/CF spellings and ECMWF's (``kg m**-3``, as CAMS NetCDF writes it)
TEMPERATURE.update({"kelvin": TEMPERATURE["K"], "degree_Celsius": TEMPERATURE["degC"], "degrees_Celsius": TEMPERATURE["degC"],
                    "degree_C": TEMPERATURE["degC"], "degree_Fahrenheit": TEMPERATURE["degF"], "degrees_Fahrenheit": TEMPERATURE["degF"]})
CONCENTRATION.update({"kg m**-3": CONCENTRATION["kg m-3"], "ug m**-3": CONCENTRATION["ug m-3"], "µg m-3": CONCENTRATION["ug m-3"],
                      "µg m**-3": CONCENTRATION["ug m-3"]})
KINDS = {"tasmax": ("degC", TEMPERATURE), "tasmin": ("degC", TEMPERATURE), "tas": ("degC", TEMPERATURE),
         "pm25": ("ug/m3", CONCENTRATION)}

#: suite axis -> (names it goes by, CF standard_name, CF axis, CF units)
AXES = {"time": (("time", "valid_time"), "time", "T", ()),
        "lat": (("lat", "latitude"), "latitude", "Y", ("degrees_north", "degree_north", "degrees_N", "degree_N")),
        "lon": (("lon", "longitude"), "longitude", "X", ("degrees_east", "degree_east", "degrees_E", "degree_E"))}

#: a variable's name -> (suite variable, what one value is): "value" a value at its time (an
#: instant, or a day's statistic in a daily file), "max"/"min" the extreme over the step ending at it
NAMES = {"tasmax": ("tasmax", "value"), "tasmin": ("tasmin", "value"), "tas": ("tas", "value"),
         "pm25": ("pm25", "value"), "t2m": ("tas", "value"), "mx2t": ("tasmax", "max"), "mn2t": ("tasmin", "min"),
         "pm2p5": ("pm25", "value")}
STANDARD_NAMES = {"air_temperature": "tas", "mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air": "pm25"}


class NetcdfGridReader(Reader):
    """NetCDF4/HDF5 (``h5netcdf``) and NetCDF3 classic (SciPy) grids, as :mod:`this module <explorer.ingest.readers.grids>` describes."""

    format = "cf_netcdf_grid"
    order = 60
    description = ("NetCDF4/HDF5 and NetCDF3 grids: ERA5 (t2m, mx2t, mn2t hourly, valid_time, 0..360 lon), CF "
                   "standard_names, packed integers; K/degC/degF, PM2.5 -> daily Zarr in the cell's local day")

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        if head[:4] in NETCDF3 or head[:8] == HDF5:
            return None
        return "not NetCDF (no CDF or HDF5 signature)"

    def read(self, path: Path, context: Context) -> ReadResult:
        import xarray as xr

        with path.open("rb") as handle:
            engine = "scipy" if handle.read(4) in NETCDF3 else "h5netcdf"
        try:
            ds = xr.open_dataset(path, engine=engine, decode_times=True)
        except Exception as exc:  # a damaged file or a missing optional engine: either way, not readable here
            raise ReaderError(f"cannot open as NetCDF with the {engine} engine ({type(exc).__name__}: {exc}); "
                              "check the file is complete (its size against the download's)") from None
        return store_grids(ds, context)


def is_zarr_zip(path: Path) -> bool:
    """A zip archive holding a Zarr store at its root (v3 ``zarr.json`` or v2 ``.zgroup``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return bool(names & {"zarr.json", ".zgroup", ".zattrs"})


class ZarrGridReader(Reader):
    """Zarr grids: a ``.zarr`` folder (ingest packs it into one zip, kept in the raw zone like any
    file) or a zipped Zarr store. Same names, variables, units and checks as the NetCDF reader."""

    format = "zarr_grid"
    order = 61
    description = "Zarr grids (a .zarr folder or zipped store), same variables and units as the NetCDF reader -> Zarr"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if head[:4] != ZIP_MAGIC:
            return "not a Zarr store (no zip signature)"
        if not is_zarr_zip(path):
            return "a zip archive, but no zarr.json or .zgroup at its root"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        import xarray as xr
        import zarr

        try:
            ds = xr.open_zarr(zarr.storage.ZipStore(path, mode="r"), consolidated=False, decode_times=True)
        except Exception as exc:
            raise ReaderError(f"cannot open as a Zarr store ({type(exc).__name__}: {exc})") from None
        return store_grids(ds, context)


RENAME_HINT = ("this reader has no option to map names: rename them before ingest, e.g. in xarray "
               "ds.rename({'t': 'time', 'y': 'lat', 'x': 'lon', 'temp': 'tas'}).to_netcdf(...), or NCO's ncrename")


def find_axes(ds) -> dict[str, str]:
    """The file's name of each suite axis (time, lat, lon), by name, then by CF attributes.

    Raises
    ------
    ReaderError
        An axis is not found: the message names every name and attribute looked for.
    """
    found, missing = {}, []
    for axis, (names, standard_name, cf_axis, units) in AXES.items():
        candidates = [n for n in names if n in ds.dims]
        if not candidates:
            candidates = [n for n in ds.dims if n in ds.variables and (
                ds[n].attrs.get("standard_name") == standard_name or ds[n].attrs.get("axis") == cf_axis
                or ds[n].attrs.get("units") in units)]
        if candidates:
            found[axis] = candidates[0]
        else:
            looked = f"a dimension named {' or '.join(names)}, or a coordinate with standard_name {standard_name!r} or axis {cf_axis!r}"
            missing.append((axis, f"{axis}: {looked}{' or units ' + '/'.join(units[:2]) if units else ''}"))
    if missing:  # what to do first: the CLI summary shortens a long reason, the table keeps it whole
        raise ReaderError(f"no {', '.join(axis for axis, _ in missing)} axis among the file's dimensions "
                          f"({', '.join(map(str, ds.dims)) or 'none'}); {RENAME_HINT}. Looked for "
                          + "; ".join(looked for _, looked in missing))
    return found


def classify(name: str, variable) -> tuple[str, str] | None:
    """(suite variable, kind of value) of a data variable, or None for one the suite does not store.

    By the suite's own or ERA5's short name first (:data:`NAMES`), then by CF ``standard_name``
    with ``cell_methods`` (``time: maximum`` over a day is tasmax; over an hour, the hour's extreme).
    """
    if name in NAMES:
        return NAMES[name]
    suite = STANDARD_NAMES.get(variable.attrs.get("standard_name"))
    if suite is None:
        return None
    methods = str(variable.attrs.get("cell_methods", ""))
    if suite == "tas" and "time: maximum" in methods:
        return "tasmax", "max"
    if suite == "tas" and "time: minimum" in methods:
        return "tasmin", "min"
    return suite, "value"


def cell_time_zones(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """IANA time zone of each cell centre, shape (lat, lon); a cell at sea takes tzfpy's ``Etc/GMT±h``.

    Parameters
    ----------
    lat, lon : numpy.ndarray
        Cell-centre latitudes and longitudes (degrees north, east in -180..180).
    """
    import tzfpy

    zones = np.empty((len(lat), len(lon)), dtype=object)
    for i, y in enumerate(lat):
        for j, x in enumerate(lon):
            # no zone at all only off every map: the nautical zone of the longitude (Etc signs are inverted)
            zones[i, j] = tzfpy.get_tz(float(x), float(y)) or f"Etc/GMT{-int(round(x / 15)):+d}".replace("+0", "")
    return zones


def local_day_runs(times_utc: pd.DatetimeIndex, zone: str, step: pd.Timedelta, *, period_end: bool):
    """How the hourly steps fall into local days of ``zone``.

    Parameters
    ----------
    times_utc : pandas.DatetimeIndex
        Sorted, unique, zone-less UTC times of the steps.
    zone : str
        IANA time zone.
    step : pandas.Timedelta
        The regular step of the file (1 hour for ERA5).
    period_end : bool
        True for values that are the extreme of the step ending at their time (ERA5 mx2t/mn2t):
        they belong to the day in which that step began.

    Returns
    -------
    days : pandas.DatetimeIndex
        Each local day met, in order (midnight, zone-less).
    starts : numpy.ndarray of int
        Index of the first step of each day (:func:`reduce_days`).
    complete : numpy.ndarray of bool
        Whether the day has all its steps: its length (23, 24 or 25 hours) over ``step``.
    """
    stamps = times_utc - step if period_end else times_utc
    local = stamps.tz_localize("UTC").tz_convert(zone).tz_localize(None).normalize()
    day_number = local.to_numpy().astype("datetime64[D]").astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(day_number)) + 1]
    counts = np.diff(np.r_[starts, len(day_number)])
    days = pd.DatetimeIndex(local[starts])
    # a day's length in UTC: next local midnight less this one (23 or 25 hours on a clock change)
    midnight = days.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
    following = (days + pd.Timedelta(days=1)).tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
    expected = np.asarray((following - midnight) / step)
    return days, starts, counts == expected


REDUCERS = {"max": lambda block: np.max(block, axis=1), "min": lambda block: np.min(block, axis=1),
            # float64 sums: a float32 running sum of 24 values would lose the last digits of a mean
            "mean": lambda block: np.mean(block, axis=1, dtype=np.float64)}


def reduce_days(hourly: np.ndarray, starts: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """One statistic per run of steps, for every column of ``hourly`` (time, cell).

    Consecutive days of the same number of steps are one reshape of a contiguous slice
    (``(days, steps, cells)``, a view, no copy) reduced along its middle axis: a year of ordinary
    days is a single NumPy call, and each clock-change day or partial end day one more.
    (``numpy.ufunc.reduceat`` along time does the same work some 20 times slower.)
    """
    out = np.empty((len(starts), hourly.shape[1]), dtype=np.float32)
    bounds = np.r_[0, np.flatnonzero(np.diff(counts)) + 1, len(counts)]
    for first, last in zip(bounds[:-1], bounds[1:]):
        steps = int(counts[first])
        block = hourly[starts[first]:starts[first] + steps * (last - first)].reshape(last - first, steps, -1)
        out[first:last] = REDUCERS[how](block)
    return out


def hourly_to_daily_statistics(values: np.ndarray, times_utc, zones: np.ndarray, hows=("max", "min", "mean"), *,
                               period_end: bool = False):
    """Daily statistics of hourly grids, each cell over the local days of its own time zone.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (time, lat, lon), float, hourly (any regular step dividing a day), in the unit wanted.
    times_utc : array-like of datetime64
        UTC time of each step: sorted, unique, regular.
    zones : numpy.ndarray of str
        IANA zone of each cell, shape (lat, lon) (:func:`cell_time_zones`).
    hows : iterable of {"max", "min", "mean"}
        The day's statistics.
    period_end : bool, default False
        The values are extremes of the step ending at their time (ERA5 ``mx2t``/``mn2t``):
        a local day takes the steps ending after its midnight up to the next midnight.

    Returns
    -------
    days : pandas.DatetimeIndex
        Local calendar days (midnight) complete in at least one zone.
    daily : dict of str to numpy.ndarray
        Per statistic, shape (day, lat, lon), float32: NaN where the cell's day lacks a step or
        holds a missing value (NaN propagates through max, min and mean, so a day with a missing
        hour has no value rather than the value of its other hours).

    Notes
    -----
    Zones whose days split the steps alike (America/Denver and America/Ciudad_Juarez; America/Phoenix
    and America/Hermosillo) are one group, reduced together by :func:`reduce_days`: the cost is a
    few passes over the data whatever the number of days. A group holding under an eighth of the
    cells is reduced on its own columns only (a column gather costs some passes over all cells).
    """
    times_utc = pd.DatetimeIndex(times_utc)
    step = pd.Timedelta(times_utc[1] - times_utc[0]) if len(times_utc) > 1 else pd.Timedelta(hours=1)
    hourly = np.ascontiguousarray(values.reshape(len(times_utc), -1))
    flat_zones = zones.ravel()
    groups = {}  # how a zone splits the steps into days -> its cells
    for zone in pd.unique(flat_zones):
        days, starts, complete = local_day_runs(times_utc, zone, step, period_end=period_end)
        key = (days.asi8.tobytes(), starts.tobytes(), complete.tobytes())
        cells = np.flatnonzero(flat_zones == zone)
        previous = groups.get(key)
        groups[key] = (days, starts, complete, cells if previous is None else np.r_[previous[3], cells])
    union = pd.DatetimeIndex(sorted(set().union(*(days[complete] for days, _, complete, _ in groups.values()))))
    daily = {how: np.full((len(union), hourly.shape[1]), np.nan, dtype=np.float32) for how in hows}
    for days, starts, complete, cells in groups.values():
        columns = hourly if 8 * len(cells) >= hourly.shape[1] else hourly[:, cells]
        counts = np.diff(np.r_[starts, len(times_utc)])
        rows = union.get_indexer(days[complete])
        for how in hows:
            reduced = reduce_days(columns, starts, counts, how)[complete]
            daily[how][np.ix_(rows, cells)] = reduced if columns is not hourly else reduced[:, cells]
    shape = (len(union), values.shape[1], values.shape[2])
    return union, {how: array.reshape(shape) for how, array in daily.items()}


def hourly_to_daily(values: np.ndarray, times_utc, zones: np.ndarray, how: str, *, period_end: bool = False):
    """One daily statistic of hourly grids in each cell's local day: :func:`hourly_to_daily_statistics` for one ``how``.

    Returns
    -------
    days : pandas.DatetimeIndex
    daily : numpy.ndarray
        Shape (day, lat, lon), float32.

    Examples
    --------
    Two days of hourly values 0..47 at one cell in UTC, and at one in America/Phoenix (UTC-7):

    >>> import numpy as np, pandas as pd
    >>> from explorer.ingest.readers.grids import hourly_to_daily
    >>> times = pd.date_range("2024-07-01", periods=48, freq="h")
    >>> values = np.arange(48.0).reshape(48, 1, 1)
    >>> days, daily = hourly_to_daily(values, times, np.array([["UTC"]]), "max")
    >>> [str(d.date()) for d in days], daily.ravel().tolist()
    (['2024-07-01', '2024-07-02'], [23.0, 47.0])
    >>> days, daily = hourly_to_daily(values, times, np.array([["America/Phoenix"]]), "max")
    >>> [str(d.date()) for d in days], daily.ravel().tolist()   # 07:00 to 06:00 UTC next day
    (['2024-07-01'], [30.0])
    """
    days, daily = hourly_to_daily_statistics(values, times_utc, zones, (how,), period_end=period_end)
    return days, daily[how]


def daily_statistics(found: dict, step: pd.Timedelta) -> dict:
    """Which daily statistic each suite variable takes from which source variable.

    ``found`` maps a source name to (suite variable, kind, variable). For hourly steps, an
    instantaneous temperature gives tas (mean) and, unless an hourly extreme (mx2t, mn2t) is
    there, tasmax and tasmin; an extreme gives its own. Returns suite variable -> (source name,
    how, period_end), or for daily steps suite variable -> (source name, None, False).
    """
    plan = {}
    if step >= pd.Timedelta(days=1):
        for source, (suite, _, _) in found.items():
            plan.setdefault(suite, (source, None, False))
        return plan
    for source, (suite, kind, _) in found.items():
        if kind == "max":
            plan["tasmax"] = (source, "max", step < pd.Timedelta(days=1))
        elif kind == "min":
            plan["tasmin"] = (source, "min", step < pd.Timedelta(days=1))
    for source, (suite, kind, _) in found.items():
        if suite == "tas" and kind == "value":
            plan.setdefault("tas", (source, "mean", False))
            plan.setdefault("tasmax", (source, "max", False))
            plan.setdefault("tasmin", (source, "min", False))
        elif suite == "pm25":
            plan.setdefault("pm25", (source, "mean", False))
        elif kind == "value":  # an hourly series named tasmax/tasmin: the day's extreme of its values
            plan.setdefault(suite, (source, "max" if suite == "tasmax" else "min", False))
    return plan


def store_grids(ds, context) -> ReadResult:
    """Each variable of ``ds`` as a daily Zarr v3 store in its kind's common unit, one array_store row each.

    Parameters
    ----------
    ds : xarray.Dataset
        The file as opened (CF-decoded: packed integers unpacked, fill values NaN).
    context : Context
        Where stores go (``arrays_root``) and the file's SHA-256 they are named by.

    Returns
    -------
    ReadResult
        ``array_store`` rows; variables the suite does not store counted in ``ignored`` by name.

    Raises
    ------
    ReaderError
        No time, latitude or longitude axis; a calendar pandas cannot place; no variable the suite
        stores; a variable with no or a foreign unit, or with an extra dimension; a repeated time;
        sub-daily steps of lengths that do not divide a day alike (missing hours of a regular
        series are kept as missing: their days get no value).
    """
    import xarray as xr

    with ds:
        axes = find_axes(ds)
        ds = ds.rename({source: axis for axis, source in axes.items() if source != axis})
        ds = ds.reset_coords(drop=True)  # ERA5's number and expver say which run, not where or when
        try:  # before anything is written: a calendar pandas cannot place (cftime) refuses the file
            times = pd.DatetimeIndex(ds["time"].values)
        except (TypeError, ValueError) as exc:
            raise ReaderError(f"time axis is not on the standard calendar ({exc}); convert it to "
                              "proleptic_gregorian, e.g. with xarray's convert_calendar") from None
        if float(ds["lon"].max()) > 180:  # 0..360 (ERA5): the suite's convention is -180..180
            ds = ds.assign_coords(lon=((ds["lon"] + 180.0) % 360.0) - 180.0)
        ds = ds.sortby("lat").sortby("lon")  # ERA5 runs north to south; stores read south to north
        if not times.is_unique:
            raise ReaderError(f"time axis repeats {times[times.duplicated()][0]}: one file must hold each time once "
                              "(an ERA5 request of two product types or experiment versions can; split it)")
        ds = ds.sortby("time")
        times = pd.DatetimeIndex(ds["time"].values)

        found, ignored = {}, {}
        for name, variable in ds.data_vars.items():
            kind = classify(str(name), variable)
            if kind is None:
                ignored[str(name)] = "not a variable this suite stores"
                continue
            extra = [d for d in variable.dims if d not in ("time", "lat", "lon")]
            if extra or "time" not in variable.dims:
                raise ReaderError(f"variable {name!r} has dimensions {', '.join(map(str, variable.dims))}; expected "
                                  "time, lat, lon (select one level first, e.g. ds.sel(pressure_level=1000))")
            suite = kind[0]
            unit = variable.attrs.get("units")
            target, conversions = KINDS[suite]
            if unit is None:
                raise ReaderError(f"variable {name!r} has no units attribute; expected one of "
                                  f"{', '.join(conversions)} (a temperature in K read as degC is 273 degrees off)")
            if unit not in conversions:
                raise ReaderError(f"variable {name!r} ({suite}) has units {unit!r}; expected one of {', '.join(conversions)}")
            found[str(name)] = (*kind, variable)
        if not found:
            raise ReaderError(f"no variable this suite stores among {', '.join(map(str, ds.data_vars)) or 'none'}; "
                              f"{RENAME_HINT}. Looked for the names {', '.join(NAMES)} and the CF standard_names "
                              f"{', '.join(STANDARD_NAMES)}")

        gaps = np.diff(times.asi8)
        step = pd.Timedelta(int(gaps.min())) if len(times) > 1 else pd.Timedelta(days=1)
        hourly = step < pd.Timedelta(days=1)
        if hourly:
            if (gaps % gaps.min()).any() or pd.Timedelta(days=1) % step != pd.Timedelta(0):
                raise ReaderError(f"sub-daily time axis mixes steps ({', '.join(sorted({str(pd.Timedelta(int(g))) for g in gaps})[:3])}) "
                                  "that do not divide a day alike; request one regular step (ERA5: hourly)")
            if (gaps != gaps.min()).any():  # missing hours: placed as missing, so their days have no value, not a partial one
                ds = ds.reindex(time=pd.date_range(times[0], times[-1], freq=step))
                times = pd.DatetimeIndex(ds["time"].values)
                found = {name: (*kind[:2], ds[name]) for name, kind in found.items()}
        plan = daily_statistics(found, step)
        for source in found:
            if source not in {s for s, _, _ in plan.values()}:
                ignored[source] = "a second source of a variable already stored"
        if hourly:
            zones = cell_time_zones(ds["lat"].values, ds["lon"].values)

        daily_of = {}  # (source, period_end) -> (days, {how: array}): one pass per source for all its statistics
        if hourly:
            for source, period_end in {(source, period_end) for source, _, period_end in plan.values()}:
                variable = found[source][2]
                suite = found[source][0]
                values = KINDS[suite][1][variable.attrs["units"]](variable.transpose("time", "lat", "lon").astype("float32"))
                hows = tuple(sorted({how for s, how, p in plan.values() if (s, p) == (source, period_end)}))
                daily_of[(source, period_end)] = hourly_to_daily_statistics(values.values, times, zones, hows,
                                                                            period_end=period_end)
        rows = []
        for suite, (source, how, period_end) in sorted(plan.items()):
            variable = found[source][2]
            target, conversions = KINDS[suite]
            unit = variable.attrs["units"]
            attrs = {k: v for k, v in variable.attrs.items() if k not in ("units", "scale_factor", "add_offset")}
            attrs.update(units=target, source_units=unit, source_variable=source)
            if hourly:
                days, daily = daily_of[(source, period_end)][0], daily_of[(source, period_end)][1][how]
                if not len(days):
                    raise ReaderError(f"variable {source!r}: no complete local day in {len(times)} steps of {step} "
                                      f"({times[0]} to {times[-1]} UTC); a day needs every hour from local midnight to midnight")
                attrs.update(long_name=f"daily {how} of {variable.attrs.get('long_name', source)} over the local day",
                             cell_methods=f"time: {'mean' if how == 'mean' else how + 'imum'} (local day of the cell's time zone)",
                             daily_from=f"{step} steps of {source} in UTC, each cell over the calendar days of the IANA "
                                        f"zone of its centre ({', '.join(sorted(set(zones.ravel())))})")
                if how in ("max", "min") and not period_end:  # open_grids prefers mx2t/mn2t's days over these
                    attrs["extremes_of_instants"] = "yes"
                out_values = xr.DataArray(daily, dims=("time", "lat", "lon"),
                                          coords={"time": days, "lat": ds["lat"].values, "lon": ds["lon"].values})
            else:
                out_values = conversions[unit](variable.transpose("time", "lat", "lon").astype("float32"))
            out_values.attrs = attrs
            store = Path(context.arrays_root) / suite / f"{context.source_sha256[:16]}.zarr"
            store.parent.mkdir(parents=True, exist_ok=True)
            out = out_values.to_dataset(name=suite).chunk({"time": 366, "lat": -1, "lon": -1})
            for variable_name in out.variables:  # a source's codecs (v2, packed int16) do not fit a float v3 store
                out[variable_name].encoding = {}
            out.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
            stored = pd.DatetimeIndex(out["time"].values)
            rows.append({"_row": len(rows) + 1, "variable": suite, "store": str(store.relative_to(Path(context.arrays_root).parent)),
                         "units": target, "source_units": unit, "time_start": stored.min(), "time_end": stored.max(),
                         "n_time": len(stored), "n_lat": int(ds.sizes["lat"]), "n_lon": int(ds.sizes["lon"]),
                         "lat_min": float(ds["lat"].min()), "lat_max": float(ds["lat"].max()),
                         "lon_min": float(ds["lon"].min()), "lon_max": float(ds["lon"].max())})
    counted = Counter({f"variable {name} ({why})": 1 for name, why in ignored.items()})
    return ReadResult(rows_read=len(rows) + len(counted), tables={"array_store": pd.DataFrame(rows)}, ignored=counted)
