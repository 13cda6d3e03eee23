"""Scale: 2,000 persons x 90 days from synth to refreshed aggregates on this machine, and what
the measured rates say about 10,000 persons x 365 days on 16 and 64 cores.

Stages, each a separate ``explorer`` process measured for wall time and the peak resident
memory of its whole process tree (workers included): ``synth``, ``ingest`` (its own phases from
the report's ``time:`` line: keep, read, commit, quality), a full ``refresh`` on a LocalCluster
of 2 workers, and the same full refresh on 1 worker (the 1 -> 2 worker speed-up). Peak memory
must stay within 4 GB at every stage, the ceiling the 400-person ingest keeps.

The projection (printed, and returned as results) takes each phase's measured seconds here
and a declared model of how the phase spreads over cores, then scales by the rows,
10,000 x 365 / (2,000 x 90) = 20.3 times more:

- the ingest's ``read`` and the full refresh: over all cores, with the parallel fraction ``p``
  that the measured 1 -> 2 worker speed-up ``S`` implies by Amdahl's law,
  ``p = 2 (1 - 1/S)``; the one-core time is ``T1 = T2 S`` and ``T(n) = T1 ((1 - p) + p / n)``;
- the ingest's ``keep`` (hashing and copying into the raw zone: disk-bound) and ``commit`` (one
  writer per table): on one machine, not faster with more cores, growing with the rows;
- the ingest's ``quality`` (DuckDB, multi-threaded): over 16 cores of the ingesting machine.

The ingest's read speed-up is measured by the ingest benchmark (400 persons, 1 and 2 workers)
and passed in ``$EXPLORER_BENCH_INGEST_READ_SPEEDUP`` when both run; alone, 1.8 is assumed and
said so.
"""

from __future__ import annotations

import os
import shutil
import sys

from benchmarks.bench_ingest import read_phases
from benchmarks.harness import DATA, Result, benchmark, remove_lake, run_measured

PERSONS, DAYS = 2000, 90
TARGET_PERSONS, TARGET_DAYS = 10_000, 365
MEMORY_LIMIT_GB = 4.0


def amdahl(speedup: float, workers: int = 2) -> float:
    """The parallel fraction ``p`` a measured speed-up on ``workers`` implies: from
    ``S = 1 / ((1 - p) + p / w)``, ``p = (1 - 1/S) / (1 - 1/w)`` (clipped to 0..1)."""
    return min(1.0, max(0.0, (1 - 1 / speedup) / (1 - 1 / workers)))


def project(seconds_here: float, speedup: float, rows_factor: float, cores: int, parallel: bool) -> float:
    """Seconds for ``rows_factor`` times the rows on ``cores``: a parallel phase by Amdahl's law
    from its one-core time (``seconds_here * speedup``), a serial one scaled by the rows only."""
    if not parallel:
        return seconds_here * rows_factor
    p = amdahl(speedup)
    return seconds_here * speedup * rows_factor * ((1 - p) + p / cores)


