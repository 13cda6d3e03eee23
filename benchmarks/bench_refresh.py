"""`explorer refresh` on Dask: a full refresh, the cost of one new day, and 1 -> N workers.

Lake: ``person``, ``heart_rate_minute`` and ``steps_minute`` for 400 persons x 90 days, worn
06:00-22:00 (960 minutes a day: 34.6M rows per stream, 69M in all), written straight into the lake
rather than through ingest, so this benchmark needs only the lake and Dask and runs unchanged on a
bigger machine:

    python -m benchmarks --only refresh --workers 1,2,4,8,16

Cases (issue 5):

- full refresh of every step on a LocalCluster of 2 single-threaded workers, against the same
  person-day table computed by one DuckDB query over the lake in this process (no Dask): the
  price of partitioned, recorded, atomic work;
- incremental refresh after one new day for every person, against that full refresh: at most 10%;
- full refresh on 1 worker against N workers: the speed-up.

The cluster is started before the clock starts: a scheduled refresh (``--every``) keeps its
cluster for its lifetime, and a site with a cluster keeps it running.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.harness import DATA, Result, benchmark, remove_lake

WORKERS_ENV = "EXPLORER_BENCH_WORKERS"
START = pd.Timestamp("2024-06-01")


def person_ids(n: int) -> list[str]:
    rng = np.random.default_rng(7)
    # pseudonym-shaped (32 hex characters) and in order: ingest writes rows clustered by person_id
    return sorted(rng.bytes(16).hex() for _ in range(n))


def minute_batches(ids, first_day: int, days: int, seed: int):
    """Record batches of heart rate and steps, one person at a time (memory stays small)."""
    worn = np.arange(6 * 60, 22 * 60)  # minutes of the day
    for k, pid in enumerate(ids):
        rng = np.random.default_rng(seed * 100_003 + k)
        day_starts = (START + pd.to_timedelta(np.arange(first_day, first_day + days), unit="D")).to_numpy()
        when = (day_starts[:, None] + worn[None, :].astype("timedelta64[m]")).ravel().astype("datetime64[us]")
        n = len(when)
        person = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype="int32")), pa.array([pid])).cast(pa.string())
        heart = rng.normal(70, 9, n).round().clip(40, 180).astype("int32")
        steps = (rng.poisson(14, n) * (rng.random(n) < 0.35)).astype("int32")
        yield (pa.record_batch([person, pa.array(when), pa.array(heart)], names=["person_id", "datetime", "heart_rate_value"]),
               pa.record_batch([person, pa.array(when), pa.array(steps)], names=["person_id", "datetime", "steps"]))


def write_days(lake, ids, first_day: int, days: int, seed: int) -> int:
    """Append ``days`` days for every person to both minute tables (one commit per table)."""
    rows = 0
    for index, name, column in ((0, "heart_rate_minute", "heart_rate_value"), (1, "steps_minute", "steps")):
        schema = pa.schema([("person_id", pa.string()), ("datetime", pa.timestamp("us")), (column, pa.int32())])
        batches = (pair[index] for pair in minute_batches(ids, first_day, days, seed))
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        lake.write(name, reader, mode="append", operation="benchmark")
        rows += len(ids) * days * 960
    return rows


def build_lake(root, persons: int, days: int):
    import explorer

    remove_lake(root)
    lake = explorer.open(root)
    ids = person_ids(persons)
    rng = np.random.default_rng(3)
    lake.write("person", pd.DataFrame({"person_id": ids, "year_of_birth": rng.integers(1940, 2000, persons),
                                       "sex_at_birth": rng.choice(["female", "male"], persons), "race": None,
                                       "ethnicity": None, "zip3": rng.choice(["021", "100", "606", "941"], persons)}))
    rows = write_days(lake, ids, 0, days, seed=1)
    return lake, ids, rows


def duckdb_baseline(lake) -> float:
    start = time.perf_counter()
    lake.sql("""SELECT person_id, date, count(*) FILTER (WHERE hr) AS heart_rate_minutes,
                       count(*) FILTER (WHERE NOT hr) AS step_minutes, sum(steps) AS steps
                FROM (SELECT person_id, CAST(datetime AS DATE) AS date, true AS hr, 0 AS steps FROM heart_rate_minute
                      UNION ALL SELECT person_id, CAST(datetime AS DATE), false, steps FROM steps_minute)
                GROUP BY ALL""")
    return time.perf_counter() - start


@benchmark("refresh")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from distributed import Client, LocalCluster

    from explorer.jobs import refresh
    from explorer.jobs.steps import ordered

    persons, days = max(8, int(400 * scale)), 90
    worker_counts = [int(w) for w in os.environ.get(WORKERS_ENV, "1,2").split(",")]
    main_workers = 2 if 2 in worker_counts else max(worker_counts)
    root = DATA / "refresh_lake"
    progress(0, 4, f"writing {persons} persons x {days} days of minute data")
    lake, ids, rows = build_lake(root, persons, days)
    timed_repeats = max(1, min(repeats, 3))
    full_times: dict[int, float] = {}
    incremental: list[float] = []
    for k, workers in enumerate(sorted(set(worker_counts), key=lambda w: w != main_workers)):
        progress(1 + k, 3 + len(worker_counts), f"full refresh on {workers} worker(s)")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            refresh(lake, client=client, full=True)  # warm: tables exist, workers have imported everything
            samples = []
            for _ in range(timed_repeats):
                start = time.perf_counter()
                refresh(lake, client=client, full=True)
                samples.append(time.perf_counter() - start)
            full_times[workers] = statistics.median(samples)
            if workers == main_workers:
                idle = []
                for _ in range(timed_repeats):  # the fixed cost: plan, find nothing changed, record it
                    start = time.perf_counter()
                    refresh(lake, client=client)
                    idle.append(time.perf_counter() - start)
                for extra in range(timed_repeats):  # each round: one new day for every person
                    write_days(lake, ids, days + extra, 1, seed=2 + extra)
                    start = time.perf_counter()
                    report = refresh(lake, client=client)
                    incremental.append(time.perf_counter() - start)
                    assert not report.failed, str(report)
    progress(3 + len(worker_counts), 3 + len(worker_counts), "baseline: one DuckDB query")
    baseline = statistics.median(duckdb_baseline(lake) for _ in range(timed_repeats))
    machine = f"{os.cpu_count()} cores"
    full = full_times[main_workers]
    results = [
        Result("refresh", "DuckDB person-day query", baseline, "s", note=f"{rows:,} minute rows, no Dask, all cores"),
        Result("refresh", f"full refresh, {main_workers} workers", full, "s", "DuckDB person-day query", baseline, None,
               f"{persons} x {days} days, {len(ordered())} steps, {machine}"),
        Result("refresh", "one new day, incremental", statistics.median(incremental), "s",
               f"full refresh, {main_workers} workers", full, 0.10,
               f"median of {len(incremental)} new days; target <= 10% of a full refresh"),
        Result("refresh", "nothing changed", statistics.median(idle), "s", note="fixed cost: versions, plan, job_run records"),
        Result("refresh", "one new day, above fixed cost", statistics.median(incremental) - statistics.median(idle), "s",
               "full refresh, above fixed cost", full - statistics.median(idle), None,
               "the work that grows with the data: recomputed partitions and their commit"),
    ]
    single = full_times.get(1)
    for workers, seconds in sorted(full_times.items()):
        if workers != main_workers or single is None:
            results.append(Result("refresh", f"full refresh, {workers} worker(s)", seconds, "s",
                                  "full refresh, 1 worker(s)" if single else None, single, None,
                                  f"speed-up {single / seconds:.2f}x over 1 worker" if single else ""))
    if single is not None and main_workers != 1:
        results.append(Result("refresh", f"speed-up 1 -> {main_workers} workers", single / full, "x",
                              note=f"{single:.1f} s on 1 worker, {full:.1f} s on {main_workers}"))
    remove_lake(root)
    return results
