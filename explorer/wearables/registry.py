"""The wearable metrics, declared once in :data:`explorer.catalog.metrics.METRICS`.

Each entry names the pure function (or SQL) that defines the metric, the reference, the aggregate
column that holds it and, for the metrics public views draw, fixed histogram bins (each metric's
plausible range, so that no bin edge is any person's value). Units come from the catalog column.
"""

from __future__ import annotations

import numpy as np

from explorer.catalog.metrics import METRICS, Metric
from explorer.wearables import circadian
from explorer.wearables.daily import daily_summary_sql

_DAILY = "wearable_daily"
_CIRCADIAN = "wearable_circadian"
_MISHRA = "Mishra et al. 2020, awake minutes only"


def _daily(identifier, long_name, reference, bins=None) -> Metric:
    return Metric(identifier, long_name, _DAILY, identifier, daily_summary_sql, reference, "wearables", bins)


def _circadian(identifier, long_name, function, reference, bins=None) -> Metric:
    return Metric(identifier, long_name, _CIRCADIAN, identifier, function, reference, "wearables", bins)


def _edges(start, stop, step) -> tuple[float, ...]:
    return tuple(float(x) for x in np.arange(start, stop + step / 2, step))


METRICS.register(
    _daily("steps", "Daily steps", "sum over the local day", bins=_edges(0, 30_000, 1000)),
    _daily("wear_minutes", "Wear minutes", "minutes with a heart-rate reading"),
    _daily("valid_day", "Valid day (>= 600 wear minutes)", "Master et al. 2022"),
    _daily("mean_hr", "Mean heart rate", "mean over worn minutes"),
    _daily("resting_hr", "Resting heart rate", _MISHRA, bins=_edges(35, 110, 2.5)),
    _daily("sleep_minutes", "Minutes asleep, main sleep", "Fitbit date of sleep"),
    _daily("sleep_efficiency", "Sleep efficiency, main sleep", "minutes asleep / time in bed"),
    _daily("sleep_hr", "Heart rate during main sleep", "mean over minutes asleep"),
    _circadian("interdaily_stability", "Interdaily stability (IS)", circadian.interdaily_stability, "Witting et al. 1990",
               bins=tuple(float(x) for x in np.linspace(0, 1, 21))),
    _circadian("intradaily_variability", "Intradaily variability (IV)", circadian.intradaily_variability,
               "Witting et al. 1990", bins=tuple(float(x) for x in np.linspace(0, 2.5, 26))),
    _circadian("relative_amplitude", "Relative amplitude (RA)", circadian.relative_amplitude, "Van Someren et al. 1999"),
    _circadian("l5", "Least active 5 hours (L5): share of active minutes", circadian.l5, "Van Someren et al. 1999"),
    _circadian("m10", "Most active 10 hours (M10): share of active minutes", circadian.m10, "Van Someren et al. 1999"),
    _circadian("sleep_regularity_index", "Sleep regularity index (SRI)", circadian.sleep_regularity_index,
               "Phillips et al. 2017"),
)
