"""Roles and disclosure control, known answers from each profile's published rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorer.errors import ExplorerError
from explorer.privacy import DisclosureControl, PermissionDenied, Principal, allows, require


def rows_of(counts: dict) -> pd.DataFrame:
    """One row per person from {(group, ...): n}."""
    keys = [k if isinstance(k, tuple) else (k,) for k in counts for _ in range(counts[k])]
    return pd.DataFrame(keys, columns=["a", "b"][: len(keys[0])] if keys else ["a"])


def test_roles_are_ordered_and_checked_with_a_message():
    assert allows("steward", "person_rows") and allows("researcher", "sql") and not allows("public", "person_rows")
    assert not allows("researcher", "erase") and allows("public", "aggregates")
    with pytest.raises(PermissionDenied, match="the person view needs the researcher role .* Ask a data steward"):
        require(Principal("ann", "public"), "person_rows", "the person view")
    with pytest.raises(ExplorerError, match="role 'publik' is not a role.*did you mean 'public'"):
        Principal("ann", "publik")


@pytest.mark.parametrize("profile, n, shown", [
    ("aou", 20, "<=20"), ("aou", 21, "21"), ("aou", 1, "<=20"), ("aou", 0, "0"),
    ("cms", 10, "<11"), ("cms", 11, "11"), ("ukbiobank", 4, "<5"), ("ukbiobank", 5, "5"),
    ("opensafely", 7, "[REDACTED]"), ("opensafely", 0, "[REDACTED]"), ("opensafely", 8, "10"),
    ("opensafely", 12, "10"), ("opensafely", 13, "15"), ("opensafely", 17, "15"), ("opensafely", 18, "20"),
])
def test_a_lone_count_follows_the_profile(profile, n, shown):
    page = DisclosureControl(profile=profile).counts(pd.DataFrame({"a": ["x"] * n}), [()])
    assert page.table()["shown"].tolist() == [shown]


def test_a_hidden_cell_is_not_given_away_by_its_row_and_column_totals():
    rows = rows_of({("f", "18-39"): 40, ("f", "40-64"): 35, ("f", "65+"): 3,
                    ("m", "18-39"): 44, ("m", "40-64"): 30, ("m", "65+"): 25})
    table = DisclosureControl(profile="ukbiobank").crosstab(rows, "a", "b")
    assert table.loc["f", "65+"] == "<5"
    # a second cell of the f row and of the 65+ column is hidden too, the smallest ones
    assert table.loc["f", "40-64"] == "suppressed" and table.loc["m", "65+"] == "suppressed"
    assert table.loc["m", "40-64"] == "suppressed"  # and the cell that closes the rectangle
    assert table.loc["Total", "Total"] == "177" and table.loc["f", "Total"] == "78"


def test_opensafely_rounds_and_recomputes_totals_from_the_rounded_cells():
    rows = rows_of({("f", "x"): 12, ("f", "y"): 13, ("m", "x"): 5, ("m", "y"): 31})
    table = DisclosureControl(profile="opensafely").crosstab(rows, "a", "b")
    assert table.loc["f"].tolist() == ["10", "15", "25"]
    assert table.loc["m"].tolist() == ["[REDACTED]", "30", "30"]
    assert table.loc["Total"].tolist() == ["10", "45", "55"]  # not 61 rounded: sums of what is shown


def test_statistics_of_small_groups_are_hidden_with_their_count():
    rows = pd.DataFrame({"a": ["x"] * 30 + ["y"] * 3, "v": np.r_[np.arange(30.0), [100.0, 200.0, 300.0]]})
    stats = DisclosureControl(profile="aou").statistics(rows, "a", "v").set_index("a")
    assert stats.loc["x", "mean"] == pytest.approx(14.5) and stats.loc["x", "p50"] == pytest.approx(14.5)
    assert np.isnan(stats.loc["y", ["mean", "p25", "p50", "p75"]].astype(float)).all()
    assert stats.loc["y", "shown"] == "<=20"
    # the total of 33 on the same page would give y away: x's count is hidden too, not its mean
    assert stats.loc["x", "shown"] == "suppressed"


def test_histogram_bins_and_total_are_one_page():
    values = np.r_[np.full(40, 1.5), np.full(3, 2.5), np.full(50, 3.5)]
    bins = DisclosureControl(profile="cms").histogram(values, [1, 2, 3, 4])
    assert bins["shown"].tolist()[1] == "<11"
    assert bins["status"].tolist().count("complementary") == 1 or np.isnan(bins.attrs["total"])


def test_unknown_profile_and_missing_groups_say_what_to_do():
    with pytest.raises(ExplorerError, match="disclosure profile 'aoux' is unknown.*did you mean 'aou'"):
        DisclosureControl(profile="aoux")
    with pytest.raises(ExplorerError, match="cannot count rows whose a is missing: label them"):
        DisclosureControl().counts(pd.DataFrame({"a": ["x", None]}), [("a",)])
    with pytest.raises(ExplorerError, match="cannot count by zz"):
        DisclosureControl().counts(pd.DataFrame({"a": ["x"]}), [("zz",)])