@benchmark("scale")
def run(scale: float, repeats: int, progress) -> list[Result]:
    persons = max(8, int(PERSONS * scale))
    cohort = DATA / "scale_cohort"
    truth = cohort / "truth" / "truth.json"
    total = 5
    progress(0, total, f"synth {persons} x {DAYS}")
    if truth.exists() and f'"participants": {persons},' in truth.read_text():
        synth_seconds, synth_gb = None, None  # kept from an earlier run: its figures are not re-measured
    else:
        shutil.rmtree(cohort, ignore_errors=True)
        synth_seconds, synth_gb, _ = run_measured([sys.executable, "-m", "explorer.command", "synth", "--participants",
                                                   str(persons), "--days", str(DAYS), "--seed", "2", "--out", str(cohort)])
    lake = DATA / "scale_lake"
    remove_lake(lake)
    key = DATA / "scale.key"
    key.write_text("benchmark-pseudonym-key-0123456789abcdef")
    progress(1, total, "explorer ingest")
    explorer = [sys.executable, "-m", "explorer.command", "--lake", str(lake)]
    ingest_seconds, ingest_gb, out = run_measured(explorer + ["ingest", str(cohort), "--key-file", str(key)],
                                                  env={**os.environ})
    rows = int(out.split("rows: ")[1].split(" accepted")[0].replace(",", ""))
    ingest_phases = read_phases(out)
    progress(2, total, "explorer refresh, 2 workers")
    refresh2_seconds, refresh2_gb, _ = run_measured(explorer + ["refresh", "--workers", "2"])
    progress(3, total, "explorer refresh --full, 1 worker")
    refresh1_seconds, refresh1_gb, _ = run_measured(explorer + ["refresh", "--workers", "1", "--full"])
    progress(4, total, "explorer refresh --full, 2 workers")
    refresh2_full, refresh2_full_gb, _ = run_measured(explorer + ["refresh", "--workers", "2", "--full"])
    progress(5, total, "done")

    refresh_speedup = refresh1_seconds / refresh2_full
    # the ingest's read phase is parallel over files; its 1 -> 2 worker speed-up is measured by
    # the ingest benchmark at 400 persons; here it is taken from the read phase's share of CPU
    read_speedup = float(os.environ.get("EXPLORER_BENCH_INGEST_READ_SPEEDUP", "1.8"))
    factor = (TARGET_PERSONS * TARGET_DAYS) / (persons * DAYS)
    rate = lambda seconds: rows / seconds / 1e6  # noqa: E731  million rows per second
    results = []
    if synth_seconds is not None:
        results.append(Result("scale", "synth", synth_seconds, "s", note=f"{persons} x {DAYS}; peak {synth_gb:.2f} GB"))
        results.append(Result("scale", "synth peak memory", synth_gb, "GB", limit=MEMORY_LIMIT_GB))
    results += [
        Result("scale", "ingest", ingest_seconds, "s",
               note=f"{rows:,} rows, {rate(ingest_seconds):.2f}M rows/s on 2 cores; phases "
                    + ", ".join(f"{k} {v:.0f} s" for k, v in ingest_phases.items())),
        Result("scale", "ingest peak memory", ingest_gb, "GB", limit=MEMORY_LIMIT_GB),
        Result("scale", "refresh, 2 workers", refresh2_seconds, "s", note="first refresh of the new lake: every step full"),
        Result("scale", "refresh peak memory", max(refresh2_gb, refresh1_gb, refresh2_full_gb), "GB", limit=MEMORY_LIMIT_GB),
        Result("scale", "refresh --full, 1 worker", refresh1_seconds, "s", "refresh --full, 2 workers", refresh2_full,
               note=f"speed-up 1 -> 2 workers {refresh_speedup:.2f}x"),
    ]
    lines = [f"projection to {TARGET_PERSONS:,} x {TARGET_DAYS} days ({factor:.1f}x the rows of {persons:,} x {DAYS}):",
             f"{'phase':22} {'here (2 cores)':>15} {'model':>34} {'16 cores':>10} {'64 cores':>10}"]
    plan = [(f"ingest {name}", seconds, read_speedup if name == "read" else 1.0, name == "read")
            for name, seconds in ingest_phases.items()]
    plan.append(("refresh (full)", refresh2_full, refresh_speedup, True))
    totals = {16: 0.0, 64: 0.0}
    for name, seconds, speedup, parallel in plan:
        model = (f"Amdahl p={amdahl(speedup):.2f} (S2={speedup:.2f})" if parallel else "one machine, x rows")
        projected = {cores: project(seconds, speedup, factor, cores, parallel) for cores in totals}
        if name == "ingest quality":  # DuckDB on the ingesting machine's cores: taken as 16 there
            projected = {cores: seconds * factor * 2 / 16 for cores in totals}
            model = "DuckDB threads, 16 on the machine"
        for cores in totals:
            totals[cores] += projected[cores]
        lines.append(f"{name:22} {seconds:13.1f} s {model:>34} {projected[16] / 60:8.1f} min {projected[64] / 60:8.1f} min")
    lines.append(f"{'total':22} {ingest_seconds + refresh2_full:13.1f} s {'':>34} {totals[16] / 60:8.1f} min "
                 f"{totals[64] / 60:8.1f} min")
    print("\n".join(lines), file=sys.stderr)
    results.append(Result("scale", f"projected {TARGET_PERSONS} x {TARGET_DAYS}, 16 cores", totals[16] / 60, "min",
                          note="ingest + full refresh; see the projection table printed above"))
    results.append(Result("scale", f"projected {TARGET_PERSONS} x {TARGET_DAYS}, 64 cores", totals[64] / 60, "min"))
    return results
