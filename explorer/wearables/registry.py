"""The wearable metric registry: every metric the suite computes, with its unit, its reference,
the function that defines it and the aggregate table column that holds it. Views and jobs look
metrics up here instead of hard-coding names, labels or units."""

from __future__ import annotations

from explorer.catalog.metrics import Metric
from explorer.wearables import circadian
from explorer.wearables.daily import daily_summary_sql

#: a wearable registry entry: the shared :class:`explorer.catalog.metrics.Metric`
WearableMetric = Metric

_DAILY = "wearable_daily"
_MISHRA = "Mishra et al. 2020, awake minutes only"
_CIRCADIAN_COLUMNS = {"l5": "l5", "m10": "m10"}

METRICS: dict[str, WearableMetric] = {m.identifier: m for m in (
    WearableMetric("steps", "Daily steps", "{steps}", daily_summary_sql, "sum over the local day", _DAILY, "steps"),
    WearableMetric("wear_minutes", "Wear minutes", "min", daily_summary_sql, "minutes with a heart-rate reading", _DAILY,
                   "wear_minutes"),
    WearableMetric("valid_day", "Valid day (>= 600 wear minutes)", "1", daily_summary_sql, "Master et al. 2022", _DAILY,
                   "valid_day"),
    WearableMetric("mean_hr", "Mean heart rate", "/min", daily_summary_sql, "mean over worn minutes", _DAILY, "mean_hr"),
    WearableMetric("resting_hr", "Resting heart rate", "/min", daily_summary_sql, _MISHRA, _DAILY, "resting_hr"),
    WearableMetric("sleep_minutes", "Minutes asleep, main sleep", "min", daily_summary_sql, "Fitbit date of sleep",
                   _DAILY, "sleep_minutes"),
    WearableMetric("sleep_efficiency", "Sleep efficiency, main sleep", "1", daily_summary_sql,
                   "minutes asleep / time in bed", _DAILY, "sleep_efficiency"),
    WearableMetric("sleep_hr", "Heart rate during main sleep", "/min", daily_summary_sql, "mean over minutes asleep",
                   _DAILY, "sleep_hr"),
    *(WearableMetric(m.identifier, m.long_name, m.units, m.function, m.reference, "wearable_circadian",
                     _CIRCADIAN_COLUMNS.get(m.identifier, m.identifier))
      for m in circadian.METRICS.values()),
)}
