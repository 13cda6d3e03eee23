"""A compiled definition finds the same persons (and index dates) as a query written by hand
from the criterion's definition, for every kind of criterion and index date rule, on a
synthetic cohort; and attrition counts are those sets intersected in the document's order.

The reference queries are written independently of the compiler: correlated EXISTS subqueries,
window functions and pandas, where the compiler uses one CTE per criterion and IN-joins."""

from __future__ import annotations

import pandas as pd
import pytest

from explorer import cohorts
from explorer.catalog.units import MARKER_UNITS

WEAR_INDEX = "{rule: first_valid_wear_day}"


def defn(inclusion: str = "", exclusion: str = "", index: str = WEAR_INDEX):
    text = f"name: t\nindex_date: {index}\n"
    if inclusion:
        text += f"inclusion:\n  - {inclusion}\n"
    if exclusion:
        text += f"exclusion:\n  - {exclusion}\n"
    return cohorts.loads(text)


def ids(frame) -> set[str]:
    return set(frame["person_id"])


def first_wear(lake) -> pd.DataFrame:
    return lake.sql("SELECT person_id, min(date) AS index_date FROM wearable_daily WHERE valid_day GROUP BY person_id")


def nontrivial(reference: set, lake) -> set:
    everyone = lake.row_count("person")
    assert 0 < len(reference) < everyone, f"the test's threshold selects {len(reference)} of {everyone}: pick another"
    return reference


# ------------------------------------------------------------------------------------ index rules
def test_index_first_valid_wear_day(cohort_lake):
    found = cohorts.members(cohort_lake, defn())
    reference = first_wear(cohort_lake).sort_values("person_id", ignore_index=True)
    pd.testing.assert_frame_equal(found.reset_index(drop=True), reference, check_dtype=False)


def test_index_first_condition_with_descendant_codes(cohort_lake):
    found = cohorts.members(cohort_lake, defn(index="{rule: first_condition, codes: [E11]}"))
    reference = cohort_lake.sql("""SELECT c.person_id, c.condition_start_date AS index_date FROM condition_occurrence c
        WHERE c.code LIKE 'E11%' AND c.code_system = 'http://hl7.org/fhir/sid/icd-10-cm'
          AND NOT EXISTS (SELECT 1 FROM condition_occurrence d WHERE d.person_id = c.person_id AND d.code LIKE 'E11%'
                          AND d.condition_start_date < c.condition_start_date)
        ORDER BY c.person_id""").drop_duplicates()
    assert len(reference) > 0
    pd.testing.assert_frame_equal(found.reset_index(drop=True), reference.reset_index(drop=True), check_dtype=False)
    exact = cohorts.members(cohort_lake, defn(index="{rule: first_condition, codes: [E11], descendants: false}"))
    assert exact.empty  # the cohort's codes are E11.9: without descendants E11 itself matches nothing
    dotted = cohorts.members(cohort_lake, defn(index="{rule: first_condition, codes: [E119], descendants: false}"))
    assert ids(dotted) == ids(reference)  # codes match with or without their dot


def test_index_first_lab_within_bounds_in_another_unit(cohort_lake):
    found = cohorts.members(cohort_lake, defn(index="{rule: first_lab, loinc: 2345-7, unit: mg/dL, value: {gte: 110}}"))
    threshold = 110 * MARKER_UNITS["2345-7"][1]["mg/dL"]
    reference = (cohort_lake.sql("SELECT person_id, measurement_datetime, value_si FROM measurement WHERE loinc_code = '2345-7'")
                 .query("value_si >= @threshold").assign(index_date=lambda f: f["measurement_datetime"].dt.date)
                 .groupby("person_id")["index_date"].min())
    nontrivial(set(reference.index), cohort_lake)
    assert dict(zip(found["person_id"], pd.to_datetime(found["index_date"]).dt.date)) == reference.to_dict()


def test_index_fixed_date_and_limits(cohort_lake):
    everyone = cohorts.members(cohort_lake, defn(index="{rule: fixed, date: 2024-06-15}"))
    assert len(everyone) == cohort_lake.row_count("person")
    assert set(pd.to_datetime(everyone["index_date"]).dt.date.astype(str)) == {"2024-06-15"}
    assert cohorts.members(cohort_lake, defn(index="{rule: fixed, date: 2024-06-15, latest: 2024-06-01}")).empty
    late = cohorts.members(cohort_lake, defn(index="{rule: first_valid_wear_day, earliest: 2024-06-04}"))
    reference = first_wear(cohort_lake)
    assert ids(late) == set(reference.loc[pd.to_datetime(reference["index_date"]) >= "2024-06-04", "person_id"])


