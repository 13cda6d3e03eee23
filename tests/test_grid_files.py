"""Climate grids as the services deliver them, built here by hand from their published layouts
(tests/data/README.md, "Climate grids", cites each): ERA5 from the Copernicus Climate Data Store in
the NetCDF4 of the new CDS (``valid_time``, ``latitude`` north to south, ``longitude`` 0..360,
hourly ``t2m``/``mx2t``/``mn2t`` in K, ``GRIB_*`` attributes), the older CDS NetCDF3 with packed
int16, and CF files found by ``standard_name``/``axis`` alone. Known answers are worked out in the
comments from the values written; the hourly-to-daily reduction is checked against a plain loop by
hypothesis; a grid whose cells lie in America/Phoenix and America/Denver gives each its own local
day, down to the residents' exposure_daily rows."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.exposure.daily import exposure_daily, open_grids
from explorer.ingest.readers.grids import hourly_to_daily, hourly_to_daily_statistics

KEY = "grid-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)
# Cell centres (ERA5 0..360 longitudes): (33.5 N, 247.75 E = -112.25) lies in Arizona (America/Phoenix,
# UTC-7 all year); (40.0 N, 255.0 E = -105.0) near Boulder, (40.0, -112.25) in Utah and (33.5, -105.0)
# in New Mexico all lie in America/Denver (UTC-6 in July, daylight saving time).
LAT_NORTH_TO_SOUTH = [40.0, 33.5]
LON_0_360 = [247.75, 255.0]
HOURS = 72  # 2024-07-01 00:00 UTC to 2024-07-03 23:00 UTC


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    return explorer.open(tmp_path / "lake")


def hourly_kelvin(offset: float = 0.0) -> np.ndarray:
    """t2m at hour index h (0..71) is 293.15 + h K = 20 + h degC at every cell: the day's maximum is
    then simply its last hour, its minimum its first, its mean the middle."""
    return np.broadcast_to((293.15 + offset + np.arange(HOURS, dtype="float64"))[:, None, None],
                           (HOURS, 2, 2)).copy()


def grib_attrs(param_id: int, short: str, name: str, step_type: str) -> dict:
    # the attributes the new CDS writes on each variable (GRIB to netCDF conversion, 2024)
    return {"GRIB_paramId": param_id, "GRIB_dataType": "an", "GRIB_numberOfPoints": 4, "GRIB_typeOfLevel": "surface",
            "GRIB_stepUnits": 1, "GRIB_stepType": step_type, "GRIB_gridType": "regular_ll", "GRIB_units": "K",
            "GRIB_name": name, "GRIB_shortName": short, "GRIB_cfVarName": {"2t": "t2m"}.get(short, short),
            "long_name": name, "units": "K", "standard_name": "unknown"}


def era5_new_cds(path, with_extremes: bool = True):
    """ERA5 single levels as the new CDS delivers NetCDF4: t2m (+ mx2t, mn2t, and d2m, which the suite does not keep)."""
    times = pd.date_range("2024-07-01", periods=HOURS, freq="h")
    coords = {"valid_time": ("valid_time", times, {"standard_name": "time", "long_name": "time"}),
              "latitude": ("latitude", LAT_NORTH_TO_SOUTH, {"units": "degrees_north", "standard_name": "latitude"}),
              "longitude": ("longitude", LON_0_360, {"units": "degrees_east", "standard_name": "longitude"}),
              "number": ((), 0), "expver": ("valid_time", np.array(["0001"] * HOURS, dtype=object))}
    dims = ("valid_time", "latitude", "longitude")
    data = {"t2m": (dims, hourly_kelvin().astype("float32"), grib_attrs(167, "2t", "2 metre temperature", "instant")),
            "d2m": (dims, hourly_kelvin(-10).astype("float32"), grib_attrs(168, "2d", "2 metre dewpoint temperature", "instant"))}
    if with_extremes:
        # the hour's extreme around t2m: 0.5 K above and below it
        data["mx2t"] = (dims, hourly_kelvin(0.5).astype("float32"),
                        grib_attrs(201, "mx2t", "Maximum temperature at 2 metres since previous post-processing", "max"))
        data["mn2t"] = (dims, hourly_kelvin(-0.5).astype("float32"),
                        grib_attrs(202, "mn2t", "Minimum temperature at 2 metres since previous post-processing", "min"))
    ds = xr.Dataset(data, coords=coords, attrs={"GRIB_centre": "ecmf", "Conventions": "CF-1.7",
                                                "institution": "European Centre for Medium-Range Weather Forecasts"})
    ds.to_netcdf(path, engine="h5netcdf", encoding={"valid_time": {"units": "seconds since 1970-01-01", "dtype": "int64",
                                                                   "calendar": "proleptic_gregorian"}})
    return path


def era5_old_cds_packed(path):
    """ERA5 as the old CDS delivered it: NetCDF3 (64-bit offset), dims time/latitude/longitude, t2m packed
    int16 (scale_factor 0.005, add_offset 320.0, _FillValue and missing_value -32767), one hour missing."""
    times = pd.date_range("2024-07-01", periods=HOURS, freq="h")
    kelvin = hourly_kelvin()
    kelvin[20, 1, 0] = np.nan  # hour 20 UTC at the Arizona cell: its 1 July (hours 7..30) has no value
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), kelvin,
                             {"units": "K", "long_name": "2 metre temperature"})},
                    coords={"time": times, "latitude": ("latitude", LAT_NORTH_TO_SOUTH, {"units": "degrees_north"}),
                            "longitude": ("longitude", LON_0_360, {"units": "degrees_east"})},
                    attrs={"Conventions": "CF-1.6", "history": "2023-01-01 00:00:00 GMT by grib_to_netcdf-2.25.1"})
    ds.to_netcdf(path, engine="scipy", format="NETCDF3_64BIT", encoding={
        "t2m": {"dtype": "int16", "scale_factor": 0.005, "add_offset": 320.0, "_FillValue": -32767, "missing_value": -32767},
        "time": {"units": "hours since 1900-01-01 00:00:00.0", "calendar": "gregorian", "dtype": "int32"}})
    return path


def cf_daily_by_standard_name(path):
    """A CF-1.11 NetCDF3 classic daily file whose names mean nothing to the suite: axes t/y/x found by
    standard_name and axis, variables TX/TN by standard_name air_temperature and cell_methods; degC, noon stamps."""
    times = pd.date_range("2024-07-01 12:00", periods=3, freq="D")
    tx = np.array([30.0, 31.0, 32.0])[:, None, None] + np.zeros((3, 2, 2))
    ds = xr.Dataset({"TX": (("t", "y", "x"), tx, {"standard_name": "air_temperature", "units": "degC",
                                                  "cell_methods": "time: maximum"}),
                     "TN": (("t", "y", "x"), tx - 12.0, {"standard_name": "air_temperature", "units": "degC",
                                                         "cell_methods": "time: minimum"}),
                     "crs": ((), 0, {"grid_mapping_name": "latitude_longitude"})},
                    coords={"t": ("t", times, {"standard_name": "time", "axis": "T"}),
                            "y": ("y", [33.5, 40.0], {"standard_name": "latitude", "axis": "Y"}),
                            "x": ("x", [-112.25, -105.0], {"standard_name": "longitude", "axis": "X"})},
                    attrs={"Conventions": "CF-1.11"})
    ds.to_netcdf(path, engine="scipy", format="NETCDF3_CLASSIC")
    return path


def files(lake) -> pd.DataFrame:
    frame = lake.sql("SELECT source_name, format, status, reason, rows_read, rows_accepted, rows_quarantined, "
                     "rows_ignored, ignored FROM ingest_file")
    assert (frame["rows_read"] == frame["rows_accepted"] + frame["rows_quarantined"] + frame["rows_ignored"]).all()
    frame["source_name"] = frame["source_name"].map(lambda n: n.rsplit("/", 1)[-1])
    return frame.set_index("source_name")


def stored(lake, variable) -> xr.DataArray:
    store = lake.sql("SELECT store FROM array_store WHERE variable = ? ORDER BY time_start DESC", params=[variable])
    return xr.open_zarr(lake.root / store["store"].iloc[0], consolidated=False)[variable].load()


def at(grid, day, lat, lon) -> float:
    return float(grid.sel(time=day, lat=lat, lon=lon))


def test_era5_new_cds_hourly_becomes_daily_in_each_cells_local_day(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    era5_new_cds(folder / "era5_2024-07.nc")
    lake.ingest(folder, now=NOW)
    found = files(lake)
    row = found.loc["era5_2024-07.nc"]
    assert (row["format"], row["status"]) == ("cf_netcdf_grid", "accepted"), row["reason"]
    # t2m -> tas; mx2t -> tasmax; mn2t -> tasmin; d2m is ERA5's but not the suite's: counted, not lost
    assert row[["rows_read", "rows_accepted", "rows_ignored"]].tolist() == [4, 3, 1]
    assert sorted(lake.sql("SELECT variable FROM array_store")["variable"]) == ["tas", "tasmax", "tasmin"]
    tasmax, tasmin, tas = stored(lake, "tasmax"), stored(lake, "tasmin"), stored(lake, "tas")
    # axes: latitude ascending, longitude on -180..180; days at local midnight, only complete ones
    assert tasmax["lat"].values.tolist() == [33.5, 40.0] and tasmax["lon"].values.tolist() == [-112.25, -105.0]
    assert [str(d)[:10] for d in tasmax["time"].values] == ["2024-07-01", "2024-07-02"]
    assert tasmax.attrs["units"] == "degC" and tasmax.attrs["source_units"] == "K"
    # Arizona cell, 1 July local (UTC-7): hours 07:00 UTC 1 July (h=7) to 06:00 UTC 2 July (h=30).
    # t2m = 20 + h degC: mean 20 + (7+30)/2 = 38.5, and mx2t/mn2t, the extremes of the hours ending at
    # stamps 8..31: max 20 + 31 + 0.5 = 51.5, min 20 + 8 - 0.5 = 27.5
    assert at(tas, "2024-07-01", 33.5, -112.25) == pytest.approx(38.5, abs=1e-3)
    assert at(tasmax, "2024-07-01", 33.5, -112.25) == pytest.approx(51.5, abs=1e-3)
    assert at(tasmin, "2024-07-01", 33.5, -112.25) == pytest.approx(27.5, abs=1e-3)
    # the three Denver cells (MDT, UTC-6): h = 6..29, one hour earlier: 37.5, 50.5, 26.5
    for lat, lon in ((40.0, -105.0), (40.0, -112.25), (33.5, -105.0)):
        assert at(tas, "2024-07-01", lat, lon) == pytest.approx(37.5, abs=1e-3)
        assert at(tasmax, "2024-07-01", lat, lon) == pytest.approx(50.5, abs=1e-3)
        assert at(tasmin, "2024-07-01", lat, lon) == pytest.approx(26.5, abs=1e-3)
    # 2 July: 24 hours later everywhere
    assert at(tasmax, "2024-07-02", 33.5, -112.25) == pytest.approx(75.5, abs=1e-3)
    assert "America/Phoenix" in tasmax.attrs["daily_from"] and "America/Denver" in tasmax.attrs["daily_from"]


def test_residents_of_phoenix_and_denver_on_one_grid_get_their_local_day(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    era5_new_cds(folder / "era5.nc")
    lake.ingest(folder, now=NOW)
    residence = pd.DataFrame({"person_id": ["phx", "den"], "start_date": pd.to_datetime(["2024-01-01"] * 2).date,
                              "end_date": [None, None], "latitude": [33.45, 39.74], "longitude": [-112.07, -104.99]})
    grids = open_grids(lake.sql("SELECT * FROM array_store"), lake.root)
    daily = exposure_daily(residence, grids).set_index(["person_id", "date"])
    first = pd.Timestamp("2024-07-01").date()
    assert daily.loc[("phx", first), "tasmax"] == pytest.approx(51.5, abs=1e-3)
    assert daily.loc[("den", first), "tasmax"] == pytest.approx(50.5, abs=1e-3)
    assert daily.loc[("den", first), "tasmin"] == pytest.approx(26.5, abs=1e-3)


def test_era5_old_cds_packed_int16_netcdf3_unpacked_and_a_missing_hour_empties_its_day(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    era5_old_cds_packed(folder / "era5_old.nc")
    assert (folder / "era5_old.nc").read_bytes()[:4] == b"CDF\x02"  # NetCDF3 64-bit offset
    lake.ingest(folder, now=NOW)
    row = files(lake).loc["era5_old.nc"]
    assert row["status"] == "accepted", row["reason"]
    # no mx2t/mn2t: tasmax, tasmin and tas all from hourly t2m
    assert row[["rows_read", "rows_accepted", "rows_ignored"]].tolist() == [3, 3, 0]
    tasmax, tasmin, tas = stored(lake, "tasmax"), stored(lake, "tasmin"), stored(lake, "tas")
    # Denver cells from t2m alone: 1 July is h = 6..29: max 49, min 26, mean 37.5 (packed to 0.005 K)
    assert at(tasmax, "2024-07-01", 40.0, -105.0) == pytest.approx(49.0, abs=3e-3)
    assert at(tasmin, "2024-07-01", 40.0, -105.0) == pytest.approx(26.0, abs=3e-3)
    assert at(tas, "2024-07-01", 40.0, -105.0) == pytest.approx(37.5, abs=3e-3)
    # the Arizona cell lost 20:00 UTC 1 July (the fill value): its 1 July has no value, 2 July (h=31..54) has
    assert np.isnan(at(tasmax, "2024-07-01", 33.5, -112.25))
    assert at(tasmax, "2024-07-02", 33.5, -112.25) == pytest.approx(74.0, abs=3e-3)


def test_cf_daily_file_found_by_standard_name_and_axis(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cf_daily_by_standard_name(folder / "cf_daily.nc")
    assert (folder / "cf_daily.nc").read_bytes()[:4] == b"CDF\x01"  # NetCDF3 classic
    lake.ingest(folder, now=NOW)
    row = files(lake).loc["cf_daily.nc"]
    assert row["status"] == "accepted", row["reason"]
    assert row[["rows_read", "rows_accepted", "rows_ignored"]].tolist() == [3, 2, 1]  # crs is no variable of the suite's
    tasmax, tasmin = stored(lake, "tasmax"), stored(lake, "tasmin")
    # a daily file is the producer's days, kept as they are (noon stamps)
    assert float(tasmax.isel(time=2, lat=0, lon=0)) == 32.0 and float(tasmin.isel(time=0, lat=1, lon=1)) == 18.0


def test_grid_with_unknown_axes_refused_naming_what_was_looked_for(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    xr.Dataset({"tas": (("t", "y", "x"), np.zeros((2, 2, 2)), {"units": "K"})},
               coords={"t": pd.date_range("2024-07-01", periods=2), "y": [1.0, 2.0], "x": [1.0, 2.0]}
               ).to_netcdf(folder / "bare.nc", engine="scipy")
    lake.ingest(folder, now=NOW)
    row = files(lake).loc["bare.nc"]
    assert row["status"] == "quarantined"
    for expected in ("valid_time", "latitude", "longitude", "standard_name", "axis 'T'", "no option to map names",
                     "ds.rename"):
        assert expected in row["reason"], row["reason"]


def test_grid_with_no_known_variable_refused_listing_the_names_looked_for(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    xr.Dataset({"temp": (("time", "lat", "lon"), np.zeros((2, 2, 2)), {"units": "K"})},
               coords={"time": pd.date_range("2024-07-01", periods=2), "lat": [1.0, 2.0], "lon": [1.0, 2.0]}
               ).to_netcdf(folder / "unknown.nc", engine="h5netcdf")
    lake.ingest(folder, now=NOW)
    row = files(lake).loc["unknown.nc"]
    assert row["status"] == "quarantined"
    for expected in ("'temp'", "t2m", "mx2t", "air_temperature", "ncrename"):
        assert expected in row["reason"], row["reason"]


def test_cams_hourly_pm25_in_kg_per_m3_becomes_daily_mean_in_ug_per_m3(lake, tmp_path):
    # CAMS NetCDF writes ECMWF's unit spelling, kg m**-3
    folder = tmp_path / "in"
    folder.mkdir()
    times = pd.date_range("2024-07-01", periods=48, freq="h")
    # 10 ug/m3 on even hours, 20 on odd ones: a daily mean of 15 ug/m3 = 1.5e-8 kg m-3
    values = np.where(np.arange(48) % 2 == 0, 1e-8, 2e-8)[:, None, None] * np.ones((48, 1, 1))
    xr.Dataset({"pm2p5": (("valid_time", "latitude", "longitude"), values,
                          {"units": "kg m**-3", "long_name": "Particulate matter d < 2.5 um"})},
               coords={"valid_time": times, "latitude": [0.25], "longitude": [0.25]}
               ).to_netcdf(folder / "cams.nc", engine="h5netcdf")
    lake.ingest(folder, now=NOW)
    row = files(lake).loc["cams.nc"]
    assert row["status"] == "accepted", row["reason"]
    pm25 = stored(lake, "pm25")
    # (0.25 N, 0.25 E) lies in the Gulf of Guinea: Etc/GMT, so the UTC days 1 and 2 July
    assert pm25.attrs["units"] == "ug/m3"
    assert pm25.values.ravel().tolist() == pytest.approx([15.0, 15.0], abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(start_hour=st.integers(0, 23), n_hours=st.integers(1, 120), zone=st.sampled_from(
    ["UTC", "America/Phoenix", "America/Denver", "Asia/Kolkata", "Australia/Lord_Howe"]),
    month=st.sampled_from([3, 7, 11]), how=st.sampled_from(["max", "min", "mean"]), period_end=st.booleans(),
    seed=st.integers(0, 2**16))
def test_hourly_to_daily_equals_a_plain_loop_over_local_days(start_hour, n_hours, zone, month, how, period_end, seed):
    # March and November hold the US clock changes (23- and 25-hour days); Lord Howe shifts by 30 minutes
    times = pd.date_range(f"2024-{month:02d}-02 {start_hour:02d}:00", periods=n_hours, freq="h")
    values = np.random.default_rng(seed).normal(20, 5, (n_hours, 1, 1))
    days, daily = hourly_to_daily(values, times, np.array([[zone]]), how, period_end=period_end)
    stamps = (times - pd.Timedelta(hours=1)) if period_end else times
    local = stamps.tz_localize("UTC").tz_convert(zone)
    expected = {}
    for day in sorted(set(local.tz_localize(None).normalize())):
        begin = pd.Timestamp(day).tz_localize(zone, nonexistent="shift_forward", ambiguous=False)
        end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(zone, nonexistent="shift_forward", ambiguous=False)
        inside = (local >= begin) & (local < end)
        if inside.sum() * pd.Timedelta(hours=1) == end - begin:  # every hour of the local day is there
            expected[day] = getattr(np, how)(values[inside, 0, 0])
    assert list(days) == list(expected)
    assert daily[:, 0, 0] == pytest.approx(np.array(list(expected.values()), dtype=np.float32), rel=1e-5)


@settings(max_examples=15, deadline=None)
@given(n_hours=st.integers(30, 100), seed=st.integers(0, 2**16), period_end=st.booleans(),
       lone=st.sampled_from(["America/Phoenix", "America/Denver", "Asia/Kolkata"]))
def test_a_grid_of_many_zones_gives_each_cell_what_its_zone_alone_gives(n_hours, seed, period_end, lone):
    # 9 cells: 8 in UTC, 1 alone in another zone (under an eighth of the cells: reduced on its own column)
    times = pd.date_range("2024-11-02 05:00", periods=n_hours, freq="h")
    values = np.random.default_rng(seed).normal(20, 5, (n_hours, 3, 3))
    zones = np.full((3, 3), "UTC", dtype=object)
    zones[1, 2] = lone
    days, daily = hourly_to_daily_statistics(values, times, zones, ("max", "min", "mean"), period_end=period_end)
    for i in range(3):
        for j in range(3):
            alone_days, alone = hourly_to_daily(values[:, i:i + 1, j:j + 1], times, np.array([[zones[i, j]]]), "mean",
                                                period_end=period_end)
            where = days.get_indexer(alone_days)
            assert (where >= 0).all()
            assert daily["mean"][where, i, j] == pytest.approx(alone[:, 0, 0], rel=1e-6)
            others = np.setdiff1d(np.arange(len(days)), where)
            assert np.isnan(daily["max"][others, i, j]).all()  # a day complete only in the other zone


def test_era5_names_in_a_zarr_folder_read_as_in_netcdf(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    era5_new_cds(tmp_path / "era5.nc", with_extremes=False)
    with xr.open_dataset(tmp_path / "era5.nc", engine="h5netcdf") as ds:
        ds.load().to_zarr(folder / "era5.zarr", zarr_format=2, consolidated=False)
    lake.ingest(folder, now=NOW)
    found = files(lake)
    assert found.loc[found.index.str.startswith("era5.zarr"), "format"].tolist() == ["zarr_grid"], found
    tasmax = stored(lake, "tasmax")
    # t2m alone, Denver cell: 1 July is h = 6..29, so the maximum 20 + 29 = 49 degC
    assert at(tasmax, "2024-07-01", 40.0, -105.0) == pytest.approx(49.0, abs=1e-3)


def test_missing_hours_leave_their_local_days_without_value_not_partial(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    era5_new_cds(tmp_path / "full.nc", with_extremes=False)
    with xr.open_dataset(tmp_path / "full.nc", engine="h5netcdf") as ds:
        # drop hours 40 and 41 (16:00, 17:00 UTC on 2 July): inside every cell's local 2 July
        ds.load().isel(valid_time=[h for h in range(HOURS) if h not in (40, 41)]).to_netcdf(folder / "gap.nc", engine="h5netcdf")
    lake.ingest(folder, now=NOW)
    assert files(lake).loc["gap.nc", "status"] == "accepted"
    tasmax = stored(lake, "tasmax")
    assert at(tasmax, "2024-07-01", 40.0, -105.0) == pytest.approx(49.0, abs=1e-3)
    assert np.isnan(tasmax.sel(time="2024-07-02").values).all()


def test_t2m_and_mx2t_in_separate_files_as_the_new_cds_zips_them_keep_mx2t(lake, tmp_path):
    # the new CDS returns one NetCDF per GRIB step type (instant; max/min) when a request mixes them
    folder = tmp_path / "in"
    folder.mkdir()
    era5_new_cds(tmp_path / "all.nc")
    with xr.open_dataset(tmp_path / "all.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    ds[["t2m"]].to_netcdf(folder / "data_stream-oper_stepType-instant.nc", engine="h5netcdf")
    ds[["mx2t"]].to_netcdf(folder / "data_stream-oper_stepType-max.nc", engine="h5netcdf")
    lake.ingest(folder, now=NOW)
    grids = open_grids(lake.sql("SELECT * FROM array_store"), lake.root)
    # Denver cell, 1 July: mx2t gives 50.5 degC; t2m's hourly maximum would be 49.0
    assert float(grids["tasmax"].sel(time="2024-07-01", lat=40.0, lon=-105.0)) == pytest.approx(50.5, abs=1e-3)
    assert float(grids["tasmin"].sel(time="2024-07-01", lat=40.0, lon=-105.0)) == pytest.approx(26.0, abs=1e-3)
