"""`explorer ingest` of the synthetic 400 x 90 cohort (about 92M minute rows plus clinical files).

Targets (issue): at most 3 minutes on 2 cores, at most 4 GB peak (process tree). Baseline, same
run: a plain pandas read-and-concatenate of the same minute CSVs (no checks, no pseudonyms, no
lake), the least a user's own script would do.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import pandas as pd

from benchmarks.harness import DATA, Result, benchmark, remove_lake, run_measured


def pandas_floor(cohort) -> tuple[float, int]:
    start = time.perf_counter()
    rows = 0
    for table in ("heart_rate_minute_level", "steps_intraday"):
        frames = [pd.read_csv(p) for p in sorted((cohort / "fitbit_aou" / table).glob("part-*.csv"))]
        rows += len(pd.concat(frames, ignore_index=True))
        del frames
    return time.perf_counter() - start, rows


@benchmark("ingest")
def run(scale: float, repeats: int, progress) -> list[Result]:
    participants = max(4, int(400 * scale))
    cohort = DATA / "synth_cohort"
    if not (cohort / "truth" / "truth.json").exists() or f'"participants": {participants},' not in (cohort / "truth" / "truth.json").read_text():
        progress(0, 3, "generating the cohort")
        shutil.rmtree(cohort, ignore_errors=True)
        run_measured([sys.executable, "-m", "explorer.command", "synth", "--participants", str(participants), "--days", "90",
                      "--seed", "1", "--out", str(cohort)])
    lake = DATA / "ingest_lake"
    remove_lake(lake)
    key = DATA / "ingest.key"
    key.write_text("benchmark-pseudonym-key-0123456789abcdef")
    progress(1, 3, "explorer ingest")
    seconds, peak_gb, stdout = run_measured([sys.executable, "-m", "explorer.command", "--lake", str(lake), "ingest",
                                             str(cohort), "--key-file", str(key)],
                                            env={**os.environ})
    accepted = int(stdout.split("rows: ")[1].split(" accepted")[0].replace(",", ""))
    progress(2, 3, "baseline: pandas read_csv + concat of the minute CSVs")
    floor, floor_rows = pandas_floor(cohort)
    progress(3, 3, "done")
    note = f"{participants} x 90 days: {accepted:,} rows accepted ({accepted / seconds / 1e6:.2f}M rows/s)"
    return [
        Result("ingest", "pandas read_csv + concat", floor, "s", note=f"{floor_rows:,} minute rows, nothing else"),
        Result("ingest", "explorer ingest wall time", seconds, "s", "pandas read_csv + concat", floor, None, note,
               limit=180.0 if scale == 1.0 else None),
        Result("ingest", "explorer ingest peak memory", peak_gb, "GB", note="resident, process tree, sampled every 0.1 s",
               limit=4.0),
    ]
