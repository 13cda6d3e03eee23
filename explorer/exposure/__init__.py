"""Environmental exposure linkage: where people live x gridded climate and air quality, station
observations and area-level indices; temperature anomalies, heat waves, windows and lags before
events. Pure functions (pandas / xarray / numpy), each with its definition and reference;
``METRICS`` lists the exposure columns with their units, and the refresh steps
``exposure_daily`` and ``event_exposure`` fill the aggregate tables."""

from explorer.exposure.area import area_linkage
from explorer.exposure.association import Association, association, resting_hr_on_anomaly
from explorer.exposure.climate import (
    baseline_years,
    daily_mean_temperature,
    heat_wave_days,
    heat_waves,
    temperature_anomaly,
)
from explorer.exposure.daily import exposure_daily, open_grids
from explorer.exposure.events import DEFAULT_WINDOWS, event_windows, lag_matrix
from explorer.exposure.linkage import grid_values, haversine_km, location_series, station_values
from explorer.exposure.point import heat_waves_at
from explorer.catalog.metrics import METRICS as _ALL_METRICS
from explorer.catalog.metrics import Metric as ExposureMetric
from explorer.exposure import registry  # noqa: F401  (declares the metrics of this package)
from explorer.exposure.residence import residence_days

__all__ = ["METRICS", "Association", "DEFAULT_WINDOWS", "ExposureMetric", "area_linkage", "association", "resting_hr_on_anomaly", "baseline_years", "daily_mean_temperature", "event_windows",
           "exposure_daily", "grid_values", "haversine_km", "heat_wave_days", "heat_waves", "heat_waves_at", "lag_matrix",
           "location_series", "open_grids", "residence_days", "station_values", "temperature_anomaly"]

#: this package's metrics: a live view of :data:`explorer.catalog.metrics.METRICS` (units from the catalog)
METRICS = _ALL_METRICS.domain("exposure")
