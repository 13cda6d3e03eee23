"""The exposure metric registry: every exposure column the suite computes, with its units, its
reference, the function that defines it and the aggregate table column that holds it (xclim's
pattern: a pure function plus a registry entry). Views and jobs look metrics up here."""

from __future__ import annotations

from explorer.catalog.metrics import Metric
from explorer.exposure import climate, events, linkage

#: an exposure registry entry: the shared :class:`explorer.catalog.metrics.Metric`
ExposureMetric = Metric

_PARKS = "Parks et al. 2020, Nat Med 26:65"
_XCLIM = "xclim heat_wave_total_length: tasmin > 22 degC and tasmax > 30 degC for >= 3 days"

METRICS: dict[str, ExposureMetric] = {m.identifier: m for m in (
    ExposureMetric("tasmax", "Daily maximum temperature at home", "degC", linkage.grid_values,
                   "gridded, nearest cell (or bilinear)", "exposure_daily", "tasmax"),
    ExposureMetric("tasmin", "Daily minimum temperature at home", "degC", linkage.grid_values,
                   "gridded, nearest cell (or bilinear)", "exposure_daily", "tasmin"),
    ExposureMetric("pm25", "Daily mean PM2.5 at home", "ug/m3", linkage.grid_values,
                   "gridded, nearest cell (or bilinear)", "exposure_daily", "pm25"),
    ExposureMetric("tas_anomaly", "Temperature anomaly against the baseline monthly mean", "K",
                   climate.temperature_anomaly, _PARKS, "exposure_daily", "tas_anomaly"),
    ExposureMetric("heat_wave", "Day in a heat wave", "1", climate.heat_wave_days, _XCLIM, "exposure_daily", "heat_wave"),
    ExposureMetric("tasmax_mean", "Mean daily maximum temperature over the window before an event", "degC",
                   events.event_windows, "lags 0..window_days", "event_exposure", "tasmax_mean"),
    ExposureMetric("pm25_mean", "Mean PM2.5 over the window before an event", "ug/m3", events.event_windows,
                   "lags 0..window_days", "event_exposure", "pm25_mean"),
    ExposureMetric("tasmin_mean", "Mean daily minimum temperature over the window before an event", "degC",
                   events.event_windows, "lags 0..window_days", "event_exposure", "tasmin_mean"),
    ExposureMetric("tas_anomaly_mean", "Mean temperature anomaly over the window before an event", "K",
                   events.event_windows, "lags 0..window_days; " + _PARKS, "event_exposure", "tas_anomaly_mean"),
    ExposureMetric("days_with_value", "Days of the window with a tasmax value", "d", events.event_windows,
                   "lags 0..window_days", "event_exposure", "days_with_value"),
    ExposureMetric("heat_wave_days", "Heat-wave days in the window before an event", "d", events.event_windows,
                   _XCLIM, "event_exposure", "heat_wave_days"),
)}
