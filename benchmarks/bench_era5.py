"""ERA5 hourly to daily grids (issue 22): a year of hourly 2 m temperature over the synthetic region.

The input is what a CDS request for the synthetic cohort's region returns: ERA5's 0.25 degree grid
over the region of :class:`explorer.synth.config.Region` (31-41 N, 114-96 W: 40 x 72 cells, six IANA
time zones among them, Phoenix and Denver included) and every hour of 2024 (8,784 steps, in UTC),
held in memory as float32 in degC. Both sides compute tasmax, tasmin and tas (max, min and mean of
the hours) per cell over the local calendar days of the cell's zone, daylight saving time included,
and must agree to float32 rounding:

- candidate: :func:`explorer.ingest.readers.grids.hourly_to_daily_statistics`, what the NetCDF reader
  runs (zones that split days alike grouped; per group, one reshape and reduction per run of
  equal-length days);
- baseline: a per-day loop in xarray, as one writes it without that: for each zone and local day,
  ``sel`` the day's UTC hours of the zone's cells and take ``max``/``min``/``mean`` over time.

The cells' zones (tzfpy) are looked up once, outside both timings (same input to both), and
reported. Target: the candidate at least 10x faster (ratio <= 0.1). ``--quick`` (scale 0.04) runs a
month over a quarter of the cells, to check the harness.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

from benchmarks.harness import Result, benchmark, interleaved_medians

STATISTICS = ("max", "min", "mean")


def hourly_field(n_hours: int, lat: np.ndarray, lon: np.ndarray, seed: int = 3) -> np.ndarray:
    """A diurnal cycle (peak 22 UTC, mid-afternoon in the region), a season and noise, in degC."""
    rng = np.random.default_rng(seed)
    hour = np.arange(n_hours)
    diurnal = 7.0 * np.cos(2 * np.pi * (hour - 22) / 24)[:, None, None]
    season = -10.0 * np.cos(2 * np.pi * (hour / 24 - 15) / 365.25)[:, None, None]
    level = 24.0 - 0.9 * (lat[None, :, None] - 31.0)
    noise = rng.normal(0, 1.0, (n_hours, len(lat), len(lon)))
    return (level + season + diurnal + noise + 0.0 * lon[None, None, :]).astype("float32")


def vectorised(values, times, zones):
    from explorer.ingest.readers.grids import hourly_to_daily_statistics

    days, daily = hourly_to_daily_statistics(values, times, zones, STATISTICS)
    return {how: (days, daily[how]) for how in STATISTICS}


def per_day_loop(values, times, zones):
    """The per-day loop in xarray: for each zone, each local day, ``sel`` its hours and reduce."""
    import xarray as xr

    n_time, n_lat, n_lon = values.shape
    hourly = xr.DataArray(values.reshape(n_time, -1), dims=("time", "cell"), coords={"time": times})
    flat_zones = zones.ravel()
    results = {how: {} for how in STATISTICS}
    for zone in pd.unique(flat_zones):
        cells = hourly.isel(cell=np.flatnonzero(flat_zones == zone))
        local = pd.DatetimeIndex(times).tz_localize("UTC").tz_convert(zone)
        for day in pd.DatetimeIndex(local.tz_localize(None).normalize()).unique():
            begin = day.tz_localize(zone, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC").tz_localize(None)
            end = (day + pd.Timedelta(days=1)).tz_localize(zone, ambiguous=False,
                                                           nonexistent="shift_forward").tz_convert("UTC").tz_localize(None)
            window = cells.sel(time=slice(begin, end - pd.Timedelta(hours=1)))
            if window.sizes["time"] * pd.Timedelta(hours=1) != end - begin:  # a partial day at either end
                continue
            for how in STATISTICS:
                results[how].setdefault(day, np.full(n_lat * n_lon, np.nan, dtype=np.float32))
                results[how][day][np.flatnonzero(flat_zones == zone)] = getattr(window, how)("time").values
    out = {}
    for how, by_day in results.items():
        days = pd.DatetimeIndex(sorted(by_day))
        out[how] = (days, np.stack([by_day[d] for d in days]).reshape(len(days), n_lat, n_lon))
    return out


@benchmark("era5")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from explorer.ingest.readers.grids import cell_time_zones
    from explorer.synth.config import Region

    region = Region()
    step = 0.25  # ERA5's grid
    lat = np.arange(region.lat_min + step / 2, region.lat_max, step)
    lon = np.arange(region.lon_min + step / 2, region.lon_max, step)
    n_hours = 8784 if scale >= 1 else 24 * 31
    if scale < 1:
        lat, lon = lat[::2], lon[::2]
    times = pd.date_range("2024-01-01", periods=n_hours, freq="h")
    progress(0, 3, f"{n_hours} hours x {len(lat)} x {len(lon)} cells of hourly temperature")
    values = hourly_field(n_hours, lat, lon)
    begun = time.perf_counter()
    zones = cell_time_zones(lat, lon)
    zones_s = time.perf_counter() - begun
    progress(1, 3, "checking both give the same days and values")
    ours, theirs = vectorised(values, times, zones), per_day_loop(values, times, zones)
    for how in STATISTICS:
        assert list(ours[how][0]) == list(theirs[how][0]), how
        np.testing.assert_allclose(ours[how][1], theirs[how][1], rtol=1e-5, atol=1e-4, equal_nan=True)
    progress(2, 3, "timing, interleaved")
    timed = interleaved_medians({"ours": lambda: vectorised(values, times, zones),
                                 "loop": lambda: per_day_loop(values, times, zones)},
                                repeats=max(1, min(repeats, 3)), warmup=0)
    ours_s, loop_s = statistics.median(timed["ours"]), statistics.median(timed["loop"])
    n_zones = len(set(zones.ravel()))
    size = f"{n_hours} h x {len(lat)} x {len(lon)} cells ({values.nbytes / 1e6:.0f} MB float32), {n_zones} zones"
    return [
        Result("era5", "hourly -> daily, vectorised", ours_s, "s", "per-day xarray loop", loop_s, 0.1,
               f"tasmax, tasmin, tas in each cell's local day; {size}; same days and values"),
        Result("era5", "cell time zones (tzfpy)", zones_s, "s", note=f"{len(lat) * len(lon)} cells, once per file"),
    ]
