"""`explorer ingest` of the synthetic 400 x 90 cohort (about 92M minute rows plus clinical files).

Targets (issue 24): at most 54 s on 2 cores (3x faster than the 161 s of issue 12) and at most
6x the baseline, at most 4 GB peak (process tree). Baseline, same run: a plain pandas
read-and-concatenate of the same minute CSVs (no checks, no pseudonyms, no lake), the least a
user's own script would do. The ingest runs again on 1 worker: the read phase's speed-up from 1
to 2 workers, which the scale benchmark's projection uses.
"""

from __future__ import annotations

import os
import re
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
    runs = {}
    for k, workers in enumerate((2, 1)):
        progress(1 + k, 4, f"explorer ingest, {workers} worker(s)")
        remove_lake(lake)
        runs[workers] = run_measured([sys.executable, "-m", "explorer.command", "--lake", str(lake), "ingest",
                                     str(cohort), "--key-file", str(key), "--workers", str(workers)], env={**os.environ})
    seconds, peak_gb, stdout = runs[2]
    accepted = int(stdout.split("rows: ")[1].split(" accepted")[0].replace(",", ""))
    phases = {workers: read_phases(out) for workers, (_, _, out) in runs.items()}
    read_speedup = phases[1]["read"] / phases[2]["read"]
    os.environ["EXPLORER_BENCH_INGEST_READ_SPEEDUP"] = f"{read_speedup:.3f}"  # for the scale benchmark's projection
    progress(3, 4, "baseline: pandas read_csv + concat of the minute CSVs")
    floor, floor_rows = pandas_floor(cohort)
    progress(4, 4, "done")
    note = (f"{participants} x 90 days: {accepted:,} rows accepted ({accepted / seconds / 1e6:.2f}M rows/s); "
            + ", ".join(f"{phase} {t:.1f} s" for phase, t in phases[2].items()))
    return [
        Result("ingest", "pandas read_csv + concat", floor, "s", note=f"{floor_rows:,} minute rows, nothing else"),
        Result("ingest", "explorer ingest wall time", seconds, "s", "pandas read_csv + concat", floor, 6.0, note,
               limit=54.0 if scale == 1.0 else None),
        Result("ingest", "explorer ingest peak memory", peak_gb, "GB", note="resident, process tree, sampled every 0.1 s",
               limit=4.0),
        Result("ingest", "ingest on 1 worker", runs[1][0], "s", "explorer ingest wall time", seconds,
               note=f"read phase {phases[1]['read']:.1f} s on 1 worker, {phases[2]['read']:.1f} s on 2: "
                    f"{read_speedup:.2f}x"),
    ]


def read_phases(stdout: str) -> dict[str, float]:
    """The report's ``time: keep 1.0 s, read 2.0 s, ...`` line as phase -> seconds."""
    line = next((line for line in stdout.splitlines() if line.startswith("time: ")), "")
    return {name: float(t) for name, t in re.findall(r"(\w+) ([\d.]+) s", line.split(" (")[0])}
