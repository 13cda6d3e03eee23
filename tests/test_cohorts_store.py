"""Saved cohorts: materialised with the versions they were computed from, re-read exactly at a
version, refreshed by `explorer refresh` when their inputs change; characterisation; the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

import explorer
from explorer import cohorts
from explorer.errors import ExplorerError
from explorer.testing.cohorts import TEST_KEY, pseudonym_key, truth

T2D = """
name: t2d
author: tests
description: first type 2 diabetes diagnosis, adults
index_date: {rule: first_condition, codes: [E11]}
inclusion:
  - {kind: demographics, age: {gte: 18}}
"""
WEARERS = """
name: wearers
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: wearable, min_valid_days: 20}
"""


@pytest.fixture
def own_lake(cohort_lake, tmp_path):
    """A copy of the shared cohort lake that a test may change."""
    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    return explorer.open(tmp_path / "lake")


def test_saving_materialises_with_lineage_and_a_version_reads_the_same_people(own_lake):
    lake = own_lake
    first = cohorts.save(lake, cohorts.loads(T2D))
    members = cohorts.members_of(lake, "t2d")
    assert set(members["person_id"]) == set(cohorts.members(lake, cohorts.loads(T2D))["person_id"]) != set()
    inputs = lake.versions("cohort_member")["inputs"].iloc[-1]
    assert f"person@{lake.version('person')}" in inputs and f"condition_occurrence@{lake.version('condition_occurrence')}" in inputs
    assert "cohort_definition@0" in inputs
    upstream = {ref.split("@")[0] for ref in lake.lineage("cohort_member", first).upstream if "@" in ref}
    assert {"person", "condition_occurrence", "cohort_definition"} <= upstream
    assert cohorts.get(lake, "t2d") == cohorts.loads(T2D)

    # a second cohort, then a change to the data: the first version still reads as it was
    cohorts.save(lake, cohorts.loads(WEARERS))
    assert set(cohorts.saved(lake)["cohort"]) == {"t2d", "wearers"}
    oldest = lake.sql("SELECT * FROM person ORDER BY year_of_birth LIMIT 1")
    lake.write("person", oldest.assign(year_of_birth=2020), mode="upsert")  # now a child: leaves the adult cohort
    latest = cohorts.materialise_all(lake)
    again = cohorts.members_of(lake, "t2d", version=first)
    pd.testing.assert_frame_equal(again, members)
    now = cohorts.members_of(lake, "t2d", version=latest)
    assert set(now["person_id"]) == set(members["person_id"]) - set(oldest["person_id"])
    assert now.attrs["version"] == latest and f"person@{lake.version('person')}" in now.attrs["inputs"]


def test_the_refresh_step_recomputes_saved_cohorts_when_an_input_changes(own_lake):
    from explorer.jobs import refresh

    lake = own_lake
    cohorts.save(lake, cohorts.loads(T2D))
    report = refresh(lake, workers=1, steps=["cohort_member"])
    assert {s.step: s.status for s in report.steps}["cohort_member"] == "up_to_date"
    before = set(cohorts.members_of(lake, "t2d")["person_id"])
    newcomer = lake.sql("SELECT person_id FROM person WHERE year(current_date) - year_of_birth > 30 ORDER BY person_id")
    newcomer = next(p for p in newcomer["person_id"] if p not in before)
    lake.write("condition_occurrence", pd.DataFrame({
        "person_id": [newcomer], "condition_start_date": [pd.Timestamp("2024-01-02").date()],
        "code_system": ["http://hl7.org/fhir/sid/icd-10-cm"], "code": ["E11.65"], "source_file": ["test"]}))
    report = refresh(lake, workers=1, steps=["cohort_member"])
    assert {s.step: s.status for s in report.steps}["cohort_member"] == "succeeded", str(report)
    after = cohorts.members_of(lake, "t2d")
    assert set(after["person_id"]) == before | {newcomer}
    assert f"condition_occurrence@{lake.version('condition_occurrence')}" in after.attrs["inputs"]


def test_delete_and_unknown_names(own_lake):
    lake = own_lake
    cohorts.save(lake, cohorts.loads(T2D))
    unrunnable = cohorts.loads("name: later\nindex_date: {rule: first_condition, codes: [E11]}\n")
    lake_tables = set(lake.tables())
    shutil.rmtree(lake.table_path("condition_occurrence"))  # the table it reads is gone: refused before saving
    lake = explorer.open(lake.root)
    with pytest.raises(ExplorerError, match="reads condition_occurrence, which the lake does not hold"):
        cohorts.save(lake, unrunnable)
    assert set(cohorts.saved(lake)["cohort"]) == {"t2d"} and set(lake.tables()) == lake_tables - {"condition_occurrence"}
    with pytest.raises(ExplorerError, match="cohort 'later' is not in cohort_member"):
        cohorts.members_of(lake, "later")
    with pytest.raises(ExplorerError, match="did you mean 't2d'"):
        cohorts.members_of(lake, "t2e")
    before = lake.version("cohort_member")
    version = cohorts.delete(lake, "t2d")  # nothing saved reads condition_occurrence any more: it runs without it
    assert version > before
    assert cohorts.saved(lake).empty
    assert lake.sql("SELECT count(*) AS n FROM cohort_member", versions={"cohort_member": version})["n"].iloc[0] == 0
    assert len(cohorts.members_of(lake, "t2d", version=version - 1)) > 0  # history keeps it


def test_standardised_mean_difference_known_answers():
    assert cohorts.standardised_mean_difference([1, 2, 3], [2, 3, 4]) == pytest.approx(-1.0)
    from explorer.cohorts.characterise import summarise

    rows = pd.DataFrame({"person_id": list("abcdefgh"), "group": ["x"] * 4 + ["y"] * 4,
                         "has_lab": [True, True, True, False, True, False, False, False]})
    row = summarise(rows, ["x", "y"]).iloc[0]
    p1, p2 = 0.75, 0.25
    assert row["value_1"] == 75 and row["count_1"] == 3 and row["value_2"] == 25
    assert row["smd"] == pytest.approx((p1 - p2) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2))


def test_characterisation_recovers_the_planted_ageotype_of_a_diagnosis(cohort_lake):
    """explorer synth gives type 2 diabetes to persons of the metabolic ageotype far more often
    (explorer/synth/ehr.py): the t2d cohort must be enriched for it against the whole lake, in
    the planted truth and in the ageotype the lake computed."""
    table = cohorts.characterise(cohort_lake, cohorts.loads(T2D))
    members = set(cohorts.members(cohort_lake, cohorts.loads(T2D))["person_id"])
    planted = truth(cohort_lake.synth_root, "truth")
    share_in = (planted.loc[planted["person_id"].isin(members), "ageotype"] == "metabolic").mean()
    share_all = (planted["ageotype"] == "metabolic").mean()
    assert share_in > share_all + 0.2
    age = table[table["feature"] == "age at index (years)"].iloc[0]
    assert age["n_1"] == len(members) and age["n_2"] == cohort_lake.row_count("person")
    domains = set(table["domain"])
    assert {"demographics", "data availability", "wearables", "exposure", "ageing"} <= domains
    metabolic = table[(table["feature"].str.startswith("ageotype")) & (table["level"].str.contains("metabolic"))]
    assert metabolic["value_1"].sum() > metabolic["value_2"].sum()
    sexes = table[table["feature"] == "sex at birth"]
    assert sexes["value_1"].sum() == pytest.approx(100) and sexes["count_1"].sum() == len(members)


def test_cli_cohort_commands(own_lake, tmp_path):
    root = own_lake.root
    path = tmp_path / "t2d.yaml"
    path.write_text(T2D)
    result = run_cli("cohort", "validate", path, lake_root=root)
    assert result.returncode == 0 and "valid cohort definition 't2d'" in result.stdout, result.stderr
    researcher = run_cli("--role", "researcher", "cohort", "count", path, lake_root=root)
    assert researcher.returncode == 0 and "exact counts" in researcher.stdout, researcher.stderr
    public = run_cli("--role", "public", "cohort", "count", path, "--profile", "aou", lake_root=root)
    assert public.returncode == 0 and "disclosure control: All of Us" in public.stdout
    exact = cohorts.count(own_lake, cohorts.loads(T2D))
    small = [str(v) for v in exact["persons"] if 1 <= v <= 20]
    assert small and "<=20" in public.stdout
    assert not any(f" {v} " in public.stdout.split("persons in the lake")[1] for v in small)
    saved = run_cli("cohort", "save", path, lake_root=root, env={"EXPLORER_PSEUDONYM_KEY": TEST_KEY})
    assert saved.returncode == 0 and "saved 't2d'" in saved.stdout, saved.stderr
    listed = run_cli("cohort", "list", lake_root=root)
    assert "t2d" in listed.stdout
    out = tmp_path / "members.csv"
    members = run_cli("cohort", "members", "t2d", "--out", out, lake_root=root)
    assert members.returncode == 0 and len(pd.read_csv(out)) == exact["persons"].iloc[-1]
    refused = run_cli("--role", "public", "cohort", "members", "t2d", lake_root=root)
    assert refused.returncode == 2 and "needs the researcher role" in refused.stderr
    page = tmp_path / "t2d.html"
    characterised = run_cli("cohort", "characterise", "t2d", "--out", page, lake_root=root)
    assert characterised.returncode == 0 and page.stat().st_size > 10_000 and "whole lake" in characterised.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nindex_date: {rule: first_conditon}\n")
    failed = run_cli("cohort", "count", bad, lake_root=root)
    assert failed.returncode == 2 and "index_date.rule: 'first_conditon'" in failed.stderr and "did you mean" in failed.stderr
    sql = run_cli("cohort", "sql", path, lake_root=root)
    assert "WITH idx AS" in sql.stdout and "-- parameters:" in sql.stdout
    with pseudonym_key():
        audit = run_cli("--role", "steward", "audit", lake_root=root)
    assert "cohort_count" in audit.stdout and "cohort_save" in audit.stdout


def test_a_public_count_of_a_saved_cohort_gives_away_nothing_the_cohorts_page_hides(cohort_lake, tmp_path):
    """The public cohorts page decides each attrition count with its characterisation (a cohort's
    counts beside the lake's give the persons outside it); `explorer cohort count` for a public
    user shows the same counts, not the attrition protected alone: two protections of the same
    counts, each hiding different ones, would give away what the other hides."""
    import shutil

    import explorer
    from explorer.privacy import DisclosureControl
    from explorer.views.cohorts import public_attrition

    root = tmp_path / "lake"
    shutil.copytree(cohort_lake.root, root)
    lake = explorer.open(root)
    definition = cohorts.loads(OLDER_WITHOUT_CKD)
    cohorts.save(lake, definition)
    control = DisclosureControl(profile="aou")
    page = public_attrition(lake, control, definition)
    alone = cohorts.count(lake, definition, disclosure=control)
    assert (alone["persons_shown"] != page["persons_shown"]).any()  # the two protections differ here
    counted = run_cli("--role", "public", "cohort", "count", definition.name, "--profile", "aou", lake_root=root)
    rows = [line.split() for line in counted.stdout.splitlines()[1:1 + len(page)]]
    shown = [[p, r] for p, r in zip(page["persons_shown"], page["removed_shown"])]
    assert rows[0][-1] == shown[0][0] and [row[-2:] for row in rows[1:]] == shown[1:], counted.stdout


OLDER_WITHOUT_CKD = """
name: older-without-ckd
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: demographics, age: {gte: 50}}
exclusion:
  - {kind: condition, codes: [N18]}
"""

