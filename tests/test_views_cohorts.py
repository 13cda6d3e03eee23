"""The cohort views: the builder writes the same document a notebook does and loads one back,
its attrition follows every widget change, and public views show protected counts only."""

from __future__ import annotations

import pandas as pd
import pytest

from explorer import cohorts
from explorer.privacy import PermissionDenied
from explorer.views import CohortAttrition, CohortBuilder, CohortCharacterisation

DOCUMENT = """
name: built
version: 2
author: tests
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: demographics, age: {gte: 30}}
  - {kind: wearable, min_valid_days: 20, metric: steps, statistic: median, value: {lt: 12000}, window: {start: 0, end: 34}}
  - any:
      - {kind: condition, codes: [E11]}
      - {kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 5.6}, which: last}
exclusion:
  - {kind: exposure, variable: heat_wave, statistic: days, value: {gte: 80}, window: {start: -365, end: -1}}
"""


def test_widgets_write_the_document_a_notebook_would(cohort_lake):
    builder = CohortBuilder(lake=cohort_lake)
    assert builder.problems and "index_date.codes" in builder.problems[0]  # an empty builder says what is missing
    builder._header["name"].value = "by-hand"
    builder._index["rule"].value = "first_valid_wear_day"
    assert builder.problems == []
    editor = builder.add("inclusion", "lab")
    assert any("loinc" in p for p in builder.problems)
    editor.widgets["loinc"].value = "2345-7"
    editor.widgets["unit"].value = "mg/dL"
    editor.widgets["value.gte"].value = 100.0
    editor.widgets["window.start"].value = -3650
    editor.widgets["window.end"].value = 0
    exclusion = builder.add("exclusion", "condition")
    exclusion.widgets["codes"].value = "K76, N18"
    expected = cohorts.loads("""
        name: by-hand
        index_date: {rule: first_valid_wear_day}
        inclusion: [{kind: lab, loinc: 2345-7, unit: mg/dL, value: {gte: 100}, window: {start: -3650, end: 0}}]
        exclusion: [{kind: condition, codes: [K76, N18]}]
    """)
    assert builder.problems == []
    assert builder.document == expected.to_yaml()
    live = builder.attrition()
    assert live["persons"].tolist() == cohorts.count(cohort_lake, expected)["persons"].tolist()
    builder.remove(exclusion)
    assert "exclusion" not in builder.document


def test_loading_a_document_shows_it_and_gives_it_back_unchanged(cohort_lake):
    definition = cohorts.loads(DOCUMENT)
    builder = CohortBuilder(lake=cohort_lake, definition=definition)
    assert builder.definition() == definition
    assert builder.document == definition.to_yaml()
    kinds = [e.kind for e in builder.editors]
    assert kinds == ["demographics", "wearable", None, "exposure"]  # the any-combination is edited as YAML
    builder.editors[0].widgets["age.gte"].value = 50
    assert builder.definition().inclusion[0].age.gte == 50
    builder.load(DOCUMENT)  # YAML text loads too, replacing what was there
    assert builder.definition() == definition
    builder.panel()


def test_attrition_view_and_public_protection(cohort_lake, tmp_path):
    import shutil

    import explorer

    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    lake = explorer.open(tmp_path / "lake")
    definition = cohorts.loads(DOCUMENT)
    exact = CohortAttrition(lake=lake, definition=definition).data()
    # a public user counts saved definitions only: two of their own, a criterion apart, would
    # give the persons it removes by subtraction
    with pytest.raises(PermissionDenied, match="saved cohorts only"):
        CohortAttrition(lake=lake, definition=definition, role="public").data()
    with pytest.raises(PermissionDenied, match="researcher"):
        CohortBuilder(lake=lake, role="public").attrition(definition)
    cohorts.save(lake, definition)
    public = CohortAttrition(lake=lake, definition=definition, role="public").data()
    assert exact["persons"].tolist() == cohorts.count(lake, definition)["persons"].tolist()
    small = exact["persons"].between(1, 20)
    assert small.any()
    assert public.loc[small, "persons"].isna().all() and (public.loc[small, "persons_shown"] == "<=20").all()
    removed_small = exact["removed"].between(1, 20).fillna(False).astype(bool)
    assert removed_small.any() and public.loc[removed_small, "removed"].isna().all()
    for column in ("persons_shown", "removed_shown"):
        numbers = pd.to_numeric(public[column], errors="coerce").dropna()
        assert ((numbers == 0) | (numbers > 20)).all()
    shown = public["persons"].notna()
    assert (public.loc[shown, "persons"] == exact.loc[shown, "persons"]).all()
    CohortAttrition(lake=lake, definition=definition, role="public").panel()
    with pytest.raises(PermissionDenied):
        CohortBuilder(lake=lake, role="public", definition=definition).save()


