"""Wearable analytics (issue 6): the daily summary and the circadian metrics at cohort scale.

Lake: ``heart_rate_minute`` and ``steps_minute`` for 400 persons x 90 days, every minute of the
day (51.8M rows per stream), and one main sleep a night in ``sleep_level``, written straight into
the lake. Every comparison first checks that both sides give the same rows and values. Cases:

- the daily summary (``explorer.wearables.daily.daily_summary``: 50 persons' minutes at a time
  read by DuckDB and summarised by numpy in one pass over a person x minute grid, as the refresh
  step runs it), against the same summary written by hand
  as one DuckDB query over the same Parquet files, resting heart rate by a window function, with
  a RANGE frame (as the definition reads) and with a ROWS frame (as we write it); the faster is
  the baseline: at most 1.5x;
- the same summary in pandas, with ``groupby().rolling("12min")`` as the definition reads: the
  daily summary must be at least 3x faster; and by hand (shifts and cumulative sums), reported;
- the floor: a plain steps-and-mean-heart-rate aggregate over the same rows, reported beside it;
- the circadian metrics for every person and month (the ``wearable_circadian`` refresh step on a
  LocalCluster of 2 single-threaded workers): at most 10 s;
- memory: the daily summary and the circadian metrics of the whole cohort in one process under a
  2 GB DuckDB memory limit, on the lake and on 10x the persons (full runs only; the 10x lake is
  kept in benchmarks/.data between runs): the peak resident memory must not grow with the data.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.harness import DATA, Result, benchmark, interleaved_medians, remove_lake, run_measured

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

    remove_lake(root)
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


HAND_FRAMES = {
    # the 12 minutes before, as the definition reads: a time range
    "RANGE": """count(*) OVER w = 12 AS full_window, sum(steps) OVER w AS steps_before
            FROM read_parquet({files})
            WINDOW w AS (PARTITION BY person_id ORDER BY datetime
                         RANGE BETWEEN INTERVAL 12 MINUTE PRECEDING AND INTERVAL 1 MINUTE PRECEDING)""",
    # the same by rows: the 12th row back is 12 minutes earlier
    "ROWS": """lag(datetime, 12) OVER w = datetime - INTERVAL 12 MINUTE AS full_window,
                   sum(steps) OVER (PARTITION BY person_id ORDER BY datetime ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING)
                       AS steps_before
            FROM read_parquet({files})
            WINDOW w AS (PARTITION BY person_id ORDER BY datetime)""",
}


def _has_rows(root, rows: int) -> bool:
    import explorer

    try:
        lake = explorer.open(root)
        return all(lake.row_count(t) == rows for t in ("heart_rate_minute", "steps_minute"))
    except Exception:
        return False


def hand_written_sql(lake, frame: str = "ROWS") -> str:
    """The daily summary as one DuckDB query over the tables' Parquet files, as someone who knows
    DuckDB writes it: a window function for the 12 minutes before (``frame``: RANGE or ROWS), an
    ASOF join for the sleep segment a minute falls in, nights dated by the day they end."""
    def files(name):
        return "[" + ", ".join(f"'{uri}'" for uri in lake.delta(name).file_uris()) + "]"
    return f"""
        WITH s AS (
            SELECT person_id, datetime, steps, {HAND_FRAMES[frame].format(files=files('steps_minute'))}),
        seg AS (SELECT person_id, start_datetime, start_datetime + duration_minutes * INTERVAL 1 MINUTE AS end_datetime,
                       is_main_sleep AND level IN ('asleep', 'light', 'deep', 'rem') AS main_asleep
                FROM read_parquet({files('sleep_level')})),
        h AS (SELECT h.person_id, h.datetime, h.heart_rate_value, coalesce(seg.end_datetime > h.datetime, false) AS in_sleep,
                     CASE WHEN seg.end_datetime > h.datetime AND seg.main_asleep
                          THEN CAST(seg.end_datetime AS DATE) END AS night
              FROM read_parquet({files('heart_rate_minute')}) h
              ASOF LEFT JOIN seg ON h.person_id = seg.person_id AND h.datetime >= seg.start_datetime),
        day AS (SELECT h.person_id, CAST(h.datetime AS DATE) AS date, count(*) AS wear_minutes, avg(h.heart_rate_value) AS mean_hr,
                       avg(h.heart_rate_value) FILTER (WHERE s.full_window AND s.steps_before = 0 AND NOT h.in_sleep) AS resting_hr
                FROM h LEFT JOIN s USING (person_id, datetime) GROUP BY ALL),
        walked AS (SELECT person_id, CAST(datetime AS DATE) AS date, sum(steps) AS steps FROM s GROUP BY ALL),
        night AS (SELECT person_id, night AS date, avg(heart_rate_value) AS sleep_hr FROM h WHERE night IS NOT NULL GROUP BY ALL),
        sleep AS (SELECT person_id, CAST(start_datetime + duration_minutes * INTERVAL 1 MINUTE AS DATE) AS date,
                         sum(duration_minutes) FILTER (WHERE level IN ('asleep', 'light', 'deep', 'rem')) AS asleep,
                         sum(duration_minutes) AS in_bed
                  FROM read_parquet({files('sleep_level')}) WHERE is_main_sleep GROUP BY ALL)
        SELECT person_id, date, coalesce(walked.steps, 0) AS steps, coalesce(wear_minutes, 0) AS wear_minutes,
               coalesce(wear_minutes, 0) >= 600 AS valid_day, mean_hr, resting_hr, asleep AS sleep_minutes,
               asleep / nullif(in_bed, 0) AS sleep_efficiency, sleep_hr
        FROM day FULL JOIN walked USING (person_id, date) FULL JOIN sleep USING (person_id, date)
             FULL JOIN night USING (person_id, date)
        ORDER BY person_id, date"""


def floor_sql() -> str:
    return """SELECT person_id, date, sum(steps) AS steps, count(*) FILTER (WHERE hr IS NOT NULL) AS wear_minutes, avg(hr) AS mean_hr
              FROM (SELECT person_id, CAST(datetime AS DATE) AS date, heart_rate_value AS hr, NULL::INTEGER AS steps FROM heart_rate_minute
                    UNION ALL SELECT person_id, CAST(datetime AS DATE), NULL, steps FROM steps_minute) GROUP BY ALL"""


def pandas_summary(lake, rest: str = "vectorised") -> pd.DataFrame:
    """The same summary in pandas. ``rest`` is how the 12 zero-step minutes before are found:
    "rolling", as the definition reads (a 12-minute time window per person, closed on the left),
    or "vectorised", by hand over the sorted frame (shifts and cumulative sums, no groupby)."""
    import pyarrow.parquet as pq

    def read(name, columns):  # person_id as a categorical: no Python string per row
        return pa.concat_tables(pq.read_table(uri.removeprefix("file://"), columns=columns, read_dictionary=["person_id"])
                                for uri in lake.delta(name).file_uris()).unify_dictionaries().to_pandas()

    steps = read("steps_minute", ["person_id", "datetime", "steps"]).sort_values(["person_id", "datetime"], ignore_index=True)
    if rest == "rolling":
        window = steps.set_index("datetime").groupby("person_id", observed=True, sort=False)["steps"] \
            .rolling("12min", closed="left")
        steps["rest"] = (window.count().to_numpy() == 12) & (window.sum().to_numpy() == 0)
    else:
        same = steps.person_id.eq(steps.person_id.shift(12))
        steps_before = steps.steps.cumsum().shift(1) - steps.steps.cumsum().shift(13)
        steps["rest"] = same & steps.datetime.sub(steps.datetime.shift(12)).eq(pd.Timedelta("12min")) & steps_before.eq(0)
    heart = read("heart_rate_minute", ["person_id", "datetime", "heart_rate_value"]).sort_values("datetime", ignore_index=True)
    sleep = read("sleep_level", ["person_id", "start_datetime", "level", "duration_minutes", "is_main_sleep"])
    sleep["end_datetime"] = sleep.start_datetime + pd.to_timedelta(sleep.duration_minutes, "min")
    sleep["night"] = sleep.end_datetime.dt.normalize()
    sleep["asleep_level"] = sleep.level.str.lower().isin(["asleep", "light", "deep", "rem"])
    heart = pd.merge_asof(heart, sleep.sort_values("start_datetime")[
        ["person_id", "start_datetime", "end_datetime", "night", "is_main_sleep", "asleep_level"]],
        left_on="datetime", right_on="start_datetime", by="person_id")
    heart["in_sleep"] = heart.end_datetime > heart.datetime
    heart = heart.merge(steps[["person_id", "datetime", "rest"]], on=["person_id", "datetime"], how="left")
    heart["date"] = heart.datetime.dt.normalize()
    heart["resting"] = heart.heart_rate_value.where(heart.rest.fillna(False).astype(bool) & ~heart.in_sleep)
    day = heart.groupby(["person_id", "date"]).agg(wear_minutes=("heart_rate_value", "size"), mean_hr=("heart_rate_value", "mean"),
                                                   resting_hr=("resting", "mean"))
    sleeping = heart[heart.in_sleep & heart.is_main_sleep.fillna(False).astype(bool)
                     & heart.asleep_level.fillna(False).astype(bool)]
    day = day.join(sleeping.groupby(["person_id", "night"]).heart_rate_value.mean().rename("sleep_hr")
                   .rename_axis(["person_id", "date"]), how="outer")
    steps["date"] = steps.datetime.dt.normalize()
    day = day.join(steps.groupby(["person_id", "date"]).steps.sum(), how="outer")
    main = sleep[sleep.is_main_sleep]
    nights = main.assign(asleep=main.duration_minutes.where(main.asleep_level)).groupby(["person_id", "night"]) \
        .agg(asleep=("asleep", lambda v: v.sum(min_count=1)), in_bed=("duration_minutes", "sum"))
    day = day.join(nights.rename_axis(["person_id", "date"]), how="outer")
    day[["steps", "wear_minutes"]] = day[["steps", "wear_minutes"]].fillna(0)
    day["valid_day"] = day.wear_minutes >= 600
    day["sleep_efficiency"] = day.asleep / day.in_bed
    return day.rename(columns={"asleep": "sleep_minutes"}).reset_index()


COMPARED = ["steps", "wear_minutes", "valid_day", "mean_hr", "resting_hr", "sleep_minutes", "sleep_efficiency", "sleep_hr"]


def disagreements(ours: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """Columns where ``other`` differs from ``ours`` on the same (person_id, date) rows."""
    def keyed(frame):
        return frame.assign(person_id=frame["person_id"].astype(str), date=pd.to_datetime(frame["date"])) \
            .set_index(["person_id", "date"]).sort_index()
    ours, other = keyed(ours), keyed(other)
    if not ours.index.equals(other.index):
        return [f"rows ({len(ours)} vs {len(other)})"]
    return [c for c in COMPARED if not np.allclose(ours[c].to_numpy(float), other[c].to_numpy(float), equal_nan=True)]


MEMORY_SCRIPT = """
import sys, time, explorer
lake = explorer.open(sys.argv[1])
con = lake.connection()
con.execute("SET memory_limit = '{limit}'")
con.execute("SET preserve_insertion_order = false")
start = time.perf_counter()
for table in ("heart_rate_minute", "steps_minute", "sleep_level"):
    lake.sql(f"SELECT 1 FROM {{table}} LIMIT 1")  # the views, on this connection
