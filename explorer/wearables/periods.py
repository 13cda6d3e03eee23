"""Circadian metrics for every person and calendar month, from the unified minute tables.

The minutes of a person-month are read in one DuckDB query as two lists (minute, steps), turned
into a regular minute array from the month's first recorded minute to its last (missing minutes
NaN, a minute recorded twice - the repeated autumn hour - averaged), and summarised with
:func:`explorer.wearables.circadian.summarize_minutes`: the conventions of pyActigraphy 1.2.2
with steps as the activity count, binarised at more than ``threshold`` steps a minute.

Sleep regularity uses the same minutes: asleep where a ``sleep_level`` segment of an asleep
level covers the minute, awake where steps were recorded and no such segment does, unknown
elsewhere (the tracker was not worn).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from explorer.wearables.circadian import summarize_minutes, _sri
from explorer.wearables.daily import ASLEEP_LEVELS

#: days with recorded minutes a month needs before its metrics are computed (IS needs days to compare)
MIN_DAYS = 7
#: activity above this many steps a minute counts as active (pyActigraphy's default threshold)
ACTIVE_STEPS = 4

COLUMNS = ["person_id", "period_start", "period_end", "days_recorded", "minutes_recorded", "interdaily_stability",
           "intradaily_variability", "relative_amplitude", "l5", "l5_onset_hour", "m10", "m10_onset_hour",
           "sleep_regularity_index"]


def circadian_by_month(con, person_filter: str = "TRUE", *, has_sleep: bool = True, min_days: int = MIN_DAYS,
                       threshold: float = ACTIVE_STEPS, bin_minutes: int = 60) -> pd.DataFrame:
    """One row per person and calendar month with any recorded step minute (columns
    :data:`COLUMNS`); the metrics are empty for a month with fewer than ``min_days`` recorded
    days. ``con`` is a DuckDB connection with the views ``steps_minute`` (and ``sleep_level``
    if ``has_sleep``); ``person_filter`` is SQL on ``person_id``."""
    minutes = con.sql(f"""
        SELECT person_id, CAST(date_trunc('month', datetime) AS DATE) AS period_start,
               count(DISTINCT CAST(datetime AS DATE)) AS days_recorded,
               list(CAST(epoch(datetime) // 60 AS BIGINT) ORDER BY datetime) AS minute,
               list(CAST(steps AS DOUBLE) ORDER BY datetime) AS steps
        FROM steps_minute WHERE {person_filter} AND datetime IS NOT NULL AND steps IS NOT NULL
        GROUP BY ALL ORDER BY person_id, period_start""").to_arrow_table()
    if minutes.num_rows == 0:
        return pd.DataFrame(columns=COLUMNS)
    segments = _asleep_segments(con, person_filter) if has_sleep else {}
    rows = []
    offsets = {name: minutes[name].combine_chunks().offsets.to_numpy() for name in ("minute", "steps")}
    minute_values = pa.concat_arrays([c.values for c in minutes["minute"].chunks]).to_numpy()
    step_values = pa.concat_arrays([c.values for c in minutes["steps"].chunks]).to_numpy()
    people = minutes["person_id"].to_pylist()
    starts = minutes["period_start"].to_pylist()
    days_recorded = minutes["days_recorded"].to_numpy()
    for k, (person, start) in enumerate(zip(people, starts)):
        low, high = offsets["minute"][k], offsets["minute"][k + 1]
        stamp = minute_values[low:high]
        first = int(stamp[0])
        position = stamp - first
        counts = np.bincount(position)
        sums = np.bincount(position, weights=step_values[low:high])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        row = {"person_id": person, "period_start": start,
               "period_end": (pd.Timestamp(start) + pd.offsets.MonthEnd(0)).date(),
               "days_recorded": int(days_recorded[k]), "minutes_recorded": int((counts > 0).sum())}
        if days_recorded[k] >= min_days:
            summary = summarize_minutes(values, first % 1440, bin_minutes=bin_minutes, threshold=threshold)
            row.update(interdaily_stability=summary.interdaily_stability,
                       intradaily_variability=summary.intradaily_variability,
                       relative_amplitude=summary.relative_amplitude,
                       l5=summary.l5.value, l5_onset_hour=(summary.l5.onset / pd.Timedelta("1h")) % 24,
                       m10=summary.m10.value, m10_onset_hour=(summary.m10.onset / pd.Timedelta("1h")) % 24)
            if has_sleep:
                asleep = _asleep_minutes(segments.get(person), first, len(values))
                states = np.where(asleep, 1.0, np.where(counts > 0, 0.0, np.nan))
                row["sleep_regularity_index"] = _sri(states, 1440)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _asleep_segments(con, person_filter: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per person: (start minute, end minute) of every segment of an asleep level."""
    levels = ", ".join(f"'{level}'" for level in ASLEEP_LEVELS)
    found = con.execute(f"""
        SELECT person_id, list(CAST(epoch(start_datetime) // 60 AS BIGINT)) AS start,
               list(CAST(epoch(start_datetime) // 60 + round(duration_minutes) AS BIGINT)) AS stop
        FROM sleep_level WHERE {person_filter} AND lower(level) IN ({levels})
              AND start_datetime IS NOT NULL AND duration_minutes > 0
        GROUP BY person_id""").fetchall()
    return {person: (np.asarray(start), np.asarray(stop)) for person, start, stop in found}


def _asleep_minutes(segments, first: int, length: int) -> np.ndarray:
    """True for the minutes [first, first + length) that an asleep segment covers."""
    if segments is None:
        return np.zeros(length, bool)
    start, stop = (np.clip(edge - first, 0, length) for edge in segments)
    change = np.zeros(length + 1, np.int64)
    np.add.at(change, start, 1)
    np.add.at(change, stop, -1)
    return np.cumsum(change[:-1]) > 0
