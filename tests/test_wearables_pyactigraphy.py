"""The circadian metrics agree with pyActigraphy 1.2.2 to 1e-9 on the same minute series.

pyActigraphy runs in its own interpreter (it needs pandas < 2.2): ``.ci/pyactigraphy-env``
builds it and prints its python, given to the suite as ``EXPLORER_PYACTIGRAPHY_PYTHON``. CI
always sets it; elsewhere the test is skipped with the command that enables it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer import wearables

REFERENCE_PYTHON = os.environ.get("EXPLORER_PYACTIGRAPHY_PYTHON")
pytestmark = pytest.mark.skipif(
    not REFERENCE_PYTHON and not os.environ.get("CI"),
    reason="pyActigraphy reference not set up: EXPLORER_PYACTIGRAPHY_PYTHON=$(.ci/pyactigraphy-env) pytest ...")


def activity(days: int, seed: int, start: str, gaps: bool, inactive: bool = False) -> pd.Series:
    """Steps per minute with a daily rhythm, bursts of walking, and (optionally) non-wear gaps."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=days * 1440 + int(rng.integers(0, 600)), freq="1min")
    hour = index.hour + index.minute / 60
    awake = (hour > 6.5 + rng.normal(0, 0.5)) & (hour < 22.5)
    rate = np.where(awake, 6 + 30 * np.exp(-0.5 * ((hour - 13) / 3.5) ** 2), 0.2)
    values = rng.poisson(rate * rng.gamma(0.6, 1.6, len(index))).astype(float)
    if inactive:  # a sedentary month: never more than 4 steps a minute
        values = np.minimum(values, 3)
    if gaps:
        for start_at in rng.integers(0, len(index) - 200, 6):
            values[start_at:start_at + int(rng.integers(20, 180))] = np.nan
    return pd.Series(values, index=index)


CASES = [
    dict(days=14, seed=1, start="2024-03-04 00:00", gaps=False, binarize=True, threshold=4, freq="1h"),
    dict(days=10, seed=2, start="2024-03-04 07:13", gaps=True, binarize=True, threshold=4, freq="1h"),
    dict(days=21, seed=3, start="2024-06-01 13:47", gaps=True, binarize=False, threshold=0, freq="1h"),
    dict(days=7, seed=4, start="2024-01-01 23:59", gaps=False, binarize=True, threshold=10, freq="30min"),
    dict(days=9, seed=5, start="2024-11-02 05:00", gaps=True, binarize=False, threshold=4, freq="2h"),
    dict(days=8, seed=6, start="2024-02-01 00:00", gaps=False, binarize=True, threshold=4, freq="1h", inactive=True),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not REFERENCE_PYTHON:
        pytest.fail("CI must set EXPLORER_PYACTIGRAPHY_PYTHON (see .ci/run)")
    folder = tmp_path_factory.mktemp("pyactigraphy")
    series = [activity(c["days"], c["seed"], c["start"], c["gaps"], c.get("inactive", False)) for c in CASES]
    options = [{**c, "start": str(s.index[0])} for c, s in zip(CASES, series)]
    np.savez(folder / "cases.npz", options=json.dumps(options), **{f"values_{i}": s.to_numpy() for i, s in enumerate(series)})
    script = Path(__file__).parent / "reference" / "pyactigraphy_metrics.py"
    done = subprocess.run([REFERENCE_PYTHON, str(script), str(folder / "cases.npz"), str(folder / "out.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return series, json.loads((folder / "out.json").read_text())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_metrics_agree_with_pyactigraphy(reference, case):
    series, results = reference
    data, expected, option = series[case], results[case], CASES[case]
    assert expected["version"] == "1.2.2"
    kwargs = dict(binarize=option["binarize"], threshold=option["threshold"])
    assert wearables.interdaily_stability(data, freq=option["freq"], **kwargs) == pytest.approx(expected["IS"], abs=1e-9, rel=0, nan_ok=True)
    assert wearables.intradaily_variability(data, freq=option["freq"], **kwargs) == pytest.approx(expected["IV"], abs=1e-9, rel=0, nan_ok=True)
    assert wearables.relative_amplitude(data, **kwargs) == pytest.approx(expected["RA"], abs=1e-9, rel=0, nan_ok=True)
    low, high = wearables.l5(data, **kwargs), wearables.m10(data, **kwargs)
    assert low.value == pytest.approx(expected["L5"], abs=1e-9, rel=0, nan_ok=True)
    assert high.value == pytest.approx(expected["M10"], abs=1e-9, rel=0, nan_ok=True)
    assert low.onset == pd.Timedelta(seconds=expected["L5_onset_s"])
    assert high.onset == pd.Timedelta(seconds=expected["M10_onset_s"])
