"""Federated studies (issue 26): a pooled logistic regression across three sites of 100,000 persons
each, every site a real `explorer federation serve` process on loopback (TLS, tokens, audit), the
coordinator iterating Newton steps on their summed score and information.

Target: at most 10 s for the whole study, from the coordinator's first request (each site reads its
cohort and persons then) to the pooled fit. Baseline, measured in the same run: the same model on
the union, in one process (reading the three lakes' person rows, then statsmodels' GLM), with the
coefficients checked to agree first.

The site lakes hold only what the model reads (``person`` and three days of ``wearable_daily`` per
person), written directly: ``explorer synth`` at 300,000 persons would take an hour on 2 cores and
exercise nothing the study does.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import Result, benchmark

COHORT = {"name": "everyone", "index_date": {"rule": "first_valid_wear_day"}}
OUTCOME = {"variable": "resting_hr", "above": 65, "name": "resting_hr_over_65"}
COVARIATES = ["steps_k", "age", "female"]


def site_lake(root: Path, persons: int, seed: int):
    """``person`` and ``wearable_daily`` of ``persons`` persons (three valid days each)."""
    import explorer

    rng = np.random.default_rng(seed)
    ids = [f"s{seed}-{k:07d}" for k in range(persons)]
    sex = rng.choice(["female", "male"], persons)
    born = rng.integers(1940, 2000, persons).astype("int32")
    lake = explorer.open(root)
    lake.write("person", pd.DataFrame({"person_id": ids, "year_of_birth": born, "sex_at_birth": sex,
                                       "race": rng.choice(["White", "Black or African American", "Asian", "Other"], persons),
                                       "ethnicity": "Not Hispanic or Latino", "zip3": "021", "source_file": "bench"}),
               mode="overwrite")
    steps = rng.gamma(6, 1500, persons)
    resting = 72 - 0.0009 * steps + 0.05 * (2024 - born - 50) + 1.5 * (sex == "female") + rng.normal(0, 5, persons)
    days = 3
    lake.write("wearable_daily", pd.DataFrame({
        "person_id": np.repeat(ids, days), "date": np.tile(pd.date_range("2024-06-01", periods=days).date, persons),
        "steps": np.repeat(steps, days).round().astype("int64"), "wear_minutes": np.int32(1300), "valid_day": True,
        "mean_hr": np.repeat(resting + 10, days), "resting_hr": np.repeat(resting, days),
        "sleep_minutes": 420.0, "sleep_efficiency": 0.9, "sleep_hr": np.repeat(resting - 3, days),
        "person_bucket": np.int32(0)}), mode="overwrite")
    return lake


def union_fit(lakes):
    import statsmodels.api as sm

    from explorer.federation.analyses import SiteData, outcome_values, parse_request

    request = parse_request(json.dumps({"schema": "explorer.federation/1", "study": "bench", "cohort": COHORT,
                                        "analysis": {"type": "glm", "family": "binomial", "outcome": OUTCOME,
                                                     "covariates": COVARIATES}}))
    frames = []
    for lake in lakes:
        data = SiteData(lake)
        persons = data.persons(request).copy()
        persons["y"] = outcome_values(data, request, OUTCOME).to_numpy()
        frames.append(persons)
    union = pd.concat(frames).dropna(subset=["y", *COVARIATES])
    return sm.GLM(union["y"], sm.add_constant(union[COVARIATES].astype(float)), family=sm.families.Binomial()).fit(tol=1e-12)


@benchmark("federation")
def run(scale: float, repeats: int, progress) -> list[Result]:
    from explorer.federation.coordinator import run_study, study_from_dict
    from explorer.testing.federation import prepare_site, start_site, stop

    persons = max(2000, int(100_000 * scale))
    folder = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    lakes, sites, processes = [], [], []
    for k in range(3):
        progress(k, 5, f"site {k + 1}: {persons:,} persons")
        lakes.append(site_lake(folder / f"lake-{k}", persons, seed=20 + k))
        sites.append(prepare_site(folder / f"site-{k}", f"site-{k + 1}", lakes[-1].root, address="127.0.0.1",
                                  port=18443 + k, studies={"bench": {"analyses": ["glm"]}}))
    try:
        for site in sites:
            processes.append(start_site(site))
        study = study_from_dict({"name": "bench", "cohort": COHORT, "timeout": 120, "retries": 0,
                                 "sites": [s.study_entry() for s in sites],
                                 "analyses": [{"type": "glm", "family": "binomial", "outcome": OUTCOME,
                                               "covariates": COVARIATES}]})
        progress(3, 5, "the study across three sites")
        start = time.perf_counter()
        result = run_study(study, progress=lambda *a: None)
        federated = time.perf_counter() - start
        pooled = result["analyses"][0]["pooled"]
        start = time.perf_counter()
        result_warm = run_study(study, progress=lambda *a: None)
        warm = time.perf_counter() - start
        progress(4, 5, "the union in one process")
        start = time.perf_counter()
        union = union_fit(lakes)
        baseline = time.perf_counter() - start
    finally:
        for process in processes:
            stop(process)
    agree = float(np.max(np.abs(np.array([r["estimate"] for r in pooled["table"]]) - union.params.to_numpy())))
    if agree > 1e-6:
        raise AssertionError(f"pooled and union fits differ by {agree:.2e}")
    progress(5, 5, "done")
    return [Result("federation", f"logistic 3x{persons:,} persons", federated, "s", "union in one process", baseline,
                   limit=10.0, note=f"{pooled['iterations']} Newton steps over TLS, {pooled['n']:,} persons, same "
                                    f"coefficients as the union to {agree:.1e}; again with the sites' person rows "
                                    f"cached: {warm:.2f} s ({result_warm['analyses'][0]['pooled']['iterations']} steps)")]
