"""PhenoAge from the published formula, with every input in the units labs send; the constant
in the output; Klemera-Doubal biological age on a reference subset; performance by subgroup."""

import math

import numpy as np
import pandas as pd
import pytest

from explorer.ageing.biological_age import (
    PHENOAGE_INPUTS,
    acceleration,
    kdm_age,
    kdm_train,
    phenoage,
    subgroup_performance,
)
from explorer.errors import ExplorerError

#: one visit in the formula's own units (a healthy 50-year-old)
VISIT = {"albumin": 45.0, "creatinine": 80.0, "glucose": 5.0, "crp": 0.1, "lymphocyte_percent": 30.0, "mcv": 90.0,
         "rdw": 13.0, "alkaline_phosphatase": 70.0, "white_cell_count": 6.0}
PERSONS = pd.DataFrame({"person_id": ["a"], "year_of_birth": [1970]})
DAY = pd.Timestamp("2020-07-01 09:30")  # 50.0 years after 1 July 1970


def by_hand(values, age, constant=0.090165):
    xb = (-19.907 - 0.0336 * values["albumin"] + 0.0095 * values["creatinine"] + 0.1953 * values["glucose"]
          + 0.0954 * math.log(values["crp"]) - 0.0120 * values["lymphocyte_percent"] + 0.0268 * values["mcv"]
          + 0.3306 * values["rdw"] + 0.00188 * values["alkaline_phosphatase"] + 0.0554 * values["white_cell_count"]
          + 0.0804 * age)
    gamma = 0.0076927
    mortality = 1 - math.exp(-math.exp(xb) * (math.exp(120 * gamma) - 1) / gamma)
    return 141.50225 + math.log(-0.00553 * math.log(1 - mortality)) / constant


def sent(values_and_units: dict) -> pd.DataFrame:
    """Measurement rows as a lab sends them: {input: (value, unit)}."""
    return pd.DataFrame([{"person_id": "a", "measurement_datetime": DAY, "loinc_code": PHENOAGE_INPUTS[name][0],
                          "value_as_number": value, "unit": unit} for name, (value, unit) in values_and_units.items()])


FORMULA_UNITS = {"albumin": "g/L", "creatinine": "umol/L", "glucose": "mmol/L", "crp": "mg/dL",
                 "lymphocyte_percent": "%", "mcv": "fL", "rdw": "%", "alkaline_phosphatase": "U/L",
                 "white_cell_count": "10*3/uL"}


def test_known_answer_from_the_published_formula():
    found = phenoage(sent({n: (v, FORMULA_UNITS[n]) for n, v in VISIT.items()}), PERSONS).iloc[0]
    assert found["chronological_age"] == pytest.approx(50.0, abs=0.01)  # days / 365.25
    assert found["phenoage"] == pytest.approx(by_hand(VISIT, found["chronological_age"]), rel=1e-12)
    assert found["missing"] == "" and found["constant"] == 0.090165
    assert 35 < found["phenoage"] < 55  # a healthy profile is near or below its age


# every input sent in another unit labs use, and what it must become
CONVERSIONS = [
    ("albumin", 4.5, "g/dL", 45.0),
    ("creatinine", 80 / 88.42, "mg/dL", 80.0),
    ("glucose", 5.0 * 18.016, "mg/dL", 5.0),
    ("crp", 1.0, "mg/L", 0.1),  # enters as ln of mg/dL
    ("crp", 0.1, "mg/dl", 0.1),
    ("white_cell_count", 6000.0, "/uL", 6.0),
    ("white_cell_count", 6.0, "10^9/L", 6.0),
    ("white_cell_count", 6.0, "K/uL", 6.0),
    ("lymphocyte_percent", 30.0, "%", 30.0),
    ("mcv", 90.0, "fl", 90.0),
    ("rdw", 13.0, "%", 13.0),
    ("alkaline_phosphatase", 70.0, "IU/L", 70.0),
]


@pytest.mark.parametrize("name, value, unit, expected", CONVERSIONS)
def test_each_input_is_converted_from_the_units_labs_send(name, value, unit, expected):
    values = {n: (v, FORMULA_UNITS[n]) for n, v in VISIT.items()}
    values[name] = (value, unit)
    found = phenoage(sent(values), PERSONS).iloc[0]
    assert found[name] == pytest.approx(expected, rel=1e-9)
    assert found["phenoage"] == pytest.approx(by_hand({**VISIT, name: expected}, found["chronological_age"]), rel=1e-9)


def test_the_constant_is_a_parameter_and_is_recorded():
    rows = sent({n: (v, FORMULA_UNITS[n]) for n, v in VISIT.items()})
    other = phenoage(rows, PERSONS, constant=0.09165)
    assert other.attrs["constant"] == 0.09165 and (other["constant"] == 0.09165).all()
    assert other["phenoage"].iloc[0] == pytest.approx(by_hand(VISIT, other["chronological_age"].iloc[0], 0.09165))


def test_a_day_missing_a_marker_keeps_its_row_and_says_which():
    values = {n: (v, FORMULA_UNITS[n]) for n, v in VISIT.items() if n != "rdw"}
    found = phenoage(sent(values), PERSONS).iloc[0]
    assert pd.isna(found["phenoage"]) and found["missing"] == "rdw"


def test_a_unit_that_cannot_be_converted_names_the_row():
    values = {n: (v, FORMULA_UNITS[n]) for n, v in VISIT.items()}
    values["creatinine"] = (80.0, "%")
    with pytest.raises(ExplorerError, match="person a, 2020-07-01.*unit '%' is not a known unit for LOINC 2160-0"):
        phenoage(sent(values), PERSONS)


def reference_cohort(n=400, seed=2):
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 80, n)
    frame = pd.DataFrame({"chronological_age": age})
    for k, (slope, noise) in enumerate([(0.2, 3.0), (-0.1, 2.0), (0.05, 1.0)]):
        frame[f"m{k}"] = 10 + slope * age + rng.normal(0, noise, n)
    frame["sex"] = rng.choice(["female", "male"], n)
    return frame


def test_kdm_tracks_age_and_acceleration_is_a_residual():
    frame = reference_cohort()
    trained = kdm_train(frame.iloc[:200], ["m0", "m1", "m2"])
    assert trained["markers"].loc["m0", "k"] == pytest.approx(0.2, rel=0.2)
    frame["kdm_age"] = kdm_age(frame, trained)
    held_out = frame.iloc[200:]
    assert held_out["kdm_age"].corr(held_out["chronological_age"]) > 0.8
    accel = acceleration(frame, "kdm_age")
    assert abs(accel.mean()) < 1e-9 and abs(np.corrcoef(accel, frame["chronological_age"])[0, 1]) < 1e-9


def test_performance_is_reported_for_every_subgroup():
    frame = reference_cohort()
    frame["predicted"] = frame["chronological_age"] + np.where(frame["sex"] == "male", 5.0, 0.0)
    table = subgroup_performance(frame, "predicted", "chronological_age", {"sex": frame["sex"]}).set_index("level")
    assert list(table.index) == ["all", "female", "male"]
    assert table.loc["female", "mean_difference"] == pytest.approx(0.0) and table.loc["male", "mean_difference"] == pytest.approx(5.0)
    assert table.loc["all", "n"] == len(frame)
