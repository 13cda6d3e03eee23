"""Environmental grids with seasons, spatial gradients, weather and planted heat waves.

Daily mean temperature at a cell is ``climatology(lat, day of year) + anomaly``; the anomaly is
spatially smooth weather noise (AR(1) in time) plus planted heat waves. ``tasmax``/``tasmin``
add and subtract half a diurnal range. The planted exposure that raises resting heart rate is
the temperature anomaly as Parks et al. 2020 define it: the day's mean temperature, (tasmax +
tasmin) / 2, minus the mean of that calendar month at the same cell over the baseline: every
complete calendar year of the grid (the year before the wearable window, and the window's own
year if the grid covers all of it), the default of ``exposure_daily``. It is written to the truth
as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import xarray as xr

from explorer.synth.config import SynthConfig


@dataclass
class Environment:
    grid: xr.Dataset  # tas (degC), tasmax, tasmin (degC), pm25 (ug/m3), tas_anomaly (K) on time x lat x lon
    heat_waves: pd.DataFrame  # start, end, centre_lat, centre_lon, radius_deg, peak_k


def grid_axes(config: SynthConfig):
    r = config.region
    lat = np.round(np.arange(r.lat_min + r.grid_step / 2, r.lat_max, r.grid_step), 4)
    lon = np.round(np.arange(r.lon_min + r.grid_step / 2, r.lon_max, r.grid_step), 4)
    return lat, lon


def make_environment(config: SynthConfig) -> Environment:
    rng = np.random.default_rng([config.seed, 2])
    first = date(config.start.year - 1, 1, 1)  # a year before the window, for climatologies
    last = config.start + timedelta(days=config.days - 1)
    time = pd.date_range(first, last, freq="D")
    lat, lon = grid_axes(config)
    doy = time.day_of_year.to_numpy()[:, None, None]
    la, lo = np.meshgrid(lat, lon, indexing="ij")

    seasonal_amplitude = 9.0 + 0.3 * (la - 31.0)
    mean_level = 24.0 - 0.9 * (la - 31.0) - 0.08 * np.abs(lo + 105.0) * 3
    climatology = mean_level[None] - seasonal_amplitude[None] * np.cos(2 * np.pi * (doy - 15) / 365.25)

    # Weather: a few large smooth spatial modes with AR(1) amplitudes.
    n_modes = 6
    centres = rng.uniform([lat[0], lon[0]], [lat[-1], lon[-1]], size=(n_modes, 2))
    shapes = np.exp(-(((la[None] - centres[:, 0, None, None]) / 3.0) ** 2 + ((lo[None] - centres[:, 1, None, None]) / 4.0) ** 2))
    amplitude = np.zeros((len(time), n_modes))
    shocks = rng.normal(0, 1.4, (len(time), n_modes))
    for t in range(1, len(time)):
        amplitude[t] = 0.75 * amplitude[t - 1] + shocks[t]
    anomaly = np.einsum("tm,mij->tij", amplitude, shapes) + rng.normal(0, 0.4, (len(time), len(lat), len(lon)))

    heat_waves = _plant_heat_waves(config, time, lat, lon, rng)
    for wave in heat_waves.itertuples():
        days = (time >= pd.Timestamp(wave.start)) & (time <= pd.Timestamp(wave.end))
        footprint = np.exp(-(((la - wave.centre_lat) ** 2 + (lo - wave.centre_lon) ** 2) / (2 * wave.radius_deg ** 2)))
        ramp = np.sin(np.linspace(0.3, np.pi - 0.3, days.sum()))
        anomaly[days] += wave.peak_k * ramp[:, None, None] * footprint[None]

    tas = climatology + anomaly
    diurnal_range = 13.0 - 0.2 * (la - 31.0)
    tasmax = tas + diurnal_range / 2 + rng.normal(0, 0.5, tas.shape)
    tasmin = tas - diurnal_range / 2 + rng.normal(0, 0.5, tas.shape)

    daily_mean = (tasmax + tasmin) / 2
    # the baseline: every complete calendar year of the grid (the year before the window, and the
    # window's own year if the grid reaches its 31 December), as exposure_daily's default
    per_year = pd.Series(1, index=time).groupby(time.year).size()
    complete = [y for y, n in per_year.items() if n == (366 if pd.Timestamp(year=y, month=1, day=1).is_leap_year else 365)]
    baseline = np.isin(time.year, complete)
    monthly = {m: daily_mean[baseline & (time.month == m)].mean(axis=0) for m in range(1, 13)}
    parks_anomaly = daily_mean - np.stack([monthly[m] for m in time.month])

    urban = np.zeros_like(la)
    for c_lat, c_lon in rng.uniform([lat[0], lon[0]], [lat[-1], lon[-1]], size=(4, 2)):
        urban += 9.0 * np.exp(-(((la - c_lat) ** 2 + (lo - c_lon) ** 2) / (2 * 0.8 ** 2)))
    winter = 2.0 * np.cos(2 * np.pi * (doy - 15) / 365.25)
    pm25 = np.exp(np.log(6.0 + urban[None] + winter + 0.45 * np.clip(anomaly, 0, None)) + rng.normal(0, 0.25, tas.shape))

    dims = ("time", "lat", "lon")
    grid = xr.Dataset(
        {
            "tas": (dims, tas.astype("float32"), {"units": "degC", "long_name": "Daily mean near-surface air temperature"}),
            "tasmax": (dims, tasmax.astype("float32"), {"units": "degC"}),
            "tasmin": (dims, tasmin.astype("float32"), {"units": "degC"}),
            "pm25": (dims, pm25.astype("float32"), {"units": "ug/m3"}),
            "tas_anomaly": (dims, parks_anomaly.astype("float32"),
                            {"units": "K", "long_name": "Planted anomaly: (tasmax + tasmin) / 2 minus its baseline-year mean of the month"}),
        },
        coords={"time": time, "lat": lat, "lon": lon},
    )
    return Environment(grid, heat_waves)


def _plant_heat_waves(config, time, lat, lon, rng) -> pd.DataFrame:
    """Three heat waves in the wearable window (or its first days), and two the summer before."""
    window_start = pd.Timestamp(config.start)
    rows = []
    starts = [window_start + pd.Timedelta(days=int(d)) for d in np.linspace(2, max(3, config.days - 8), 3).astype(int)]
    starts += [pd.Timestamp(config.start.year - 1, 7, 10), pd.Timestamp(config.start.year - 1, 8, 20)]
    for start in starts:
        length = int(rng.integers(4, 8))
        end = min(start + pd.Timedelta(days=length - 1), time[-1])
        if start > time[-1]:
            continue
        rows.append({"start": start.date(), "end": end.date(),
                     "centre_lat": float(rng.uniform(lat[2], lat[-3])), "centre_lon": float(rng.uniform(lon[2], lon[-3])),
                     "radius_deg": float(rng.uniform(2.5, 4.0)), "peak_k": float(rng.uniform(7.0, 10.0))})
    return pd.DataFrame(rows)


def write_grids(env: Environment, directory, config: SynthConfig) -> list:
    """CF NetCDF files per variable and year: tas* in K for the earlier year, degC for the later;
    PM2.5 in ug/m3. Returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for year in sorted(set(env.grid.time.dt.year.values.tolist())):
        part = env.grid.sel(time=str(year))
        for name in ("tasmax", "tasmin", "pm25"):
            data = part[name].astype("float32")
            units = "ug/m3"
            if name != "pm25":
                in_kelvin = year < config.start.year
                data = data + 273.15 if in_kelvin else data
                units = "K" if in_kelvin else "degC"
            ds = xr.Dataset({name: (("time", "lat", "lon"), data.values.astype("float32"))},
                            coords={"time": part.time.values, "lat": part.lat.values, "lon": part.lon.values})
            ds[name].attrs = {"units": units, "standard_name": _STANDARD[name], "long_name": _LONG[name],
                              "cell_methods": "time: maximum" if name == "tasmax" else ("time: minimum" if name == "tasmin" else "time: mean")}
            ds["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
            ds["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
            ds["time"].attrs = {"standard_name": "time", "axis": "T"}
            ds.attrs = {"Conventions": "CF-1.8", "title": f"Synthetic daily {name} {year}", "source": "explorer synth"}
            path = directory / f"{name}_day_{year}.nc"
            ds.to_netcdf(path, engine="scipy", encoding={"time": {"units": f"days since {year}-01-01", "calendar": "standard", "dtype": "int32"}})
            written.append(path)
    return written


_STANDARD = {"tasmax": "air_temperature", "tasmin": "air_temperature",
             "pm25": "mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air"}
_LONG = {"tasmax": "Daily maximum near-surface air temperature", "tasmin": "Daily minimum near-surface air temperature",
         "pm25": "Daily mean PM2.5 concentration"}


def station_table(env: Environment, config: SynthConfig, rng) -> pd.DataFrame:
    """Weather-station daily observations (GHCN-Daily style: tenths of degC) at grid points."""
    lat, lon = env.grid.lat.values, env.grid.lon.values
    picks = rng.choice(len(lat) * len(lon), size=12, replace=False)
    rows = []
    for k, index in enumerate(sorted(picks)):
        i, j = divmod(int(index), len(lon))
        station = f"USW000{23000 + k * 37:05d}"
        cell = env.grid.isel(lat=i, lon=j)
        frame = pd.DataFrame({"date": cell.time.dt.strftime("%Y-%m-%d").values,
                              "TMAX": np.round((cell.tasmax.values + rng.normal(0, 0.7, cell.time.size)) * 10).astype(int),
                              "TMIN": np.round((cell.tasmin.values + rng.normal(0, 0.7, cell.time.size)) * 10).astype(int)})
        long = frame.melt(id_vars="date", var_name="element", value_name="value")
        long.insert(0, "station_id", station)
        long.insert(1, "latitude", round(float(lat[i]) + 0.013, 4))
        long.insert(2, "longitude", round(float(lon[j]) - 0.021, 4))
        rows.append(long)
    out = pd.concat(rows, ignore_index=True).sort_values(["station_id", "date", "element"], ignore_index=True)
    out["units"] = "tenths of degC"
    return out


def ghcn_files(stations: pd.DataFrame) -> dict[str, str]:
    """The stations of :func:`station_table` as NOAA publishes GHCN-Daily: the fixed-width station
    list ``ghcnd-stations.txt`` (ID columns 1-11, LATITUDE 13-20, LONGITUDE 22-30, ELEVATION 32-37,
    STATE 39-40, NAME 42-71) and one by-station CSV per station, without a header
    (ID,YYYYMMDD,ELEMENT,DATA_VALUE,M_FLAG,Q_FLAG,S_FLAG,OBS_TIME; tenths of degC), per the
    GHCN-Daily readme and readme-by_station. Returns file name -> text."""
    files = {}
    where = stations.drop_duplicates("station_id")
    files["ghcnd-stations.txt"] = "".join(
        f"{row.station_id:<11} {row.latitude:8.4f} {row.longitude:9.4f} {-999.9:6.1f}    {'SYNTHETIC ' + row.station_id[-5:]:<30}\n"
        for row in where.itertuples(index=False))
    for station, rows in stations.groupby("station_id", sort=True):
        day = pd.to_datetime(rows["date"]).dt.strftime("%Y%m%d")
        lines = station + "," + day + "," + rows["element"] + "," + rows["value"].astype(str) + ",,,W,\n"
        files[f"{station}.csv"] = "".join(lines)
    return files


AQS_COLUMNS = ("State Code", "County Code", "Site Num", "Parameter Code", "POC", "Latitude", "Longitude", "Datum",
               "Parameter Name", "Sample Duration", "Pollutant Standard", "Date Local", "Units of Measure", "Event Type",
               "Observation Count", "Observation Percent", "Arithmetic Mean", "1st Max Value", "1st Max Hour", "AQI",
               "Method Code", "Method Name", "Local Site Name", "Address", "State Name", "County Name", "City Name",
               "CBSA Name", "Date of Last Change")


def aqs_daily_table(env: Environment, rng, monitors: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PM2.5 monitors (parameter 88101) at grid cells, as EPA AirData's "Daily Summary Data" files
    write them: one row per monitor, local day and pollutant standard, so each day appears twice
    (PM25 24-hour 2012 and PM25 Annual 2012) with the same mean, as the real files repeat it.

    Returns the rows to write and the truth: station_id (SS-CCC-NNNN-88101-1), latitude,
    longitude, date, element PM25 and value in ug/m3, once per monitor-day.
    """
    lat, lon = env.grid.lat.values, env.grid.lon.values
    picks = sorted(rng.choice(len(lat) * len(lon), size=monitors, replace=False))
    rows, truth = [], []
    for k, index in enumerate(picks):
        i, j = divmod(int(index), len(lon))
        cell = env.grid.isel(lat=i, lon=j)
        mean = np.round(np.clip(cell.pm25.values + rng.normal(0, 0.5, cell.time.size), 0.1, None), 1)
        days = cell.time.dt.strftime("%Y-%m-%d").values
        site = {"State Code": "06", "County Code": f"{100 + k:03d}", "Site Num": f"{1000 + 7 * k:04d}", "Parameter Code": "88101",
                "POC": 1, "Latitude": round(float(lat[i]) - 0.017, 6), "Longitude": round(float(lon[j]) + 0.011, 6)}
        station = f"{site['State Code']}-{site['County Code']}-{site['Site Num']}-88101-1"
        truth.append(pd.DataFrame({"station_id": station, "latitude": site["Latitude"], "longitude": site["Longitude"],
                                   "date": days, "element": "PM25", "value": mean}))
        for standard in ("PM25 24-hour 2012", "PM25 Annual 2012"):
            rows.append(pd.DataFrame({**site, "Datum": "WGS84", "Parameter Name": "PM2.5 - Local Conditions",
                                      "Sample Duration": "24 HOUR", "Pollutant Standard": standard, "Date Local": days,
                                      "Units of Measure": "Micrograms/cubic meter (LC)", "Event Type": "None",
                                      "Observation Count": 1, "Observation Percent": 100.0, "Arithmetic Mean": mean,
                                      "1st Max Value": mean, "1st Max Hour": 0, "AQI": "", "Method Code": "145",
                                      "Method Name": "Synthetic gravimetric sampler", "Local Site Name": f"SYNTHETIC SITE {k + 1}",
                                      "Address": f"{k + 1} SYNTHETIC ROAD, SUITE 1", "State Name": "Synthetic",
                                      "County Name": f"County {k + 1}", "City Name": "Synthetic", "CBSA Name": "",
                                      "Date of Last Change": days[-1]}))
    out = pd.concat(rows, ignore_index=True).sort_values(["County Code", "Date Local", "Pollutant Standard"], ignore_index=True)
    return out[list(AQS_COLUMNS)], pd.concat(truth, ignore_index=True)
