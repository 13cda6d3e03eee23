"""Daily summary per person and local day, as one DuckDB query over the unified minute tables.

Definitions
-----------
steps
    Sum of ``steps_minute.steps`` over the local day.
wear_minutes
    Minutes with a heart-rate reading (``heart_rate_minute`` rows with a value; a minute of the
    repeated autumn hour counts twice, as it was lived twice).
valid_day
    ``wear_minutes >= 600`` (10 h), the wear-time rule common in accelerometry and used by All of
    Us analyses of Fitbit data (Master et al. 2022); :data:`VALID_WEAR_MINUTES`.
mean_hr
    Mean heart rate over worn minutes (/min).
resting_hr
    Mean heart rate over the minutes awake (outside the sleep segment in force, main sleep or
    nap), with a step count, whose 12 preceding minutes were all recorded with zero steps: the zero-step rule of
    Mishra et al. 2020, restricted to wakefulness as in the clinical definition of resting heart
    rate (awake, at rest). Sleep lowers heart rate several beats below the resting level, so
    minutes asleep are reported separately (``sleep_hr``). The minutes of the previous day count
    as preceding minutes, so a day's value does not depend on how days were split into tasks.
    "All 12 recorded with zero steps" means each of the 12 minutes has exactly one step count
    and it is 0 (a row without a step count is not a recorded minute; a minute recorded twice,
    as in the repeated autumn hour, is ambiguous and does not count as rest). Empty when no
    minute qualifies.
sleep_minutes, sleep_efficiency
    The main sleep that *ends* that day (Fitbit's "date of sleep"). Main-sleep segments
    (``sleep_level.is_main_sleep``) at most :data:`EPISODE_GAP_MINUTES` apart form one
    episode, dated by the day its end falls on (a sleep ending at midnight counts for the new
    day), so a sleep that runs past noon is not split. Minutes
    asleep are the segments of level deep, light, rem or asleep; efficiency is minutes asleep /
    minutes of all its segments (time in bed), a fraction. Empty on a day no main sleep ends.
sleep_hr
    Mean heart rate over the minutes inside that episode's segments of an asleep level (/min),
    from the day before the night on (an episode longer than that is cut there).

Times are taken to the minute (a reading at 08:00:30 belongs to minute 08:00); rows without a
time are not readings. Segments are assumed not to overlap (ingest keeps one sleep log per
period): a minute belongs to the segment that started last before it, and of segments starting
together, to the longest (then main sleep, then an asleep level). A level that is missing is not
asleep. ``days=()`` asks for no day and gives no row.

Two implementations give the same rows: :func:`daily_summary_sql`, the definition as one DuckDB
query (window functions and an ASOF join), and :func:`daily_summary`, which reads a block of
persons' minutes from DuckDB and computes every day in one pass over a dense person x minute
grid with numpy (counts and sums per minute cell, a cumulative sum for the 12 quiet minutes, a
running maximum for the sleep segment in force). The second is what the refresh step runs: a
sort-free pass costs little more than reading the minutes, where the window functions and the
ASOF join sort them.

References
----------
Mishra T, Wang M, Metwally AA, et al. Pre-symptomatic detection of COVID-19 from smartwatch
data. Nat Biomed Eng. 2020;4:1208-1220. (resting heart rate: zero steps in the preceding 12 minutes)
Master H, Annis J, Huang S, et al. Association of step counts over time with the risk of chronic
disease in the All of Us Research Program. Nat Med. 2022;28:2301-2308. (valid day: >= 10 h of wear)
"""

from __future__ import annotations

from datetime import date, timedelta

#: minutes of zero steps that must precede a minute for its heart rate to count as resting
RESTING_WINDOW_MINUTES = 12
#: wear minutes (minutes with heart rate) for a valid day
VALID_WEAR_MINUTES = 600
ASLEEP_LEVELS = ("deep", "light", "rem", "asleep")
#: main-sleep segments at most this far apart belong to one sleep episode (one night)
EPISODE_GAP_MINUTES = 60
_MINUTES_PER_DAY = 1440


def _check_options(window: int, valid: int) -> None:
    from explorer.errors import ExplorerError

    if not 1 <= window <= _MINUTES_PER_DAY or valid < 0:
        raise ExplorerError(f"resting_window must be 1 to {_MINUTES_PER_DAY} minutes and valid_wear_minutes at "
                            f"least 0, got {window} and {valid}")


