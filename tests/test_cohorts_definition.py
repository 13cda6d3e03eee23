"""Cohort definition documents: round trips, known answers, and validation messages that say
where the problem is and what was expected."""

from __future__ import annotations

import json

import pytest

from explorer import cohorts
from explorer.cohorts.definition import loinc_check_digit
from explorer.errors import ExplorerError

FULL = """
schema: explorer.cohort/1
name: t2d-sedentary-heat
version: 3
author: a.researcher
description: Adults with type 2 diabetes, few steps and a hot year before the diagnosis
index_date: {rule: first_condition, code_system: ICD10CM, codes: [E11], earliest: 2015-01-01}
inclusion:
  - {kind: demographics, age: {gte: 40, lt: 75}, sex_at_birth: [female, male]}
  - {kind: wearable, min_valid_days: 60, metric: steps, statistic: median, value: {lt: 5000}, window: {start: -365, end: 0}}
  - {kind: exposure, variable: heat_wave, statistic: days, value: {gte: 3}, window: {start: -365, end: -1}}
  - any:
      - {kind: lab, loinc: 2345-7, unit: mg/dL, value: {gte: 126}, which: last}
      - {kind: lab, loinc: 4548-4, unit: '%', value: {gte: 6.5}}
    label: hyperglycaemia
exclusion:
  - {kind: condition, code_system: ICD10CM, codes: [N18], window: {end: 0}}
  - not: {kind: exposure, variable: pm25, statistic: mean, value: {lt: 35}}
"""


def test_a_definition_round_trips_through_yaml_and_json(tmp_path):
    first = cohorts.loads(FULL)
    for suffix in (".yaml", ".json"):
        path = first.save(tmp_path / f"cohort{suffix}")
        again = cohorts.load(path)
        assert again == first
        assert again.to_dict() == first.to_dict()
        assert again.sha256 == first.sha256
        assert cohorts.load(again.save(tmp_path / f"twice{suffix}")).to_yaml() == again.to_yaml()
    assert json.loads(first.to_json())["inclusion"][3]["label"] == "hyperglycaemia"


def test_the_digest_ignores_how_the_document_is_written():
    compact = cohorts.loads("{name: x, index_date: {rule: first_condition, codes: [E11]}}")
    verbose = cohorts.loads("schema: explorer.cohort/1\nname: x\nversion: 1\nindex_date:\n  rule: first_condition\n"
                            "  code_system: ICD10CM\n  codes: E11\n  descendants: true\n")
    assert compact.sha256 == verbose.sha256
    one = cohorts.loads("""{name: a, index_date: {rule: first_condition, codes: [E11.9, K76]},
        inclusion: [{kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 7}},
                    {any: [{kind: demographics, sex_at_birth: [male, female]}, {kind: demographics, zip3: ['850']}]}]}""")
    other = cohorts.loads("""{name: b, version: 4, author: me, index_date: {rule: first_condition, codes: [k76, e119]},
        inclusion: [{kind: lab, loinc: 2345-7, unit: mmol/l, value: {gte: 7}, window: {}, label: glucose},
                    {any: [{kind: demographics, zip3: ['850']}, {kind: demographics, sex_at_birth: [female, male]}]}]}""")
    assert one.sha256 == other.sha256
    changed = cohorts.loads("{name: x, index_date: {rule: first_condition, codes: [E10]}}")
    assert changed.sha256 != compact.sha256


@pytest.mark.parametrize("number, check", [("2345", 7), ("4548", 4), ("2160", 0), ("1751", 7), ("718", 7), ("2093", 3),
                                           ("6690", 2), ("788", 0), ("13457", 7)])
def test_loinc_check_digits_of_published_codes(number, check):
    assert loinc_check_digit(number) == check


def test_attrition_steps_are_inclusion_then_exclusion_in_document_order():
    definition = cohorts.loads(FULL)
    labels = [label for label, _, _ in definition.steps()]
    assert labels[0].startswith("include: age >= 40 and age < 75")
    assert labels[3] == "include: hyperglycaemia"
    assert labels[4].startswith("exclude: ICD10CM N18*")
    assert labels[5].startswith("exclude: not (mean pm25 < 35")
    assert definition.tables() == {"person", "condition_occurrence", "wearable_daily", "exposure_daily", "measurement"}


