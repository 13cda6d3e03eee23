"""Refresh steps of the wearable aggregates: the daily summary and the monthly circadian metrics."""

from __future__ import annotations

import pandas as pd

from explorer.jobs.steps import Partition, RefreshStep, bucket_sql, person_bucket
from explorer.wearables.daily import VALID_WEAR_MINUTES, daily_summary
from explorer.wearables.periods import (ACTIVE_STEPS, DAY_COLUMNS, circadian_days, months_from_days, months_where,
                                        unpack_days)


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


class WearableCircadianDay(RefreshStep):
    """Minute states per person and local day, what the monthly circadian metrics are made of:
    which minutes had a step count, which were active (more than 4 steps) and which an asleep
    segment covers, as bitmaps (explorer.wearables.periods). A night's segment can start the day
    before, so changed days are recomputed with the day after them."""

    name = "wearable_circadian_day"
    description = "per person and local day: recorded, active and asleep minutes (bitmaps) for the circadian metrics"
    inputs = ("steps_minute", "sleep_level")
    optional_inputs = ("sleep_level",)
    output = "wearable_circadian_day"
    partition = "person_bucket_day"
    time_columns = {"steps_minute": "datetime", "sleep_level": "start_datetime"}
    days_affected_after = 1
    #: steps a minute above which a minute is active (pyActigraphy's default binarisation)
    active_steps = ACTIVE_STEPS

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        found = circadian_days(con, partition.where(None), has_sleep=self.available(con, "sleep_level"),
                               threshold=self.active_steps, days=partition.days)
        if not len(found):
            return self.empty_output()
        return found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})


class WearableCircadian(RefreshStep):
    """Non-parametric circadian metrics (IS, IV, RA, L5, M10 with their onsets) and the sleep
    regularity index per person and calendar month (explorer.wearables.periods), from the minute
    states of its days in ``wearable_circadian_day``: a new day reads its month's bitmaps, not
    its month's minutes."""

    name = "wearable_circadian"
    description = "per person and month: interdaily stability, intradaily variability, RA, L5, M10, sleep regularity"
    inputs = ("wearable_circadian_day",)
    output = "wearable_circadian"
    partition = "person_bucket_day"
    time_columns = {"wearable_circadian_day": "date"}
    period = "month"
    output_day_column = "period_start"
    #: recorded step minutes of a valid day, as wearable_daily's rule
    valid_wear_minutes = WearableDaily.valid_wear_minutes

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        where = partition.where(None)
        if partition.days:  # the months to recompute, as their first days
            where += " AND " + months_where("date", partition.days)
        days = con.sql(f"SELECT {', '.join(DAY_COLUMNS)} FROM wearable_circadian_day WHERE {where} "
                       "ORDER BY person_id, date").to_arrow_table()
        # without sleep_level no minute is asleep, and a month without an asleep minute has no index
        found = months_from_days(unpack_days(days), valid_minutes=self.valid_wear_minutes)
        if not len(found):
            return self.empty_output()
        return found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})