def test_characterisation_view_public_hides_small_groups(cohort_lake, tmp_path):
    import shutil

    import explorer

    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    lake = explorer.open(tmp_path / "lake")
    cohorts.save(lake, cohorts.loads("name: t2d\nindex_date: {rule: first_condition, codes: [E11]}\n"))
    exact = CohortCharacterisation(lake=lake, cohort="t2d")
    public = CohortCharacterisation(lake=lake, cohort="t2d", role="public")
    researcher_table, public_table = exact.data(), public.data()
    size = len(cohorts.members_of(lake, "t2d"))
    assert 0 < size <= 20
    shown = public.display_table(public_table)
    for level in ("female", "male"):
        row = shown[(shown["feature"] == "sex at birth") & (shown["level"] == level)]
        if len(row):
            count = researcher_table.loc[row.index[0], "count_1"]
            assert row["t2d"].iloc[0] in ("<=20", "suppressed") or count == 0
    # every count a public reader gets is 0 or above the hidden range
    texts = pd.concat([public_table[f"{kind}_{k}_shown"] for kind in ("count", "n") for k in (1, 2)])
    numbers = pd.to_numeric(texts, errors="coerce").dropna()
    assert ((numbers == 0) | (numbers > 20)).all()
    assert public_table["smd"].isna().sum() > researcher_table["smd"].isna().sum()
    # a small cohort's size is hidden, so is everything that would tell it
    assert (public_table["n_1_shown"] == "<=20").all()
    assert public_table[["value_1", "sd_1", "count_1"]].isna().all().all()
    exact.panel()
    # every difference rests on a hidden count: said where the Love plot would be, not an empty plot
    import panel as pn

    alerts = pn.panel(public.panel()).select(pn.pane.Alert)
    assert alerts and "No standardised difference" in alerts[0].object


def test_characterisation_pages_hide_what_the_group_size_would_give_away(cohort_lake, tmp_path):
    import shutil

    import explorer

    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    lake = explorer.open(tmp_path / "lake")
    cohorts.save(lake, cohorts.loads("name: adults\nindex_date: {rule: first_valid_wear_day}\n"
                                     "inclusion: [{kind: demographics, age: {gte: 35}}]\n"))
    size = len(cohorts.members_of(lake, "adults"))
    assert size > 20
    table = CohortCharacterisation(lake=lake, cohort="adults", role="public").data()
    exact = CohortCharacterisation(lake=lake, cohort="adults").data()
    for feature, rows in table.groupby("feature"):
        truth = exact.loc[rows.index]
        if rows["kind"].iloc[0] == "proportion":
            shown = pd.to_numeric(rows["count_1_shown"], errors="coerce")
            known = shown.notna()
            # the shown levels never pin the hidden ones through the group size: with one level
            # hidden, at least one more is hidden (or the missing are), so no subtraction gives it
            if (~known).sum() == 1:
                missing = size - truth["n_1"].iloc[0]
                assert missing > 20 or rows["n_1_shown"].iloc[0] in ("suppressed", "<=20"), feature
        else:
            n = truth["n_1"].iloc[0]
            text = rows["n_1_shown"].iloc[0]
            assert text in ("<=20", "suppressed") or (int(text) == n and (size - n == 0 or size - n > 20)), feature