BAD = [
    ("name: Bad Name\nindex_date: {rule: fixed, date: 2024-01-01}", "name: 'Bad Name' must be lowercase"),
    ("name: x", "index_date: missing"),
    ("name: x\nindex_date: {rule: first_conditon, codes: [E11]}", "index_date.rule: 'first_conditon' is not one of"
                                                                  " first_condition, first_lab, first_valid_wear_day, fixed"
                                                                  " (did you mean 'first_condition'?)"),
    ("name: x\nindex_date: {rule: fixed}", "index_date.date: rule fixed needs a date"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01, codes: [E11]}", "index_date.codes: not used by rule fixed"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-02-30}", "write dates as YYYY-MM-DD"),
    ("name: x\nindex_date: {rule: fixed, date: soon}", "index_date.date: expected a date YYYY-MM-DD, got 'soon'"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: demographic, age: {gte: 1}}]",
     "inclusion[0].kind: 'demographic' is not a kind of criterion (did you mean 'demographics'?)"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: lab, loinc: 2345-8}]",
     "inclusion[0].loinc: '2345-8' has a wrong check digit (expected 2345-7)"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: lab, loinc: 2345-7, value: {gte: 7}}]",
     "inclusion[0].unit: give the unit of the bounds"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: lab, loinc: 2345-7, unit: '%', value: {gte: 7}}]",
     "inclusion[0].unit: '%' is not a unit of LOINC 2345-7; use one of mg/dL, mmol/L"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: lab, loinc: 2345-7, windw: {start: 1}}]",
     "inclusion[0].windw: unknown key for a lab criterion (did you mean 'window'?)"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: condition, codes: [250.00]}]",
     "inclusion[0].codes[0]: 250.0 read as a number; quote codes"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: condition, codes: [E11], window: {start: 5, end: -5}}]",
     "inclusion[0].window: start (5) is after end (-5)"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: wearable, metric: stepz, value: {lt: 5}}]",
     "inclusion[0].metric: 'stepz' is not one of"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: wearable, metric: steps}]",
     "inclusion[0].value: give bounds on the median steps"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: exposure, variable: tasmax, value: {gte: 3}}]",
     "inclusion[0].day_value: counting days of tasmax needs which days count"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: exposure, value: {gte: 5, lt: 5}}]",
     "inclusion[0].value: no value satisfies value >= 5 and value < 5"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{any: {kind: lab}}]",
     "inclusion[0].any: expected a list of criteria"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{not: [{kind: demographics, race: [a]}]}]",
     "inclusion[0].not: takes one criterion"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\nexclusion: [{all: [{kind: demographics}]}]",
     "exclusion[0].all[0]: give at least one of age, sex_at_birth"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: {kind: lab}", "inclusion: expected a list of criteria"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\nversion: 0", "version: must be at least 1, got 0"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\nschema: explorer.cohort/9", "schema: 'explorer.cohort/9' is not a schema"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\nauthr: me", "authr: unknown key for a cohort definition (did you mean 'author'?)"),
    ("{name: x, index_date: [", "not YAML or JSON at line "),
    ("name: x\nindex_date: null", "index_date: missing"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: [lab]}]", "inclusion[0].kind: ['lab'] is not a kind"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: demographics, age: {gte: .nan}}]",
     "inclusion[0].age.gte: nan is not a finite number"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: demographics, age: {gte: 1e400}}]",
     "inclusion[0].age.gte: expected a number"),
    ("name: x\nversion: 99999999999999999999\nindex_date: {rule: fixed, date: 2024-01-01}", "version: 99999999999999999999 is out of range"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: condition, codes: [E11], window: {start: -10000000000}}]",
     "inclusion[0].window.start: -10000000000 is out of range"),
    ("name: x\nindex_date: {rule: first_condition, code_system: ICD9CM, codes: [042]}", "index_date.codes[0]: 34 read as a number"),
    ("name: x\nindex_date: {rule: first_condition, codes: ['']}", "index_date.codes[0]: '' is not a valid ICD10CM code"),
    ("name: x\nindex_date: {rule: first_condition, codes: 'E11, K76'}", "'E11, K76' is not a valid ICD10CM code"),
    ("name: x\nindex_date: {rule: first_condition, code_system: SNOMED, codes: ['E11'], descendants: false}",
     "'E11' is not a valid SNOMED code"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: demographics, zip3: ['８５０']}]",
     "is not a 3-digit ZIP code"),
    ("a: &x {kind: demographics, race: [a]}\nname: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [*x, *x]",
     "YAML aliases (*name) are not allowed"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: exposure, day_value: {gte: 1}, value: {gte: 1}}]",
     "inclusion[0].day_value: heat-wave days are flagged already"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: lab, loinc: 2345-7, which: last}]",
     "inclusion[0].which: only with value bounds"),
    ("name: x\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion: [{kind: wearable, min_valid_days: 3, statistic: mean}]",
     "inclusion[0].statistic: only with a metric"),
    ("name: x\ndescription: \"a\\x85b\"\nindex_date: {rule: fixed, date: 2024-01-01}", "description: holds a control character"),
    ("{1: 2}", "keys must be text"),
    ("- just\n- a list", "expected a mapping with name, index_date and criteria"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:40] for _, m in BAD])
