"""Three sites and a coordinator on four hosts (issue 26): each site a synthetic lake of its own seed,
size and disclosure profile, served by `explorer federation serve` over TLS from its own network
namespace; the coordinator runs `explorer federate run` from a fourth.

- The pooled linear and logistic regressions equal the same models fitted on the union of the three
  lakes to 1e-6; the meta-analyses equal the computation by hand from the released estimates; the
  heat effect `explorer synth --plant-analyses` planted is inside the pooled intervals.
- Site B holds Table 1 for its steward, and the study waits until the steward approves it.
- Refusals: a token of site A does not open site B; a study not in a policy; a model on too few
  persons; malformed, oversized and undeclared requests, with nothing run.
- Faults: a site that stalls past the timeout is retried; a site stopped mid-study leaves a result
  that names the two sites that contributed and is marked partial.
- Each site's audit log lists the study, its requests and its releases.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml

import explorer
from explorer.federation.analyses import SiteData, outcome_values, parse_request
from explorer.federation.coordinator import SiteClient, SiteRefused
from explorer.testing import netns
from explorer.testing.federation import EXPLORER, prepare_site, start_site, stop

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: (site, participants, seed, profile): different sizes, seeds and disclosure rules; site C is the
#: planted cohort the analyses' recovery tests share (200 persons, seed 3: conftest.PLANTED_ANALYSES)
SITES = [("site-a", 50, 11, "ukbiobank"), ("site-b", 70, 12, "cms"), ("site-c", 200, 3, "aou")]
STUDY = "heat-steps"
COHORT = {"name": "adults-with-wearables", "index_date": {"rule": "first_valid_wear_day"},
          "inclusion": [{"kind": "demographics", "age": {"gte": 18}}]}
TINY = {"name": "oldest-old", "index_date": {"rule": "first_valid_wear_day"},
        "inclusion": [{"kind": "demographics", "age": {"gte": 78}}]}
COVARIATES = ["steps_k", "age", "female"]
HIGH_RESTING = {"variable": "resting_hr", "above": 60, "name": "resting_hr_over_60"}
ANALYSES = [{"type": "attrition"},
            {"type": "table_one", "by": "sex_at_birth", "continuous": ["age", "steps_k"], "categorical": ["race"]},
            {"type": "glm", "name": "logistic", "family": "binomial", "outcome": HIGH_RESTING, "covariates": COVARIATES},
            {"type": "glm", "name": "linear", "family": "gaussian", "outcome": "resting_hr", "covariates": COVARIATES},
            {"type": "ageing_rate", "marker": "2345-7"},
            {"type": "heat_response", "outcome": "resting_hr", "max_lag": 2}]


@pytest.fixture(scope="module")
def lakes(tmp_path_factory, planted_analyses):
    """Three planted lakes (lags 0-2 of the heat effect: 0.35, 0.15, 0.05 bpm per K)."""
    from explorer.synth import SynthConfig
    from explorer.testing.cohorts import synthetic_lake

    out = {"site-c": planted_analyses[0]}
    for name, n, seed, _ in SITES[:2]:
        root = tmp_path_factory.mktemp(name)
        config = SynthConfig(participants=n, days=60, seed=seed, start=date(2024, 7, 1), faults=False, workers=2,
                             heat_lag_effects_bpm_per_k=(0.15, 0.05), incident_hazard_ratio_per_1000_steps=0.8)
        out[name] = synthetic_lake(root, config, ["wearable_daily", "exposure_daily"], workers=2)
    return out


@pytest.fixture(scope="module")
def hosts():
    why = netns.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the federation network test: {why}")
        pytest.skip(why)
    with netns.Hosts(("site-a", "site-b", "site-c", "coordinator"), net=60 + (os.getpid() + 75) % 150,
                     tag=f"fd{os.getpid() % 100000}") as made:
        yield made


@pytest.fixture(scope="module")
def network(hosts, lakes, tmp_path_factory):
    """The three site services, each in its own namespace; yields (sites, processes, logs)."""
    folder = tmp_path_factory.mktemp("sites")
    sites, processes, logs = {}, {}, {}
    for name, _, _, profile in SITES:
        studies = {STUDY: {"analyses": ["attrition", "table_one", "glm", "ageing_rate", "heat_response"],
                           "review": ["table_one"] if name == "site-b" else []},
                   "small-model": {"analyses": ["glm"]}}
        sites[name] = prepare_site(folder / name, name, lakes[name].root, address=hosts.address(name), profile=profile,
                                   studies=studies)
        logs[name] = open(folder / f"{name}.log", "w")
        processes[name] = start_site(sites[name], prefix=hosts.command(name, []), log=logs[name])
    yield sites, processes, folder
    for process in processes.values():
        stop(process)
    for log in logs.values():
        log.close()


def write_study(folder: Path, sites, name: str = STUDY, cohort=COHORT, analyses=ANALYSES, **options) -> Path:
    document = {"schema": "explorer.federation-study/1", "name": name, "profile": "cms", "timeout": 60, "retries": 1,
                "review_wait": 120, "cohort": cohort, "sites": [s.study_entry() for s in sites], "analyses": analyses,
                **options}
    path = folder / f"{name}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def coordinate(hosts, study: Path, out: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(hosts.command("coordinator", [*EXPLORER, "federate", "run", str(study), "--out", str(out)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EXPLORER_ROLE": "researcher"}, **kwargs)


def approve_when_queued(site, lake_root, stop_after: float = 180) -> threading.Thread:
    """Site B's steward: approve each held result once it appears (from site B's own host)."""
    def steward():
        started = time.monotonic()
        while time.monotonic() - started < stop_after:
            pending = [p for p in site.queue.glob("*.json") if json.loads(p.read_text())["state"] == "pending"]
            for path in pending:
                subprocess.run([*EXPLORER, "--lake", str(lake_root), "--role", "steward", "federation", "approve",
                                path.stem, "--queue", str(site.queue)], check=True, capture_output=True, text=True)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=steward, daemon=True)
    thread.start()
    return thread


def union_fit(lakes, family: str, outcome) -> sm.GLM:
    """The same model on the union of the three lakes' persons, in one process."""
    request = parse_request(json.dumps({"schema": "explorer.federation/1", "study": STUDY, "cohort": COHORT,
                                        "analysis": {"type": "glm", "family": family, "outcome": outcome,
                                                     "covariates": COVARIATES}}))
    frames = []
    for lake in lakes.values():
        data = SiteData(explorer.open(lake.root))
        persons = data.persons(request).copy()
        persons["y"] = outcome_values(data, request, outcome).to_numpy()
        frames.append(persons)
    union = pd.concat(frames).dropna(subset=["y", *COVARIATES])
    X = sm.add_constant(union[COVARIATES].astype(float))
    return sm.GLM(union["y"].astype(float), X, family=sm.families.Binomial() if family == "binomial"
                  else sm.families.Gaussian()).fit(tol=1e-12)


