"""The benchmark harness runs end to end and reports ratios against a same-run baseline.

This checks the harness on 1/25-size data, through the benchmarks that take seconds at that size
(lake.sql, refresh, cohorts, ERA5, Apple Health: about 1.5 minutes on 2 cores); it does not time
anything. The others (synth, ingest, wearables, exposure, ageing, notebooks, serve) took another 8
minutes of a 37-minute suite, and what they run is tested by their own modules; every benchmark
runs, and the targets are judged, by `python -m benchmarks` itself (the README's performance table)."""

#: the benchmarks the quick run takes: each exercises a different part of the harness (a baseline
#: case, a target ratio, a speed-up across workers, a peak-memory probe)
QUICK = ["lake_sql", "refresh", "cohorts", "era5", "apple_health"]

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_run_writes_results(tmp_path):
    out = tmp_path / "results.json"
    only = [argument for name in QUICK for argument in ("--only", name)]
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", *only, "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    cases = {r["case"]: r for r in document["results"]}
    assert cases["lake.sql (Delta)"]["baseline_case"] == "duckdb read_parquet"
    assert cases["lake.sql (Delta)"]["target_ratio"] == 1.2
    assert cases["lake.sql (Delta)"]["ratio"] > 0
    assert "ratio" in result.stdout and "lake.sql (Delta)" in result.stdout
    incremental = cases["one new day, incremental"]
    assert incremental["baseline_case"].startswith("full refresh") and incremental["target_ratio"] == 0.1
    assert cases["speed-up 1 -> 2 workers"]["value"] > 0
    attrition = cases["cohorts.count, 5 criteria"]
    assert attrition["baseline_case"] == "hand-written DuckDB attrition" and attrition["target_ratio"] == 1.5
    assert {r["benchmark"] for r in document["results"]} == set(QUICK)
    era5 = cases["hourly -> daily, vectorised"]
    assert era5["baseline_case"] == "per-day xarray loop" and era5["target_ratio"] == 0.1 and era5["ratio"] > 0
    apple = [r for name, r in cases.items() if name.startswith("explorer ingest peak")]
    assert apple and apple[0]["value"] > 0  # the streamed Apple Health export ran and measured its peak


def test_scale_projection_arithmetic():
    """The scale benchmark's projection: Amdahl's parallel fraction from a 1 -> 2 speed-up, and
    the phases' seconds scaled to more rows and cores (known answers)."""
    from benchmarks.bench_ingest import read_phases
    from benchmarks.bench_scale import amdahl, project

    assert amdahl(2.0) == 1.0 and amdahl(1.0) == 0.0
    assert amdahl(1.5) == pytest.approx(2 / 3)  # 1 / ((1 - p) + p / 2) = 1.5
    assert amdahl(0.9) == 0.0  # slower on 2: nothing parallel, not a negative fraction
    # serial: the rows only; parallel with p = 1: the one-core time (10 s x 2) spread over 16 cores
    assert project(10.0, 1.0, 20.0, 16, parallel=False) == 200.0
    assert project(10.0, 2.0, 20.0, 16, parallel=True) == pytest.approx(10 * 2 * 20 / 16)
    # p = 2/3 from S = 1.5: T1 = 15 s; T(64) = 15 x 20 x (1/3 + 2/3 / 64)
    assert project(10.0, 1.5, 20.0, 64, parallel=True) == pytest.approx(15 * 20 * (1 / 3 + (2 / 3) / 64))
    out = "ingest x: 3 files\ntime: keep 12.5 s, read 80.0 s, commit 20.1 s, quality 19.0 s (131.6 s)\n"
    assert read_phases(out) == {"keep": 12.5, "read": 80.0, "commit": 20.1, "quality": 19.0}
