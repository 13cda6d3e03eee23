"""The exposure metrics, declared once in :data:`explorer.catalog.metrics.METRICS` (xclim's
pattern: a pure function plus a registry entry). Units come from the catalog column."""

from __future__ import annotations

from explorer.catalog.metrics import METRICS, Metric
from explorer.exposure import climate, events, linkage

_PARKS = "Parks et al. 2020, Nat Med 26:65"
_XCLIM = "xclim heat_wave_total_length: tasmin > 22 degC and tasmax > 30 degC for >= 3 days"
_GRID = "gridded, nearest cell (or bilinear)"
_WINDOW = "lags 0..window_days"


def _daily(identifier, long_name, function, reference) -> Metric:
    return Metric(identifier, long_name, "exposure_daily", identifier, function, reference, "exposure")


def _window(identifier, long_name, reference=_WINDOW) -> Metric:
    # one row per event and window: not a value per person and day a cohort criterion could bound
    return Metric(identifier, long_name, "event_exposure", identifier, events.event_windows, reference, "exposure",
                  criterion=False)


METRICS.register(
    _daily("tasmax", "Daily maximum temperature at home", linkage.grid_values, _GRID),
    _daily("tasmin", "Daily minimum temperature at home", linkage.grid_values, _GRID),
    _daily("pm25", "Daily mean PM2.5 at home", linkage.grid_values, _GRID),
    _daily("tas_anomaly", "Temperature anomaly against the baseline monthly mean", climate.temperature_anomaly, _PARKS),
    _daily("heat_wave", "Day in a heat wave", climate.heat_wave_days, _XCLIM),
    _window("tasmax_mean", "Mean daily maximum temperature over the window before an event"),
    _window("pm25_mean", "Mean PM2.5 over the window before an event"),
    _window("tasmin_mean", "Mean daily minimum temperature over the window before an event"),
    _window("tas_anomaly_mean", "Mean temperature anomaly over the window before an event", _WINDOW + "; " + _PARKS),
    _window("days_with_value", "Days of the window with a tasmax value"),
    _window("heat_wave_days", "Heat-wave days in the window before an event", _XCLIM),
)
