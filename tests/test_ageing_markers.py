"""Marker ageing, pathway scores and ageotypes on measurement-shaped frames with planted slopes."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from explorer.ageing import ageotypes, ages, marker_ageing, marker_pathways, pathway_scores
from explorer.errors import ExplorerError

PATHWAY_MARKERS = {"metabolic": ["2345-7"], "immune": ["1988-5", "736-9", "6690-2"], "hepatic": ["1751-7", "6768-6"],
                   "nephrotic": ["2160-0"]}
#: marker -> (level at 50, typical slope per year, slope in its pathway's ageotype, within-person SD); CRP on log
PLANTED = {"2345-7": (5.3, 0.02, 0.2, 0.1), "1988-5": (np.log(2.0), 0.01, 0.1, 0.05), "736-9": (30.0, -0.1, -0.8, 0.5),
           "6690-2": (6.5, 0.0, 0.15, 0.1), "1751-7": (43.0, -0.08, -0.5, 0.3), "6768-6": (70.0, 0.4, 3.0, 1.5),
           "2160-0": (80.0, 0.6, 3.5, 1.5)}


def cohort(n=120, visits=8, seed=1):
    rng = np.random.default_rng(seed)
    persons = pd.DataFrame({"person_id": [f"{k:032x}" for k in range(n)], "year_of_birth": rng.integers(1940, 1980, n)})
    persons["ageotype"] = np.array(list(PATHWAY_MARKERS))[rng.integers(0, 4, n)]
    rows = []
    for person in persons.itertuples():
        dates = pd.Timestamp("2012-03-01") + pd.to_timedelta(np.sort(rng.uniform(0, 365 * 10, visits)), "D")
        age = (dates - pd.Timestamp(f"{person.year_of_birth}-07-01")).days / 365.25
        for code, (level, slope, fast, within) in PLANTED.items():
            own = fast if code in PATHWAY_MARKERS[person.ageotype] else slope
            own += rng.normal(0, abs(slope) * 0.1 + 0.001)
            value = level + rng.normal(0, within * 2) + own * (age - 50) + rng.normal(0, within, visits)
            rows.append(pd.DataFrame({"person_id": person.person_id, "measurement_datetime": dates, "loinc_code": code,
                                      "value_si": np.exp(value) if code == "1988-5" else value, "planted": own}))
    return pd.concat(rows, ignore_index=True), persons


@pytest.fixture(scope="module")
def fitted():
    measurements, persons = cohort()
    markers, rates = marker_ageing(measurements, persons)
    return measurements, persons, markers, rates


def test_ages_from_year_of_birth_are_taken_from_mid_year():
    persons = pd.DataFrame({"person_id": ["a"], "year_of_birth": [1960]})
    measured = pd.DataFrame({"person_id": ["a"], "measurement_datetime": [pd.Timestamp("2020-07-01")]})
    assert ages(measured, persons).iloc[0] == pytest.approx(60.0, abs=0.01)


def test_markers_slopes_and_q_values(fitted):
    from statsmodels.stats.multitest import multipletests

    _, _, markers, _ = fitted
    assert set(markers["marker"]) == set(PLANTED)
    creatinine = markers.set_index("marker").loc["2160-0"]
    assert creatinine["slope"] == pytest.approx((0.6 * 3 + 3.5) / 4, rel=0.25)  # a quarter age fast
    assert creatinine["scale"] == "linear" and markers.set_index("marker").loc["1988-5", "scale"] == "log"
    np.testing.assert_allclose(markers["q_value"], multipletests(markers["p_value"], method="fdr_bh")[1])
    assert (markers["q_value"] >= markers["p_value"]).all()


def test_each_persons_planted_slope_is_recovered(fitted):
    measurements, _, _, rates = fitted
    planted = measurements.groupby(["person_id", "loinc_code"])["planted"].first().rename("planted")
    joined = rates.join(planted, on=["person_id", "marker"])
    for code, rows in joined.groupby("marker"):
        assert np.corrcoef(rows["slope"], rows["planted"])[0, 1] > 0.9, code


def test_planted_ageotypes_are_recovered(fitted):
    _, persons, markers, rates = fitted
    scores = pathway_scores(rates, markers)
    assert sorted(scores.columns) == sorted(PATHWAY_MARKERS)
    found = ageotypes(scores).join(persons.set_index("person_id")["ageotype"].rename("planted"))
    assert adjusted_rand_score(found["planted"], found["ageotype"]) >= 0.8
    assert adjusted_rand_score(found["planted"], found["cluster"]) >= 0.8
    # fast, typical or slow per pathway, by the score
    for pathway in PATHWAY_MARKERS:
        score = scores.loc[found.index, pathway]
        score = (score - score.mean()) / score.std()
        expected = np.where(score >= 1, "fast", np.where(score <= -1, "slow", "typical"))
        assert (found[pathway].to_numpy() == expected).all()
        assert (found.loc[score >= 1, "fast_pathways"].str.contains(pathway)).all()


def test_reference_table_is_data_and_bad_input_is_named():
    table = marker_pathways()
    assert table.loc["1988-5", "scale"] == "log" and table.loc["2160-0", "pathway"] == "nephrotic"
    with pytest.raises(ExplorerError, match="column\\(s\\) value_si missing"):
        marker_ageing(pd.DataFrame({"person_id": [], "measurement_datetime": [], "loinc_code": []}),
                      pd.DataFrame({"person_id": [], "year_of_birth": []}))
    with pytest.raises(ExplorerError, match="at least 2 needed"):
        ageotypes(pd.DataFrame({"immune": [1.0]}, index=["a"]))
