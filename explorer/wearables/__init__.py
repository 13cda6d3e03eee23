"""Wearable analytics: pure functions over minute-level Fitbit data, each with its definition
and reference: the daily summary (``daily_summary``, behind the ``wearable_daily`` refresh
step, defined by the query ``daily_summary_sql``) and the non-parametric circadian metrics (IS, IV, RA, L5, M10, and the sleep regularity index; ``METRICS`` lists them with
their units)."""

from explorer.wearables.circadian import (
    ActivityWindow,
    CircadianSummary,
    interdaily_stability,
    intradaily_variability,
    l5,
    m10,
    relative_amplitude,
    sleep_regularity_index,
    summarise_minutes,
)
from explorer.wearables.daily import RESTING_WINDOW_MINUTES, VALID_WEAR_MINUTES, daily_summary, daily_summary_sql
from explorer.catalog.metrics import METRICS as _ALL_METRICS
from explorer.catalog.metrics import Metric as WearableMetric
from explorer.wearables import registry  # noqa: F401  (declares the metrics of this package)

__all__ = ["METRICS", "RESTING_WINDOW_MINUTES", "VALID_WEAR_MINUTES", "ActivityWindow", "CircadianSummary",
           "daily_summary", "daily_summary_sql", "interdaily_stability", "intradaily_variability", "l5", "m10", "relative_amplitude",
           "sleep_regularity_index", "summarise_minutes", "WearableMetric"]

#: this package's metrics: a live view of :data:`explorer.catalog.metrics.METRICS` (units from the catalog)
METRICS = _ALL_METRICS.domain("wearables")
