"""What a table on a page shows: words for headers, — for what is missing, pass/fail in words."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, strategies as st

from explorer.views.base import MISSING, readable, static_table


def test_a_data_quality_table_reads_as_words():
    frame = pd.DataFrame({"check_id": ["a", "b", "c"], "numerator": [3, "<=20", 5], "pct": [1.5, np.nan, 2.0],
                          "passed": [True, None, False], "note": [None, np.nan, "x"]})
    shown = readable(frame)
    assert list(shown.columns) == ["check id", "numerator", "pct", "passed", "note"]
    assert shown["passed"].tolist() == ["✔ pass", MISSING, "✘ fail"]
    assert shown["note"].tolist() == [MISSING, MISSING, "x"]
    assert shown["numerator"].tolist() == ["3", "<=20", "5"]  # a hidden count keeps the profile's label
    assert math.isnan(shown["pct"].iloc[1])  # numbers stay numbers: the table writes — for them
    assert list(frame.columns)[0] == "check_id" and frame["passed"].iloc[1] is None  # the data is not changed


def test_the_rendered_table_has_no_raw_none_nan_or_long_floats():
    frame = pd.DataFrame({"rows_written": [20016.0, 3.0], "slope": [0.123456789012345, np.nan],
                          "passed": [None, True], "first_day": [None, "2024-08-15"]})
    html = _html(frame)
    for raw in ("None", "NaN", "nan", "0.123456789", "20016.0", "rows_written"):
        assert raw not in html, raw
    assert "20,016" in html and "0.1235" in html and MISSING in html


def _html(frame):
    """The HTML of the pane static_table builds, from the frame and options the pane holds (so
    the test fails if static_table stops making the frame readable)."""
    pane = static_table(frame)
    return pane.object.to_html(index=pane.index, na_rep=pane.na_rep, float_format=pane.float_format, escape=pane.escape)


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=5)), min_size=1, max_size=20))
def test_nothing_missing_reads_as_none_or_nan(values):
    shown = readable(pd.DataFrame({"value": pd.Series(values, dtype=object)}))
    text = [str(v) for v in shown["value"]]
    assert len(shown) == len(values)
    assert all(t != "None" or v == "None" for t, v in zip(text, values))  # only a value that is the text "None"
    assert all(t == MISSING for t, v in zip(text, values) if v is None or (isinstance(v, float) and v != v))


def test_pandas_missing_markers_of_every_kind_read_as_missing():
    frame = pd.DataFrame({"a": pd.array(["x", pd.NA], dtype="string"), "passed": pd.array([pd.NA, True], dtype="boolean"),
                          "day": [pd.NaT, pd.Timestamp("2024-08-15")]}).astype({"day": object})
    shown = readable(frame)
    assert shown["a"].tolist() == ["x", MISSING] and shown["passed"].tolist() == [MISSING, "✔ pass"]
    assert shown["day"].iloc[0] == MISSING


def test_the_landing_summary_says_what_the_lake_holds_and_the_rule_in_force(tmp_path):
    import explorer
    from explorer.testing import make_persons
    from explorer.views import LakeSummary

    lake = explorer.open(tmp_path / "lake")
    assert "explorer ingest" in LakeSummary(lake=lake, role="public").text()  # an empty lake says what to run
    lake.write("person", make_persons(30))
    public, researcher = (LakeSummary(lake=lake, role=role).text() for role in ("public", "researcher"))
    assert "**30 persons**" in public and "**30 persons**" in researcher
    assert "All of Us" in public and '"<=20"' in public and "All of Us" not in researcher
    assert "explorer refresh" in public  # no modality_coverage yet
    small = explorer.open(tmp_path / "small")
    small.write("person", make_persons(5))
    assert "**<=20 persons**" in LakeSummary(lake=small, role="public").text()


def test_each_numeric_column_gets_digits_that_mean_something():
    from bokeh.models import NumberFormatter, ScientificFormatter

    from explorer.views.base import number_formatter

    assert number_formatter(pd.Series([36626.0, 20016.0]), "rows_written").format == "0,0"  # whole: no .0
    assert number_formatter(pd.Series([3, 5]), "n").format == "0,0"
    assert number_formatter(pd.Series([11520.669307, 9000.1]), "steps").format == "0,0"
    assert number_formatter(pd.Series([62.732192, 0.5]), "mean_hr").format == "0,0.00"
    assert number_formatter(pd.Series([0.957729, 0.5]), "efficiency").format == "0,0.000"
    assert isinstance(number_formatter(pd.Series([4e-34, 0.92]), "q_value"), ScientificFormatter)
    assert isinstance(number_formatter(pd.Series([0.0001, 0.0002]), "tiny"), ScientificFormatter)
    formatter = number_formatter(pd.Series([1.5, np.nan]), "x")
    assert isinstance(formatter, NumberFormatter) and formatter.nan_format == MISSING == formatter.null_format


def test_a_sortable_table_keeps_numbers_and_shows_catalog_headers():
    from explorer.views.base import data_table

    frame = pd.DataFrame({"duration_s": [14.4, 2.0], "rows_written": [309718.0, 5.0], "passed": [True, None],
                          "note": [None, "x"], "started_at": pd.to_datetime(["2026-12-04 06:20:36", None], utc=True)})
    table = data_table(frame, {"duration_s": "duration (s)"})
    assert table.titles == {"duration_s": "duration (s)", "rows_written": "rows written", "passed": "passed",
                            "note": "note", "started_at": "started at"}
    assert table.value["duration_s"].dtype == float  # sorted as numbers, not as text
    assert table.value["passed"].tolist() == ["✔ pass", MISSING] and table.value["note"].tolist() == [MISSING, "x"]
    assert table.value["started_at"].tolist() == ["2026-12-04 06:20", MISSING]
    assert table.formatters["rows_written"].format == "0,0" and table.pagination is None
    assert data_table(pd.DataFrame({"n": range(30)}), page_size=12).pagination == "local"  # no half-cut row


def test_a_downloaded_table_carries_hidden_counts_as_the_page_shows_them():
    from explorer.views.base import with_shown_counts

    page = pd.DataFrame({"age_band": ["30-39", "60-69", "80+"], "count": [53.0, np.nan, np.nan],
                         "shown": ["53", "suppressed", "<=20"], "status": ["shown", "complementary", "small"]})
    out = with_shown_counts(page)
    assert list(out.columns) == ["age_band", "count"] and out["count"].tolist() == ["53", "suppressed", "<=20"]
    plain = pd.DataFrame({"age_band": ["30-39"], "count": [53]})
    assert with_shown_counts(plain).equals(plain)


def test_a_catalog_column_header_has_its_label_and_unit():
    from explorer.catalog import default_catalog

    catalog = default_catalog()
    assert catalog.get("job_run").column("duration_s").header == "duration (s)"
    assert catalog.get("job_run").column("rows_written").header == "rows written"  # a count has no unit to say
    assert catalog.get("modality_coverage").column("median_days_per_person").header == "median days per person"
    assert catalog.get("wearable_daily").column("wear_minutes").header == "wear time (min)"


def test_marker_changes_carry_their_units_per_year():
    from explorer.views.ageing import marker_changes

    frame = pd.DataFrame({"marker": ["2160-0", "1988-5", "2345-7"], "name": ["Creatinine", "C-reactive protein", "Glucose"],
                          "scale": ["linear", "log", "linear"], "n_persons": [300, 300, "<=20"],
                          "n_obs": [3478, 3486, "<=20"], "slope": [3.07532, 0.081868, np.nan],
                          "slope_se": [0.248915, 0.009894, np.nan], "q_value": [4.1e-34, 2.3e-16, np.nan]})
    shown = marker_changes(frame)
    assert shown["slope"].tolist()[:2] == ["+3.08 µmol/L per year", f"+{100 * math.expm1(0.081868):.3g} % per year"]
    assert shown["slope_se"].iloc[1] == f"{100 * math.exp(0.081868) * 0.009894:.2g} % per year"  # delta method
    assert pd.isna(shown["slope"].iloc[2]) and shown["marker"].iloc[0] == "Creatinine (2160-0)"


def test_love_plot_labels_are_short_and_never_merge_two_rows():
    from explorer.views.cohorts import love_labels

    features = pd.Series(["personal ageing rate, Albumin (LOINC 1751-7), per year", "race", "age at index (years)",
                          "x (LOINC 1), per year", "x"])
    levels = pd.Series(["mean", "Asian", "mean", "mean", "mean"])
    labels = love_labels(features, levels)
    assert labels[:3] == ["personal ageing rate, Albumin", "race: Asian", "age at index (years)"]
    assert labels[3] != labels[4] and len(set(labels)) == len(labels)


def test_the_overview_csv_carries_the_pages_headers_and_hidden_counts_as_written(cohort_lake):
    import io

    from explorer.serve import csv_download
    from explorer.views import DemographicCounts

    view = DemographicCounts(lake=cohort_lake, role="public", by="race")
    page = view.data()
    assert page["count"].isna().any()  # the 60-person lake hides some races
    download = csv_download(view, "persons.csv")
    written = pd.read_csv(io.StringIO(download.callback().getvalue()), dtype=str, keep_default_na=False)
    assert list(written.columns) == ["race", "persons"]
    assert written["persons"].tolist() == page["shown"].tolist()  # "<=20" / "suppressed" where the page hides
    assert not {"nan", "NaN", ""} & set(written["persons"])
