"""The benchmark harness runs end to end and reports ratios against a same-run baseline.

This checks the harness on 1/25-size data; it does not time anything (targets are judged by
`python -m benchmarks` itself, see the README's performance table)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_run_writes_results(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
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
    quick_start = cases["01-quick-start"]
    assert quick_start["baseline_case"] == "kernel start + import explorer" and quick_start["ratio"] > 1
    era5 = cases["hourly -> daily, vectorised"]
    assert era5["baseline_case"] == "per-day xarray loop" and era5["target_ratio"] == 0.1 and era5["ratio"] > 0
    apple = [r for name, r in cases.items() if name.startswith("explorer ingest peak")]
    assert apple and apple[0]["value"] > 0  # the streamed Apple Health export ran and measured its peak