def test_an_invalid_definition_says_where_and_what(text, message):
    with pytest.raises(cohorts.DefinitionError) as caught:
        cohorts.loads(text, "t.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("t.yaml is not valid")


def test_every_problem_is_reported_at_once():
    text = ("name: Bad\nindex_date: {rule: fixed}\ninclusion:\n  - {kind: lab, loinc: '1'}\n"
            "  - {kind: exposure, variable: smog, value: {gte: 1}}\n")
    with pytest.raises(cohorts.DefinitionError) as caught:
        cohorts.loads(text)
    where = [p.split(":")[0] for p in caught.value.problems]
    assert where == ["name", "index_date.date", "inclusion[0].loinc", "inclusion[1].variable"]


def test_a_missing_file_and_a_non_utf8_file_are_named(tmp_path):
    with pytest.raises(ExplorerError, match="no such cohort definition file"):
        cohorts.load(tmp_path / "nope.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(cohorts.DefinitionError, match="(?s)latin.yaml is not valid.*not UTF-8"):
        cohorts.load(tmp_path / "latin.yaml")


def test_nesting_and_size_are_bounded():
    deep = {"kind": "demographics", "race": ["a"]}
    for _ in range(50):
        deep = {"not": deep}
    with pytest.raises(cohorts.DefinitionError, match="nested more than 6 deep"):
        cohorts.from_dict({"name": "x", "index_date": {"rule": "fixed", "date": "2024-01-01"}, "inclusion": [deep]})
    many = [{"kind": "demographics", "race": [f"r{k}"]} for k in range(65)]
    with pytest.raises(cohorts.DefinitionError, match="more than 64 criteria"):
        cohorts.from_dict({"name": "x", "index_date": {"rule": "fixed", "date": "2024-01-01"}, "inclusion": many})


VOCABULARY_CASES = [
    ("{kind: demographics, race: [Whte]}", "inclusion[0].race[0]: 'Whte' is not a value of person.race (did you mean 'White'?)"),
    ("{kind: demographics, sex_at_birth: [Female]}",
     "inclusion[0].sex_at_birth[0]: 'Female' is not a value of person.sex_at_birth (did you mean 'female'?)"),
    ("{kind: demographics, ethnicity: [Hispanic]}",
     "inclusion[0].ethnicity[0]: 'Hispanic' is not a value of person.ethnicity (did you mean 'Hispanic or Latino'?)"),
    ("{kind: condition, code_system: ICD10, codes: [E11]}",
     "inclusion[0].code_system: 'ICD10' is not one of ICD10CM, SNOMED, ICD9CM (did you mean 'ICD10CM'?)"),
]
HEADER = "name: vocabulary\nindex_date: {rule: fixed, date: 2024-01-01}\ninclusion:\n  - "


@pytest.mark.parametrize("criterion, message", VOCABULARY_CASES, ids=["race", "sex", "ethnicity", "code_system"])
def test_enumerated_values_are_checked_against_the_catalog_vocabulary(tmp_path, criterion, message):
    with pytest.raises(cohorts.DefinitionError) as caught:
        cohorts.loads(HEADER + criterion + "\n")
    assert message in str(caught.value)
    from conftest import run_cli

    path = tmp_path / "bad.yaml"
    path.write_text(HEADER + criterion + "\n")
    result = run_cli("cohort", "validate", path, lake_root=tmp_path / "no-lake-needed")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_vocabulary_is_the_catalogs_and_its_values_pass():
    from explorer.catalog import default_catalog

    person = default_catalog().get("person")
    assert "White" in person.column("race").values and "female" in person.column("sex_at_birth").values
    cohorts.loads(HEADER + "{kind: demographics, race: [White, Asian], sex_at_birth: [female], "
                  "ethnicity: [Not Hispanic or Latino]}\n")


def test_a_wrong_check_digit_is_reported_beside_another_problem_of_its_criterion():
    text = HEADER + "{kind: lab, loinc: 2345-8, unit: mg/dL, valu: {gte: 126}}\n  - {kind: demographics, race: [Whte], zip3: [12]}\n"
    with pytest.raises(cohorts.DefinitionError) as caught:
        cohorts.loads(text)
    where = [p.split(":")[0] for p in caught.value.problems]
    assert where == ["inclusion[0].valu", "inclusion[0].loinc", "inclusion[1].zip3", "inclusion[1].race[0]"]
    assert "expected 2345-7" in str(caught.value)
