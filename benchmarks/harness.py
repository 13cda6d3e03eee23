"""Shared pieces: results, timing, the registry of benchmarks."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value

    @property
    def meets_target(self) -> bool | None:
        if self.target_ratio is None or self.ratio is None:
            return None
        return self.ratio <= self.target_ratio

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


def median(values: list[float]) -> float:
    return statistics.median(values)
