"""Circadian metrics for every person and calendar month, from the unified minute tables.

Two stages, so that one new day of data costs one day's work:

1. **Minute states per person and local day** (:func:`circadian_days`, the
   ``wearable_circadian_day`` refresh step): for each minute of the day, whether a step count was
   recorded, whether it was active (more than ``threshold`` steps; a minute recorded twice, the
   repeated autumn hour, counts the mean of its values), and whether an asleep segment of
   ``sleep_level`` covers it. Each state is a bitmap of 1,440 bits (180 bytes).
2. **Metrics per person and month** (:func:`months_from_days`, the ``wearable_circadian``
   step), from those states alone. Days with fewer than ``valid_minutes`` recorded minutes (10 h,
   the daily summary's valid-day rule; steps are recorded only while the tracker is worn) are
   left out whole and the valid days are put end to end: the series a pyActigraphy user gets by
   cropping a recording to its valid days. Left in, a day off the wrist would sum to 24 empty
   hourly bins and read as a day of perfect rest. On that series IS, IV, RA, L5 and M10 are the
   numbers :func:`explorer.wearables.circadian.summarise_minutes` gives (pyActigraphy 1.2.2's
   conventions: steps binarised at more than ``threshold`` a minute, hourly bins from the first
   sample, which is midnight of the first valid day, sample variances), computed for a whole
   block of person-months at once from integer sums: every bin holds a whole count of active
   minutes, so the variances, and the window sums of L5 and M10 (the mean day's minute means
   scaled by a common multiple of their day counts), are exact integers until the last division.
   Of two windows with the same sum the first of the day is chosen, as pandas' ``idxmin`` and
   ``idxmax`` choose; summing floats, as pandas does, may break such a tie by rounding.

The sleep regularity index is computed on the calendar grid, so only days 24 h apart are paired.
A minute is asleep where a ``sleep_level`` segment of an asleep level covers it, awake where
steps were recorded and no such segment does, and unknown elsewhere and on days that are not
valid. A month without any asleep minute has no index: no sleep log is missing data, not a
perfectly regular sleeper. A segment is taken to last at most :data:`MAX_SEGMENT_MINUTES` (a
sleep stage lasts minutes to hours), so a day's asleep minutes depend on that day's and the day
before's segments only, which is what lets a new day recompute two days, not the month.

Persons are read a block at a time, so a task's memory is one block's minutes whatever the
size of its share of the cohort.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from explorer.errors import ExplorerError
from explorer.wearables.daily import ASLEEP_LEVELS, VALID_WEAR_MINUTES

#: valid days a month needs before its metrics are computed (IS needs days to compare)
MIN_DAYS = 7
#: activity above this many steps a minute counts as active (pyActigraphy's default threshold)
ACTIVE_STEPS = 4
#: persons read per query: bounds a task's memory (25 persons x 31 days of minutes is about 20 MB)
PERSONS_PER_READ = 25
#: bits of the packed (minute, steps) integer that hold the steps of a minute (at most 4,194,303)
STEP_BITS = 22
#: longest asleep segment counted whole; a longer one is cut there (see the module notes)
MAX_SEGMENT_MINUTES = 1440
MINUTES_PER_DAY = 1440
DAYS_PER_MONTH = 31
#: bytes of one day's bitmap of minutes
BITMAP_BYTES = MINUTES_PER_DAY // 8

COLUMNS = ["person_id", "period_start", "period_end", "days_recorded", "valid_days", "interdaily_stability",
           "intradaily_variability", "relative_amplitude", "l5", "l5_onset_hour", "m10", "m10_onset_hour",
           "sleep_regularity_index"]
DAY_COLUMNS = ["person_id", "date", "recorded_minutes", "recorded", "active", "asleep"]


class DayStates(NamedTuple):
    """Minute states of person-days, sorted by person then day.

    Attributes
    ----------
    person_id : numpy.ndarray of str, shape (n,)
    date : numpy.ndarray of datetime64[D], shape (n,)
        Local calendar day.
    recorded, active, asleep : numpy.ndarray of bool, shape (n, 1440)
        Per minute of the day: a step count was recorded; it was more than the threshold (mean of
        a minute recorded twice); an asleep segment covers it.
    """

    person_id: np.ndarray
    date: np.ndarray
    recorded: np.ndarray
    active: np.ndarray
    asleep: np.ndarray

    @property
    def recorded_minutes(self) -> np.ndarray:
        return np.count_nonzero(self.recorded, axis=1).astype("int32")


def circadian_days(con, person_filter: str = "TRUE", *, has_sleep: bool = True, threshold: float = ACTIVE_STEPS,
                   days=None) -> pd.DataFrame:
    """Minute states per person and local day (the ``wearable_circadian_day`` table's rows).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection with the views ``steps_minute`` (person_id, datetime, steps) and, if
        ``has_sleep``, ``sleep_level`` (person_id, start_datetime, level, duration_minutes).
    person_filter : str, default "TRUE"
        SQL condition on ``person_id`` choosing the persons (a refresh task's share).
    has_sleep : bool, default True
        Whether ``sleep_level`` exists; without it no minute is asleep.
    threshold : float, default 4
        Steps per minute above which a minute is active.
    days : iterable of date-like, optional
        Only these local days; None: every day with a recorded step minute.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DAY_COLUMNS`: one row per person and day with at least one recorded step
        minute; ``recorded_minutes`` (min) and three bitmaps of the day's 1,440 minutes, 180 bytes
        each, the first minute in the highest bit of the first byte (``numpy.packbits``).

    Examples
    --------
    >>> import duckdb, numpy as np, pandas as pd
    >>> from explorer.wearables.periods import circadian_days, unpack_days
    >>> con = duckdb.connect()
    >>> _ = con.register("steps_minute", pd.DataFrame({
    ...     "person_id": "p1", "datetime": pd.date_range("2024-03-04 08:00", periods=3, freq="1min"),
    ...     "steps": [0.0, 12.0, 3.0]}))
    >>> rows = circadian_days(con, has_sleep=False)
    >>> int(rows.recorded_minutes.iloc[0]), len(rows.active.iloc[0])
    (3, 180)
    >>> np.flatnonzero(unpack_days(rows).active[0]).tolist()       # minute 481: 08:01
    [481]
    """
    frames = [pack_days(states) for states in minute_states(con, person_filter, has_sleep=has_sleep,
                                                            threshold=threshold, days=days)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pack_days(_no_states())


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
        Bin width of IS and IV, in minutes; it must divide a day.
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
    :func:`circadian_days`, then :func:`months_from_days`; see the module notes and the Notes of
    :func:`explorer.wearables.interdaily_stability` and the others for the formulas.

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
    frames = [months_from_days(states, min_days=min_days, valid_minutes=valid_minutes, bin_minutes=bin_minutes,
                               has_sleep=has_sleep)
              for states in minute_states(con, person_filter, has_sleep=has_sleep, threshold=threshold, months=months)]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def minute_states(con, person_filter: str = "TRUE", *, has_sleep: bool = True, threshold: float = ACTIVE_STEPS,
                  days=None, months=None) -> Iterator[DayStates]:
    """:class:`DayStates` of the chosen persons, :data:`PERSONS_PER_READ` persons at a time, for
    the local ``days`` (or every day of the calendar ``months``; neither: every day)."""
    time_filter, sleep_filter = _time_filters(days, months)
    persons = [row[0] for row in con.execute(
        f"SELECT DISTINCT person_id FROM steps_minute WHERE {person_filter} AND {time_filter} ORDER BY person_id").fetchall()]
    per_read = PERSONS_PER_READ
    if days is not None and len(days):  # a few days (an incremental refresh): the same person-days, fewer queries
        span = (max(pd.Timestamp(d) for d in days) - min(pd.Timestamp(d) for d in days)).days + 1
        per_read = max(per_read, PERSONS_PER_READ * DAYS_PER_MONTH // span)
    for low in range(0, len(persons), per_read):
        block = persons[low:low + per_read]
        where = f"{person_filter} AND person_id >= $first AND person_id <= $last"
        bounds = {"first": block[0], "last": block[-1]}
        # minute and steps packed in one integer: one list per person, in any order (the grid is
        # filled by position), which DuckDB builds several times faster than two ordered lists
        minutes = con.sql(f"""
            SELECT person_id, list(CAST(epoch(datetime) // 60 AS BIGINT) * {1 << STEP_BITS}
                                   + least(CAST(round(steps) AS BIGINT), {(1 << STEP_BITS) - 1})) AS packed
            FROM steps_minute WHERE {where} AND {time_filter} AND datetime IS NOT NULL AND steps >= 0
            GROUP BY ALL ORDER BY person_id""", params=bounds).to_arrow_table()
        if not minutes.num_rows:
            continue
        segments = _asleep_segments(con, f"{where} AND {sleep_filter}", bounds) if has_sleep else {}
        yield _states(minutes, segments, threshold)


def _time_filters(days, months) -> tuple[str, str]:
    """SQL conditions on steps_minute.datetime and on sleep_level.start_datetime (a segment may
    start the day before) for the chosen days or months; the range first: DuckDB skips row groups by it."""
    if days is not None:
        chosen = sorted({pd.Timestamp(d).date() for d in days})
        if not chosen:
            return "FALSE", "FALSE"
        first, end = chosen[0], chosen[-1] + pd.Timedelta(days=1)
        listed = ", ".join(f"DATE '{d}'" for d in chosen)
        exact = f" AND CAST(datetime AS DATE) IN ({listed})" if len(chosen) != (end - first).days else ""
        return (f"datetime >= DATE '{first}' AND datetime < DATE '{end}'{exact}",
                f"start_datetime >= DATE '{first}' - INTERVAL 1 DAY AND start_datetime < DATE '{end}'")
    if months:
        first = min(pd.Timestamp(m).replace(day=1) for m in months)
        end = max(pd.Timestamp(m).replace(day=1) for m in months) + pd.offsets.MonthBegin(1)
        return (months_where("datetime", months),
                f"start_datetime >= DATE '{first.date()}' - INTERVAL 1 DAY AND start_datetime < DATE '{end.date()}'")
    return "TRUE", "TRUE"


def months_where(column: str, months) -> str:
    """SQL selecting the rows whose ``column`` (a date or a time) falls in the calendar ``months``
    (any day of each); the range first: DuckDB skips row groups by it."""
    starts = sorted({pd.Timestamp(m).replace(day=1) for m in months})
    listed = ", ".join(f"DATE '{m.date()}'" for m in starts)
    end = starts[-1] + pd.offsets.MonthBegin(1)
    return (f"{column} >= DATE '{starts[0].date()}' AND {column} < DATE '{end.date()}' "
            f"AND CAST(date_trunc('month', {column}) AS DATE) IN ({listed})")


def _states(minutes: pa.Table, segments: dict, threshold: float) -> DayStates:
    lengths = pc.list_value_length(minutes["packed"]).to_numpy(zero_copy_only=False)
    packed = pc.list_flatten(minutes["packed"]).to_numpy()
    person_index = np.repeat(np.arange(len(lengths)), lengths)
    minute, steps = packed >> STEP_BITS, (packed & ((1 << STEP_BITS) - 1)).astype("float64")
    day = minute // MINUTES_PER_DAY
    first_day = int(day.min())
    span = int(day.max()) - first_day + 1
    # one row per (person, day) present, in person then day order
    rows, row_of = np.unique(person_index * span + (day - first_day), return_inverse=True)
    cell = row_of * MINUTES_PER_DAY + minute % MINUTES_PER_DAY
    counts = np.bincount(cell, minlength=len(rows) * MINUTES_PER_DAY)
    sums = np.bincount(cell, weights=steps, minlength=len(rows) * MINUTES_PER_DAY)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    recorded = (counts > 0).reshape(-1, MINUTES_PER_DAY)
    active = (mean > threshold).reshape(-1, MINUTES_PER_DAY)
    row_person, row_day = rows // span, rows % span
    persons = np.asarray(minutes["person_id"].to_pylist(), dtype=object)
    asleep = np.zeros_like(recorded)
    if segments:
        # the block's days on one timeline per person, asleep minutes marked by +1/-1 at segment
        # edges (each edge pair kept within its person's stretch, so the running sum never leaks)
        timeline = np.zeros(len(persons) * span * MINUTES_PER_DAY + 1, np.int32)
        stretch = span * MINUTES_PER_DAY
        for k, person in enumerate(persons):
            found = segments.get(person)
            if found is None:
                continue
            start, stop = (np.clip(edge - first_day * MINUTES_PER_DAY, 0, stretch) for edge in found)
            np.add.at(timeline, k * stretch + start, 1)
            np.add.at(timeline, k * stretch + stop, -1)
        covered = (np.cumsum(timeline[:-1]) > 0).reshape(len(persons), span, MINUTES_PER_DAY)
        asleep = covered[row_person, row_day]
    dates = (np.datetime64("1970-01-01", "D") + (first_day + row_day)).astype("datetime64[D]")
    return DayStates(persons[row_person], dates, recorded, active, asleep)


def _asleep_segments(con, where: str, bounds: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per person: (start minute, end minute) of every segment of an asleep level, each at most
    :data:`MAX_SEGMENT_MINUTES` long."""
    levels = ", ".join(f"'{level}'" for level in ASLEEP_LEVELS)
    found = con.execute(f"""
        SELECT person_id, list(CAST(epoch(start_datetime) // 60 AS BIGINT)) AS start,
               list(CAST(epoch(start_datetime) // 60 + least(round(duration_minutes), {MAX_SEGMENT_MINUTES}) AS BIGINT)) AS stop
        FROM sleep_level WHERE {where} AND lower(level) IN ({levels})
              AND start_datetime IS NOT NULL AND duration_minutes > 0
        GROUP BY person_id""", bounds).fetchall()
    return {person: (np.asarray(start), np.asarray(stop)) for person, start, stop in found}


def _no_states() -> DayStates:
    empty = np.zeros((0, MINUTES_PER_DAY), bool)
    return DayStates(np.array([], dtype=object), np.array([], dtype="datetime64[D]"), empty, empty, empty)


def pack_days(states: DayStates) -> pd.DataFrame:
    """:class:`DayStates` as rows of :data:`DAY_COLUMNS` (bitmaps as 180-byte strings)."""
    def bitmaps(flags: np.ndarray) -> np.ndarray:
        packed = np.packbits(flags, axis=1)
        return np.array([row.tobytes() for row in packed], dtype=object) if len(packed) else np.array([], dtype=object)

    return pd.DataFrame({"person_id": states.person_id.astype(object), "date": pd.to_datetime(states.date).date
                         if len(states.date) else np.array([], dtype=object),
                         "recorded_minutes": states.recorded_minutes, "recorded": bitmaps(states.recorded),
                         "active": bitmaps(states.active), "asleep": bitmaps(states.asleep)})


def unpack_days(rows) -> DayStates:
    """:class:`DayStates` from rows of :data:`DAY_COLUMNS` (a pandas.DataFrame or a pyarrow.Table,
    sorted by person then date)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(pd.DataFrame(rows)[DAY_COLUMNS],
                                                                         preserve_index=False)
    n = table.num_rows

    def flags(name: str) -> np.ndarray:
        column = table[name].combine_chunks() if n else pa.array([], pa.binary())
        if column.null_count:
            raise ExplorerError(f"{name}: {column.null_count} day(s) without a bitmap; expected {BITMAP_BYTES} bytes each")
        offset_type = "int64" if pa.types.is_large_binary(column.type) else "int32"
        buffers = column.buffers()
        if n == 0:
            return np.zeros((0, MINUTES_PER_DAY), bool)
        offsets = np.frombuffer(buffers[1], offset_type)[column.offset:column.offset + n + 1]
        if not (np.diff(offsets) == BITMAP_BYTES).all():
            raise ExplorerError(f"{name}: a day's bitmap is not {BITMAP_BYTES} bytes (one bit per minute); "
                                "the table was not written by this suite's wearable_circadian_day step")
        data = np.frombuffer(buffers[2], np.uint8)[offsets[0]:offsets[0] + n * BITMAP_BYTES]
        return np.unpackbits(data.reshape(n, BITMAP_BYTES), axis=1).view(bool)

    dates = table["date"].to_numpy() if n else np.array([], dtype="datetime64[D]")
    return DayStates(np.asarray(table["person_id"].to_pylist(), dtype=object), dates.astype("datetime64[D]"),
                     flags("recorded"), flags("active"), flags("asleep"))


def months_from_days(states: DayStates, *, min_days: int = MIN_DAYS, valid_minutes: int = VALID_WEAR_MINUTES,
                     bin_minutes: int = 60, has_sleep: bool = True) -> pd.DataFrame:
    """Circadian metrics per person and calendar month from the minute states of its days
    (rows :data:`COLUMNS`; see :func:`circadian_by_month` and the module notes).

    ``states`` must hold every recorded day of each person-month it touches, sorted by person then day.
    """
    if MINUTES_PER_DAY % bin_minutes:
        raise ExplorerError(f"bin_minutes ({bin_minutes}) must divide a day ({MINUTES_PER_DAY} minutes)")
    n = len(states.date)
    if n == 0:
        return pd.DataFrame(columns=COLUMNS)
    month = states.date.astype("datetime64[M]")
    new = np.r_[True, (states.person_id[1:] != states.person_id[:-1]) | (month[1:] != month[:-1])]
    group = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    recorded_minutes = states.recorded_minutes
    valid = recorded_minutes >= valid_minutes
    valid_days = np.bincount(group, weights=valid).astype("int64")
    starts = month[first].astype("datetime64[D]")
    out = pd.DataFrame({
        "person_id": states.person_id[first], "period_start": pd.to_datetime(starts).date,
        "period_end": pd.to_datetime((month[first] + 1).astype("datetime64[D]") - 1).date,
        "days_recorded": np.bincount(group).astype("int64"), "valid_days": valid_days})
    for column in COLUMNS[5:]:
        out[column] = np.nan
    eligible = valid_days >= min_days
    kept = valid & eligible[group]
    if not kept.any():
        return out[COLUMNS]
    g = group[kept]
    computed, at = np.unique(g, return_index=True)
    # every day valid in months that count (the usual case): no copy of the minute arrays
    active, recorded = (states.active, states.recorded) if kept.all() else (states.active[kept], states.recorded[kept])
    days = valid_days[computed]

    stability, variability = _stability_and_variability(active, g, at, days, bin_minutes)
    low_onset, low, high_onset, high = _extreme_windows(active, recorded, at)
    with np.errstate(invalid="ignore", divide="ignore"):
        amplitude = (high - low) / (high + low)
    out.loc[computed, "interdaily_stability"] = stability
    out.loc[computed, "intradaily_variability"] = variability
    out.loc[computed, "relative_amplitude"] = amplitude
    out.loc[computed, "l5"] = low
    out.loc[computed, "l5_onset_hour"] = (low_onset / 60) % 24
    out.loc[computed, "m10"] = high
    out.loc[computed, "m10_onset_hour"] = (high_onset / 60) % 24
    if has_sleep:
        out.loc[computed, "sleep_regularity_index"] = _regularity(states, kept, g, at)
    return out[COLUMNS]


def _stability_and_variability(active, g, at, days, bin_minutes):
    """IS and IV of each run of rows (one person-month's valid days end to end), from the bins'
    whole counts: with N bins h, sum S and sum of squares Q, the sample variance is
    (N Q - S^2) / (N (N - 1)); the mean day's (P bins of the day, column sums T_j over V days) is
    (P sum T_j^2 - (sum T_j)^2) / (V^2 P (P - 1)); IV's numerator is the mean squared
    difference of successive bins, across the joins between days too."""
    per_day = MINUTES_PER_DAY // bin_minutes
    bins = active.reshape(len(active), per_day, bin_minutes).sum(axis=2, dtype=np.int16).astype("int64")
    total = np.add.reduceat(bins.sum(axis=1), at)
    squares = np.add.reduceat((bins * bins).sum(axis=1), at)
    columns = np.add.reduceat(bins, at, axis=0)
    count = days * per_day
    steps = np.diff(bins, axis=1)
    jumps = np.add.reduceat((steps * steps).sum(axis=1), at)
    joined = np.flatnonzero(g[1:] == g[:-1])  # a valid day followed by the next valid day of its month
    across = (bins[joined + 1, 0] - bins[joined, -1]) ** 2
    jumps = jumps + np.bincount(np.searchsorted(at, joined, side="right") - 1, weights=across,
                                minlength=len(at)).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (count * squares - total * total) / (count * (count - 1.0))
        profile = (per_day * (columns * columns).sum(axis=1) - columns.sum(axis=1) ** 2) / (
            days * days * float(per_day * (per_day - 1)))
        return profile / variance, jumps / (count - 1.0) / variance


def _extreme_windows(active, recorded, at):
    """(L5 onset minute, L5, M10 onset minute, M10) of each run of rows, over the mean day laid
    twice end to end. A minute's mean is s/c (active over recorded days); scaled by a common
    multiple of every c the window sums are exact integers, so equal windows tie exactly and the
    first is taken. A window with no recorded minute has no sum (pandas' rolling sum gives NaN)."""
    # a month has at most 31 days: small counts, summed without widening the minute arrays first
    sums, counts = _run_sums(active, at), _run_sums(recorded, at)
    scale = math.lcm(*range(1, int(counts.max()) + 1))
    if scale * MINUTES_PER_DAY * 2 >= 2 ** 62:
        raise ExplorerError(f"a minute of the mean day is averaged over {int(counts.max())} days; at most 40 fit "
                            "exact integer window sums (a calendar month has 31)")
    scaled = np.where(counts > 0, sums * (scale // np.maximum(counts, 1)), 0)
    # running sums over the mean day laid twice, shared by both widths (a window's sum is a difference)
    running = _running(np.concatenate([scaled, scaled], axis=1), "int64")
    seen = _running(np.tile(counts > 0, 2), "int16")  # recorded minutes of the mean day so far
    rows = np.arange(len(scaled))
    results = []
    for hours, lowest in ((5, True), (10, False)):
        width = hours * 60
        windows = running[:, width:] - running[:, :-width]
        masked = np.where(seen[:, width:] > seen[:, :-width], windows, np.iinfo("int64").max if lowest else -1)
        onset = masked.argmin(axis=1) if lowest else masked.argmax(axis=1)
        results += [onset.astype("float64"), windows[rows, onset] / scale / width]
    return tuple(results)


def _run_sums(flags: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per run of rows starting at ``at`` (a person-month's days, at most 31), the column sums of
    a boolean (rows, minutes) array: each run laid in a block of 31 rows and the blocks summed,
    several times faster than numpy's reduceat or a running sum down the rows."""
    ends = np.r_[at[1:], len(flags)]
    run = np.repeat(np.arange(len(at)), ends - at)
    blocks = np.zeros((len(at) * DAYS_PER_MONTH, flags.shape[1]), np.uint8)
    blocks[run * DAYS_PER_MONTH + (np.arange(len(flags)) - at[run])] = flags.view(np.uint8)
    return blocks.reshape(len(at), DAYS_PER_MONTH, -1).sum(axis=1, dtype=np.int16).astype("int64")


def _running(values: np.ndarray, dtype: str) -> np.ndarray:
    """Running sums along each row, with a leading 0: the sum over [t, t + w) is r[t + w] - r[t]."""
    total = np.zeros((len(values), values.shape[1] + 1), dtype=dtype)
    np.cumsum(values, axis=1, dtype=dtype, out=total[:, 1:])
    return total


def _regularity(states: DayStates, kept, g, at) -> np.ndarray:
    """SRI of each computed person-month: over the minutes of calendar days one apart, both valid,
    the share whose state (asleep, awake where recorded, else unknown) is known and the same."""
    slept = np.zeros(len(at), bool)
    asleep_rows = np.flatnonzero(states.asleep.any(axis=1)[kept])
    slept[np.searchsorted(at, asleep_rows, side="right") - 1] = True
    index = np.full(len(at), np.nan)
    if not slept.any():  # no sleep logged (or no sleep_level at all): no index, and nothing to pair
        return index
    rows = np.flatnonzero(kept)
    asleep, recorded, dates = states.asleep[rows], states.recorded[rows], states.date[rows]
    known = asleep | recorded
    pair = np.flatnonzero((g[1:] == g[:-1]) & (dates[1:] - dates[:-1] == np.timedelta64(1, "D")))
    both = known[pair] & known[pair + 1]
    same = both & (asleep[pair] == asleep[pair + 1])
    owner = np.searchsorted(at, pair, side="right") - 1
    pairs = np.bincount(owner, weights=both.sum(axis=1), minlength=len(at))
    equal = np.bincount(owner, weights=same.sum(axis=1), minlength=len(at))
    with np.errstate(invalid="ignore", divide="ignore"):
        found = 200.0 * (equal / pairs) - 100.0
    return np.where(slept & (pairs > 0), found, index)