def test_three_sites_pool_to_the_union_and_recover_the_planted_effect(hosts, network, lakes, tmp_path):
    sites, processes, _ = network
    ARTIFACTS.mkdir(exist_ok=True)
    steward = approve_when_queued(sites["site-b"], lakes["site-b"].root)
    coordinator = coordinate(hosts, write_study(tmp_path, sites.values()), tmp_path / "out")
    stdout, stderr = coordinator.communicate(timeout=600)
    steward.join(5)
    assert coordinator.returncode == 0, stdout + stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    shutil.copy(tmp_path / "out" / "result.json", ARTIFACTS / "federation-result.json")  # for a look afterwards
    assert result["complete"] and result["contributors"] == ["site-a", "site-b", "site-c"]
    assert (tmp_path / "out" / "study.html").stat().st_size > 10_000
    for name in ("site-a", "site-b", "site-c"):  # progress per site
        assert f"[{name}] attrition: released" in stderr
    by_name = {a["name"]: a for a in result["analyses"]}

    for name, family, outcome in (("logistic", "binomial", HIGH_RESTING), ("linear", "gaussian", "resting_hr")):
        pooled = pd.DataFrame(by_name[name]["pooled"]["table"]).set_index("term")
        union = union_fit(lakes, family, outcome)
        assert np.abs(pooled["estimate"].to_numpy() - union.params.to_numpy()).max() < 1e-6
        assert np.abs(pooled["se"].to_numpy() - union.bse.to_numpy()).max() < 1e-6
        assert by_name[name]["pooled"]["n"] == int(union.nobs)

    # two-stage meta-analysis by hand from the released per-site estimates
    ageing = by_name["ageing rate of LOINC 2345-7"]
    y = np.array([ageing["sites"][s]["result"]["estimate"][0] for s in result["contributors"]])
    v = np.array([ageing["sites"][s]["result"]["covariance"][0][0] for s in result["contributors"]])
    tau2 = 0.0
    for _ in range(2000):  # Viechtbauer (2005), eq. 10
        w = 1 / (v + tau2)
        mu = (w * y).sum() / w.sum()
        tau2 = max(0.0, (w ** 2 * ((y - mu) ** 2 - v)).sum() / (w ** 2).sum() + 1 / w.sum())
    row = ageing["pooled"]["table"][0]
    assert row["estimate"] == pytest.approx(mu, rel=1e-5, abs=1e-9)
    assert row["tau2"] == pytest.approx(tau2, rel=1e-4, abs=1e-9)

    heat = by_name["heat response of resting_hr, lags 0-2"]
    psi = np.array(heat["pooled"]["psi"])
    Y = [np.array(heat["sites"][s]["result"]["estimate"]) for s in result["contributors"]]
    S = [np.array(heat["sites"][s]["result"]["covariance"]) for s in result["contributors"]]
    W = [np.linalg.inv(s + psi) for s in S]
    beta = np.linalg.solve(sum(W), sum(w @ y for w, y in zip(W, Y)))
    table = pd.DataFrame(heat["pooled"]["table"])
    assert np.abs(table["estimate"].to_numpy() - beta).max() < 1e-9
    for planted, low, high in zip((0.35, 0.15, 0.05), table["lower"], table["upper"]):
        assert low <= planted <= high, table

    attrition = pd.DataFrame(by_name["attrition"]["pooled"])
    persons = sum(len(SiteData(explorer.open(lake.root)).members(parse_request(json.dumps(
        {"schema": "explorer.federation/1", "study": "x", "cohort": COHORT, "analysis": {"type": "attrition"}}))))
        for lake in lakes.values())
    assert attrition["pooled"].iloc[-1] == persons

    table_one = by_name["Table 1 by sex_at_birth"]
    assert table_one["sites"]["site-b"]["status"] == "contributed"  # after its steward approved it

    for name, lake in lakes.items():
        entries = _audit(lake)
        actions = entries[entries["dataset"] == f"study:{STUDY}"]["action"].value_counts()
        assert actions.get("federation.request", 0) >= len(ANALYSES) and actions.get("federation.release", 0) >= len(ANALYSES)
        if name == "site-b":
            assert actions.get("federation.queue", 0) == 1
            assert (entries["action"] == "federation.approve").any()


