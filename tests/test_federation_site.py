"""A site's answers without the network: the policy file and its messages, the order of refusals
(nothing read before a request is valid and allowed), the study's pinned cohort and request cap,
the steward's queue (approve and reject, with the coordinator told why), the stricter of two
profiles, the audit entries, and the `explorer federation` / `explorer federate` commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_cli
from explorer.errors import ExplorerError
from explorer.federation import policy as policies
from explorer.federation.analyses import MAX_REQUEST_BYTES, parse_request, RequestError
from explorer.federation.coordinator import study_from_dict
from explorer.federation.pooling import pool_attrition, pool_table_one
from explorer.federation.site import Site
from explorer.privacy import AuditLog

COHORT = {"name": "everyone-with-wearables", "index_date": {"rule": "first_valid_wear_day"}}


def _policy(digest: str, **study) -> policies.SitePolicy:
    return policies.policy_from_dict({"site": "site-x", "profile": "cms", "min_persons_per_parameter": 5,
                                      "coordinators": {"coord-1": {"token_sha256": digest}},
                                      "studies": {"s1": {"coordinators": ["coord-1"], **study}}})


def _body(analysis: dict, study: str = "s1", cohort=COHORT, **extra) -> bytes:
    return json.dumps({"schema": "explorer.federation/1", "study": study, "analysis": analysis, "cohort": cohort,
                       **extra}).encode()


@pytest.fixture
def site(cohort_lake, tmp_path):
    token, digest = policies.new_token()
    return Site(cohort_lake, _policy(digest, review=["table_one"]), tmp_path / "queue"), token


def test_policy_problems_are_each_named():
    with pytest.raises(policies.PolicyError) as caught:
        policies.policy_from_dict({"site": "", "profile": "hipaa", "coordnators": {},
                                   "coordinators": {"c": {"token_sha256": "abc"}},
                                   "studies": {"s": {"coordinators": ["nobody"], "analyses": ["sql"], "reveiw": []}}})
    text = str(caught.value)
    for expected in ("site: the site's name", "profile: 'hipaa'", "coordnators: unknown key (did you mean 'coordinators'",
                     "coordinators.c.token_sha256", "'nobody' is not under coordinators", "analysis 'sql' is not declared",
                     "studies.s.reveiw: unknown key"):
        assert expected in text, text


def test_tokens_are_kept_as_digests_and_compared_exactly():
    token, digest = policies.new_token()
    policy = _policy(digest)
    assert policy.coordinator_for(token) == "coord-1"
    assert policy.coordinator_for(token + "x") is None and policy.coordinator_for(None) is None
    assert token not in yaml.safe_dump({"digest": digest})


def test_requests_are_checked_before_anything_runs():
    cases = {b"[1, 2]": "JSON object", b"{": "not JSON",
             _body({"type": "attrition"}, schema="other/1"): "this site speaks",
             _body({"type": "sql", "query": "SELECT 1"}): "never code or SQL",
             _body({"type": "glm", "family": "poisson", "outcome": "age"}): "gaussian (linear) or binomial",
             _body({"type": "glm", "family": "gaussian", "outcome": "age", "covariates": ["salary"]}): "'salary' is not declared",
             _body({"type": "glm", "family": "gaussian", "outcome": "age", "covariates": ["race"]}): "race is categorical",
             _body({"type": "glm", "family": "gaussian", "outcome": "age", "covariates": [], "beta": [1, 2]}): "1 finite numbers",
             _body({"type": "heat_response", "max_lag": 99}): "from 0 to 21",
             _body({"type": "ageing_rate", "marker": "glucose"}): "a LOINC code",
             _body({"type": "attrition", "extra": 1}): "unknown parameter",
             _body({"type": "attrition"}, cohort={"name": "x", "index_date": {"rule": "whenever"}}): "index_date",
             _body({"type": "attrition"}, study="../etc"): "a name of letters"}
    for body, message in cases.items():
        with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_request(body)
    with pytest.raises(RequestError) as caught:
        parse_request(b" " * (MAX_REQUEST_BYTES + 1))
    assert caught.value.status == 413


def test_the_order_of_refusals_and_what_the_audit_keeps(site, cohort_lake):
    site, token = site
    log = AuditLog(cohort_lake)
    before = len(log.entries())
    assert site.handle(_body({"type": "attrition"}), "wrong")[0] == 401
    assert site.handle(_body({"type": "attrition"}, study="s2"), token)[0] == 403
    assert site.handle(b"{", token)[0] == 400
    status, answer = site.handle(_body({"type": "attrition"}, profile="aou"), token)
    assert status == 200 and answer["profile"] == "aou"  # the study's stricter profile wins over the site's cms
    persons = [r for r in answer["result"]["attrition"] if r["step"] == 0][0]
    assert persons["persons_shown"] == str(len(cohort_lake.sql("SELECT person_id FROM person")))
    entries = log.entries().iloc[before:]
    assert entries["action"].tolist() == ["federation.refuse"] * 3 + ["federation.request", "federation.release"]
    assert set(entries["role"]) == {"coordinator"}
    assert entries["user"].tolist()[-1] == "coordinator:coord-1"


def test_steward_queue_holds_until_approved_and_tells_why_when_rejected(site):
    site, token = site
    request = {"type": "table_one", "by": "sex_at_birth", "continuous": ["age"], "categorical": ["race"]}
    status, held = site.handle(_body(request), token)
    assert status == 202 and held["status"] == "pending"
    assert site.ticket(held["ticket"], token)[0] == 202  # still held
    assert site.ticket(held["ticket"], "wrong")[0] == 401
    site.queue.decide(held["ticket"], approve=True, steward="steward-1")
    status, released = site.ticket(held["ticket"], token)
    assert status == 200 and released["result"]["by"] == "sex_at_birth"
    status, second = site.handle(_body(request), token)
    with pytest.raises(ExplorerError, match="needs --reason"):
        site.queue.decide(second["ticket"], approve=False, steward="steward-1")
    site.queue.decide(second["ticket"], approve=False, steward="steward-1", reason="race levels too fine")
    status, rejected = site.ticket(second["ticket"], token)
    assert status == 403 and "race levels too fine" in rejected["error"]
    with pytest.raises(ExplorerError, match="already rejected"):
        site.queue.decide(second["ticket"], approve=True, steward="steward-1")


def test_a_pinned_cohort_and_the_request_cap(cohort_lake, tmp_path):
    from explorer.cohorts import from_dict

    token, digest = policies.new_token()
    pinned = from_dict(COHORT).sha256
    policy = policies.policy_from_dict({"site": "x", "max_requests_per_study": 2,
                                        "coordinators": {"c": {"token_sha256": digest}},
                                        "studies": {"s1": {"coordinators": ["c"], "cohort_sha256": pinned}}})
    site = Site(cohort_lake, policy, tmp_path / "q")
    other = {**COHORT, "inclusion": [{"kind": "demographics", "age": {"gte": 60}}]}
    status, answer = site.handle(_body({"type": "attrition"}, cohort=other), token)
    assert status == 403 and "criteria differ" in answer["error"]  # a second definition cannot be differenced
    assert site.handle(_body({"type": "attrition"}), token)[0] == 200
    assert site.handle(_body({"type": "attrition"}), token)[0] == 200
    status, answer = site.handle(_body({"type": "attrition"}), token)
    assert status == 403 and "used its 2 requests" in answer["error"]


def test_glm_refuses_a_binary_level_the_profile_would_hide(site):
    site, token = site
    ages = np.sort(site.data.persons(parse_request(_body({"type": "attrition"})))["age"].dropna().to_numpy())
    threshold = float(ages[-4]) - 0.5  # three to a handful of the oldest: a count CMS hides, which X'y would show
    status, answer = site.handle(_body({"type": "glm", "family": "binomial",
                                        "outcome": {"variable": "age", "above": threshold, "name": "oldest"},
                                        "covariates": ["female"]}), token)
    assert status == 403 and "oldest = 1 for a count" in answer["error"]


def test_stricter_profile():
    assert policies.stricter("cms", "aou") == "aou" and policies.stricter("aou", "ukbiobank") == "aou"
    assert policies.stricter("ukbiobank", None) == "ukbiobank"


def test_pooled_counts_stay_hidden_where_a_site_hid_them():
    site_a = [{"step": 0, "label": "persons", "persons": 120.0, "persons_shown": "120", "persons_status": "shown"},
              {"step": 1, "label": "adults", "persons": None, "persons_shown": "<=10", "persons_status": "primary"}]
    site_b = [{"step": 0, "label": "persons", "persons": 80.0, "persons_shown": "80", "persons_status": "shown"},
              {"step": 1, "label": "adults", "persons": 70.0, "persons_shown": "70", "persons_status": "shown"}]
    pooled = pool_attrition({"a": site_a, "b": site_b})
    assert pooled["pooled_shown"].tolist() == ["200", "hidden at a"]
    assert pooled["pooled"].iloc[0] == 200 and np.isnan(pooled["pooled"].iloc[1])
    with pytest.raises(ExplorerError, match="same cohort definition"):
        pool_attrition({"a": site_a, "b": site_b[:1]})


def test_pooled_table_one_means_from_site_summaries():
    rng = np.random.default_rng(3)
    from explorer.privacy.disclosure import DisclosureControl
    from explorer.privacy.table_one import released_table_one

    frames = {s: pd.DataFrame({"sex": rng.choice(["f", "m"], n), "age": rng.normal(50 + 5 * k, 10, n)})
              for k, (s, n) in enumerate((("a", 90), ("b", 130)))}
    released = {}
    for s, frame in frames.items():
        table = released_table_one(frame, "sex", continuous=["age"], control=DisclosureControl(profile="cms"))
        released[s] = {"groups": ["f", "m"], "table": table.astype(object).where(table.notna(), None).to_dict("records")}
    pooled = pool_table_one(released).set_index(["variable", "statistic"])
    union = pd.concat(frames.values())
    for g in ("f", "m"):
        values = union.loc[union.sex == g, "age"]
        assert pooled.loc[("age", "mean (SD)"), f"{g}|n"] == pytest.approx(values.mean(), rel=1e-12)
        assert pooled.loc[("age", "mean (SD)"), g] == f"{values.mean():.2f} ({values.std(ddof=1):.2f})"
        assert pooled.loc[("n", "n"), g] == f"{(union.sex == g).sum():,}"


def test_study_file_problems_are_each_named(tmp_path):
    (tmp_path / "c.crt").write_text("not a certificate")
    with pytest.raises(ExplorerError) as caught:
        study_from_dict({"name": "s", "profile": "nope", "cohort": {"name": "x"}, "analyses": [{"type": "sql"}],
                         "sites": [{"name": "a", "url": "http://a:1", "token_env": "NO_SUCH_TOKEN_VAR"},
                                   {"name": "b", "url": "https://b:1"},
                                   {"name": "c", "url": "https://c:1", "token": "t", "ca": "c.crt"}]}, base=tmp_path)
    text = str(caught.value)
    for expected in ("profile: 'nope'", "cohort: ", "analyses[0]: analysis type 'sql'", "$NO_SUCH_TOKEN_VAR is not set",
                     "https:// only", "sites[1]: a token is required", "c.crt is not a PEM certificate"):
        assert expected in text, text


def test_commands(cohort_lake, tmp_path):
    made = run_cli("federation", "token", "--name", "coord-9")
    assert made.returncode == 0 and "coord-9: {token_sha256:" in made.stdout
    made = run_cli("federation", "cert", "--host", "127.0.0.1", "--out", tmp_path / "certs")
    assert made.returncode == 0 and (tmp_path / "certs" / "site.crt").exists()
    assert oct((tmp_path / "certs" / "site.key").stat().st_mode & 0o777) == "0o600"
    token, digest = policies.new_token()
    site = Site(cohort_lake, _policy(digest, review=["table_one"]), tmp_path / "queue")
    _, held = site.handle(_body({"type": "table_one", "by": "sex_at_birth", "continuous": ["age"]}), token)
    listed = run_cli("--role", "steward", "federation", "queue", "--queue", tmp_path / "queue", lake_root=cohort_lake.root)
    assert held["ticket"] in listed.stdout and "table_one" in listed.stdout
    refused = run_cli("--role", "researcher", "federation", "approve", held["ticket"], "--queue", tmp_path / "queue",
                      lake_root=cohort_lake.root)
    assert refused.returncode == 2 and "steward" in refused.stderr
    approved = run_cli("--role", "steward", "federation", "approve", held["ticket"], "--queue", tmp_path / "queue",
                       lake_root=cohort_lake.root)
    assert approved.returncode == 0 and "approved" in approved.stdout
    assert AuditLog(cohort_lake).entries()["action"].iloc[-1] == "federation.approve"
    serve = run_cli("--role", "steward", "federation", "serve", "--policy", tmp_path / "none.yaml", lake_root=cohort_lake.root)
    assert serve.returncode == 2 and "no such file" in serve.stderr
    bad = tmp_path / "study.yaml"
    bad.write_text("name: s\nsites: []\n")
    run = run_cli("federate", "run", bad)
    assert run.returncode == 2 and "at least one site" in run.stderr
    for command in (["federation", "--help"], ["federate", "--help"]):
        assert "examples:" in run_cli(*command).stdout


def test_private_attrition_charges_the_study_budget(cohort_lake, tmp_path):
    from explorer.cohorts import count
    from explorer.privacy.dp import PrivacyBudget

    token, digest = policies.new_token()
    lake = cohort_lake
    study = f"dp-{tmp_path.name}"[:60].replace("_", "-")  # a budget of its own in the shared lake's ledger
    policy = policies.policy_from_dict({"site": "x", "coordinators": {"c": {"token_sha256": digest}},
                                        "studies": {study: {"coordinators": ["c"], "dp_epsilon": 0.5}}})
    site = Site(lake, policy, tmp_path / "q")
    cohort = {**COHORT, "inclusion": [{"kind": "demographics", "age": {"gte": 50}}]}
    status, answer = site.handle(_body({"type": "attrition"}, study=study, cohort=cohort), token)
    assert status == 403 and "no privacy budget" in answer["error"] and "explorer budget set" in answer["error"]
    PrivacyBudget(lake).set("federation", study, 1.0, user="steward")
    exact = count(lake, cohort)["persons"].to_numpy()
    for _ in range(2):
        status, answer = site.handle(_body({"type": "attrition"}, study=study, cohort=cohort), token)
        assert status == 200 and answer["profile"] == "differential privacy, epsilon 0.5"
        rows = pd.DataFrame(answer["result"]["attrition"])
        assert set(rows["persons_status"]) == {"dp"} and rows["persons_shown"].str.startswith("≈").all()
        persons = rows["persons"].to_numpy()
        assert (np.diff(persons) <= 0).all()  # sums of non-negative noisy counts never rise
        # noise of scale 2 per count: well inside 60 persons of the truth at every step
        assert np.abs(persons - exact).max() < 60 and rows["accuracy"].iloc[0] > 0
    status, answer = site.handle(_body({"type": "attrition"}, study=study, cohort=cohort), token)
    assert status == 403 and "would spend epsilon 0.5" in answer["error"]
    assert PrivacyBudget(lake).remaining("federation", study) == pytest.approx(0.0)
    with pytest.raises(policies.PolicyError, match="dp_epsilon"):
        policies.policy_from_dict({"site": "x", "studies": {"s": {"dp_epsilon": 0}}})


def test_pooled_private_counts_are_marked_approximate():
    noisy = lambda v: {"step": 0, "label": "persons", "persons": v, "persons_shown": f"≈{v:.0f}", "persons_status": "dp"}
    pooled = pool_attrition({"a": [noisy(101.0)], "b": [noisy(57.0)]})
    assert pooled["pooled_shown"].tolist() == ["≈158"]


def test_a_model_that_leaves_out_a_hidden_count_of_the_cohort_is_refused():
    """The cohort's size is released by attrition and a model's n is exact: their difference must
    not be a count the profile hides."""
    from types import SimpleNamespace

    from explorer.federation.analyses import Refused, _refuse_small_complement
    from explorer.privacy.disclosure import PROFILES

    data = SimpleNamespace(members=lambda request: pd.DataFrame({"person_id": range(100)}))
    _refuse_small_complement(data, None, 100, PROFILES["cms"], "glm")  # nobody left out
    _refuse_small_complement(data, None, 89, PROFILES["cms"], "glm")  # 11 left out: CMS shows 11
    with pytest.raises(Refused, match="leave out"):
        _refuse_small_complement(data, None, 93, PROFILES["cms"], "glm")  # 7 left out: CMS hides 1-10