def _segment_ctes(person_filter: str, segment_range: str) -> str:
    """CTEs ``raw_segments`` and ``segments``: every sleep segment with its end, whether its level
    is asleep, and, for main-sleep segments, the night (the date its episode ends)."""
    asleep_levels = ", ".join(f"'{level}'" for level in ASLEEP_LEVELS)
    return f"""
        raw_segments AS (
            SELECT person_id, start_datetime, start_datetime + duration_minutes * INTERVAL 1 MINUTE AS end_datetime,
                   duration_minutes, coalesce(is_main_sleep, FALSE) AS is_main_sleep,
                   coalesce(lower(level) IN ({asleep_levels}), FALSE) AS asleep_level
            FROM sleep_level
            WHERE {person_filter} AND {segment_range} AND start_datetime IS NOT NULL AND duration_minutes > 0),
        main_segments AS (
            SELECT *, sum(new_episode) OVER (PARTITION BY person_id ORDER BY start_datetime, end_datetime
                                             ROWS UNBOUNDED PRECEDING) AS episode
            FROM (SELECT *, CASE WHEN start_datetime <= max(end_datetime) OVER (
                                          PARTITION BY person_id ORDER BY start_datetime, end_datetime
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                                      + INTERVAL {EPISODE_GAP_MINUTES} MINUTE THEN 0 ELSE 1 END AS new_episode
                  FROM raw_segments WHERE is_main_sleep)),
        segments AS (
            SELECT person_id, start_datetime, end_datetime, duration_minutes, is_main_sleep, asleep_level,
                   CAST(max(end_datetime) OVER (PARTITION BY person_id, episode) AS DATE) AS night
            FROM main_segments
            UNION ALL
            SELECT person_id, start_datetime, end_datetime, duration_minutes, is_main_sleep, asleep_level,
                   CAST(NULL AS DATE) AS night
            FROM raw_segments WHERE NOT is_main_sleep)"""


