"""Gridded and station values at people's homes, vectorised.

Grid values: each (time, latitude, longitude) point takes the value of the nearest cell, or the
bilinear interpolation of the four cell centres around it. The work is one pointwise selection
(xarray vectorised indexing, ``isel`` with indexers along a shared ``location`` dimension) of the
distinct cells people live in, over every time step at once, then a numpy gather of each
person-day from that small (time x location) block: never a loop of ``.sel`` calls. On a Dask
chunked Zarr grid only the chunks holding those cells are read (ingest writes a chunk per 366
days of the whole map, so there every chunk is). Daily grids stamped at noon are put at
midnight; a grid on 0..360 degrees of longitude takes points in -180..180.

Station values: the nearest station with a value that day within ``max_distance_km``, or the
inverse-distance weighted mean of the stations within it (weights 1/d^power; a station at the
point itself takes all the weight). Great-circle distances (haversine, R = 6371.0088 km).

Points outside the grid (beyond half a cell from the outer cell centres for ``nearest``, outside
the outer cell centres for ``bilinear``), days the grid does not cover, and bilinear points with a
missing corner get NaN: a value is never extrapolated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

METHODS = ("nearest", "bilinear")
STATION_METHODS = ("nearest", "idw")
EARTH_RADIUS_KM = 6371.0088


def grid_values(grid, time, latitude, longitude, *, method: str = "nearest") -> np.ndarray:
    """Values of a grid at points in space and time (a person-day each, say).

    Parameters
    ----------
    grid : xarray.DataArray
        Dims time, lat, lon (degrees north and east; a 0..360 longitude axis works too), NumPy
        or Dask backed; daily steps, stamped at any time of the day.
    time : array-like of date or datetime
        The day of each point (a time of day is dropped).
    latitude, longitude : array-like of float
        Each point's coordinates in degrees.
    method : {"nearest", "bilinear"}, default "nearest"
        The nearest cell, or the bilinear interpolation of the four cell centres around the
        point.

    Returns
    -------
    numpy.ndarray
        float64, one value per point in the grid's unit; NaN outside the grid (beyond half a
        cell from the outer centres for ``nearest``, outside them for ``bilinear``), on days the
        grid does not cover, and for bilinear points with a missing corner.

    Notes
    -----
    Bilinear, with :math:`f_y, f_x` the fractions of the way from the lower to the upper cell
    centre: :math:`v = (1-f_y)(1-f_x) v_{00} + f_y (1-f_x) v_{10} + (1-f_y) f_x v_{01} + f_y f_x v_{11}`.
    One pointwise selection of the distinct cells involved (:func:`location_series`), then a
    numpy gather: never a loop of ``.sel`` calls.

    Examples
    --------
    A 2 x 2 grid of two days, stamped at noon:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.exposure import grid_values
    >>> grid = xr.DataArray(np.array([[[10.0, 20.0], [30.0, 40.0]], [[11.0, 21.0], [31.0, 41.0]]]),
    ...                     dims=("time", "lat", "lon"), name="tasmax", attrs={"units": "degC"},
    ...                     coords={"time": pd.date_range("2024-07-01 12:00", periods=2, freq="D"),
    ...                             "lat": [40.0, 41.0], "lon": [-75.0, -74.0]})
    >>> grid_values(grid, ["2024-07-01", "2024-07-02", "2024-07-02"], [40.1, 40.9, 45.0], [-74.9, -74.1, -74.5])
    array([10., 41., nan])
    >>> grid_values(grid, ["2024-07-01", "2024-07-02"], [40.5, 40.5], [-74.5, -74.5], method="bilinear")
    array([25., 26.])
    """
    latitude, longitude = np.asarray(latitude, dtype=float), np.asarray(longitude, dtype=float)
    times = pd.DatetimeIndex(pd.to_datetime(np.asarray(time))).normalize()
    if not (len(times) == len(latitude) == len(longitude)):
        raise ExplorerError(f"time, latitude and longitude must have one value per point; got "
                            f"{len(times)}, {len(latitude)} and {len(longitude)}")
    places, location = np.unique(np.column_stack([latitude, longitude]), axis=0, return_inverse=True)
    series = location_series(grid, places[:, 0], places[:, 1], method=method)
    t = pd.DatetimeIndex(series["time"].values).get_indexer(times)
    values = series.values[np.clip(t, 0, None), location.ravel()] if len(places) else np.full(len(times), np.nan)
    return np.where(t >= 0, values, np.nan)


def location_series(grid, latitude, longitude, *, method: str = "nearest"):
    """The whole time series of a grid at each location.

    Parameters
    ----------
    grid : xarray.DataArray
        Dims time, lat, lon, as :func:`grid_values` takes it.
    latitude, longitude : array-like of float
        Each location's coordinates in degrees.
    method : {"nearest", "bilinear"}, default "nearest"
        As :func:`grid_values`.

    Returns
    -------
    xarray.DataArray
        Dims (time, location), float64 in the grid's unit (its attributes kept), the time axis
        at midnight (:func:`daily_time`); NaN for a location outside the grid.

    Notes
    -----
    One pointwise selection (xarray vectorised indexing, ``isel`` along a shared ``location``
    dimension) of the distinct cells involved, over every time step at once; on a Dask chunked
    grid only the chunks holding those cells are read.

    Examples
    --------
    A 2 x 2 grid of two days, stamped at noon:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.exposure import location_series
    >>> grid = xr.DataArray(np.array([[[10.0, 20.0], [30.0, 40.0]], [[11.0, 21.0], [31.0, 41.0]]]),
    ...                     dims=("time", "lat", "lon"), name="tasmax", attrs={"units": "degC"},
    ...                     coords={"time": pd.date_range("2024-07-01 12:00", periods=2, freq="D"),
    ...                             "lat": [40.0, 41.0], "lon": [-75.0, -74.0]})
    >>> series = location_series(grid, [40.5], [-74.5], method="bilinear")
    >>> series.dims, series.values.tolist()
    (('time', 'location'), [[25.0], [26.0]])
    """
    import xarray as xr

    if method not in METHODS:
        raise ExplorerError(f"method {method!r} is not one of {', '.join(METHODS)}")
    missing = [d for d in ("time", "lat", "lon") if d not in grid.dims]
    if missing:
        raise ExplorerError(f"the grid has no {', '.join(missing)} dimension; expected dims time, lat, lon")
    extra = [d for d in grid.dims if d not in ("time", "lat", "lon")]
    if extra:
        raise ExplorerError(f"the grid has dimension(s) {', '.join(extra)} besides time, lat, lon: select one level "
                            f"first, e.g. grid.isel({extra[0]}=0)")
    latitude, longitude = np.asarray(latitude, dtype=float), np.asarray(longitude, dtype=float)
    grid = daily_time(grid).sortby("lat").sortby("lon")
    if float(grid["lon"].max()) > 180:  # a 0..360 grid: points in -180..180 are moved to its convention
        longitude = np.mod(longitude, 360.0)
    if method == "nearest":
        i, wi = _nearest(grid["lat"].values, latitude)
        j, wj = _nearest(grid["lon"].values, longitude)
        corners = [(i, j, wi * wj)]
    else:
        i0, fi = _bracket(grid["lat"].values, latitude)
        j0, fj = _bracket(grid["lon"].values, longitude)
        corners = [(i0, j0, (1 - fi) * (1 - fj)), (i0 + 1, j0, fi * (1 - fj)),
                   (i0, j0 + 1, (1 - fi) * fj), (i0 + 1, j0 + 1, fi * fj)]
    inside = np.all([np.isfinite(w) for _, _, w in corners], axis=0)
    n_lat, n_lon = grid.sizes["lat"], grid.sizes["lon"]

    def cell(ci, cj):
        return np.clip(ci, 0, n_lat - 1) * n_lon + np.clip(cj, 0, n_lon - 1)

    cells = np.unique(np.concatenate([cell(ci, cj)[inside] for ci, cj, _ in corners]))
    block = _cells_over_time(grid, cells, n_lon)  # (time, cell)
    result = np.zeros((grid.sizes["time"], len(latitude)))
    for ci, cj, weight in corners:
        column = np.clip(np.searchsorted(cells, cell(ci, cj)), 0, max(len(cells) - 1, 0))
        values = block[:, column] if len(cells) else np.full(result.shape, np.nan)
        # a corner with no weight adds nothing, even where its value is missing
        result += np.where(weight == 0, 0.0, np.where(inside, weight, 0.0) * values)
    result[:, ~inside] = np.nan
    return xr.DataArray(result, dims=("time", "location"), coords={"time": grid["time"].values},
                        attrs=dict(grid.attrs), name=grid.name)


def daily_time(grid):
    """The grid with its time axis at midnight, one step a day.

    Parameters
    ----------
    grid : xarray.DataArray
        With a ``time`` coordinate (daily files often stamp 12:00).

    Returns
    -------
    xarray.DataArray
        The same grid, each time normalised to its day; where two steps fall on one day, the
        later one is kept. Returned as it is when already at midnight and unique.

    Examples
    --------
    A 2 x 2 grid of two days, stamped at noon:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from explorer.exposure import linkage
    >>> grid = xr.DataArray(np.array([[[10.0, 20.0], [30.0, 40.0]], [[11.0, 21.0], [31.0, 41.0]]]),
    ...                     dims=("time", "lat", "lon"), name="tasmax", attrs={"units": "degC"},
    ...                     coords={"time": pd.date_range("2024-07-01 12:00", periods=2, freq="D"),
    ...                             "lat": [40.0, 41.0], "lon": [-75.0, -74.0]})
    >>> [str(t)[:10] for t in linkage.daily_time(grid)["time"].values]
    ['2024-07-01', '2024-07-02']
    >>> str(linkage.daily_time(grid)["time"].values[0])[11:19]
    '00:00:00'
    """
    times = pd.DatetimeIndex(grid["time"].values)
    if (times == times.normalize()).all() and times.is_unique:
        return grid
    grid = grid.assign_coords(time=times.normalize())
    return grid.isel(time=~grid.get_index("time").duplicated(keep="last"))


def _nearest(axis: np.ndarray, points: np.ndarray):
    """Index of the nearest centre on a sorted, regular-or-not axis, and weight 1 (NaN beyond half
    a cell outside the outer centres). A point halfway goes to the upper centre, as xarray's
    (pandas') nearest does."""
    position = np.searchsorted(axis, points)
    lower = np.clip(position - 1, 0, len(axis) - 1)
    upper = np.clip(position, 0, len(axis) - 1)
    index = np.where(np.abs(points - axis[lower]) < np.abs(axis[upper] - points), lower, upper)
    half = (np.diff(axis[:2])[0] if len(axis) > 1 else 0.0) / 2, (np.diff(axis[-2:])[0] if len(axis) > 1 else 0.0) / 2
    outside = (points < axis[0] - half[0]) | (points > axis[-1] + half[1]) | ~np.isfinite(points)
    return index, np.where(outside, np.nan, 1.0)


def _bracket(axis: np.ndarray, points: np.ndarray):
    """Lower index and fraction of the way to the next centre (NaN outside the outer centres)."""
    lower = np.clip(np.searchsorted(axis, points, side="right") - 1, 0, max(len(axis) - 2, 0))
    span = axis[lower + 1] - axis[lower] if len(axis) > 1 else np.ones_like(points)
    fraction = (points - axis[lower]) / span
    outside = (points < axis[0]) | (points > axis[-1]) | ~np.isfinite(points)
    return lower, np.where(outside, np.nan, fraction)


def _cells_over_time(grid, cells: np.ndarray, n_lon: int) -> np.ndarray:
    """(time, location) values of the given flat cell numbers: one pointwise selection."""
    import xarray as xr

    if not len(cells):
        return np.empty((grid.sizes["time"], 0))
    lat_index = xr.DataArray(cells // n_lon, dims="location")
    lon_index = xr.DataArray(cells % n_lon, dims="location")
    picked = grid.isel(lat=lat_index, lon=lon_index).transpose("time", "location")
    return np.asarray(picked.values, dtype=np.float64)


def station_values(stations: pd.DataFrame, date, latitude, longitude, *, method: str = "nearest",
                   max_distance_km: float = 50.0, power: float = 2.0) -> np.ndarray:
    """Station observations at points in space and time.

    Parameters
    ----------
    stations : pandas.DataFrame
        station_id, latitude, longitude (degrees), date, value: one variable in one unit, at
        most one value per station and day.
    date : array-like of date or datetime
        The day of each point.
    latitude, longitude : array-like of float
        Each point's coordinates in degrees.
    method : {"nearest", "idw"}, default "nearest"
        The nearest station with a value that day, or the inverse-distance weighted mean of the
        stations with one within ``max_distance_km``.
    max_distance_km : float, default 50.0
        Stations farther than this (km, great circle) are not used.
    power : float, default 2.0
        Exponent of the inverse-distance weights.

    Returns
    -------
    numpy.ndarray
        float64, one value per point in the stations' unit; NaN where no station with a value
        that day lies within ``max_distance_km``.

    Notes
    -----
    Inverse-distance weighting: :math:`v = \\sum_s w_s v_s / \\sum_s w_s` with
    :math:`w_s = d_s^{-p}` (:math:`p` = ``power``) over the stations within reach; a station
    at the point itself takes all the weight. Distances by :func:`haversine_km`.

    References
    ----------
    Shepard D. A two-dimensional interpolation function for irregularly-spaced data. Proc 23rd
    ACM Natl Conf. 1968:517-524.

    Examples
    --------
    >>> import pandas as pd
    >>> from explorer.exposure import station_values
    >>> stations = pd.DataFrame({"station_id": ["A", "B"], "latitude": [40.0, 40.2], "longitude": [-75.0, -75.0],
    ...                          "date": ["2024-07-01", "2024-07-01"], "value": [30.0, 34.0]})
    >>> station_values(stations, ["2024-07-01", "2024-07-01"], [40.0, 40.15], [-75.0, -75.0])
    array([30., 34.])
    >>> station_values(stations, ["2024-07-01", "2024-07-02"], [40.1, 40.1], [-75.0, -75.0], method="idw")
    array([32., nan])
    """
    if method not in STATION_METHODS:
        raise ExplorerError(f"method {method!r} is not one of {', '.join(STATION_METHODS)}")
    missing = [c for c in ("station_id", "latitude", "longitude", "date", "value") if c not in stations.columns]
    if missing:
        raise ExplorerError(f"stations: column(s) {', '.join(missing)} missing")
    if max_distance_km <= 0 or power <= 0:
        raise ExplorerError("max_distance_km and power must be positive")
    dates = pd.DatetimeIndex(pd.to_datetime(np.asarray(date))).normalize()
    latitude, longitude = np.asarray(latitude, dtype=float), np.asarray(longitude, dtype=float)
    if stations.empty:
        return np.full(len(dates), np.nan)
    day_of = pd.to_datetime(stations["date"]).dt.normalize()
    twice = stations.assign(day=day_of).duplicated(["station_id", "day"])
    if twice.any():
        row = stations[twice.to_numpy()].iloc[0]
        raise ExplorerError(f"stations: station {row['station_id']} has more than one value on {pd.Timestamp(row['date']).date()}; "
                            "pass one variable, e.g. weather_station_daily filtered to element = 'TMAX'")
    where = stations.groupby("station_id")[["latitude", "longitude"]].first()
    table = stations.assign(date=pd.to_datetime(stations["date"]).dt.normalize()).pivot_table(
        index="date", columns="station_id", values="value", aggfunc="mean").reindex(columns=where.index)
    day = table.index.get_indexer(dates)
    observed = np.vstack([table.to_numpy(dtype=float), np.full((1, len(where)), np.nan)])[day]  # (points, stations)
    distance = haversine_km(latitude[:, None], longitude[:, None], where["latitude"].to_numpy()[None, :],
                            where["longitude"].to_numpy()[None, :])
    usable = np.isfinite(observed) & (distance <= max_distance_km)
    if method == "nearest":
        ranked = np.where(usable, distance, np.inf)
        best = np.argmin(ranked, axis=1)
        picked = observed[np.arange(len(dates)), best]
        return np.where(np.isfinite(ranked[np.arange(len(dates)), best]), picked, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(usable, 1.0 / distance ** power, 0.0)
        at_station = usable & (distance == 0)
        weight = np.where(at_station.any(axis=1, keepdims=True), at_station.astype(float), weight)
        total = weight.sum(axis=1)
        return np.where(total > 0, (weight * np.where(usable, observed, 0.0)).sum(axis=1) / total, np.nan)


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance between points given in degrees.

    Parameters
    ----------
    lat1, lon1, lat2, lon2 : float or array-like
        Latitudes and longitudes in degrees (broadcast together).

    Returns
    -------
    numpy.ndarray or float
        Distance in km.

    Notes
    -----
    The haversine formula on a sphere of radius :math:`R` = :data:`EARTH_RADIUS_KM`
    (6371.0088 km, the mean Earth radius):

    .. math:: d = 2R \\arcsin\\sqrt{\\sin^2\\frac{\\varphi_2 - \\varphi_1}{2}
              + \\cos\\varphi_1 \\cos\\varphi_2 \\sin^2\\frac{\\lambda_2 - \\lambda_1}{2}}

    References
    ----------
    Sinnott RW. Virtues of the haversine. Sky and Telescope. 1984;68(2):159.

    Examples
    --------
    >>> from explorer.exposure import haversine_km
    >>> round(float(haversine_km(0, 0, 1, 0)), 2)               # one degree of latitude
    111.2
    >>> round(float(haversine_km(51.5074, -0.1278, 48.8566, 2.3522)))   # London to Paris
    344
    """
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
