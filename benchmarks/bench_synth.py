"""`explorer synth` at 400 participants x 90 days: wall time, rows per second, peak memory.

Targets (issue): at most 2 minutes on 2 cores and at most 4 GB peak (process tree). Baseline,
same run: the bare floor of the job, writing the same number of minute rows (random values)
to CSV with pyarrow, with nothing simulated.
"""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.harness import DATA, Result, benchmark, run_measured


def write_floor(rows: int, directory) -> float:
    """Seconds to write ``rows`` CSV rows shaped like the minute tables (person, local minute,
    value): the formatting and I/O any generator of these files must at least do. The table is
    built before the clock starts; only writing is timed."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    chunk = 1_000_000
    rng = np.random.default_rng(0)
    table = pa.table({"person_id": pa.array(np.full(chunk, "1000001")),
                      "datetime": pa.array(np.datetime64("2024-08-15T00:00", "s") + np.arange(chunk) * 60),
                      "value": pa.array(rng.integers(40, 180, chunk))})
    start = time.perf_counter()
    for part, first in enumerate(range(0, rows, chunk)):
        pacsv.write_csv(table.slice(0, min(chunk, rows - first)), directory / f"part-{part}.csv")
    return time.perf_counter() - start


@benchmark("synth")
def run(scale: float, repeats: int, progress) -> list[Result]:
    participants = max(4, int(400 * scale))
    out = DATA / "synth_cohort"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "explorer.command", "synth", "--participants", str(participants), "--days", "90",
               "--seed", "1", "--out", str(out), "--workers", "2"]
    progress(0, 2, f"explorer synth --participants {participants} --days 90")
    seconds, peak_gb, stdout = run_measured(command)
    import pandas as pd

    worn = pd.read_parquet(out / "truth" / "truth_daily.parquet")["worn_minutes"].sum()
    summary_rows = int(stdout.split("files, ")[1].split(" heart-rate")[0].replace(",", ""))
    rows = 2 * summary_rows  # heart-rate rows + step rows
    progress(1, 2, "baseline: bare CSV writing of the same rows")
    floor = write_floor(rows, DATA / "synth_floor")
    shutil.rmtree(DATA / "synth_floor", ignore_errors=True)
    progress(2, 2, "done")
    note = f"{participants} x 90 days, {rows:,} minute rows ({worn:,} worn minutes), {rows / seconds / 1e6:.2f}M rows/s"
    return [
        Result("synth", "bare CSV write (floor)", floor, "s", note="pyarrow write_csv of the same row count"),
        Result("synth", "explorer synth wall time", seconds, "s", "bare CSV write (floor)", floor, None, note,
               limit=120.0 if scale == 1.0 else None),
        Result("synth", "explorer synth peak memory", peak_gb, "GB", note="resident, process tree, sampled every 0.1 s",
               limit=4.0),
    ]
