"""Shared pieces: results, timing, the registry of benchmarks."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / ".data"
REGISTRY: dict[str, callable] = {}


def benchmark(name: str):
    """Register ``run(scale, repeats, progress) -> list[Result]`` under ``name``."""
    def register(function):
        REGISTRY[name] = function
        return function
    return register


@dataclass
class Result:
    benchmark: str
    case: str
    value: float
    unit: str
    baseline_case: str | None = None
    baseline_value: float | None = None
    target_ratio: float | None = None  # value / baseline must be <= this
    note: str = ""
    limit: float | None = None  # value itself must be <= this (absolute targets: seconds, GB)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value

    @property
    def meets_target(self) -> bool | None:
        checks = []
        if self.target_ratio is not None and self.ratio is not None:
            checks.append(self.ratio <= self.target_ratio)
        if self.limit is not None:
            checks.append(self.value <= self.limit)
        return all(checks) if checks else None

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "meets_target": self.meets_target}


def interleaved_medians(functions: dict[str, callable], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, alternating between them so drift hits all alike."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def run_measured(command: list[str], cwd=None, interval: float = 0.1, env=None) -> tuple[float, float, str]:
    """Run ``command``; return (wall seconds, peak resident GB of it and all its children, stdout).

    Peak memory is sampled over the whole process tree, so worker processes count too.
    """
    import subprocess

    import psutil

    import tempfile

    start = time.perf_counter()
    errors = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(interval)
    out, err = process.communicate()
    if process.returncode != 0:
        errors.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed with status {process.returncode}:\n{out[-2000:]}"
                           f"{errors.read()[-2000:]}")
    return time.perf_counter() - start, peak / 2**30, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def remove_lake(root) -> None:
    """Delete a benchmark's lake and the audit head kept beside it (``<lake>.audit-head.json``):
    a lake made again at the same path with the old head would be refused as a deleted log."""
    import shutil

    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    root.with_name(root.name + ".audit-head.json").unlink(missing_ok=True)


def minute_tables(persons: int, rows: int, seed: int, chunk_rows: int):
    """``rows`` minute rows (person_id, datetime, steps) of ``persons`` people from 2024-03-01, as
    Arrow tables of about ``chunk_rows`` rows, whole people each, sorted by person: yields
    (people so far, table)."""
    import pyarrow as pa

    from explorer.testing import person_ids

    minutes = rows // persons
    ids = np.asarray(person_ids(persons, seed=seed), dtype=object)
    start = np.datetime64("2024-03-01T00:00", "us")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_rows // minutes)
    for first in range(0, persons, per_chunk):
        chunk = ids[first:first + per_chunk]
        offsets = np.tile(np.arange(minutes, dtype="int64") * 60_000_000, len(chunk))
        yield min(first + per_chunk, persons), pa.table({
            "person_id": pa.array(np.repeat(chunk, minutes), pa.string()),
            "datetime": pa.array(start + offsets.astype("timedelta64[us]")),
            "steps": pa.array(rng.poisson(6, len(offsets)).astype("int32")),
        })