# --------------------------------------------------------------------------------------- criteria
def test_demographics(cohort_lake):
    found = cohorts.members(cohort_lake, defn("{kind: demographics, age: {gte: 40, lt: 65}, sex_at_birth: [female]}"))
    reference = cohort_lake.sql("""SELECT p.person_id FROM person p
        WHERE p.sex_at_birth = 'female'
          AND (SELECT year(min(w.date)) FROM wearable_daily w WHERE w.person_id = p.person_id AND w.valid_day)
              - p.year_of_birth BETWEEN 40 AND 64""")
    assert ids(found) == nontrivial(ids(reference), cohort_lake)


def test_condition_in_a_window_with_a_minimum_count(cohort_lake):
    found = cohorts.members(cohort_lake, defn("{kind: condition, codes: [E11, K76], window: {start: -3650, end: 0}}"))
    reference = cohort_lake.sql("""SELECT DISTINCT i.person_id FROM (SELECT person_id, min(date) AS d FROM wearable_daily
                                       WHERE valid_day GROUP BY person_id) i
        WHERE EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.person_id = i.person_id
                      AND (c.code LIKE 'E11%' OR c.code LIKE 'K76%')
                      AND c.condition_start_date BETWEEN i.d - INTERVAL 3650 DAY AND i.d)""")
    assert ids(found) == nontrivial(ids(reference), cohort_lake)
    snomed = cohorts.members(cohort_lake, defn("{kind: condition, code_system: SNOMED, codes: ['38341003'], descendants: false}"))
    reference = cohort_lake.sql("SELECT DISTINCT person_id FROM condition_occurrence WHERE code = '38341003'")
    assert ids(snomed) == nontrivial(ids(reference), cohort_lake)
    twice = cohorts.members(cohort_lake, defn("{kind: condition, codes: [E11, K76, M06, I10, N18], min_count: 2}"))
    reference = cohort_lake.sql("""SELECT person_id FROM condition_occurrence
        WHERE code_system LIKE '%icd-10-cm' AND regexp_matches(code, '^(E11|K76|M06|I10|N18)') GROUP BY person_id HAVING count(*) >= 2""")
    assert ids(twice) == ids(reference)


@pytest.mark.parametrize("which", ["any", "all", "first", "last"])
def test_lab_results_in_si_units(cohort_lake, which):
    definition = defn(f"{{kind: lab, loinc: 2160-0, unit: mg/dL, value: {{gte: 1.0}}, which: {which}, "
                      "window: {start: -3650, end: 0}, min_count: 3}")
    found = cohorts.members(cohort_lake, definition)
    threshold = 1.0 * 88.42  # creatinine mg/dL -> umol/L (Young 1987)
    labs = cohort_lake.sql("""SELECT m.person_id, m.measurement_datetime, m.value_si FROM measurement m
        JOIN (SELECT person_id, min(date) AS d FROM wearable_daily WHERE valid_day GROUP BY person_id) i USING (person_id)
        WHERE m.loinc_code = '2160-0' AND CAST(m.measurement_datetime AS DATE) BETWEEN i.d - 3650 AND i.d
        ORDER BY m.person_id, m.measurement_datetime""")
    labs["high"] = labs["value_si"] >= threshold
    per = labs.groupby("person_id").agg(n=("high", "size"), any=("high", "any"), all=("high", "all"),
                                        first=("high", "first"), last=("high", "last"))
    reference = set(per.index[(per["n"] >= 3) & per[which]])
    assert ids(found) == nontrivial(reference, cohort_lake)


def test_wearable_compliance_and_median_steps(cohort_lake):
    daily = cohort_lake.sql("""SELECT w.person_id, w.date, w.steps, w.valid_day, i.d FROM wearable_daily w
        JOIN (SELECT person_id, min(date) AS d FROM wearable_daily WHERE valid_day GROUP BY person_id) i USING (person_id)""")
    window = daily[(daily["date"] >= daily["d"]) & (daily["date"] <= daily["d"] + pd.Timedelta(days=29)) & daily["valid_day"]]
    per = window.groupby("person_id").agg(days=("steps", "size"), median=("steps", "median"))
    threshold = float(per["median"].median())
    found = cohorts.members(cohort_lake, defn(f"{{kind: wearable, min_valid_days: 25, metric: steps, statistic: median, "
                                              f"value: {{lt: {threshold}}}, window: {{start: 0, end: 29}}}}"))
    reference = set(per.index[(per["days"] >= 25) & (per["median"] < threshold)])
    assert ids(found) == nontrivial(reference, cohort_lake)


