"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME] [--json PATH]``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.harness import REGISTRY
from explorer.progress import Progress

MODULES = ["benchmarks.bench_lake_sql", "benchmarks.bench_synth", "benchmarks.bench_ingest", "benchmarks.bench_refresh",
           "benchmarks.bench_wearables", "benchmarks.bench_exposure", "benchmarks.bench_era5",
           "benchmarks.bench_ageing", "benchmarks.bench_cohorts", "benchmarks.bench_serve", "benchmarks.bench_notebooks",
           "benchmarks.bench_apple_health", "benchmarks.bench_object_store", "benchmarks.bench_scale",
           "benchmarks.bench_analysis", "benchmarks.bench_federation"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1/25 of the full sizes: checks the harness, not the targets")
    parser.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 7, quick 3)")
    parser.add_argument("--json", type=Path, default=None, help="write results here (default benchmarks/results/<time>.json)")
    parser.add_argument("--workers", default=None, metavar="N,N,...",
                        help="Dask worker counts the refresh benchmark compares (default 1,2; on a bigger machine "
                             "e.g. 1,2,4,8,16)")
    args = parser.parse_args(argv)
    if args.workers:
        os.environ["EXPLORER_BENCH_WORKERS"] = args.workers
    for module in MODULES:
        importlib.import_module(module)
    unknown = set(args.only or []) - set(REGISTRY)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(REGISTRY)}")
    scale = 0.04 if args.quick else 1.0
    repeats = args.repeats or (3 if args.quick else 7)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    results = []
    for name, run in REGISTRY.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", file=sys.stderr)
        results += run(scale, repeats, Progress(f"{name} input"))
    print(f"\nmachine: {machine['cpus']} cores, {machine['platform']}, Python {machine['python']}"
          f"{' (quick: sizes scaled by 0.04, targets not meaningful)' if args.quick else ''}")
    header = f"{'benchmark':12} {'case':28} {'value':>11}  {'ratio':>7}  {'target':>7}  ok   note"
    print(header + "\n" + "-" * len(header))
    for r in results:
        ratio = (f"{r.ratio:.2f}x" if r.ratio >= 0.1 else f"{r.ratio:.2g}x") if r.ratio is not None else ""
        target = f"<={r.target_ratio:.2g}x" if r.target_ratio else (f"<={r.limit:g}{r.unit}" if r.limit is not None else "")
        ok = {True: "yes", False: "NO", None: ""}[r.meets_target]
        print(f"{r.benchmark:12} {r.case:28} {r.value:9.3f}{r.unit:2}  {ratio:>7}  {target:>7}  {ok:4} {r.note}")
    out = args.json or Path(__file__).resolve().parent / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "quick": args.quick, "results": [r.to_dict() for r in results]}, indent=1))
    print(f"\nresults: {out}")
    return 0 if all(r.meets_target is not False for r in results) or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
