"""Exposure linkage (issue 7): person-day linkage to a daily grid, and windows before events.

- Person-day linkage: 1,000 persons x 365 days (a fifth of them move mid-year) against a daily
  grid of 365 x 500 x 500 cells in Dask-chunked Zarr, nearest cell and bilinear, with
  ``explorer.exposure`` (``residence_days`` then ``grid_values``). Baseline: a per-row ``.sel``
  loop, as one writes it without vectorised indexing, timed on a sample of rows and scaled to
  all of them (it would take an hour otherwise); the loop's values are checked against ours.
  Targets: at least 20x faster than the loop, and at most 5 s.
- Event windows: 100,000 events x 3 windows (0-7, 0-30, 0-365 days) over those person-days
  (``event_windows``): at most 10 s. Baseline: the same windows as one DuckDB range join,
  reported.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pandas as pd

from benchmarks.harness import DATA, Result, benchmark

START = pd.Timestamp("2023-01-01")


def build_grid(path, n_time: int, n_lat: int, n_lon: int, seed: int = 5):
    """A smooth random daily grid in Zarr v3, chunked 73 days x 100 x 100 cells (kept between runs)."""
    import xarray as xr

    if (path / "zarr.json").exists():
        grid = xr.open_zarr(path, consolidated=False)["tasmax"]
        if grid.shape == (n_time, n_lat, n_lon):
            return grid
    rng = np.random.default_rng(seed)
    lat = np.linspace(25.0, 49.0, n_lat)
    lon = np.linspace(-125.0, -67.0, n_lon)
    season = 10 * np.sin(2 * np.pi * np.arange(n_time) / 365.25)[:, None, None]
    field = 35 - 0.5 * (lat[None, :, None] - 25) + season + rng.normal(0, 2, (n_time, n_lat, n_lon)).astype("float32")
    grid = xr.DataArray(field.astype("float32"), dims=("time", "lat", "lon"),
                        coords={"time": pd.date_range(START, periods=n_time), "lat": lat, "lon": lon},
                        name="tasmax", attrs={"units": "degC"})
    grid.to_dataset().chunk({"time": 73, "lat": 100, "lon": 100}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return xr.open_zarr(path, consolidated=False)["tasmax"]


def residences(persons: int, n_days: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(persons):
        pid = f"{k:032x}"
        first = (pid, START, pd.NaT, rng.uniform(25.5, 48.5), rng.uniform(-124.5, -67.5))
        if rng.random() < 0.2:  # moves mid-year
            move = START + pd.Timedelta(days=int(rng.integers(30, n_days - 30)))
            rows.append((pid, START, move - pd.Timedelta(days=1), first[3], first[4]))
            rows.append((pid, move, pd.NaT, rng.uniform(25.5, 48.5), rng.uniform(-124.5, -67.5)))
        else:
            rows.append(first)
    frame = pd.DataFrame(rows, columns=["person_id", "start_date", "end_date", "latitude", "longitude"])
    frame["zip3"], frame["tract_geoid"] = "000", "00000000000"
    return frame


def link(grid, residence, n_days, method):
    from explorer.exposure import grid_values, residence_days

    days = residence_days(residence, START.date(), (START + pd.Timedelta(days=n_days - 1)).date())
    values = grid_values(grid, days["date"].to_numpy(), days["latitude"].to_numpy(dtype=float),
                         days["longitude"].to_numpy(dtype=float), method=method)
    return days.assign(tasmax=values)


def sel_loop(grid, rows: pd.DataFrame, method: str) -> np.ndarray:
    """The per-row loop: one ``.sel`` (nearest) or ``.interp`` (bilinear) per person-day."""
    out = np.empty(len(rows))
    for k, row in enumerate(rows.itertuples()):
        day = grid.sel(time=pd.Timestamp(row.date))
        if method == "nearest":
            out[k] = float(day.sel(lat=row.latitude, lon=row.longitude, method="nearest"))
        else:
            out[k] = float(day.interp(lat=row.latitude, lon=row.longitude))
    return out


def events_frame(n: int, persons: int, n_days: int, seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"event_id": np.arange(n), "person_id": [f"{k:032x}" for k in rng.integers(0, persons, n)],
                         "event_date": START + pd.to_timedelta(rng.integers(0, n_days + 30, n), "D")})


def duckdb_windows(events: pd.DataFrame, exposure: pd.DataFrame, windows) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    con.register("events", events)
    con.register("exposure", exposure)
    con.register("windows", pd.DataFrame({"window_days": np.asarray(windows, dtype=np.int32)}))
    return con.execute("""
        SELECT e.event_id, w.window_days, avg(x.tasmax) AS tasmax_mean, count(x.tasmax) AS days_with_value,
               count(*) FILTER (WHERE x.heat_wave) AS heat_wave_days
        FROM events e CROSS JOIN windows w
        LEFT JOIN exposure x ON x.person_id = e.person_id
             AND x.date BETWEEN CAST(e.event_date AS DATE) - w.window_days AND CAST(e.event_date AS DATE)
        GROUP BY ALL""").df()


@benchmark("exposure")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from explorer.exposure import event_windows

    persons, n_days = max(40, int(1000 * scale)), 365
    side = max(50, int(500 * min(1.0, scale * 5)))
    total_steps = 4
    progress(0, total_steps, f"writing a {n_days} x {side} x {side} grid (Zarr, chunked)")
    grid = build_grid(DATA / f"exposure_grid_{side}.zarr", n_days, side, side)
    residence = residences(persons, n_days)
    timed = max(1, min(repeats, 5))
    progress(1, total_steps, f"person-day linkage: {persons} persons x {n_days} days")
    ours, loop, checked = {}, {}, {}
    for method in ("nearest", "bilinear"):
        link(grid, residence, n_days, method)  # warm: file system cache, imports
        samples = []
        for _ in range(timed):
            start = time.perf_counter()
            linked = link(grid, residence, n_days, method)
            samples.append(time.perf_counter() - start)
        ours[method] = statistics.median(samples)
        sample = linked.sample(n=min(len(linked), 400 if scale >= 1 else 100), random_state=1)
        loaded = grid.load()  # the loop on an in-memory grid: its best case
        start = time.perf_counter()
        by_loop = sel_loop(loaded, sample, method)
        loop[method] = (time.perf_counter() - start) / len(sample) * len(linked)
        np.testing.assert_allclose(sample["tasmax"].to_numpy(), by_loop, rtol=1e-6, atol=1e-5)
        checked[method] = len(sample)
    progress(2, total_steps, "event windows: 100,000 events x 3 windows")
    exposure = linked[["person_id", "date", "tasmax"]].assign(heat_wave=linked["tasmax"] > 40)
    events = events_frame(max(4000, int(100_000 * scale)), persons, n_days)
    samples = []
    for _ in range(timed):
        start = time.perf_counter()
        windows = event_windows(events, exposure, windows=(7, 30, 365), variables=("tasmax",), flag="heat_wave")
        samples.append(time.perf_counter() - start)
    windows_s = statistics.median(samples)
    progress(3, total_steps, "the same windows as one DuckDB range join")
    start = time.perf_counter()
    by_sql = duckdb_windows(events, exposure, (7, 30, 365))
    sql_s = time.perf_counter() - start
    merged = windows.merge(by_sql, on=["event_id", "window_days"], suffixes=("", "_sql"))
    assert len(merged) == len(windows) == len(by_sql)
    np.testing.assert_allclose(merged["tasmax_mean"], merged["tasmax_mean_sql"], rtol=1e-9, equal_nan=True)
    # no flag in the window: ours says unknown, the join counts 0
    assert (merged["heat_wave_days"].fillna(0) == merged["heat_wave_days_sql"]).all()
    machine = f"{os.cpu_count()} cores"
    rows = persons * n_days
    results = []
    for method in ("nearest", "bilinear"):
        results += [
            Result("exposure", f"person-day linkage, {method}", ours[method], "s", limit=5.0,
                   note=f"{persons} persons x {n_days} days ({rows:,} person-days), grid {n_days} x {side} x {side} "
                        f"Zarr chunked 73 x 100 x 100; residence_days + grid_values; {machine}"),
            Result("exposure", f"{method} vs per-row loop", ours[method], "s", f"per-row .sel loop, {method}",
                   loop[method], 1 / 20, f"loop timed on {checked[method]} rows of an in-memory grid and scaled to "
                                         f"{rows:,}; its values equal ours"),
        ]
    results += [
        Result("exposure", "event windows", windows_s, "s", limit=10.0,
               note=f"{len(events):,} events x 3 windows (0-7, 0-30, 0-365 days), {machine}"),
        Result("exposure", "event windows vs DuckDB range join", windows_s, "s", "DuckDB range join", sql_s, None,
               "the same windows as one SQL join; same means and counts"),
    ]
    return results
