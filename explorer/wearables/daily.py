"""Daily summary per person and local day, as one DuckDB query over the unified minute tables.

Definitions
-----------
steps
    Sum of ``steps_minute.steps`` over the local day.
wear_minutes
    Minutes with a heart-rate reading (``heart_rate_minute`` rows; a minute of the repeated
    autumn hour counts twice, as it was lived twice).
valid_day
    ``wear_minutes >= 600`` (10 h), the wear-time rule common in accelerometry and used by All of
    Us analyses of Fitbit data (Master et al. 2022); :data:`VALID_WEAR_MINUTES`.
mean_hr
    Mean heart rate over worn minutes (/min).
resting_hr
    Mean heart rate over the minutes whose 12 preceding minutes were all recorded with zero
    steps (Mishra et al. 2020): heart rate at rest, away from the after-effect of walking. The
    minutes of the previous day count as preceding minutes, so a day's value does not depend on
    how the days were split into tasks. Empty when no minute qualifies.
sleep_minutes, sleep_efficiency
    Main-sleep segments (``sleep_level.is_main_sleep``) starting between noon the day before and
    noon that day, i.e. the night that ends that morning (Fitbit's "date of sleep"). Minutes
    asleep are the segments of level deep, light, rem or asleep; efficiency is minutes asleep /
    minutes of all main-sleep segments (time in bed), a fraction.

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


def daily_summary_sql(*, person_filter: str = "TRUE", days: tuple[date, ...] | None = None,
                      has_sleep: bool = True, valid_wear_minutes: int = VALID_WEAR_MINUTES,
                      resting_window: int = RESTING_WINDOW_MINUTES, bucket_column: str | None = None) -> str:
    """The daily-summary query over views ``heart_rate_minute``, ``steps_minute`` (and
    ``sleep_level`` if ``has_sleep``), for the persons matching ``person_filter`` (SQL on
    ``person_id``) and the local ``days`` given (None: every day). Rows: person_id, date, steps,
    wear_minutes, valid_day, mean_hr, resting_hr, sleep_minutes, sleep_efficiency (and
    ``bucket_column`` if given, an SQL expression named person_bucket).

    Only the rows a day needs are read: the day itself, the ``resting_window`` minutes before it
    for the steps window, and for sleep the noon-to-noon span that ends on it.
    """
    if days:
        first, last = min(days), max(days)
        day_list = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(days))
        day_range = f"datetime >= DATE '{first}' AND datetime < DATE '{last + timedelta(days=1)}'"
        steps_range = (f"datetime >= TIMESTAMP '{first} 00:00:00' - INTERVAL {int(resting_window)} MINUTE "
                       f"AND datetime < DATE '{last + timedelta(days=1)}'")
        sleep_range = (f"start_datetime >= TIMESTAMP '{first - timedelta(days=1)} 12:00:00' "
                       f"AND start_datetime < TIMESTAMP '{last} 12:00:00'")
        keep_days = f"date IN ({day_list})"
    else:
        day_range = steps_range = sleep_range = keep_days = "TRUE"
    window = int(resting_window)
    sleep_cte = f""",
        sleep AS (
            SELECT person_id, CAST(start_datetime + INTERVAL 12 HOUR AS DATE) AS date,
                   sum(duration_minutes) FILTER (WHERE lower(level) IN ({', '.join(f"'{l}'" for l in ASLEEP_LEVELS)})) AS asleep,
                   sum(duration_minutes) AS in_bed
            FROM sleep_level WHERE is_main_sleep AND {person_filter} AND {sleep_range}
            GROUP BY ALL)""" if has_sleep else ""
    sleep_join = " FULL JOIN sleep USING (person_id, date)" if has_sleep else ""
    sleep_columns = ("CAST(sleep.asleep AS DOUBLE) AS sleep_minutes, "
                     "CAST(sleep.asleep AS DOUBLE) / nullif(sleep.in_bed, 0) AS sleep_efficiency") if has_sleep \
        else "CAST(NULL AS DOUBLE) AS sleep_minutes, CAST(NULL AS DOUBLE) AS sleep_efficiency"
    bucket = f", {bucket_column} AS person_bucket" if bucket_column else ""
    return f"""
        WITH steps AS (
            SELECT person_id, datetime, steps,
                   count(*) OVER before AS recorded_before, sum(steps) OVER before AS steps_before
            FROM steps_minute WHERE {person_filter} AND {steps_range}
            WINDOW before AS (PARTITION BY person_id ORDER BY datetime
                              RANGE BETWEEN INTERVAL {window} MINUTE PRECEDING AND INTERVAL 1 MINUTE PRECEDING)),
        resting AS (
            SELECT DISTINCT person_id, datetime FROM steps
            WHERE recorded_before = {window} AND steps_before = 0),
        heart AS (
            SELECT h.person_id, CAST(h.datetime AS DATE) AS date, count(*) AS wear_minutes,
                   avg(h.heart_rate_value) AS mean_hr,
                   avg(h.heart_rate_value) FILTER (WHERE r.person_id IS NOT NULL) AS resting_hr
            FROM (SELECT * FROM heart_rate_minute WHERE {person_filter} AND {day_range}) h
            LEFT JOIN resting r ON r.person_id = h.person_id AND r.datetime = h.datetime
            GROUP BY ALL),
        walked AS (
            SELECT person_id, CAST(datetime AS DATE) AS date, sum(steps) AS steps FROM steps
            WHERE {day_range} GROUP BY ALL){sleep_cte}
        SELECT person_id, date, CAST(coalesce(walked.steps, 0) AS BIGINT) AS steps,
               CAST(coalesce(heart.wear_minutes, 0) AS INTEGER) AS wear_minutes,
               coalesce(heart.wear_minutes, 0) >= {int(valid_wear_minutes)} AS valid_day,
               heart.mean_hr, heart.resting_hr, {sleep_columns}{bucket}
        FROM heart FULL JOIN walked USING (person_id, date){sleep_join}
        WHERE {keep_days}
        ORDER BY person_id, date"""
