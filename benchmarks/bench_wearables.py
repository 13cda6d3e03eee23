"""Wearable analytics (issue 6): the daily summary and the circadian metrics at cohort scale.

Lake: ``heart_rate_minute`` and ``steps_minute`` for 400 persons x 90 days, every minute of the
day (51.8M rows per stream), and one main sleep a night in ``sleep_level``, written straight into
the lake. Cases:

- the daily summary (``explorer.wearables.daily_summary_sql`` over the lake's views), against the
  same summary written by hand as one DuckDB query over the same Parquet files, with resting heart
  rate by a RANGE window function: at most 1.5x;
- the same summary in pandas (vectorised: sorted frames, shifts and cumulative sums, merge_asof
  for sleep): the daily summary must be at least 3x faster;
- the floor: a plain steps-and-mean-heart-rate aggregate over the same rows, reported beside it;
- the circadian metrics for every person and month (the ``wearable_circadian`` refresh step on a
  LocalCluster of 2 single-threaded workers): at most 10 s;
- memory: the daily summary under a 2 GB DuckDB memory limit, in its own process, on the lake and
  on 10x the persons (full runs only): the peak resident memory must not grow with the data.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.harness import DATA, Result, benchmark, interleaved_medians, run_measured

START = pd.Timestamp("2024-06-01")
MEMORY_LIMIT = "2GB"


def person_ids(n: int, seed: int = 11) -> list[str]:
    rng = np.random.default_rng(seed)
    return sorted(rng.bytes(16).hex() for _ in range(n))


def person_batches(ids, days: int, seed: int):
    """Heart rate, steps and sleep of one person at a time: asleep about 23:00-07:00, walking by day."""
    minute = np.arange(days * 1440)
    when = (START.to_datetime64() + minute.astype("timedelta64[m]")).astype("datetime64[us]")
    hour = (minute % 1440) / 60
    for k, pid in enumerate(ids):
        rng = np.random.default_rng(seed * 100_003 + k)
        bed = 23 + rng.normal(0, 0.5, days + 1)
        wake = bed + 8 + rng.normal(0, 0.5, days + 1) - 24
        day = minute // 1440
        asleep = (hour >= bed[day]) | (hour < wake[day])
        active = ~asleep & (rng.random(len(minute)) < 0.3 + 0.3 * np.exp(-0.5 * ((hour - 13) / 3) ** 2))
        steps = np.where(active, rng.poisson(40, len(minute)), 0).astype("int32")
        heart = np.round(62 + 0.15 * steps - 6 * asleep + rng.normal(0, 3, len(minute))).clip(40, 200).astype("int32")
        n = len(minute)
        person = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype="int32")), pa.array([pid])).cast(pa.string())
        starts = START + pd.to_timedelta(np.arange(-1, days), "D") + pd.to_timedelta(bed, "h")
        lengths = (24 + wake - bed) * 60
        nights = len(starts)
        sleep = pa.record_batch([pa.array([pid] * nights), pa.array(starts.to_numpy().astype("datetime64[us]")),
                                 pa.array(["asleep"] * nights), pa.array(np.round(lengths).astype("float64")),
                                 pa.array([True] * nights)],
                                names=["person_id", "start_datetime", "level", "duration_minutes", "is_main_sleep"])
        yield (pa.record_batch([person, pa.array(when), pa.array(heart)], names=["person_id", "datetime", "heart_rate_value"]),
               pa.record_batch([person, pa.array(when), pa.array(steps)], names=["person_id", "datetime", "steps"]),
               sleep)


def build_lake(root, persons: int, days: int, seed: int = 1):
    import explorer

    shutil.rmtree(root, ignore_errors=True)
    lake = explorer.open(root)
    ids = person_ids(persons, seed)
    schemas = [pa.schema([("person_id", pa.string()), ("datetime", pa.timestamp("us")), ("heart_rate_value", pa.int32())]),
               pa.schema([("person_id", pa.string()), ("datetime", pa.timestamp("us")), ("steps", pa.int32())]),
               pa.schema([("person_id", pa.string()), ("start_datetime", pa.timestamp("us")), ("level", pa.string()),
                          ("duration_minutes", pa.float64()), ("is_main_sleep", pa.bool_())])]
    for index, name in enumerate(("heart_rate_minute", "steps_minute", "sleep_level")):
        batches = (parts[index] for parts in person_batches(ids, days, seed))
        lake.write(name, pa.RecordBatchReader.from_batches(schemas[index], batches), mode="append", operation="benchmark")
    return lake, persons * days * 1440


def hand_written_sql(lake) -> str:
    """The daily summary as one DuckDB query over the tables' Parquet files, written the way the
    definitions read: a RANGE window for the 12 minutes before, an ASOF join for sleep."""
    def files(name):
        return "[" + ", ".join(f"'{uri}'" for uri in lake.delta(name).file_uris()) + "]"
    return f"""
        WITH s AS (
            SELECT person_id, datetime, steps, count(*) OVER w AS n_before, sum(steps) OVER w AS steps_before
            FROM read_parquet({files('steps_minute')})
            WINDOW w AS (PARTITION BY person_id ORDER BY datetime
                         RANGE BETWEEN INTERVAL 12 MINUTE PRECEDING AND INTERVAL 1 MINUTE PRECEDING)),
        seg AS (SELECT person_id, start_datetime, start_datetime + duration_minutes * INTERVAL 1 MINUTE AS end_datetime,
                       is_main_sleep AND level IN ('asleep', 'light', 'deep', 'rem') AS main_asleep
                FROM read_parquet({files('sleep_level')})),
        h AS (SELECT h.person_id, h.datetime, h.heart_rate_value, coalesce(seg.end_datetime > h.datetime, false) AS in_sleep,
                     CASE WHEN seg.end_datetime > h.datetime AND seg.main_asleep
                          THEN CAST(seg.start_datetime + INTERVAL 12 HOUR AS DATE) END AS night
              FROM read_parquet({files('heart_rate_minute')}) h
              ASOF LEFT JOIN seg ON h.person_id = seg.person_id AND h.datetime >= seg.start_datetime),
        day AS (SELECT h.person_id, CAST(h.datetime AS DATE) AS date, count(*) AS wear_minutes, avg(h.heart_rate_value) AS mean_hr,
                       avg(h.heart_rate_value) FILTER (WHERE s.n_before = 12 AND s.steps_before = 0 AND NOT h.in_sleep) AS resting_hr
                FROM h LEFT JOIN s USING (person_id, datetime) GROUP BY ALL),
        walked AS (SELECT person_id, CAST(datetime AS DATE) AS date, sum(steps) AS steps FROM s GROUP BY ALL),
        night AS (SELECT person_id, night AS date, avg(heart_rate_value) AS sleep_hr FROM h WHERE night IS NOT NULL GROUP BY ALL),
        sleep AS (SELECT person_id, CAST(start_datetime + INTERVAL 12 HOUR AS DATE) AS date,
                         sum(duration_minutes) FILTER (WHERE level IN ('asleep', 'light', 'deep', 'rem')) AS asleep,
                         sum(duration_minutes) AS in_bed
                  FROM read_parquet({files('sleep_level')}) WHERE is_main_sleep GROUP BY ALL)
        SELECT person_id, date, coalesce(walked.steps, 0) AS steps, coalesce(wear_minutes, 0) AS wear_minutes,
               coalesce(wear_minutes, 0) >= 600 AS valid_day, mean_hr, resting_hr, asleep AS sleep_minutes,
               asleep / nullif(in_bed, 0) AS sleep_efficiency, sleep_hr
        FROM day FULL JOIN walked USING (person_id, date) FULL JOIN sleep USING (person_id, date)
             FULL JOIN night USING (person_id, date)"""


def floor_sql() -> str:
    return """SELECT person_id, date, sum(steps) AS steps, count(*) FILTER (WHERE hr IS NOT NULL) AS wear_minutes, avg(hr) AS mean_hr
              FROM (SELECT person_id, CAST(datetime AS DATE) AS date, heart_rate_value AS hr, NULL::INTEGER AS steps FROM heart_rate_minute
                    UNION ALL SELECT person_id, CAST(datetime AS DATE), NULL, steps FROM steps_minute) GROUP BY ALL"""


def pandas_summary(lake) -> pd.DataFrame:
    """The same summary in pandas, vectorised over sorted frames (no per-person Python loop)."""
    def read(name, columns):
        return pa.concat_tables(pa.parquet.read_table(uri.removeprefix("file://"), columns=columns)
                                for uri in lake.delta(name).file_uris()).to_pandas()
    import pyarrow.parquet  # noqa: F401

    steps = read("steps_minute", ["person_id", "datetime", "steps"]).sort_values(["person_id", "datetime"], ignore_index=True)
    same = steps.person_id.eq(steps.person_id.shift(12))
    steps_before = steps.steps.cumsum().shift(1) - steps.steps.cumsum().shift(13)
    steps["rest"] = same & steps.datetime.sub(steps.datetime.shift(12)).eq(pd.Timedelta("12min")) & steps_before.eq(0)
    heart = read("heart_rate_minute", ["person_id", "datetime", "heart_rate_value"]).sort_values("datetime", ignore_index=True)
    sleep = read("sleep_level", ["person_id", "start_datetime", "level", "duration_minutes", "is_main_sleep"])
    sleep["end_datetime"] = sleep.start_datetime + pd.to_timedelta(sleep.duration_minutes, "min")
    sleep["night"] = (sleep.start_datetime + pd.Timedelta("12h")).dt.normalize()
    heart = pd.merge_asof(heart, sleep.sort_values("start_datetime")[["person_id", "start_datetime", "end_datetime", "night", "is_main_sleep"]],
                          left_on="datetime", right_on="start_datetime", by="person_id")
    heart["in_sleep"] = heart.end_datetime > heart.datetime
    heart = heart.merge(steps[["person_id", "datetime", "rest"]], on=["person_id", "datetime"], how="left")
    heart["date"] = heart.datetime.dt.normalize()
    heart["resting"] = heart.heart_rate_value.where(heart.rest.fillna(False).astype(bool) & ~heart.in_sleep)
    day = heart.groupby(["person_id", "date"]).agg(wear_minutes=("heart_rate_value", "size"), mean_hr=("heart_rate_value", "mean"),
                                                   resting_hr=("resting", "mean"))
    sleeping = heart[heart.in_sleep & heart.is_main_sleep.fillna(False).astype(bool)]
    day = day.join(sleeping.groupby(["person_id", "night"]).heart_rate_value.mean().rename("sleep_hr")
                   .rename_axis(["person_id", "date"]), how="outer")
    steps["date"] = steps.datetime.dt.normalize()
    day = day.join(steps.groupby(["person_id", "date"]).steps.sum(), how="outer")
    main = sleep[sleep.is_main_sleep]
    nights = main.assign(asleep=main.duration_minutes.where(main.level.isin(["asleep", "light", "deep", "rem"]), 0)) \
        .groupby(["person_id", "night"]).agg(asleep=("asleep", "sum"), in_bed=("duration_minutes", "sum"))
    day = day.join(nights.rename_axis(["person_id", "date"]), how="outer")
    day[["steps", "wear_minutes"]] = day[["steps", "wear_minutes"]].fillna(0)
    day["valid_day"] = day.wear_minutes >= 600
    day["sleep_efficiency"] = day.asleep / day.in_bed
    return day.rename(columns={"asleep": "sleep_minutes"}).reset_index()


COMPARED = ["steps", "wear_minutes", "valid_day", "mean_hr", "resting_hr", "sleep_minutes", "sleep_efficiency", "sleep_hr"]


def disagreements(ours: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """Columns where ``other`` differs from ``ours`` on the same (person_id, date) rows."""
    def keyed(frame):
        return frame.assign(date=pd.to_datetime(frame["date"])).set_index(["person_id", "date"]).sort_index()
    ours, other = keyed(ours), keyed(other)
    if not ours.index.equals(other.index):
        return [f"rows ({len(ours)} vs {len(other)})"]
    return [c for c in COMPARED if not np.allclose(ours[c].to_numpy(float), other[c].to_numpy(float), equal_nan=True)]


MEMORY_SCRIPT = """
import sys, time, explorer
from explorer.wearables import daily_summary_sql
lake = explorer.open(sys.argv[1])
con = lake.connection()
con.execute("SET memory_limit = '{limit}'")
con.execute("SET preserve_insertion_order = false")
start = time.perf_counter()
rows = len(lake.sql(daily_summary_sql()))
print(rows, time.perf_counter() - start)
"""


def measure_memory(root) -> tuple[float, float, int]:
    seconds, peak, out = run_measured([sys.executable, "-c", MEMORY_SCRIPT.format(limit=MEMORY_LIMIT), str(root)])
    rows, inner = out.split()
    return float(inner), peak, int(rows)


@benchmark("wearables")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from distributed import Client, LocalCluster

    from explorer.jobs import refresh
    from explorer.wearables import daily_summary_sql

    persons, days = max(8, int(400 * scale)), 90
    root = DATA / "wearables_lake"
    steps_total = 6
    progress(0, steps_total, f"writing {persons} persons x {days} days, every minute")
    lake, rows = build_lake(root, persons, days)
    ours = daily_summary_sql()
    hand = hand_written_sql(lake)
    lake.sql(ours)  # views registered, files cached: both queries start warm
    timed = max(1, min(repeats, 3))
    progress(1, steps_total, "daily summary, hand-written SQL, floor")
    times = interleaved_medians({"ours": lambda: lake.sql(ours), "hand": lambda: lake.connection().execute(hand).df(),
                                 "floor": lambda: lake.sql(floor_sql())}, timed)
    ours_s, hand_s, floor_s = (statistics.median(times[k]) for k in ("ours", "hand", "floor"))
    progress(2, steps_total, "the same summary in pandas")
    start = time.perf_counter()
    by_pandas = pandas_summary(lake)
    pandas_s = time.perf_counter() - start
    reference = lake.sql(ours)
    differ_pandas = disagreements(reference, by_pandas)
    differ_hand = disagreements(reference, lake.connection().execute(hand).df())
    del by_pandas
    progress(3, steps_total, "circadian metrics: wearable_circadian on 2 workers")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        refresh(lake, client=client, steps=["wearable_circadian"], full=True)
        circadian = []
        for _ in range(timed):
            start = time.perf_counter()
            report = refresh(lake, client=client, steps=["wearable_circadian"], full=True)
            circadian.append(time.perf_counter() - start)
            assert not report.failed, str(report)
    circadian_rows = len(lake.sql("SELECT 1 FROM wearable_circadian WHERE interdaily_stability IS NOT NULL"))
    progress(4, steps_total, f"memory under a {MEMORY_LIMIT} limit")
    inner_1x, peak_1x, _ = measure_memory(root)
    machine = f"{os.cpu_count()} cores"
    results = [
        Result("wearables", "daily summary, hand SQL", hand_s, "s", note=f"{rows:,} minute rows per stream, RANGE window, {machine}"
               + (f" (DIFFERS in {', '.join(differ_hand)})" if differ_hand else "; same rows and values")),
        Result("wearables", "daily summary", ours_s, "s", "daily summary, hand SQL", hand_s, 1.5,
               "explorer.wearables.daily_summary_sql over the lake's views"),
        Result("wearables", "daily summary, pandas", pandas_s, "s", note="vectorised pandas, same definitions"
               + (f" (DIFFERS in {', '.join(differ_pandas)})" if differ_pandas else "; same rows and values")),
        Result("wearables", "daily summary vs pandas", ours_s, "s", "daily summary, pandas", pandas_s, 1 / 3,
               "target: at least 3x faster than pandas"),
        Result("wearables", "floor: steps + mean HR", floor_s, "s", note="plain GROUP BY over both streams"),
        Result("wearables", "daily summary vs floor", ours_s, "s", "floor: steps + mean HR", floor_s, None,
               "what the 12-minute window, sleep lookup and joins cost over the floor"),
        Result("wearables", "circadian, all person-months", statistics.median(circadian), "s", limit=10.0,
               note=f"{persons} persons, {circadian_rows} person-months, 2 workers"),
        Result("wearables", f"peak memory, {persons} persons", peak_1x, "GB",
               note=f"DuckDB memory_limit {MEMORY_LIMIT}; query {inner_1x:.1f} s"),
    ]
    if scale >= 1:
        progress(5, steps_total, "10x the persons")
        shutil.rmtree(root, ignore_errors=True)
        big = DATA / "wearables_lake_10x"
        _, big_rows = build_lake(big, persons * 10, days, seed=2)
        inner_10x, peak_10x, _ = measure_memory(big)
        results += [
            Result("wearables", f"peak memory, {persons * 10} persons", peak_10x, "GB", f"peak memory, {persons} persons",
                   peak_1x, 1.25, f"{big_rows:,} rows per stream; query {inner_10x:.1f} s; target: the same ceiling"),
        ]
        shutil.rmtree(big, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return results