def test_wearable_circadian_metric_over_months(cohort_lake):
    months = cohort_lake.sql("SELECT person_id, period_start, relative_amplitude FROM wearable_circadian "
                             "WHERE relative_amplitude IS NOT NULL")
    per = months.groupby("person_id")["relative_amplitude"].mean()
    threshold = round(float(per.median()), 3)
    found = cohorts.members(cohort_lake, defn(f"{{kind: wearable, metric: relative_amplitude, statistic: mean, "
                                              f"value: {{gte: {threshold}}}, window: {{start: -40, end: 40}}}}"))
    starts = first_wear(cohort_lake).set_index("person_id")["index_date"]
    months["index_date"] = months["person_id"].map(starts)
    inside = months[(pd.to_datetime(months["period_start"]) - pd.to_datetime(months["index_date"])).dt.days.between(-40, 40)]
    reference = set(inside.groupby("person_id")["relative_amplitude"].mean().loc[lambda s: s >= threshold].index)
    assert ids(found) == nontrivial(reference, cohort_lake)


def test_exposure_heat_wave_days_in_the_year_before(cohort_lake):
    found = cohorts.members(cohort_lake, defn("{kind: exposure, variable: heat_wave, statistic: days, value: {gte: 60}, "
                                              "window: {start: -365, end: -1}}"))
    reference = cohort_lake.sql("""SELECT i.person_id FROM (SELECT person_id, min(date) AS d FROM wearable_daily
                                       WHERE valid_day GROUP BY person_id) i
        WHERE (SELECT count(*) FROM exposure_daily e WHERE e.person_id = i.person_id AND e.heat_wave
               AND e.date >= i.d - INTERVAL 365 DAY AND e.date < i.d) >= 60""")
    assert ids(found) == nontrivial(ids(reference), cohort_lake)


def test_exposure_hot_days_and_mean_pm25(cohort_lake):
    hot = cohorts.members(cohort_lake, defn("{kind: exposure, variable: tasmax, statistic: days, day_value: {gte: 30}, "
                                            "value: {gte: 100}, window: {start: -365, end: -1}}"))
    reference = cohort_lake.sql("""SELECT e.person_id FROM exposure_daily e JOIN (SELECT person_id, min(date) AS d
        FROM wearable_daily WHERE valid_day GROUP BY person_id) i USING (person_id)
        WHERE e.date BETWEEN i.d - 365 AND i.d - 1 GROUP BY e.person_id HAVING sum(CASE WHEN e.tasmax >= 30 THEN 1 ELSE 0 END) >= 100""")
    assert ids(hot) == nontrivial(ids(reference), cohort_lake)
    means = cohort_lake.sql("SELECT person_id, avg(pm25) AS pm25 FROM exposure_daily GROUP BY person_id")
    threshold = round(float(means["pm25"].median()), 2)
    polluted = cohorts.members(cohort_lake, defn(f"{{kind: exposure, variable: pm25, statistic: mean, value: {{gt: {threshold}}}}}"))
    assert ids(polluted) == nontrivial(set(means.loc[means["pm25"] > threshold, "person_id"]), cohort_lake)


def test_all_any_not_combine_like_sets(cohort_lake):
    female = "{kind: demographics, sex_at_birth: [female]}"
    t2d = "{kind: condition, codes: [E11]}"
    liver = "{kind: condition, codes: [K76]}"
    base = ids(cohorts.members(cohort_lake, defn()))
    f, d, k = (ids(cohorts.members(cohort_lake, defn(c))) for c in (female, t2d, liver))
    assert ids(cohorts.members(cohort_lake, defn(f"{{any: [{t2d}, {liver}]}}"))) == d | k
    assert ids(cohorts.members(cohort_lake, defn(f"{{all: [{female}, {{any: [{t2d}, {liver}]}}]}}"))) == f & (d | k)
    assert ids(cohorts.members(cohort_lake, defn(f"{{not: {female}}}"))) == base - f
    assert ids(cohorts.members(cohort_lake, defn(female, exclusion=t2d))) == f - d
    assert ids(cohorts.members(cohort_lake, defn(exclusion=f"{{not: {{any: [{t2d}, {liver}]}}}}"))) == d | k