def test_a_shared_result_is_kept_per_role(cohort_lake):
    from explorer.views import DemographicCounts

    exact = DemographicCounts(lake=cohort_lake, by="race").data()
    public = DemographicCounts(lake=cohort_lake, by="race", role="public").data()
    assert "shown" not in exact and "shown" in public  # the researcher's exact page never reaches the public view
    again = DemographicCounts(lake=cohort_lake, by="race", role="public").data()
    pd.testing.assert_frame_equal(again, public)
    assert exact["count"].sum() == cohort_lake.row_count("person")


def test_modality_coverage_and_marker_table_hide_small_groups_for_public(lake):
    from datetime import date

    from explorer.views import MarkerAgeingTable, ModalityCoverage

    lake.write("modality_coverage", pd.DataFrame({
        "modality": ["labs", "steps"], "persons_with_data": [250, 7], "person_days": [900, 40],
        "median_days_per_person": [3.0, 5.0], "first_day": [date(2024, 1, 1)] * 2, "last_day": [date(2024, 3, 1)] * 2}))
    exact = ModalityCoverage(lake=lake).data().set_index("modality")
    public = ModalityCoverage(lake=lake, role="public").data().set_index("modality")
    assert exact.loc["steps", "persons_with_data"] == 7 and public.loc["steps", "persons_shown"] == "<=20"
    assert pd.isna(public.loc["steps", "person_days"]) and public.loc["steps", "first_day"] is None
    assert public.loc["labs", "persons_with_data"] == 250 and public.loc["labs", "person_days"] == 900
    lake.write("marker_ageing", pd.DataFrame({
        "marker": ["2345-7", "2160-0"], "name": ["Glucose", "Creatinine"], "scale": ["linear", "log"],
        "n_persons": [400, 12], "n_obs": [4000, 60], "slope": [0.02, 0.01], "slope_se": [0.005, 0.004],
        "p_value": [0.001, 0.02], "q_value": [0.002, 0.02]}))
    table = MarkerAgeingTable(lake=lake, role="public").data().set_index("marker")
    assert table.loc["2160-0", "n_persons"] == "<=20" and pd.isna(table.loc["2160-0", "slope"])
    assert table.loc["2345-7", "slope"] == pytest.approx(0.02)


def test_trends_and_data_quality_hide_small_groups_for_public(cohort_lake):
    from explorer.views import WearableTrends

    exact = WearableTrends(lake=cohort_lake).data()
    public = WearableTrends(lake=cohort_lake, role="public").data()
    assert (exact["persons"] > 20).any()
    small = exact["persons"].between(1, 20)
    assert public.loc[small, ["steps", "resting_hr"]].isna().all().all()
    assert (public.loc[~small, "steps"] == exact.loc[~small, "steps"]).all()
    assert set(public.loc[small, "persons_shown"]) <= {"<=20"}


def test_data_quality_report_hides_small_numerators_for_public(lake):
    from explorer.views import DataQualityReport

    lake.write("dq_result", pd.DataFrame({
        "ingest_id": ["a", "a", "b"], "check_id": ["hr_sync_gap", "lab_si_missing", "old"], "category": ["completeness"] * 3,
        "table_name": ["heart_rate_minute", "measurement", "x"], "description": ["gaps", "no SI", "earlier ingest"],
        "numerator": [3, 400, 1], "denominator": [130, 2000, 10], "threshold_pct": [5.0, 5.0, 5.0],
        "pct": [2.3, 20.0, 10.0], "passed": [True, False, False]}))
    exact = DataQualityReport(lake=lake).data().set_index("check_id")
    public = DataQualityReport(lake=lake, role="public").data().set_index("check_id")
    assert list(exact.index) == ["old"]  # the latest ingest only
    assert public.loc["old", "numerator"] == "<=20" and pd.isna(public.loc["old", "pct"]) and public.loc["old", "passed"] is None
    assert exact.loc["old", "numerator"] == 1


def test_characterisation_takes_saved_names_only(cohort_lake, tmp_path):
    import shutil

    import explorer
    from explorer.errors import ExplorerError

    shutil.copytree(cohort_lake.root, tmp_path / "lake")
    lake = explorer.open(tmp_path / "lake")
    cohorts.save(lake, cohorts.loads("name: wearers\nindex_date: {rule: first_valid_wear_day}\n"))
    for against in ("/etc/hostname.yaml", "name: x\nindex_date: {rule: first_valid_wear_day}\n"):
        with pytest.raises(ExplorerError, match="no saved cohort"):  # never a server path or a document from a URL
            CohortCharacterisation(lake=lake, cohort="wearers", against=against, role="public").data()


