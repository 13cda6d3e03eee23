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
