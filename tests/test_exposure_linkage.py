"""Exposure linkage against brute-force references: grid values (nearest, bilinear) equal a loop
of xarray ``.sel`` / ``.interp`` calls, station values a loop over stations, windows and lags a
loop over events; residence periods become days with moves, gaps and overlaps as documented."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.errors import ExplorerError
from explorer.exposure import (
    area_linkage,
    event_windows,
    grid_values,
    haversine_km,
    lag_matrix,
    residence_days,
    station_values,
    temperature_anomaly,
)


def random_grid(seed: int, n_time=20, n_lat=7, n_lon=9, descending_lat=False):
    rng = np.random.default_rng(seed)
    lat = np.sort(rng.uniform(30, 40, n_lat)) if seed % 2 else np.linspace(30, 40, n_lat)
    lon = np.linspace(-110, -100, n_lon)
    values = rng.normal(20, 5, (n_time, n_lat, n_lon))
    values[rng.random(values.shape) < 0.02] = np.nan  # missing cells: bilinear gives NaN there
    grid = xr.DataArray(values, dims=("time", "lat", "lon"),
                        coords={"time": pd.date_range("2024-01-01", periods=n_time), "lat": lat, "lon": lon},
                        name="tasmax", attrs={"units": "degC"})
    return grid.isel(lat=slice(None, None, -1)) if descending_lat else grid


def random_points(grid, n, seed):
    rng = np.random.default_rng(seed + 1)
    lat = rng.uniform(float(grid.lat.min()) - 1, float(grid.lat.max()) + 1, n)
    lon = rng.uniform(float(grid.lon.min()) - 1, float(grid.lon.max()) + 1, n)
    time = grid.time.values[rng.integers(0, grid.sizes["time"], n)]
    return time, lat, lon


def half_cells(axis):
    axis = np.sort(axis)
    return axis[0] - (axis[1] - axis[0]) / 2, axis[-1] + (axis[-1] - axis[-2]) / 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_nearest_equals_a_loop_of_sel_calls(seed, descending_lat):
    grid = random_grid(seed, descending_lat=descending_lat)
    time, lat, lon = random_points(grid, 60, seed)
    found = grid_values(grid, time, lat, lon, method="nearest")
    (lat_lo, lat_hi), (lon_lo, lon_hi) = half_cells(grid.lat.values), half_cells(grid.lon.values)
    for k in range(len(lat)):
        outside = not (lat_lo <= lat[k] <= lat_hi and lon_lo <= lon[k] <= lon_hi)
        expected = np.nan if outside else float(grid.sel(time=time[k]).sel(lat=lat[k], lon=lon[k], method="nearest"))
        np.testing.assert_equal(found[k], expected)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_bilinear_equals_a_loop_of_interp_calls(seed, descending_lat):
    grid = random_grid(seed, descending_lat=descending_lat)
    time, lat, lon = random_points(grid, 60, seed)
    found = grid_values(grid, time, lat, lon, method="bilinear")
    for k in range(len(lat)):
        expected = float(grid.sel(time=time[k]).interp(lat=lat[k], lon=lon[k], method="linear"))
        np.testing.assert_allclose(found[k], expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_a_dask_chunked_zarr_grid_gives_the_same_values(tmp_path):
    grid = random_grid(3)
    grid.to_dataset().chunk({"time": 5}).to_zarr(tmp_path / "g.zarr", zarr_format=3, consolidated=False)
    lazy = xr.open_zarr(tmp_path / "g.zarr", consolidated=False)["tasmax"]
    assert lazy.chunks is not None
    time, lat, lon = random_points(grid, 200, 3)
    for method in ("nearest", "bilinear"):
        np.testing.assert_array_equal(grid_values(lazy, time, lat, lon, method=method),
                                      grid_values(grid, time, lat, lon, method=method))


def test_days_the_grid_does_not_cover_and_bad_arguments():
    grid = random_grid(4)
    found = grid_values(grid, [np.datetime64("2023-12-31"), grid.time.values[0]], [35.0, 35.0], [-105.0, -105.0])
    assert np.isnan(found[0]) and np.isfinite(found[1])
    with pytest.raises(ExplorerError, match="method 'cubic' is not one of nearest, bilinear"):
        grid_values(grid, grid.time.values[:1], [35.0], [-105.0], method="cubic")
    with pytest.raises(ExplorerError, match="one value per point"):
        grid_values(grid, grid.time.values[:2], [35.0], [-105.0])


def stations_frame(seed):
    rng = np.random.default_rng(seed)
    sites = pd.DataFrame({"station_id": [f"S{k}" for k in range(6)], "latitude": rng.uniform(30, 32, 6),
                          "longitude": rng.uniform(-101, -99, 6)})
    days = pd.date_range("2024-07-01", periods=5)
    frame = sites.merge(pd.DataFrame({"date": days}), how="cross")
    frame["value"] = rng.normal(30, 3, len(frame))
    return frame.sample(frac=0.85, random_state=seed)  # stations miss days


@pytest.mark.parametrize("seed", range(5))
def test_station_values_equal_a_loop_over_stations(seed):
    stations = stations_frame(seed)
    rng = np.random.default_rng(seed + 100)
    lat, lon = rng.uniform(29.8, 32.2, 40), rng.uniform(-101.2, -98.8, 40)
    dates = pd.to_datetime(rng.choice(pd.date_range("2024-06-30", periods=7), 40))
    nearest = station_values(stations, dates, lat, lon, method="nearest", max_distance_km=80)
    idw = station_values(stations, dates, lat, lon, method="idw", max_distance_km=80, power=2)
    for k in range(40):
        today = stations[pd.to_datetime(stations["date"]) == dates[k]]
        d = np.array([haversine_km(lat[k], lon[k], r.latitude, r.longitude) for r in today.itertuples()])
        near = d <= 80
        if not near.any():
            assert np.isnan(nearest[k]) and np.isnan(idw[k])
            continue
        assert nearest[k] == today["value"].to_numpy()[np.argmin(np.where(near, d, np.inf))]
        w = 1 / d[near] ** 2
        assert idw[k] == pytest.approx((w * today["value"].to_numpy()[near]).sum() / w.sum(), rel=1e-12)


def test_haversine_known_distance():
    # one degree of latitude along a meridian is pi * R / 180
    assert haversine_km(0, 0, 1, 0) == pytest.approx(np.pi * 6371.0088 / 180, rel=1e-12)


def test_residence_days_moves_gaps_and_overlaps():
    residence = pd.DataFrame({
        "person_id": ["a", "a", "b", "b", "c", "c", "d"],
        "start_date": [date(2024, 1, 1), date(2024, 1, 4), date(2024, 1, 1), date(2024, 1, 5), date(2024, 1, 1),
                       date(2024, 1, 3), date(2024, 1, 1)],
        "end_date": [date(2024, 1, 3), None, date(2024, 1, 2), None, date(2024, 1, 4), None, None],
        "latitude": [31.0, 32.0, 31.0, 33.0, 31.0, 34.0, 35.0], "longitude": [-100.0] * 7,
        "zip3": ["790", "791", "790", "792", "790", "793", "794"], "tract_geoid": ["48001000100"] * 7})
    residence = pd.concat([residence, residence.iloc[[6]]])  # a repeated row is not a conflict
    days = residence_days(residence, date(2024, 1, 1), date(2024, 1, 6)).set_index(["person_id", "date"])
    # a moves on the 4th: days 1-3 at 31, 4-6 at 32
    assert list(days.loc["a", "latitude"]) == [31.0, 31.0, 31.0, 32.0, 32.0, 32.0]
    # b has no address on the 3rd and 4th: gaps, no location
    assert list(days.loc["b", "residence_status"]) == ["ok", "ok", "gap", "gap", "ok", "ok"]
    assert days.loc[("b", date(2024, 1, 3)), "latitude"] is None or np.isnan(days.loc[("b", date(2024, 1, 3)), "latitude"])
    # c's periods overlap on the 3rd and 4th at different places: flagged, not guessed
    assert list(days.loc["c", "residence_status"]) == ["ok", "ok", "overlap", "overlap", "ok", "ok"]
    assert days.loc["c", "latitude"].isna().sum() == 2
    assert (days.loc["d", "residence_status"] == "ok").all()
    assert len(days) == 4 * 6


def test_residence_rows_that_are_not_periods_are_refused():
    bad = pd.DataFrame({"person_id": ["a"], "start_date": [date(2024, 2, 1)], "end_date": [date(2024, 1, 1)],
                        "latitude": [31.0], "longitude": [-100.0]})
    with pytest.raises(ExplorerError, match="person a: start_date 2024-02-01 and end_date 2024-01-01 do not make a period"):
        residence_days(bad, date(2024, 1, 1), date(2024, 3, 1))


def test_temperature_anomaly_known_answer():
    time = pd.date_range("2023-01-01", "2024-12-31")
    month_means = {m: 10.0 + m for m in range(1, 13)}
    base = np.array([month_means[t.month] for t in time])
    tas = xr.DataArray(base + np.where(time.year == 2024, 2.5, 0.0), dims="time", coords={"time": time},
                       attrs={"units": "degC"})
    anomaly = temperature_anomaly(tas, baseline=(2023, 2023))
    np.testing.assert_allclose(anomaly.sel(time="2023").values, 0.0, atol=1e-12)
    np.testing.assert_allclose(anomaly.sel(time="2024").values, 2.5, atol=1e-12)
    assert anomaly.attrs["units"] == "K"
    with pytest.raises(ExplorerError, match="baseline 1990-1991 holds no day"):
        temperature_anomaly(tas, baseline=(1990, 1991))


def exposure_frame(seed, persons=5, days=60):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"person_id": np.repeat([f"p{k}" for k in range(persons)], days),
                          "date": np.tile(pd.date_range("2024-01-01", periods=days).date, persons)})
    frame["tasmax"] = rng.normal(30, 4, len(frame))
    frame.loc[rng.random(len(frame)) < 0.1, "tasmax"] = np.nan
    frame["heat_wave"] = rng.random(len(frame)) < 0.2
    return frame.sample(frac=0.9, random_state=seed)  # some person-days absent altogether


@pytest.mark.parametrize("seed", range(4))
def test_event_windows_and_lags_equal_a_loop_over_events(seed):
    exposure = exposure_frame(seed)
    rng = np.random.default_rng(seed + 7)
    events = pd.DataFrame({"event_id": range(50), "person_id": rng.choice([f"p{k}" for k in range(6)], 50),
                           "event_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(-5, 70, 50), "D")})
    windows = event_windows(events, exposure, windows=(0, 7, 30), variables=("tasmax",), flag="heat_wave")
    lags = lag_matrix(events, exposure, "tasmax", 10).set_index("event_id")
    keyed = exposure.assign(date=pd.to_datetime(exposure["date"])).set_index(["person_id", "date"])
    for row in windows.itertuples():
        span = pd.date_range(row.event_date - pd.Timedelta(days=row.window_days), row.event_date)
        inside = keyed.reindex(pd.MultiIndex.from_product([[row.person_id], span]))
        values = inside["tasmax"].dropna()
        assert row.days_with_value == len(values)
        np.testing.assert_allclose(row.tasmax_mean, values.mean() if len(values) else np.nan, rtol=1e-12, equal_nan=True)
        flags = inside["heat_wave"].dropna()
        if len(flags):
            assert row.heat_wave_days == int(flags.astype(bool).sum())
        else:
            assert pd.isna(row.heat_wave_days)
    for event in events.itertuples():
        for lag in range(11):
            key = (event.person_id, event.event_date - pd.Timedelta(days=lag))
            expected = keyed["tasmax"].get(key, np.nan)
            np.testing.assert_equal(lags.loc[event.event_id, f"lag_{lag}"], expected)


def test_area_linkage_takes_the_longest_held_area_and_the_latest_value_at_or_before_the_year():
    days = pd.DataFrame({"person_id": "a", "date": pd.date_range("2023-12-20", "2024-12-31").date})
    days["tract_geoid"] = np.where(pd.to_datetime(days["date"]) < "2024-03-01", "T1", "T2")
    days["zip3"] = "790"
    areas = pd.DataFrame({"area_type": "tract", "area_id": ["T1", "T2", "T2"], "year": [2020, 2021, 2025],
                          "variable": "lead_risk_decile", "value": [3.0, 8.0, 9.0], "unit": "1"})
    linked = area_linkage(days, areas, area_type="tract").set_index("year")
    assert linked.loc[2023, "area_id"] == "T1" and linked.loc[2023, "value"] == 3.0
    assert linked.loc[2024, "area_id"] == "T2" and linked.loc[2024, "value"] == 8.0 and linked.loc[2024, "value_year"] == 2021
    with pytest.raises(ExplorerError, match="no variable 'pm25'"):
        area_linkage(days, areas, variable="pm25")


def small_grids(times, value=30.0):
    lat, lon = np.array([31.0, 31.5]), np.array([-100.5, -100.0])
    shape = (len(times), 2, 2)

    def grid(name, v, units):
        return xr.DataArray(np.full(shape, v, dtype=float) + np.arange(len(times))[:, None, None], dims=("time", "lat", "lon"),
                            coords={"time": pd.DatetimeIndex(times), "lat": lat, "lon": lon}, name=name,
                            attrs={"units": units})
    return {"tasmax": grid("tasmax", value, "degC"), "tasmin": grid("tasmin", value - 10, "degC")}


def one_home(start=date(2024, 7, 1), end=None, lat=31.1, lon=-100.4):
    return pd.DataFrame({"person_id": ["a"], "start_date": [start], "end_date": [end], "latitude": [lat],
                         "longitude": [lon], "zip3": ["790"], "tract_geoid": ["48001000100"]})


def test_a_day_no_grid_holds_has_no_value_and_noon_stamps_are_days():
    from explorer.exposure import exposure_daily

    noon = pd.to_datetime(["2024-07-01 12:00", "2024-07-02 12:00", "2024-07-04 12:00"])
    found = exposure_daily(one_home(), small_grids(noon), baseline=(2024, 2024)).set_index("date")
    assert found.loc[date(2024, 7, 1), "tasmax"] == 30.0 and found.loc[date(2024, 7, 4), "tasmax"] == 32.0
    assert np.isnan(found.loc[date(2024, 7, 3), "tasmax"]) and pd.isna(found.loc[date(2024, 7, 3), "heat_wave"])


def test_a_home_taken_after_the_grids_end_and_one_without_coordinates():
    from explorer.exposure import exposure_daily

    days = pd.date_range("2024-07-01", periods=3)
    later = exposure_daily(one_home(start=date(2025, 3, 1)), small_grids(days), baseline=(2024, 2024))
    assert (later["residence_status"] == "gap").all() and later["tasmax"].isna().all()
    unplaced = exposure_daily(one_home(lat=None, lon=None), small_grids(days), baseline=(2024, 2024))
    assert (unplaced["residence_status"] == "no_location").all() and unplaced["tasmax"].isna().all()


def test_grids_in_other_units_are_refused_and_0_360_longitudes_are_understood():
    from explorer.exposure import exposure_daily

    days = pd.date_range("2024-07-01", periods=3)
    grids = small_grids(days)
    kelvin = {**grids, "tasmax": grids["tasmax"].assign_attrs(units="K")}
    with pytest.raises(ExplorerError, match="the tasmax grid is in 'K'; exposure_daily expects degC"):
        exposure_daily(one_home(), kelvin)
    east = grids["tasmax"].assign_coords(lon=grids["tasmax"].lon % 360)
    np.testing.assert_array_equal(grid_values(east, days, [31.1] * 3, [-100.4] * 3),
                                  grid_values(grids["tasmax"], days, [31.1] * 3, [-100.4] * 3))


def test_station_tables_with_several_variables_are_refused_and_no_station_gives_nan():
    stations = stations_frame(1)
    both = pd.concat([stations.assign(element="TMAX"), stations.assign(element="TMIN", value=stations["value"] - 10)])
    with pytest.raises(ExplorerError, match="more than one value on .*element = 'TMAX'"):
        station_values(both, ["2024-07-01"], [31.0], [-100.0])
    assert np.isnan(station_values(stations.iloc[:0], ["2024-07-01"], [31.0], [-100.0])).all()


def test_area_values_with_and_without_a_year_together():
    days = pd.DataFrame({"person_id": "a", "date": pd.date_range("2023-01-01", "2024-12-31").date, "tract_geoid": "T1",
                         "zip3": "790"})
    areas = pd.DataFrame({"area_type": "tract", "area_id": "T1", "year": [2024, None], "variable": "deprivation",
                          "value": [7.0, 5.0], "unit": "1"})
    linked = area_linkage(days, areas).set_index("year")
    assert linked.loc[2023, "value"] == 5.0 and linked.loc[2024, "value"] == 7.0


def test_windows_with_no_flag_known_say_so():
    exposure = pd.DataFrame({"person_id": "a", "date": pd.date_range("2024-01-01", periods=3),
                             "tasmax": [30.0, 31.0, 32.0], "heat_wave": [True, True, False]})
    events = pd.DataFrame({"person_id": ["a", "b"], "event_date": pd.to_datetime(["2024-01-03", "2024-01-03"])})
    found = event_windows(events, exposure, windows=(7,), variables=("tasmax",))
    assert found["heat_wave_days"].iloc[0] == 2 and pd.isna(found["heat_wave_days"].iloc[1])