def test_a_hidden_attrition_count_is_drawn_as_at_most_with_its_label():
    """A public attrition whose later steps are hidden draws each as a hatched bar up to the most
    it can be, labelled as the table writes it, never as a gap that reads as nobody."""
    import numpy as np

    from explorer.privacy import PROFILES
    from explorer.views.cohorts import attrition_panel

    frame = pd.DataFrame({"step": [0, 1, 2], "label": ["persons in the lake", "include: age >= 50", "exclude: N18"],
                          "persons": [300.0, np.nan, np.nan], "removed": [np.nan, np.nan, np.nan],
                          "persons_shown": ["300", "suppressed", "<=20"], "removed_shown": ["", "suppressed", "suppressed"]})
    figure = attrition_panel(frame, public=True, rules=PROFILES["aou"])[0].object
    drawn = figure.dframe()
    assert drawn["persons"].tolist() == [300.0, 300.0, 20.0]  # at most the step before; at most 20
    assert drawn["step_label"].tolist()[1:] == ["1. include: age >= 50  [suppressed, at most 300]",
                                                "2. exclude: N18  [<=20, at most 20]"]
    assert drawn["colour"].nunique() == 2  # hidden steps drawn apart from counted ones
    assert "2 of 3 steps hidden" in figure.opts.get().kwargs["title"]


def test_no_small_count_on_the_public_cohorts_page_can_be_narrowed(cohort_lake, tmp_path):
    """The cohorts page of two saved, nested cohorts, audited whole again after protection: no
    small count it hides can be narrowed from what it shows. (A complement can be: the count
    left after an index-date step that removed nobody is the lake's total; it protects nothing
    then, and gives nothing away.)"""
    import shutil

    import explorer
    from explorer.privacy import DisclosureControl
    from explorer.views.cohorts import build_cohorts_page

    root = tmp_path / "lake"
    shutil.copytree(cohort_lake.root, root)
    lake = explorer.open(root)
    for text in (OLDER, OLDER.replace("older", "older-without-ckd") + "exclusion:\n  - {kind: condition, codes: [N18]}\n"):
        cohorts.save(lake, cohorts.loads(text))
    release = build_cohorts_page(lake, DisclosureControl(profile="aou")).release
    assert (release.status == "primary").any()
    assert [k for k in release._audit.exposed(release.status) if release.status[k] == "primary"] == []


OLDER = "name: older\nindex_date: {rule: first_valid_wear_day}\ninclusion:\n  - {kind: demographics, age: {gte: 50}}\n"


def test_a_complement_the_page_gives_away_is_passed_over():
    """The complement chooser skips a count the rest of the page would pin to one value (hiding
    it reopens nothing, and its own exposure next round hid the cohort's size, then every
    feature: the 300 x 21 demo's cohort of 116 showed nothing); when every choice is given away
    it takes the first, as before."""
    import numpy as np
    from scipy import sparse

    from explorer.privacy.disclosure import _linked_complement, _Structure

    # cells c0, c1, c2; counts: {c0} hidden, {c0, c1, c2} a shown total, {c1} = 30, {c2} = 40
    pattern = sparse.csr_matrix(np.array([[1, 0, 0], [1, 1, 1], [0, 1, 0], [0, 0, 1]]))
    overlap = (pattern @ pattern.T).tocsr()
    values, status = np.array([5.0, 75.0, 30.0, 40.0]), np.array(["primary", "shown", "shown", "shown"], dtype=object)
    structure = _Structure(pattern, None)
    assert _linked_complement(0, values, status, structure, overlap) == 2  # the smallest in the smallest equation
    assert _linked_complement(0, values, status, structure, overlap, given_away=lambda j, s: j == 2) == 3
    assert _linked_complement(0, values, status, structure, overlap, given_away=lambda j, s: True) == 2
