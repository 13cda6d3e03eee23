"""The ageing aggregates recover what ``explorer synth`` planted: each person's slope of each
marker (correlation at least 0.9) and their ageotype (adjusted Rand index at least 0.8), both
for persons with 5 visits or more, and markers that change with age in the planted direction."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import holoviews as hv
import pytest
from sklearn.metrics import adjusted_rand_score

from explorer.synth import SynthConfig
from explorer.synth.cohort import MARKERS
from explorer.testing.cohorts import synthetic_lake, truth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ageing")
    config = SynthConfig(participants=80, days=7, seed=4, start=date(2024, 6, 3), faults=False, workers=1)
    lake = synthetic_lake(root, config, ["marker_ageing", "person_ageing_rate", "ageotype", "biological_age"])
    return lake, truth(root, "truth")


def test_planted_ageotypes_recovered(cohort):
    lake, planted = cohort
    visits = lake.sql("""SELECT person_id, count(DISTINCT CAST(measurement_datetime AS DATE)) AS visits
                         FROM measurement GROUP BY person_id""")
    found = lake.sql("SELECT * FROM ageotype").merge(visits, on="person_id").merge(
        planted[["person_id", "ageotype"]].rename(columns={"ageotype": "planted"}), on="person_id")
    eligible = found[found["visits"] >= 5]
    assert len(eligible) >= 60
    assert adjusted_rand_score(eligible["planted"], eligible["ageotype"]) >= 0.8
    assert set(found["metabolic"]) <= {"fast", "typical", "slow"}


def test_planted_personal_slopes_recovered(cohort):
    lake, _ = cohort
    root = Path(lake.root).parent
    planted = truth(root, "truth_markers")[["person_id", "loinc_code", "slope_per_year"]]
    visits = lake.sql("""SELECT person_id, loinc_code,
                                count(DISTINCT CAST(measurement_datetime AS DATE)) AS visits
                         FROM measurement GROUP BY ALL""")
    found = lake.sql("SELECT person_id, marker AS loinc_code, slope FROM person_ageing_rate") \
        .merge(planted, on=["person_id", "loinc_code"]).merge(visits, on=["person_id", "loinc_code"])
    eligible = found[found["visits"] >= 5]
    assert set(eligible["loinc_code"]) == {m[0] for m in MARKERS}
    for code, rows in eligible.groupby("loinc_code"):
        assert len(rows) >= 60, code
        assert np.corrcoef(rows["slope"], rows["slope_per_year"])[0, 1] >= 0.9, code


def test_markers_change_in_the_planted_direction(cohort):
    lake, _ = cohort
    markers = lake.sql("SELECT * FROM marker_ageing").set_index("marker")
    assert len(markers) == len(MARKERS) and markers["converged"].all()
    for loinc, _, _, _, _, _, slope, _, group_slope, _ in MARKERS:
        planted = slope if group_slope is None else (3 * slope + group_slope) / 4  # a quarter in each ageotype
        fitted, se = markers.loc[loinc, ["slope", "slope_se"]]
        assert abs(fitted - planted) < 3 * se, loinc
        # what 80 persons can show: a mean slope 2 standard errors from zero has its sign,
        # one 4 standard errors away is significant after the correction across markers
        if abs(planted) >= 2 * se:
            assert np.sign(fitted) == np.sign(planted), loinc
        if abs(planted) >= 4 * se:
            assert markers.loc[loinc, "q_value"] < 0.05, loinc


def test_biological_age_follows_age_and_reports_its_subgroups(cohort):
    from explorer.ageing import biological_age_performance

    lake, _ = cohort
    ages = lake.sql("SELECT * FROM biological_age")
    complete = ages[ages["missing"] == ""]
    assert len(complete) > 200 and (ages["phenoage_constant"] == 0.090165).all()
    assert complete["phenoage"].corr(complete["chronological_age"]) > 0.9
    assert complete["kdm_age"].corr(complete["chronological_age"]) > 0.8
    assert abs(complete["phenoage_accel"].mean()) < 1e-6  # a residual on age
    assert ages.loc[ages["missing"] != "", "phenoage"].isna().all()
    lake.sql("SELECT 1 FROM person LIMIT 0")
    table = biological_age_performance(lake.connection())
    assert set(table["grouping"]) == {"all", "sex at birth", "race", "ethnicity", "age band"}
    overall = table[(table["model"] == "phenoage") & (table["grouping"] == "all")].iloc[0]
    by_sex = table[(table["model"] == "phenoage") & (table["grouping"] == "sex at birth")]
    assert by_sex["n"].sum() == overall["n"]


def test_ageing_views_show_the_tables(cohort):
    from explorer.views import AgeingRateDistribution, AgeotypeMembership, MarkerTrajectories, PhenoAgeVsAge

    lake, _ = cohort
    trajectories = MarkerTrajectories(lake=lake, marker="2160-0", persons=10).data()
    assert trajectories["results"]["person_id"].nunique() == 10
    assert trajectories["line"]["slope"] == lake.sql("SELECT slope FROM marker_ageing WHERE marker = '2160-0'")["slope"].item()
    rates = AgeingRateDistribution(lake=lake, marker="2160-0").data()
    assert rates["bins"]["count"].sum() == rates["n"] == len(lake.sql("SELECT 1 FROM person_ageing_rate WHERE marker = '2160-0'"))
    membership = AgeotypeMembership(lake=lake).data()
    assert membership["dominant"]["persons"].sum() == len(lake.sql("SELECT 1 FROM ageotype"))
    assert len(PhenoAgeVsAge(lake=lake).data()) == len(lake.sql("SELECT 1 FROM biological_age WHERE phenoage IS NOT NULL"))
    for view in (MarkerTrajectories(lake=lake), AgeingRateDistribution(lake=lake), AgeotypeMembership(lake=lake),
                 PhenoAgeVsAge(lake=lake, model="kdm_age")):
        assert view.panel() is not None


def test_ageing_views_for_the_public_role(cohort):
    from explorer.privacy import DisclosureControl, PermissionDenied
    from explorer.views import AgeingRateDistribution, AgeotypeMembership, MarkerTrajectories, PhenoAgeVsAge

    lake, _ = cohort
    with pytest.raises(PermissionDenied, match="researcher role"):
        MarkerTrajectories(lake=lake, role="public").data()
    cms = DisclosureControl(profile="cms")
    rates = AgeingRateDistribution(lake=lake, role="public", disclosure=cms).data()["bins"]
    exact = AgeingRateDistribution(lake=lake).data()["bins"]
    assert ((rates["count"] == exact["count"]) | rates["count"].isna()).all()
    assert exact.loc[rates["status"] == "primary", "count"].between(1, 10).all()
    assert (rates["count"].dropna().isin([0]) | (rates["count"].dropna() > 10)).all()
    # a public page cannot be re-binned: nested binnings would give hidden bins away
    coarse = AgeingRateDistribution(lake=lake, role="public", disclosure=cms, bins=5).data()["bins"]
    pd.testing.assert_frame_equal(coarse, rates)
    wide = PhenoAgeVsAge(lake=lake, role="public", disclosure=cms, band_years=1).data()
    pd.testing.assert_frame_equal(wide, PhenoAgeVsAge(lake=lake, role="public", disclosure=cms).data())
    membership = AgeotypeMembership(lake=lake, role="public", disclosure=cms).data()
    assert set(membership["speeds"]["status"]) <= {"shown", "primary", "complementary"}
    assert (membership["speeds"]["persons"].dropna().isin([0]) | (membership["speeds"]["persons"].dropna() > 10)).all()
    bands = PhenoAgeVsAge(lake=lake, role="public", disclosure=cms).data()
    assert {"chronological_age", "biological_age", "count", "shown", "status"} <= set(bands.columns)
    assert "person_id" not in bands and (bands["status"] != "shown").any()  # 80 persons in 10-year bands
    from bokeh.models import ColumnDataSource

    for view in (AgeingRateDistribution(lake=lake, role="public", disclosure=cms),
                 AgeotypeMembership(lake=lake, role="public", disclosure=cms),
                 PhenoAgeVsAge(lake=lake, role="public", disclosure=cms)):
        figure = hv.render(view.panel(), backend="bokeh")
        texts = {str(t) for m in figure.references() if isinstance(m, ColumnDataSource)
                 for key in ("Label", "shown") for t in m.data.get(key, [])}
        # a hidden count is drawn with the profile's text, never as nothing, zero, NaN or None
        assert any(t.startswith("<11") for t in texts) or "<11" in str([p.title.text for p in figure.references() if hasattr(p, "title")
                                               and getattr(p.title, "text", None)]), type(view).__name__
        assert not texts & {"nan", "NaN", "None"}, type(view).__name__


def test_ageotype_speeds_draw_when_a_small_cohort_hides_every_segment(cohort, monkeypatch):
    from bokeh.models import ColumnDataSource

    """A demo of four persons hides every pathway's speed counts on the public page; the chart must
    still draw (a stacked chart of no bars failed in Bokeh and blanked the whole Ageing page), and
    draw each hidden count as a grey bar with its text, never leave it out."""
    from explorer.privacy import DisclosureControl
    from explorer.views import AgeotypeMembership

    lake, _ = cohort
    view = AgeotypeMembership(lake=lake, role="public", disclosure=DisclosureControl(profile="cms"))
    found = view.data()
    hidden = {**found, "speeds": found["speeds"].assign(persons=np.nan, shown="<11", status="primary")}
    monkeypatch.setattr(AgeotypeMembership, "data", lambda self: hidden)
    figure = hv.render(view.panel(), backend="bokeh")
    titles = [p.title.text for p in figure.references() if getattr(getattr(p, "title", None), "text", None)]
    assert any("Fast, typical and slow" in t and "12 of 12 groups hidden" in t for t in titles), titles
    drawn = [m.data for m in figure.references() if isinstance(m, ColumnDataSource) and "count" in m.data]
    assert drawn and list(drawn[0]["count"]) == ["<11"] * 12 and all(v > 0 for v in drawn[0]["persons"])


@pytest.mark.parametrize("value", ["1 OR 1=1; DROP TABLE person", "' OR '1'='1", "2160-0' --"])
def test_hostile_marker_filters_are_data(cohort, value):
    from explorer.errors import ExplorerError
    from explorer.views import AgeingRateDistribution, MarkerTrajectories

    lake, _ = cohort
    with pytest.raises(ExplorerError, match="no marker"):
        MarkerTrajectories(lake=lake, marker=value).data()
    with pytest.raises(ExplorerError, match="no personal slopes"):
        AgeingRateDistribution(lake=lake, marker=value).data()
    assert lake.sql("SELECT count(*) AS n FROM person")["n"].item() == 80