def _audit(lake) -> pd.DataFrame:
    from explorer.privacy import AuditLog

    return AuditLog(explorer.open(lake.root)).entries()


def test_refusals_run_nothing(hosts, network, lakes):
    sites, _, _ = network
    a, b = sites["site-a"], sites["site-b"]
    before = len(_audit(lakes["site-b"]))
    request = {"schema": "explorer.federation/1", "study": STUDY, "cohort": COHORT, "analysis": {"type": "attrition"}}

    wrong_token = SiteClient("site-b", b.url, a.token, str(b.certificate), timeout=20, retries=0)
    with pytest.raises(SiteRefused, match="token does not open"):
        wrong_token.run(request)
    client = SiteClient("site-b", b.url, b.token, str(b.certificate), timeout=20, retries=0)
    with pytest.raises(SiteRefused, match="not in site-b's policy"):
        client.run({**request, "study": "other-study"})
    with pytest.raises(SiteRefused, match="too few persons"):
        client.run({**request, "study": "small-model", "cohort": TINY,
                    "analysis": {"type": "glm", "family": "gaussian", "outcome": "resting_hr", "covariates": COVARIATES}})
    with pytest.raises(SiteRefused, match="never code or SQL"):
        client.run({**request, "analysis": {"type": "sql", "query": "SELECT * FROM person"}})
    assert client._call("POST", "/v1/analyses", b"{not json")[0] == 400
    status, body = client._call("POST", "/v1/analyses", b"x" * (300 * 1024))
    assert status == 413 and "nothing was run" in body["error"]

    # each refusal audited; only the small model got as far as counting its persons; nothing released
    actions = _audit(lakes["site-b"]).iloc[before:]["action"].value_counts().to_dict()
    assert actions == {"federation.refuse": 6, "federation.request": 1}


def test_a_stalled_site_is_retried(hosts, network, lakes):
    sites, processes, _ = network
    c = sites["site-c"]
    client = SiteClient("site-c", c.url, c.token, str(c.certificate), timeout=2, retries=2)
    request = {"schema": "explorer.federation/1", "study": STUDY, "cohort": COHORT, "analysis": {"type": "attrition"}}
    client.run(request)  # warm: the cohort is read once
    os.kill(processes["site-c"].pid, signal.SIGSTOP)  # the site stalls: connections wait, nothing answers
    threading.Timer(3.0, os.kill, (processes["site-c"].pid, signal.SIGCONT)).start()
    started = time.monotonic()
    answer = client.run(request)
    assert answer["status"] == "released" and time.monotonic() - started > 2.0  # the first attempt timed out


def test_a_site_stopped_mid_study_leaves_a_partial_result_that_says_so(hosts, network, lakes, tmp_path):
    sites, processes, _ = network
    study = write_study(tmp_path, sites.values(), timeout=5, retries=1,
                        analyses=[ANALYSES[0], ANALYSES[3], ANALYSES[5]])
    coordinator = coordinate(hosts, study, tmp_path / "out")
    seen = []
    for line in coordinator.stderr:
        seen.append(line)
        if line.startswith("[site-c] attrition: released"):
            processes["site-c"].kill()
            break
    stdout, stderr = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 3, stdout + stderr  # partial
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    by_type = {a["type"]: a for a in result["analyses"]}
    assert by_type["attrition"]["complete"] and not result["complete"]
    for kind in ("glm", "heat_response"):
        assert by_type[kind]["contributors"] == ["site-a", "site-b"] and not by_type[kind]["complete"]
        assert by_type[kind]["sites"]["site-c"]["status"] == "unreachable"
    assert "PARTIAL" in stdout and "site-c" in stdout
    # the two-site fit is the fit of those two sites
    pooled = pd.DataFrame(by_type["glm"]["pooled"]["table"]).set_index("term")
    two = union_fit({k: v for k, v in lakes.items() if k != "site-c"}, "gaussian", "resting_hr")
    assert np.abs(pooled["estimate"].to_numpy() - two.params.to_numpy()).max() < 1e-6
