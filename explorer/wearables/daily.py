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
    Mean heart rate over the minutes awake (outside every recorded sleep segment, main sleep or
    nap) whose 12 preceding minutes were all recorded with zero steps: the zero-step rule of
    Mishra et al. 2020, restricted to wakefulness as in the clinical definition of resting heart
    rate (awake, at rest). Sleep lowers heart rate several beats below the resting level, so
    minutes asleep are reported separately (``sleep_hr``). The minutes of the previous day count
    as preceding minutes, so a day's value does not depend on how days were split into tasks.
    "All 12 recorded" means the 12th recorded minute before is exactly 12 minutes earlier (a
    row without a step count is not a recorded minute); a minute recorded twice (the repeated
    autumn hour) makes its neighbours not qualify. Empty when no minute qualifies.
sleep_minutes, sleep_efficiency
    The main sleep that *ends* that day (Fitbit's "date of sleep"). Main-sleep segments
    (``sleep_level.is_main_sleep``) less than :data:`EPISODE_GAP_MINUTES` apart form one
    episode, dated by its last minute, so a sleep that runs past noon is not split. Minutes
    asleep are the segments of level deep, light, rem or asleep; efficiency is minutes asleep /
    minutes of all its segments (time in bed), a fraction. Empty on a day no main sleep ends.
sleep_hr
    Mean heart rate over the minutes inside that episode's segments of an asleep level (/min).

Segments are assumed not to overlap (ingest keeps one sleep log per period): a minute belongs to
the segment that started last before it.

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
#: main-sleep segments closer than this belong to one sleep episode (one night)
EPISODE_GAP_MINUTES = 60


def daily_summary_sql(*, person_filter: str = "TRUE", days: tuple[date, ...] | None = None,
                      has_sleep: bool = True, valid_wear_minutes: int = VALID_WEAR_MINUTES,
                      resting_window: int = RESTING_WINDOW_MINUTES, bucket_column: str | None = None) -> str:
    """The daily-summary query over views ``heart_rate_minute``, ``steps_minute`` (and
    ``sleep_level`` if ``has_sleep``), for the persons matching ``person_filter`` (SQL on
    ``person_id``) and the local ``days`` given (None: every day). Rows: person_id, date, steps,
    wear_minutes, valid_day, mean_hr, resting_hr, sleep_minutes, sleep_efficiency, sleep_hr (and
    ``bucket_column`` if given, an SQL expression named person_bucket).

    Only the rows a day needs are read: the day itself, the ``resting_window`` minutes before it
    for the steps window, and for sleep the day before (the night ending on the day began then).
    Rest is found with a ROWS frame (the k-th recorded minute back, and the sum of the k
    before), which DuckDB streams, where a RANGE frame over time costs several times the whole
    aggregate.
    """
    from explorer.errors import ExplorerError

    window, valid = int(resting_window), int(valid_wear_minutes)
    if window < 1 or valid < 0:
        raise ExplorerError(f"resting_window must be at least 1 minute and valid_wear_minutes at least 0, "
                            f"got {resting_window} and {valid_wear_minutes}")
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
    asleep_levels = ", ".join(f"'{level}'" for level in ASLEEP_LEVELS)
    if has_sleep:
        sleep_ctes = f""",
        raw_segments AS (
            SELECT person_id, start_datetime, start_datetime + duration_minutes * INTERVAL 1 MINUTE AS end_datetime,
                   duration_minutes, coalesce(is_main_sleep, FALSE) AS is_main_sleep,
                   lower(level) IN ({asleep_levels}) AS asleep_level
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
            FROM raw_segments WHERE NOT is_main_sleep),
        sleep AS (
            SELECT person_id, night AS date, sum(duration_minutes) FILTER (WHERE asleep_level) AS asleep,
                   sum(duration_minutes) AS in_bed
            FROM segments WHERE night IS NOT NULL GROUP BY ALL),
        minutes AS (
            SELECT h.person_id, h.datetime, h.heart_rate_value,
                   coalesce(s.end_datetime > h.datetime, FALSE) AS in_sleep,
                   CASE WHEN s.end_datetime > h.datetime AND s.asleep_level THEN s.night END AS night
            FROM (SELECT * FROM heart_rate_minute
                  WHERE {person_filter} AND {heart_range} AND heart_rate_value IS NOT NULL) h
            ASOF LEFT JOIN segments s ON h.person_id = s.person_id AND h.datetime >= s.start_datetime),
        sleep_heart AS (
            SELECT person_id, night AS date, avg(heart_rate_value) AS sleep_hr FROM minutes
            WHERE night IS NOT NULL GROUP BY ALL)"""
        heart_source = "minutes"
        sleep_joins = " FULL JOIN sleep USING (person_id, date) FULL JOIN sleep_heart USING (person_id, date)"
        sleep_columns = ("CAST(sleep.asleep AS DOUBLE) AS sleep_minutes, "
                         "CAST(sleep.asleep AS DOUBLE) / nullif(sleep.in_bed, 0) AS sleep_efficiency, sleep_heart.sleep_hr")
    else:
        sleep_ctes = ""
        heart_source = (f"(SELECT *, FALSE AS in_sleep FROM heart_rate_minute "
                        f"WHERE {person_filter} AND {day_range} AND heart_rate_value IS NOT NULL)")
        sleep_joins = ""
        sleep_columns = ("CAST(NULL AS DOUBLE) AS sleep_minutes, CAST(NULL AS DOUBLE) AS sleep_efficiency, "
                         "CAST(NULL AS DOUBLE) AS sleep_hr")
    bucket = f", {bucket_column} AS person_bucket" if bucket_column else ""
    return f"""
        WITH steps AS (
            SELECT person_id, datetime, steps,
                   lag(datetime, {window}) OVER (PARTITION BY person_id ORDER BY datetime) AS kth_before,
                   sum(steps) OVER (PARTITION BY person_id ORDER BY datetime
                                    ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING) AS steps_before
            FROM steps_minute WHERE {person_filter} AND {steps_range} AND steps IS NOT NULL),
        resting AS (
            SELECT DISTINCT person_id, datetime FROM steps
            WHERE kth_before = datetime - INTERVAL {window} MINUTE AND steps_before = 0){sleep_ctes},
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


#: persons summarised per query by :func:`daily_summary`: bounds memory whatever the cohort size
PERSONS_PER_QUERY = 50


def daily_summary(con, *, person_filter: str = "TRUE", days: tuple[date, ...] | None = None, has_sleep: bool = True,
                  valid_wear_minutes: int = VALID_WEAR_MINUTES, resting_window: int = RESTING_WINDOW_MINUTES,
                  bucket_column: str | None = None, persons_per_query: int = PERSONS_PER_QUERY, progress=None):
    """:func:`daily_summary_sql` run a block of ``persons_per_query`` persons at a time (a
    person's days never depend on another person), so memory stays at one block's minutes
    whatever the size of the cohort: the way the ``wearable_daily`` refresh step and any
    out-of-core run use it. Returns a pandas DataFrame with the rows of the single query."""
    import pandas as pd

    persons = [row[0] for row in con.execute(f"""
        SELECT DISTINCT person_id FROM (SELECT person_id FROM heart_rate_minute WHERE {person_filter}
                                        UNION SELECT person_id FROM steps_minute WHERE {person_filter})
        ORDER BY person_id""").fetchall()]
    frames = []
    blocks = range(0, len(persons), max(1, int(persons_per_query)))
    for k, low in enumerate(blocks):
        block = persons[low:low + persons_per_query]
        query = daily_summary_sql(person_filter=f"({person_filter}) AND person_id BETWEEN $first AND $last", days=days,
                                  has_sleep=has_sleep, valid_wear_minutes=valid_wear_minutes,
                                  resting_window=resting_window, bucket_column=bucket_column)
        frames.append(con.execute(query, {"first": block[0], "last": block[-1]}).df())
        if progress:
            progress(k + 1, len(blocks), f"daily summary: {low + len(block)}/{len(persons)} persons")
    if not frames:
        return con.execute(daily_summary_sql(person_filter="FALSE", days=days, has_sleep=has_sleep,
                                             bucket_column=bucket_column)).df()
    return pd.concat(frames, ignore_index=True)