def daily_summary_sql(*, person_filter: str = "TRUE", days: tuple[date, ...] | None = None,
                      has_sleep: bool = True, valid_wear_minutes: int = VALID_WEAR_MINUTES,
                      resting_window: int = RESTING_WINDOW_MINUTES, bucket_column: str | None = None) -> str:
    """The daily summary as one DuckDB query: the definition of ``wearable_daily``.

    Parameters
    ----------
    person_filter : str, default "TRUE"
        SQL condition on ``person_id`` choosing the persons.
    days : tuple of datetime.date, optional
        The local days to summarise; None: every day with data; ``()``: none (no row).
    has_sleep : bool, default True
        Whether the view ``sleep_level`` exists; without it the sleep columns are empty and
        every minute counts as awake.
    valid_wear_minutes : int, default :data:`VALID_WEAR_MINUTES` (600)
        Wear minutes (minutes with a heart-rate reading) that make a day valid.
    resting_window : int, default :data:`RESTING_WINDOW_MINUTES` (12)
        Minutes of zero steps that must precede a minute for it to count as resting.
    bucket_column : str, optional
        An SQL expression on ``person_id`` added as column ``person_bucket``.

    Returns
    -------
    str
        SQL over the views ``heart_rate_minute``, ``steps_minute`` (and ``sleep_level``) giving
        one row per person and local day: person_id, date, steps (count), wear_minutes
        (minutes), valid_day (bool), mean_hr and resting_hr (/min), sleep_minutes (minutes),
        sleep_efficiency (fraction, 0 to 1), sleep_hr (/min), ordered by person and date.

    Notes
    -----
    The definitions are the module's (see above). In short, for a local day::

        resting_hr = mean of heart_rate over the minutes m that are awake, have a step count,
                     and whose k = resting_window (12) preceding minutes m-1 .. m-k each have
                     exactly one step count, equal to 0
        valid_day  = wear_minutes >= valid_wear_minutes (600)

    and ``sleep_efficiency`` = minutes asleep / minutes in bed of the main sleep ending that day.
    Only the rows a day needs are read: the day itself, the ``resting_window`` minutes before it
    for the steps window, and for sleep the day before (the night ending on the day began then).
    Rest is found with a ROWS frame (the k-th recorded minute back, and the sum of the k
    before), which DuckDB streams, where a RANGE frame over time costs several times the whole
    aggregate.

    References
    ----------
    Mishra T, Wang M, Metwally AA, et al. Pre-symptomatic detection of COVID-19 from smartwatch
    data. Nat Biomed Eng. 2020;4:1208-1220 (resting heart rate).
    Master H, Annis J, Huang S, et al. Association of step counts over time with the risk of
    chronic disease in the All of Us Research Program. Nat Med. 2022;28:2301-2308 (valid day).

    Examples
    --------
    One person's day: 300 quiet minutes (no steps, 60 /min), then 400 walking (80 steps, 90 /min).
    The first walking minute counts as resting too, its 12 predecessors being quiet:

    >>> import duckdb, numpy as np, pandas as pd
    >>> from explorer.wearables import daily_summary_sql
    >>> minutes = pd.date_range("2024-01-01 08:00", periods=700, freq="1min")
    >>> quiet = np.arange(700) < 300
    >>> con = duckdb.connect()
    >>> _ = con.register("heart_rate_minute", pd.DataFrame(
    ...     {"person_id": "p1", "datetime": minutes, "heart_rate_value": np.where(quiet, 60.0, 90.0)}))
    >>> _ = con.register("steps_minute", pd.DataFrame(
    ...     {"person_id": "p1", "datetime": minutes, "steps": np.where(quiet, 0.0, 80.0)}))
    >>> day = con.execute(daily_summary_sql(has_sleep=False)).df().iloc[0]
    >>> int(day["steps"]), int(day["wear_minutes"]), bool(day["valid_day"])
    (32000, 700, True)
    >>> round(float(day["mean_hr"]), 2), round(float(day["resting_hr"]), 2)   # (288 * 60 + 90) / 289
    (77.14, 60.1)
    """
    from explorer.errors import ExplorerError

    window, valid = int(resting_window), int(valid_wear_minutes)
    _check_options(window, valid)
    if days is not None and not days:
        return daily_summary_sql(person_filter="FALSE", days=None, has_sleep=has_sleep,
                                 valid_wear_minutes=valid, resting_window=window, bucket_column=bucket_column)
    if days:
        first, last = min(days), max(days)
        end = last + timedelta(days=1)
        day_list = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(days))
        day_range = f"datetime >= DATE '{first}' AND datetime < DATE '{end}'"
        # the night ending on the first day began the day before
        heart_range = f"datetime >= DATE '{first - timedelta(days=1)}' AND datetime < DATE '{end}'"
        steps_range = (f"datetime >= TIMESTAMP '{first} 00:00:00' - INTERVAL {window} MINUTE "
                       f"AND datetime < DATE '{end}'")
        # whole episodes: an episode lasts less than a day, so one day either side holds all of it
        segment_range = (f"start_datetime >= DATE '{first - timedelta(days=2)}' "
                         f"AND start_datetime < DATE '{end + timedelta(days=1)}'")
        keep_days = f"date IN ({day_list})"
        in_days = f"h.datetime >= DATE '{first}' AND h.datetime < DATE '{end}'"
    else:
        day_range = heart_range = steps_range = segment_range = keep_days = in_days = "TRUE"
    if has_sleep:
        sleep_ctes = f""",
        {_segment_ctes(person_filter, segment_range)},
        sleep AS (
            SELECT person_id, night AS date, sum(duration_minutes) FILTER (WHERE asleep_level) AS asleep,
                   sum(duration_minutes) AS in_bed
            FROM segments WHERE night IS NOT NULL GROUP BY ALL),
        minutes AS (
            SELECT h.person_id, h.datetime, h.heart_rate_value,
                   coalesce(s.end_datetime > h.datetime, FALSE) AS in_sleep,
                   CASE WHEN s.end_datetime > h.datetime AND s.asleep_level
                             AND h.datetime >= s.night - INTERVAL 1 DAY THEN s.night END AS night
            FROM (SELECT person_id, date_trunc('minute', datetime) AS datetime, heart_rate_value FROM heart_rate_minute
                  WHERE {person_filter} AND {heart_range} AND heart_rate_value IS NOT NULL
                        AND datetime IS NOT NULL) h
            ASOF LEFT JOIN (
                -- segments starting together: the longest is in force (then main sleep, then asleep)
                SELECT * FROM segments QUALIFY row_number() OVER (
                    PARTITION BY person_id, start_datetime
                    ORDER BY end_datetime DESC, is_main_sleep DESC, asleep_level DESC) = 1
            ) s ON h.person_id = s.person_id AND h.datetime >= s.start_datetime),
        sleep_heart AS (
            SELECT person_id, night AS date, avg(heart_rate_value) AS sleep_hr FROM minutes
            WHERE night IS NOT NULL GROUP BY ALL)"""
        heart_source = "minutes"
        sleep_joins = " FULL JOIN sleep USING (person_id, date) FULL JOIN sleep_heart USING (person_id, date)"
        sleep_columns = ("CAST(sleep.asleep AS DOUBLE) AS sleep_minutes, "
                         "CAST(sleep.asleep AS DOUBLE) / nullif(sleep.in_bed, 0) AS sleep_efficiency, sleep_heart.sleep_hr")
    else:
        sleep_ctes = ""
        heart_source = (f"(SELECT person_id, date_trunc('minute', datetime) AS datetime, heart_rate_value, "
                        f"FALSE AS in_sleep FROM heart_rate_minute "
                        f"WHERE {person_filter} AND {day_range} AND heart_rate_value IS NOT NULL "
                        f"AND datetime IS NOT NULL)")
        sleep_joins = ""
        sleep_columns = ("CAST(NULL AS DOUBLE) AS sleep_minutes, CAST(NULL AS DOUBLE) AS sleep_efficiency, "
                         "CAST(NULL AS DOUBLE) AS sleep_hr")
    bucket = f", {bucket_column} AS person_bucket" if bucket_column else ""
    return f"""
        WITH steps AS (
            SELECT person_id, datetime, steps,
                   lag(datetime, {window}) OVER (PARTITION BY person_id ORDER BY datetime) AS kth_before,
                   sum(CASE WHEN readings = 1 AND steps = 0 THEN 0 ELSE 1 END) OVER (
                       PARTITION BY person_id ORDER BY datetime
                       ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING) AS not_quiet_before
            FROM (SELECT person_id, date_trunc('minute', datetime) AS datetime, count(*) AS readings, sum(steps) AS steps
                  FROM steps_minute WHERE {person_filter} AND {steps_range} AND steps IS NOT NULL
                        AND datetime IS NOT NULL GROUP BY ALL)),
        resting AS (
            SELECT person_id, datetime FROM steps
            WHERE kth_before = datetime - INTERVAL {window} MINUTE AND not_quiet_before = 0){sleep_ctes},
        heart AS (
            SELECT h.person_id, CAST(h.datetime AS DATE) AS date, count(*) AS wear_minutes,
                   avg(h.heart_rate_value) AS mean_hr,
                   avg(h.heart_rate_value) FILTER (WHERE r.person_id IS NOT NULL AND NOT h.in_sleep) AS resting_hr
            FROM {heart_source} h
            LEFT JOIN resting r ON r.person_id = h.person_id AND r.datetime = h.datetime
            WHERE {in_days}
            GROUP BY ALL),
        walked AS (
            SELECT person_id, CAST(datetime AS DATE) AS date, sum(steps) AS steps FROM steps
            WHERE {day_range} GROUP BY ALL)
        SELECT person_id, date, CAST(coalesce(walked.steps, 0) AS BIGINT) AS steps,
               CAST(coalesce(heart.wear_minutes, 0) AS INTEGER) AS wear_minutes,
               coalesce(heart.wear_minutes, 0) >= {valid} AS valid_day,
               heart.mean_hr, heart.resting_hr, {sleep_columns}{bucket}
        FROM heart FULL JOIN walked USING (person_id, date){sleep_joins}
        WHERE {keep_days}
        ORDER BY person_id, date"""


