"""Refresh steps of the wearable aggregates: the daily summary and the monthly circadian metrics."""

from __future__ import annotations

import pandas as pd

from explorer.jobs.steps import Partition, RefreshStep, bucket_sql, person_bucket
from explorer.wearables.daily import VALID_WEAR_MINUTES, daily_summary
from explorer.wearables.periods import circadian_by_month


class WearableDaily(RefreshStep):
    """The daily wearable summary (explorer.wearables.daily): steps, wear minutes, valid day,
    mean and resting heart rate, main-sleep minutes and efficiency, per person and local day.

    A change on one day can change the next one too (the resting-heart-rate window looks 12
    minutes back across midnight; a night's sleep counts for the morning it ends), so changed
    days are recomputed with the day after them.
    """

    name = "wearable_daily"
    description = "per person and local day: steps, wear minutes, valid day, mean and resting heart rate, sleep"
    inputs = ("heart_rate_minute", "steps_minute", "sleep_level")
    optional_inputs = ("sleep_level",)
    output = "wearable_daily"
    partition = "person_bucket_day"
    time_columns = {"heart_rate_minute": "datetime", "steps_minute": "datetime", "sleep_level": "start_datetime"}
    days_affected_after = 1
    #: wear minutes of a valid day; a site with another rule registers a subclass that sets it
    #: (a module named in $EXPLORER_STEP_MODULES), so the rule is code under review, not a flag
    valid_wear_minutes = VALID_WEAR_MINUTES

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        return daily_summary(con, person_filter=partition.where(None), days=partition.days,
                             has_sleep=self.available(con, "sleep_level"), bucket_column=bucket_sql(),
                             valid_wear_minutes=self.valid_wear_minutes)


class WearableCircadian(RefreshStep):
    """Non-parametric circadian metrics (IS, IV, RA, L5, M10 with their onsets) and the sleep
    regularity index per person and calendar month, from minute steps
    (explorer.wearables.periods). Partitioned by person bucket and month: a changed minute
    recomputes its person's month (and the next, for a sleep crossing the month's end)."""

    name = "wearable_circadian"
    description = "per person and month: interdaily stability, intradaily variability, RA, L5, M10, sleep regularity"
    inputs = ("steps_minute", "sleep_level")
    optional_inputs = ("sleep_level",)
    output = "wearable_circadian"
    # a new day recomputes its month only (a segment starting late on a month's last day counts
    # for the next month's sleep regularity too)
    partition = "person_bucket_day"
    time_columns = {"steps_minute": "datetime", "sleep_level": "start_datetime"}
    days_affected_after = 1
    period = "month"
    output_day_column = "period_start"
    #: recorded step minutes of a valid day, as wearable_daily's rule
    valid_wear_minutes = WearableDaily.valid_wear_minutes

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        found = circadian_by_month(con, partition.where(None), has_sleep=self.available(con, "sleep_level"),
                                   valid_minutes=self.valid_wear_minutes, months=partition.days)
        return found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})