if sys.argv[2] == "daily":  # the whole cohort in one process, as the refresh step runs its share
    from explorer.wearables.daily import daily_summary
    rows = len(daily_summary(con))
else:
    from explorer.wearables.periods import circadian_by_month
    rows = len(circadian_by_month(con))
print(rows, time.perf_counter() - start)
"""


def measure_memory(root, what: str) -> tuple[float, float, int]:
    """(seconds of the work itself, peak resident GB of the process, rows) of ``what`` (daily or
    circadian) over the lake at ``root``, in a fresh process."""
    _, peak, out = run_measured([sys.executable, "-c", MEMORY_SCRIPT.format(limit=MEMORY_LIMIT), str(root), what])
    rows, inner = out.split()
    return float(inner), peak, int(rows)


@benchmark("wearables")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from distributed import Client, LocalCluster

    from explorer.jobs import refresh
    from explorer.wearables.daily import daily_summary

    persons, days = max(8, int(400 * scale)), 90
    root = DATA / "wearables_lake"
    steps_total = 6
    progress(0, steps_total, f"writing {persons} persons x {days} days, every minute")
    lake, rows = build_lake(root, persons, days)
    for table in ("heart_rate_minute", "steps_minute", "sleep_level"):
        lake.sql(f"SELECT 1 FROM {table} LIMIT 1")  # views on the lake's connection
    con = lake.connection()
    hands = {frame: hand_written_sql(lake, frame) for frame in HAND_FRAMES}
    timed = max(1, min(repeats, 3))
    progress(1, steps_total, "daily summary, hand-written SQL (RANGE and ROWS frames), floor")
    times = interleaved_medians({"ours": lambda: daily_summary(con), "floor": lambda: lake.sql(floor_sql()),
                                 "hand ROWS": lambda: lake.connection().execute(hands["ROWS"]).df()}, timed)
    ours_s, floor_s = statistics.median(times["ours"]), statistics.median(times["floor"])
    start = time.perf_counter()  # the RANGE frame is several times slower: timed once
    lake.connection().execute(hands["RANGE"]).df()
    hand_s = {"ROWS": statistics.median(times["hand ROWS"]), "RANGE": time.perf_counter() - start}
    best_frame = min(hand_s, key=hand_s.get)
    reference = daily_summary(con)
    for frame, query in hands.items():
        differ = disagreements(reference, lake.connection().execute(query).df())
        if differ:
            raise AssertionError(f"the hand-written SQL ({frame}) computes something else: {differ}")
    progress(2, steps_total, "the same summary in pandas, two ways")
    pandas_s = {}
    for way in ("rolling", "vectorised"):
        samples = []
        for _ in range(2 if scale >= 1 else timed):
            start = time.perf_counter()
            by_pandas = pandas_summary(lake, rest=way)
            samples.append(time.perf_counter() - start)
            differ = disagreements(reference, by_pandas)
            del by_pandas
            if differ:
                raise AssertionError(f"the pandas summary ({way}) computes something else: {differ}")
        pandas_s[way] = min(samples)
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
    memory = {what: measure_memory(root, what) for what in ("daily", "circadian")}
    machine = f"{os.cpu_count()} cores"
    results = [
        *(Result("wearables", f"daily summary, hand SQL {frame}", seconds, "s",
                 note=f"{rows:,} minute rows per stream, {frame} frame; same rows and values, {machine}")
          for frame, seconds in hand_s.items()),
        Result("wearables", "daily summary", ours_s, "s", f"daily summary, hand SQL {best_frame}", hand_s[best_frame], 1.5,
               "explorer.wearables.daily.daily_summary (numpy over a person x minute grid, 50 persons a block), against the faster hand-written query"),
        Result("wearables", "daily summary, pandas rolling", pandas_s["rolling"], "s",
               note="groupby + rolling('12min') as the definition reads; categorical ids; same rows and values"),
        Result("wearables", "daily summary vs pandas", ours_s, "s", "daily summary, pandas rolling", pandas_s["rolling"], 1 / 3,
               "target: at least 3x faster than pandas"),
        Result("wearables", "daily summary, pandas by hand", pandas_s["vectorised"], "s",
               note="the 12-minute rule by shifts and cumulative sums over the sorted frame; same rows and values"),
        Result("wearables", "vs pandas by hand", ours_s, "s", "daily summary, pandas by hand", pandas_s["vectorised"], None,
               "an expert's pandas: reported, not the target's baseline"),
        Result("wearables", "floor: steps + mean HR", floor_s, "s", note="plain GROUP BY over both streams"),
        Result("wearables", "daily summary vs floor", ours_s, "s", "floor: steps + mean HR", floor_s, None,
               "what the 12-minute window, sleep lookup and joins cost over the floor"),
        Result("wearables", "circadian, all person-months", statistics.median(circadian), "s", limit=10.0,
               note=f"{persons} persons, {circadian_rows} person-months with metrics, 2 workers"),
    ]
    for what, (inner, peak, _) in memory.items():
        results.append(Result("wearables", f"{what} peak memory, {persons} persons", peak, "GB",
                              note=f"one process, DuckDB memory_limit {MEMORY_LIMIT}; {inner:.1f} s"))
    if scale >= 1:
        progress(5, steps_total, "10x the persons")
        remove_lake(root)
        big = DATA / "wearables_lake_10x"
        big_rows = persons * 10 * days * 1440
        if not _has_rows(big, big_rows):  # kept between runs: writing it takes minutes
            build_lake(big, persons * 10, days, seed=2)
        for what, (inner_1x, peak_1x, _) in memory.items():
            try:
                inner_10x, peak_10x, _ = measure_memory(big, what)
            except RuntimeError as exc:  # out of memory: a failed target, with the reason, and the other figures kept
                results.append(Result("wearables", f"{what} peak memory, {persons * 10} persons", float("nan"), "GB",
                                      f"{what} peak memory, {persons} persons", peak_1x, 1.25,
                                      "FAILED: " + str(exc).strip().splitlines()[-1][:200]))
                continue
            results.append(Result("wearables", f"{what} peak memory, {persons * 10} persons", peak_10x, "GB",
                                  f"{what} peak memory, {persons} persons", peak_1x, 1.25,
                                  f"{big_rows:,} rows per stream; {inner_10x:.1f} s ({inner_10x / inner_1x:.1f}x the time); "
                                  "target: the same ceiling"))
    remove_lake(root)
    return results