#: persons summarised per block by :func:`daily_summary`: bounds memory whatever the cohort size
PERSONS_PER_QUERY = 50
#: person x minute cells held at once by :func:`daily_summary` (about 80 bytes each at the peak)
CELLS_PER_CHUNK = 4_000_000
_MICROSECONDS_PER_MINUTE = 60_000_000


def daily_summary(con, *, person_filter: str = "TRUE", days: tuple[date, ...] | None = None, has_sleep: bool = True,
                  valid_wear_minutes: int = VALID_WEAR_MINUTES, resting_window: int = RESTING_WINDOW_MINUTES,
                  bucket_column: str | None = None, persons_per_query: int = PERSONS_PER_QUERY,
                  cells_per_chunk: int = CELLS_PER_CHUNK, progress=None):
    """The daily summary per person and local day: the rows of :func:`daily_summary_sql`,
    computed out of core.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection with the views ``heart_rate_minute`` (person_id, datetime,
        heart_rate_value), ``steps_minute`` (person_id, datetime, steps) and, if ``has_sleep``,
        ``sleep_level`` (person_id, start_datetime, level, duration_minutes, is_main_sleep).
    person_filter, days, has_sleep, valid_wear_minutes, resting_window, bucket_column
        As :func:`daily_summary_sql`.
    persons_per_query : int, default :data:`PERSONS_PER_QUERY`
        Persons read and summarised per block.
    cells_per_chunk : int, default :data:`CELLS_PER_CHUNK`
        Person-minute cells held at once (bounds memory, about 80 bytes a cell at the peak).
    progress : callable, optional
        Called as ``progress(done, total, text)`` after each block.

    Returns
    -------
    pandas.DataFrame
        The rows and columns of :func:`daily_summary_sql`, in the same units: steps (count),
        wear_minutes (minutes), valid_day, mean_hr, resting_hr and sleep_hr (/min),
        sleep_minutes (minutes), sleep_efficiency (fraction).

    Notes
    -----
    The definitions are the module's; the formulas are in :func:`daily_summary_sql`. This is
    the way the ``wearable_daily`` refresh step and any out-of-core run use them: a block of
    ``persons_per_query`` persons and at most ``cells_per_chunk`` person-minutes at a time, so
    memory stays bounded whatever the size of the cohort.

    Each chunk of days is one grid of person x minute cells starting the day before its first
    day (that day's minutes only serve the nights ending on the first day and the quiet minutes
    before its first minutes). DuckDB reads the minutes as (cell, value) pairs; numpy counts and
    sums them per cell (``bincount``), finds the minutes whose 12 predecessors were each recorded
    once with zero steps by a cumulative sum along time, and the sleep segment in force at each
    minute by a running maximum of segment numbers (segments numbered in order of start, so the
    maximum is the one that started last), then sums cells per day. No step sorts the minutes.

    References
    ----------
    Mishra T, et al. Nat Biomed Eng. 2020;4:1208-1220 (resting heart rate). Master H, et al.
    Nat Med. 2022;28:2301-2308 (valid day).

    Examples
    --------
    One person's day: 300 quiet minutes (no steps, 60 /min), then 400 walking (80 steps, 90 /min).
    The first walking minute counts as resting too, its 12 predecessors being quiet:

    >>> import duckdb, numpy as np, pandas as pd
    >>> from explorer.wearables import daily_summary
    >>> minutes = pd.date_range("2024-01-01 08:00", periods=700, freq="1min")
    >>> quiet = np.arange(700) < 300
    >>> con = duckdb.connect()
    >>> _ = con.register("heart_rate_minute", pd.DataFrame(
    ...     {"person_id": "p1", "datetime": minutes, "heart_rate_value": np.where(quiet, 60.0, 90.0)}))
    >>> _ = con.register("steps_minute", pd.DataFrame(
    ...     {"person_id": "p1", "datetime": minutes, "steps": np.where(quiet, 0.0, 80.0)}))
    >>> rows = daily_summary(con, has_sleep=False)
    >>> rows[["person_id", "date", "steps", "wear_minutes", "valid_day"]]
      person_id       date  steps  wear_minutes  valid_day
    0        p1 2024-01-01  32000           700       True
    >>> round(float(rows["resting_hr"].iloc[0]), 2)
    60.1
    >>> rows.equals(con.execute(daily_summary_sql(has_sleep=False)).df())
    True
    """
    import numpy as np
    import pandas as pd

    from explorer.errors import ExplorerError

    window, valid = int(resting_window), int(valid_wear_minutes)
    _check_options(window, valid)
    empty = con.execute(daily_summary_sql(person_filter="FALSE", days=days, has_sleep=has_sleep,
                                          bucket_column=bucket_column)).df()
    if days is not None and not days:
        return empty
    wanted = None if days is None else np.array(sorted({_epoch_day(d) for d in days}), dtype=np.int64)
    near, sleep_near = "TRUE", "TRUE"
    if wanted is not None:  # an incremental refresh of a few days visits only those who have data then
        near = (f"datetime >= DATE '1970-01-01' + INTERVAL {int(wanted.min()) - 1} DAY "
                f"AND datetime < DATE '1970-01-01' + INTERVAL {int(wanted.max()) + 1} DAY")
        sleep_near = (f"start_datetime >= DATE '1970-01-01' + INTERVAL {int(wanted.min()) - 2} DAY "
                      f"AND start_datetime < DATE '1970-01-01' + INTERVAL {int(wanted.max()) + 2} DAY")
    sleepers = f" UNION SELECT person_id FROM sleep_level WHERE {person_filter} AND {sleep_near}" if has_sleep else ""
    persons = [row[0] for row in con.execute(f"""
        SELECT DISTINCT person_id FROM (SELECT person_id FROM heart_rate_minute WHERE {person_filter} AND {near}
                                        UNION SELECT person_id FROM steps_minute WHERE {person_filter} AND {near}
                                        {sleepers})
        WHERE person_id IS NOT NULL ORDER BY person_id""").fetchall()]
    per_block = max(1, int(persons_per_query))
    if wanted is not None:  # a few days (an incremental refresh): as many persons as fill a chunk, in fewer queries
        span = int(wanted.max() - wanted.min()) + 2  # with the day before
        per_block = max(per_block, int(cells_per_chunk) // (span * 1440))
    frames = []
    for low in range(0, len(persons), per_block):
        block = persons[low:low + per_block]
        frames.append(_summarise_block(con, block, person_filter, wanted, has_sleep, window, cells_per_chunk))
        if progress:
            progress(low // per_block + 1, -(-len(persons) // per_block),
                     f"daily summary: {low + len(block)}/{len(persons)} persons")
    found = [frame for frame in frames if len(frame)]
    if not found:
        return empty
    rows = pd.concat(found, ignore_index=True)
    rows["valid_day"] = rows["wear_minutes"] >= valid
    if bucket_column:
        buckets = con.execute(f"SELECT person_id, {bucket_column} AS person_bucket FROM (SELECT unnest($p) AS person_id)",
                              {"p": persons}).df()
        rows = rows.merge(buckets, on="person_id", how="left")
    rows = rows[list(empty.columns)].sort_values(["person_id", "date"], ignore_index=True)
    # an empty result types person_id as object, a filled one as str
    return rows.astype({**empty.dtypes.to_dict(), "person_id": "str"})


def _epoch_day(day) -> int:
    return (date.fromisoformat(str(day)[:10]) - date(1970, 1, 1)).days


def _block_cte(block_parameter: str = "$persons") -> str:
    """The block's persons numbered 0.. in order, as a table to join minutes to."""
    return (f"block AS (SELECT unnest({block_parameter}) AS person_id, "
            f"unnest(range(len({block_parameter}))) AS person_index)")


def _summarise_block(con, block: list[str], person_filter: str, wanted, has_sleep: bool, window: int,
                     cells_per_chunk: int):
    import numpy as np
    import pandas as pd

    params = {"persons": block, "first": block[0], "last": block[-1]}
    in_block = f"person_id BETWEEN $first AND $last AND ({person_filter})"
    segments = _block_segments(con, in_block, params, wanted) if has_sleep else None
    # the days with data (and nights): a stray reading years away adds one day, not years; of the
    # days asked (an incremental refresh asks for the day after a new day too), those with data
    near = "TRUE" if wanted is None else (
        f"datetime >= DATE '1970-01-01' + INTERVAL {int(wanted.min())} DAY "
        f"AND datetime < DATE '1970-01-01' + INTERVAL {int(wanted.max()) + 1} DAY")
    found = con.execute(f"""
        SELECT DISTINCT CAST(datetime AS DATE) - DATE '1970-01-01' AS day FROM heart_rate_minute
        WHERE {in_block} AND {near} AND heart_rate_value IS NOT NULL AND datetime IS NOT NULL
        UNION SELECT DISTINCT CAST(datetime AS DATE) - DATE '1970-01-01' FROM steps_minute
        WHERE {in_block} AND {near} AND steps IS NOT NULL AND datetime IS NOT NULL""",
                        {"first": block[0], "last": block[-1]}).fetchall()
    days_found = {int(row[0]) for row in found}
    if segments is not None:
        days_found |= {int(night) for night in segments["night"].dropna()}
    if wanted is not None:
        days_found &= {int(day) for day in wanted}
    day_runs = _runs(sorted(days_found))
    days_per_chunk = max(1, int(cells_per_chunk) // (len(block) * _MINUTES_PER_DAY) - 1)
    parts = []
    for run_first, run_last in day_runs:
        for chunk_first in range(run_first, run_last + 1, days_per_chunk):
            chunk_last = min(run_last, chunk_first + days_per_chunk - 1)
            parts.append(_summarise_chunk(con, block, in_block, params, segments, chunk_first, chunk_last, window))
    days = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if segments is not None:
        days = _with_nights(days, segments)
    elif len(days):
        days = days[days.pop("has_minutes")].assign(sleep_minutes=np.nan, sleep_efficiency=np.nan)
    if wanted is not None and len(days):
        days = days[np.isin(days["day"].to_numpy(), wanted)]
    if not len(days):
        return pd.DataFrame()
    days.insert(0, "person_id", np.asarray(block, dtype=object)[days.pop("person_index").to_numpy()])
    days.insert(1, "date", pd.to_datetime(days.pop("day").to_numpy(), unit="D").astype("datetime64[us]"))
    return days


def _runs(days) -> list[tuple[int, int]]:
    """Consecutive day numbers as (first, last) runs."""
    runs, start = [], None
    for k, day in enumerate(days):
        if start is None:
            start = day
        if k + 1 == len(days) or days[k + 1] != day + 1:
            runs.append((int(start), int(day)))
            start = None
    return runs


def _block_segments(con, in_block: str, params: dict, wanted):
    """The block's sleep segments, numbered in order of start within each person: person_index,
    start and end (minutes since 1970), asleep (an asleep level of a main sleep), night (days since
    1970, main sleep only), duration_minutes, is_main_sleep, asleep_level."""
    if wanted is None:
        segment_range = "TRUE"
    else:  # as daily_summary_sql: whole episodes of the nights ending on the days asked
        first, last = int(wanted.min()), int(wanted.max())
        segment_range = (f"start_datetime >= DATE '1970-01-01' + INTERVAL {first - 2} DAY "
                         f"AND start_datetime < DATE '1970-01-01' + INTERVAL {last + 2} DAY")
    return con.execute(f"""
        WITH {_segment_ctes(in_block, segment_range)}, {_block_cte()}
        SELECT b.person_index, epoch_us(start_datetime) / {_MICROSECONDS_PER_MINUTE}.0 AS start,
               epoch_us(end_datetime) / {_MICROSECONDS_PER_MINUTE}.0 AS "end",
               asleep_level AND night IS NOT NULL AS asleep, night - DATE '1970-01-01' AS night,
               duration_minutes, asleep_level
        FROM segments JOIN block b USING (person_id)
        ORDER BY b.person_index, start_datetime, end_datetime, is_main_sleep, asleep_level""", params).df()


def _minute_cells(con, table: str, column: str, in_block: str, params: dict, base: int, width: int,
                  since_minute: int, until_minute: int):
    """(cell, value) of the block's rows with a value between two minutes since 1970: cell =
    person_index * width + minute - base."""
    import numpy as np

    found = con.sql(f"""
        WITH {_block_cte()}
        SELECT b.person_index * {width} + epoch_us(date_trunc('minute', t.datetime)) // {_MICROSECONDS_PER_MINUTE}
               - {base} AS cell,
               CAST(t.{column} AS DOUBLE) AS value
        FROM {table} t JOIN block b USING (person_id)
        WHERE {in_block} AND t.{column} IS NOT NULL
          AND t.datetime >= make_timestamp({int(since_minute) * _MICROSECONDS_PER_MINUTE})
          AND t.datetime < make_timestamp({int(until_minute) * _MICROSECONDS_PER_MINUTE})""", params=params).to_arrow_table()
    return (np.asarray(found.column("cell").to_numpy(), dtype=np.int64),
            np.asarray(found.column("value").to_numpy(), dtype=np.float64))


def _summarise_chunk(con, block, in_block, params, segments, first_day: int, last_day: int, window: int):
    """Per (person_index, day) of days first_day..last_day (days since 1970): steps, wear_minutes,
    mean_hr, resting_hr, sleep_hr (of the nights ending on those days), has_minutes."""
    import numpy as np
    import pandas as pd

    persons, days = len(block), last_day - first_day + 1
    width = (days + 1) * _MINUTES_PER_DAY  # the day before, then the chunk's days
    base = (first_day - 1) * _MINUTES_PER_DAY
    cells = persons * width
    until = (last_day + 1) * _MINUTES_PER_DAY
    # the day before's heart rate serves only the nights ending on the first day
    sleeping = segments is not None and len(segments) > 0
    heart_cell, heart_value = _minute_cells(con, "heart_rate_minute", "heart_rate_value", in_block, params,
                                            base, width, base if sleeping else first_day * _MINUTES_PER_DAY, until)
    steps_cell, steps_value = _minute_cells(con, "steps_minute", "steps", in_block, params,
                                            base, width, first_day * _MINUTES_PER_DAY - window, until)
    heart_count = np.bincount(heart_cell, minlength=cells)
    heart_sum = np.bincount(heart_cell, weights=heart_value, minlength=cells)
    steps_count = np.bincount(steps_cell, minlength=cells)
    steps_sum = np.bincount(steps_cell, weights=steps_value, minlength=cells)
    del heart_cell, heart_value, steps_cell, steps_value

    # quiet: recorded exactly once, zero steps; rest: a recorded minute whose `window` minutes
    # before were all quiet
    quiet_so_far = np.zeros((persons, width + 1), dtype=np.int32)
    np.cumsum(((steps_count == 1) & (steps_sum == 0)).reshape(persons, width), axis=1, out=quiet_so_far[:, 1:])
    rest = np.zeros((persons, width), dtype=bool)
    rest[:, window:] = quiet_so_far[:, window:width] - quiet_so_far[:, :width - window] == window
    rest &= (steps_count > 0).reshape(persons, width)
    del quiet_so_far

    sleep_sum = sleep_count = None
    if sleeping:
        segment = _segment_in_force(segments, persons, width, base)
        numbered = np.maximum(segment, 0)
        minute = np.arange(width, dtype=np.float64) + base
        in_sleep = (segment >= 0) & (segments["end"].to_numpy()[numbered] > minute)
        rest &= ~in_sleep
        asleep = in_sleep & segments["asleep"].to_numpy()[numbered]
        night = np.where(asleep, segments["night"].fillna(-1).to_numpy(dtype=np.int64)[numbered], -1)
        del segment, numbered, in_sleep, asleep
        # nights ending on the chunk's days only (a later night is the next chunk's), and their
        # minutes from the day before the night on (a longer episode is cut there, as in the SQL)
        minute_day = (np.arange(width) + base) // _MINUTES_PER_DAY
        keep = ((night >= first_day) & (night <= last_day) & (minute_day >= night - 1)
                & (heart_count.reshape(persons, width) > 0))
        at = np.flatnonzero(keep)
        key = (at // width) * days + night.ravel()[at] - first_day
        sleep_sum = np.bincount(key, weights=heart_sum[at], minlength=persons * days).reshape(persons, days)
        sleep_count = np.bincount(key, weights=heart_count[at], minlength=persons * days).reshape(persons, days)
        del night, keep, at, key

    def per_day(values):  # (persons, days): the chunk's days, the day before dropped
        return values.reshape(persons, days + 1, _MINUTES_PER_DAY)[:, 1:, :].sum(axis=2)

    rest = rest.ravel()
    wear, heart_total = per_day(heart_count), per_day(heart_sum)
    rest_count, rest_total = per_day(np.where(rest, heart_count, 0)), per_day(np.where(rest, heart_sum, 0.0))
    steps_rows, steps_total = per_day(steps_count), per_day(steps_sum)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "person_index": np.repeat(np.arange(persons), days),
            "day": np.tile(np.arange(first_day, last_day + 1, dtype=np.int64), persons),
            "steps": np.rint(steps_total.ravel()).astype(np.int64),
            "wear_minutes": wear.ravel().astype(np.int32),
            "mean_hr": (heart_total / wear).ravel(),
            "resting_hr": (rest_total / rest_count).ravel(),
            "sleep_hr": np.full(persons * days, np.nan) if sleep_sum is None else (sleep_sum / sleep_count).ravel(),
            "has_minutes": ((wear > 0) | (steps_rows > 0)).ravel(),
        })
    return frame


def _segment_in_force(segments, persons: int, width: int, base: int):
    """(persons, width) number of the segment that started last at or before each minute, -1
    before a person's first segment (the ASOF join of daily_summary_sql)."""
    import numpy as np

    segment = np.full((persons, width), -1, dtype=np.int64)
    starts = np.ceil(segments["start"].to_numpy() - base)  # a segment starting at 23:00:30 covers 23:01 on
    inside = starts < width
    first_minute = np.clip(starts[inside], 0, None).astype(np.int64)
    cell = segments["person_index"].to_numpy(dtype=np.int64)[inside] * width + first_minute
    np.maximum.at(segment.reshape(-1), cell, np.flatnonzero(inside))
    np.maximum.accumulate(segment, axis=1, out=segment)
    return segment


def _with_nights(days, segments):
    """The day rows joined with the nights (main-sleep minutes asleep and efficiency by the date
    an episode ends); a night on a day without minutes still makes a row."""
    import numpy as np
    import pandas as pd

    main = segments[segments["night"].notna()]
    asleep_minutes = main["duration_minutes"].where(main["asleep_level"])
    nights = pd.DataFrame({"person_index": main["person_index"].to_numpy(), "day": main["night"].to_numpy(np.int64),
                           "asleep": asleep_minutes.to_numpy(dtype=float), "in_bed": main["duration_minutes"].to_numpy(float)})
    nights = nights.groupby(["person_index", "day"], as_index=False).agg(
        asleep=("asleep", "sum"), asleep_segments=("asleep", "count"), in_bed=("in_bed", "sum"))
    nights["asleep"] = nights["asleep"].where(nights["asleep_segments"] > 0)  # no asleep segment: empty, as SQL's sum
    nights["sleep_minutes"] = nights["asleep"]
    nights["sleep_efficiency"] = nights["asleep"] / nights["in_bed"].where(nights["in_bed"] != 0)
    nights = nights[["person_index", "day", "sleep_minutes", "sleep_efficiency"]]
    if not len(days):
        days = pd.DataFrame({"person_index": pd.Series([], dtype=np.int64), "day": pd.Series([], dtype=np.int64),
                             "steps": pd.Series([], dtype=np.int64), "wear_minutes": pd.Series([], dtype=np.int32),
                             "mean_hr": [], "resting_hr": [], "sleep_hr": [], "has_minutes": pd.Series([], dtype=bool)})
    merged = days.merge(nights, on=["person_index", "day"], how="outer", indicator=True)
    merged = merged[merged["has_minutes"].fillna(False).astype(bool) | (merged.pop("_merge") != "left_only")]
    merged["steps"] = merged["steps"].fillna(0).astype(np.int64)
    merged["wear_minutes"] = merged["wear_minutes"].fillna(0).astype(np.int32)
    return merged.drop(columns="has_minutes")
