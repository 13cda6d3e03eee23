"""Circadian metrics for every person and calendar month, from the unified minute tables.

For each person-month the step minutes are read as one list of (minute, whole steps) pairs
packed in integers, and laid on a grid of whole local days. Days with fewer than ``valid_minutes`` recorded minutes (10 h, the daily
summary's valid-day rule; steps are recorded only while the tracker is worn) are left out
whole, and the valid days are put end to end: the series a pyActigraphy user gets by cropping a
recording to its valid days. Left in, a day off the wrist would sum to 24 empty hourly bins
and read as a day of perfect rest. On that series
:func:`explorer.wearables.circadian.summarise_minutes` computes IS, IV, RA, L5 and M10 with the
conventions of pyActigraphy 1.2.2 (steps as activity, binarised at more than ``threshold`` a
minute, bins from the first sample, which is midnight of the first valid day). A minute recorded
twice (the repeated autumn hour) counts the mean of its values.

The sleep regularity index is computed on the calendar grid, so only days 24 h apart are paired.
A minute is asleep where a ``sleep_level`` segment of an asleep level covers it, awake where
steps were recorded and no such segment does, and unknown elsewhere and on days that are not
valid. A month without any asleep minute has no index: no sleep log is missing data, not a
perfectly regular sleeper.

Persons are read a block at a time, so a task's memory is one block's minutes whatever the
size of its share of the cohort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from explorer.wearables.circadian import _sri, summarise_minutes
from explorer.wearables.daily import ASLEEP_LEVELS, VALID_WEAR_MINUTES

#: valid days a month needs before its metrics are computed (IS needs days to compare)
MIN_DAYS = 7
#: activity above this many steps a minute counts as active (pyActigraphy's default threshold)
ACTIVE_STEPS = 4
#: persons read per query: bounds a task's memory (25 persons x 31 days of minutes is about 20 MB)
PERSONS_PER_READ = 25
#: bits of the packed (minute, steps) integer that hold the steps of a minute (at most 4,194,303)
STEP_BITS = 22

COLUMNS = ["person_id", "period_start", "period_end", "days_recorded", "valid_days", "interdaily_stability",
           "intradaily_variability", "relative_amplitude", "l5", "l5_onset_hour", "m10", "m10_onset_hour",
           "sleep_regularity_index"]


def circadian_by_month(con, person_filter: str = "TRUE", *, has_sleep: bool = True, min_days: int = MIN_DAYS,
                       valid_minutes: int = VALID_WEAR_MINUTES, threshold: float = ACTIVE_STEPS,
                       bin_minutes: int = 60, months=None) -> pd.DataFrame:
    """Circadian metrics (IS, IV, RA, L5, M10, SRI) per person and calendar month.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection with the views ``steps_minute`` (person_id, datetime, steps) and, if
        ``has_sleep``, ``sleep_level`` (person_id, start_datetime, level, duration_minutes).
    person_filter : str, default "TRUE"
        SQL condition on ``person_id`` choosing the persons (a refresh task's share).
    has_sleep : bool, default True
        Whether ``sleep_level`` exists; without it the sleep regularity index is empty.
    min_days : int, default :data:`MIN_DAYS` (7)
        Valid days a month needs before its metrics are computed.
    valid_minutes : int, default 600
        Recorded step minutes that make a day valid (10 h).
    threshold : float, default 4
        Steps per minute above which a minute is active (the metrics are computed binarised).
    bin_minutes : int, default 60
        Bin width of IS and IV, in minutes.
    months : iterable of date-like, optional
        Limit the rows to these calendar months (any day of each); None: every month.

    Returns
    -------
    pandas.DataFrame
        One row per person and calendar month with any recorded step minute, columns
        :data:`COLUMNS`: ``period_start``/``period_end`` (dates), ``days_recorded`` and
        ``valid_days`` (days), ``interdaily_stability``, ``intradaily_variability``,
        ``relative_amplitude`` (dimensionless), ``l5`` and ``m10`` (share of active minutes,
        0 to 1), ``l5_onset_hour`` and ``m10_onset_hour`` (hours after midnight, 0 to 24) and
        ``sleep_regularity_index`` (-100 to 100). The metrics are empty for a month with fewer
        than ``min_days`` valid days, and the SRI for a month without any asleep minute.

    Notes
    -----
    The valid days of the month are put end to end and
    :func:`explorer.wearables.circadian.summarise_minutes` computes the metrics on them (see the
    module notes and the Notes of :func:`explorer.wearables.interdaily_stability` and the
    others for the formulas); the SRI pairs minutes 24 h apart on the calendar grid.

    References
    ----------
    Witting W, et al. Biol Psychiatry. 1990;27:563-572 (IS, IV). Van Someren EJW, et al.
    Chronobiol Int. 1999;16:505-518 (L5, M10, RA). Phillips AJK, et al. Sci Rep. 2017;7:3216
    (SRI).

    Examples
    --------
    One person, seven identical days of steps in March:

    >>> import duckdb, numpy as np, pandas as pd
    >>> from explorer.wearables.periods import circadian_by_month
    >>> day = np.repeat([0] * 8 + [30] * 10 + [0] * 6, 60)        # steps a minute
    >>> con = duckdb.connect()
    >>> _ = con.register("steps_minute", pd.DataFrame({
    ...     "person_id": "p1", "datetime": pd.date_range("2024-03-04", periods=7 * 1440, freq="1min"),
    ...     "steps": np.tile(day, 7).astype(float)}))
    >>> row = circadian_by_month(con, has_sleep=False).iloc[0]
    >>> str(row["period_start"]), int(row["valid_days"]), round(float(row["interdaily_stability"]), 4)
    ('2024-03-01', 7, 1.0373)
    >>> float(row["m10_onset_hour"]), float(row["relative_amplitude"])
    (8.0, 1.0)
    """
    month_filter = "TRUE"
    if months:
        starts = sorted(pd.Timestamp(m).replace(day=1) for m in months)
        listed = ", ".join(f"DATE '{m.date()}'" for m in starts)
        end = starts[-1] + pd.offsets.MonthBegin(1)
        # the range first: DuckDB skips row groups by it
        month_filter = (f"datetime >= DATE '{starts[0].date()}' AND datetime < DATE '{end.date()}' "
                        f"AND CAST(date_trunc('month', datetime) AS DATE) IN ({listed})")
    persons = [row[0] for row in con.execute(
        f"SELECT DISTINCT person_id FROM steps_minute WHERE {person_filter} AND {month_filter} ORDER BY person_id").fetchall()]
    rows = []
    for low in range(0, len(persons), PERSONS_PER_READ):
        block = persons[low:low + PERSONS_PER_READ]
        where = f"{person_filter} AND person_id >= $first AND person_id <= $last"
        bounds = {"first": block[0], "last": block[-1]}
        # minute and steps packed in one integer: one list per person-month, in any order (the
        # grid is filled by position), which DuckDB builds several times faster than two ordered lists
        minutes = con.sql(f"""
            SELECT person_id, CAST(date_trunc('month', datetime) AS DATE) AS period_start,
                   list(CAST(epoch(datetime) // 60 AS BIGINT) * {1 << STEP_BITS}
                        + least(CAST(round(steps) AS BIGINT), {(1 << STEP_BITS) - 1})) AS packed
            FROM steps_minute WHERE {where} AND {month_filter} AND datetime IS NOT NULL AND steps >= 0
            GROUP BY ALL ORDER BY person_id, period_start""", params=bounds).to_arrow_table()
        segments = _asleep_segments(con, where, bounds) if has_sleep else {}
        ends = pc.list_value_length(minutes["packed"]).to_numpy(zero_copy_only=False).cumsum()
        packed = pc.list_flatten(minutes["packed"]).to_numpy()
        minute_values, step_values = packed >> STEP_BITS, (packed & ((1 << STEP_BITS) - 1)).astype("float64")
        starts = np.r_[0, ends[:-1]]
        for k, (person, period) in enumerate(zip(minutes["person_id"].to_pylist(), minutes["period_start"].to_pylist())):
            stamp, value = minute_values[starts[k]:ends[k]], step_values[starts[k]:ends[k]]
            rows.append(_person_month(person, period, stamp, value, segments.get(person) if has_sleep else None,
                                      has_sleep, min_days, valid_minutes, threshold, bin_minutes))
    return pd.DataFrame(rows, columns=COLUMNS)


def _person_month(person, period, stamp, value, segments, has_sleep, min_days, valid_minutes, threshold,
                  bin_minutes) -> dict:
    first_day = int(stamp.min()) // 1440 * 1440
    position = stamp - first_day
    n_days = int(position.max()) // 1440 + 1
    counts = np.bincount(position, minlength=n_days * 1440)
    sums = np.bincount(position, weights=value, minlength=n_days * 1440)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(n_days, 1440)
    recorded_per_day = (counts > 0).reshape(n_days, 1440).sum(axis=1)
    valid = recorded_per_day >= valid_minutes
    row = {"person_id": person, "period_start": period,
           "period_end": (pd.Timestamp(period) + pd.offsets.MonthEnd(0)).date(),
           "days_recorded": int((recorded_per_day > 0).sum()), "valid_days": int(valid.sum())}
    if valid.sum() < min_days:
        return row
    summary = summarise_minutes(grid[valid].ravel(), 0, bin_minutes=bin_minutes, threshold=threshold)
    row.update(interdaily_stability=summary.interdaily_stability,
               intradaily_variability=summary.intradaily_variability,
               relative_amplitude=summary.relative_amplitude,
               l5=summary.l5.value, l5_onset_hour=(summary.l5.onset / pd.Timedelta("1h")) % 24,
               m10=summary.m10.value, m10_onset_hour=(summary.m10.onset / pd.Timedelta("1h")) % 24)
    if has_sleep:
        asleep = _asleep_minutes(segments, first_day, n_days * 1440).reshape(n_days, 1440)
        if asleep[valid].any():
            states = np.where(asleep, 1.0, np.where(np.isnan(grid), np.nan, 0.0))
            states[~valid] = np.nan
            row["sleep_regularity_index"] = _sri(states.ravel(), 1440)
    return row


def _asleep_segments(con, where: str, bounds: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per person: (start minute, end minute) of every segment of an asleep level."""
    levels = ", ".join(f"'{level}'" for level in ASLEEP_LEVELS)
    found = con.execute(f"""
        SELECT person_id, list(CAST(epoch(start_datetime) // 60 AS BIGINT)) AS start,
               list(CAST(epoch(start_datetime) // 60 + round(duration_minutes) AS BIGINT)) AS stop
        FROM sleep_level WHERE {where} AND lower(level) IN ({levels})
              AND start_datetime IS NOT NULL AND duration_minutes > 0
        GROUP BY person_id""", bounds).fetchall()
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
