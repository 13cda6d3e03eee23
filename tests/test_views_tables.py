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
    assert shown["numerator"].tolist() == [3, "<=20", 5]  # a hidden count keeps the profile's label
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
    return pane.object.to_html(index=pane.index, na_rep=pane.na_rep, float_format=pane.float_format)


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=5)), min_size=1, max_size=20))
def test_nothing_missing_reads_as_none_or_nan(values):
    shown = readable(pd.DataFrame({"value": pd.Series(values, dtype=object)}))
    text = [str(v) for v in shown["value"]]
    assert "None" not in text and len(shown) == len(values)
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