def test_attrition_is_the_criteria_intersected_in_order(cohort_lake):
    criteria = ["{kind: demographics, age: {gte: 35}}", "{kind: wearable, min_valid_days: 20}",
                "{kind: exposure, variable: heat_wave, statistic: days, value: {gte: 40}, window: {start: -365, end: -1}}",
                "{kind: lab, loinc: 2345-7, unit: mmol/L, value: {lt: 6.5}, which: last}"]
    excluded = "{kind: condition, codes: [K76]}"
    text = "name: five\nindex_date: {rule: first_valid_wear_day}\ninclusion:\n" + "".join(f"  - {c}\n" for c in criteria)
    text += f"exclusion:\n  - {excluded}\n"
    attrition = cohorts.count(cohort_lake, cohorts.loads(text))
    remaining = ids(cohorts.members(cohort_lake, defn()))
    expected = [cohort_lake.row_count("person"), len(remaining)]
    for criterion in criteria:
        remaining &= ids(cohorts.members(cohort_lake, defn(criterion)))
        expected.append(len(remaining))
    remaining -= ids(cohorts.members(cohort_lake, defn(excluded)))
    expected.append(len(remaining))
    assert attrition["persons"].tolist() == expected
    assert attrition["removed"].iloc[1:].tolist() == [a - b for a, b in zip(expected, expected[1:])]
    assert len(set(expected)) > 3  # the criteria really remove people
    assert ids(cohorts.members(cohort_lake, cohorts.loads(text))) == remaining
    flags = cohorts.flags(cohort_lake, cohorts.loads(text))
    assert flags[[f"s{k}" for k in range(1, 6)]].all(axis=1).sum() == expected[-1]


def test_the_definition_reads_pinned_versions_and_missing_tables_are_named(cohort_lake, tmp_path):
    definition = defn("{kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 0}}")
    pinned = cohorts.count(cohort_lake, definition, versions={"measurement": cohort_lake.version("measurement")})
    assert pinned["persons"].tolist() == cohorts.count(cohort_lake, definition)["persons"].tolist()
    import explorer

    empty = explorer.open(tmp_path / "empty")
    empty.write("person", pd.DataFrame({"person_id": ["a" * 32], "year_of_birth": [1970], "sex_at_birth": ["female"],
                                        "race": ["White"], "ethnicity": ["Not Hispanic or Latino"], "zip3": ["850"],
                                        "source_file": ["x"]}))
    with pytest.raises(Exception, match="reads measurement, wearable_daily, which the lake does not hold yet"):
        cohorts.count(empty, definition)


def test_values_are_bound_never_formatted(cohort_lake):
    hostile = "x'); DROP TABLE person; --"
    definition = defn("{kind: demographics, race: [White]}")
    definition.inclusion[0].race = [hostile]  # past the vocabulary check: the compiler binds whatever it is given
    compiled = cohorts.compile_definition(definition)
    assert hostile not in compiled.counts_sql()
    assert hostile in compiled.params.values() or [hostile] in compiled.params.values()
    assert cohorts.count(cohort_lake, definition)["persons"].iloc[-1] == 0
    assert cohort_lake.row_count("person") > 0


def test_first_and_last_break_ties_the_same_way_every_run(cohort_lake, tmp_path):
    import shutil

    import explorer

    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    lake = explorer.open(tmp_path / "lake")
    last = lake.sql("""SELECT * FROM measurement WHERE loinc_code = '2345-7'
                       QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY measurement_datetime DESC) = 1""")
    person = last.sort_values("person_id").iloc[0]
    twin = last[last["person_id"] == person["person_id"]].assign(value_si=40.0, value_as_number=40.0, unit="mmol/L")
    lake.write("measurement", twin)  # a second result at the very same moment, far higher
    high_last = defn("{kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 30}, which: last}")
    high_first = defn("{kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 30}, which: first}")
    for _ in range(5):  # the higher of simultaneous results is the last, never the first
        assert person["person_id"] in ids(cohorts.members(lake, high_last))
    single = lake.sql("SELECT person_id FROM measurement WHERE loinc_code = '2345-7' GROUP BY person_id "
                      "HAVING count(DISTINCT measurement_datetime) = 1")
    assert person["person_id"] not in set(single["person_id"])
    assert person["person_id"] not in ids(cohorts.members(lake, high_first))


def test_not_and_exclusion_keep_persons_without_data(cohort_lake):
    """Documented: a person with no row in a criterion's window does not meet it, so its
    negation keeps them (exclude those with a high result, not those without one)."""
    high = "{kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 6}, window: {start: -30, end: 0}}"
    everyone = ids(cohorts.members(cohort_lake, defn()))
    meets = ids(cohorts.members(cohort_lake, defn(high)))
    tested = ids(cohort_lake.sql("""SELECT DISTINCT m.person_id FROM measurement m JOIN (SELECT person_id, min(date) AS d
        FROM wearable_daily WHERE valid_day GROUP BY person_id) i USING (person_id)
        WHERE m.loinc_code = '2345-7' AND CAST(m.measurement_datetime AS DATE) BETWEEN i.d - 30 AND i.d"""))
    kept = ids(cohorts.members(cohort_lake, defn(exclusion=high)))
    assert kept == everyone - meets and (everyone - tested) <= kept
