import os
import subprocess
import sys
import textwrap

import pytest

import explorer


@pytest.fixture
def lake(tmp_path):
    return explorer.open(tmp_path / "lake")


def run_python(code: str, *args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """Run a fresh interpreter on ``code`` (dedented); the real separate process tests need."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def spawn_python(code: str, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run_cli(*args, lake_root=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "explorer.command"]
    if lake_root is not None:
        command += ["--lake", str(lake_root)]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


#: the synthetic cohort the cohort-builder tests share: every modality a definition can read
COHORT_STEPS = ["wearable_daily", "wearable_circadian", "exposure_daily", "marker_ageing", "person_ageing_rate",
                "ageotype", "biological_age"]


@pytest.fixture(scope="session")
def cohort_lake(tmp_path_factory):
    """A refreshed synthetic lake (60 persons, 35 days of wearables, 10 years of labs), built once."""
    from datetime import date

    from explorer.synth import SynthConfig
    from explorer.testing.cohorts import synthetic_lake

    root = tmp_path_factory.mktemp("cohort-lake")
    config = SynthConfig(participants=60, days=35, seed=7, start=date(2024, 6, 3), faults=False, workers=1)
    lake = synthetic_lake(root, config, COHORT_STEPS, workers=2)
    lake.synth_root = root
    return lake


#: the cohort ``explorer synth --plant-analyses`` writes at this size, shared by the analyses'
#: recovery tests and the analyses notebook (200 persons x 75 days: a 30-day baseline, 45 days of
#: follow-up, about 50 incident events)
PLANTED_ANALYSES = dict(participants=200, days=75, seed=3, heat_lag_effects_bpm_per_k=(0.15, 0.05),
                        incident_hazard_ratio_per_1000_steps=0.8)


@pytest.fixture(scope="session")
def planted_analyses(tmp_path_factory):
    """(lake, synth root, truth.json's ``planted``) of the cohort with the analyses' effects planted."""
    import json
    from datetime import date

    from explorer.synth import SynthConfig
    from explorer.testing.cohorts import synthetic_lake

    root = tmp_path_factory.mktemp("planted-analyses")
    config = SynthConfig(**PLANTED_ANALYSES, start=date(2024, 8, 15), faults=False, workers=2)
    lake = synthetic_lake(root, config, ["wearable_daily", "exposure_daily"], workers=2)
    planted = json.loads((root / "cohort" / "truth" / "truth.json").read_text())["planted"]
    return lake, root, planted
