"""Wearable views: what reaches the browser (at most about 2,000 points a line, extremes kept),
the actogram's double plot, the cohort histograms, and the rendered Bokeh models."""

import holoviews as hv
import numpy as np
import pandas as pd
import pytest

import explorer
from explorer.errors import ExplorerError
from explorer.jobs import refresh
from explorer.testing.factories import make_heart_rate_minutes, make_steps_minutes
from explorer.views import Actogram, CohortWearableDistributions, PersonMinutes, downsample


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    heart = make_heart_rate_minutes(n_persons=2, days=30, seed=8, start="2024-06-01")
    steps = make_steps_minutes(n_persons=2, days=30, seed=8, start="2024-06-01")
    first = heart.person_id.iloc[0]
    spike = (heart.person_id == first) & (heart.datetime == pd.Timestamp("2024-06-20 03:17"))
    heart.loc[spike, "heart_rate_value"] = 190  # one minute: must survive downsampling
    off = (steps.person_id == first) & steps.datetime.between("2024-06-10 00:00", "2024-06-10 11:59")
    lake = explorer.open(tmp_path_factory.mktemp("views") / "lake")
    lake.write("heart_rate_minute", heart)
    lake.write("steps_minute", steps[~off])
    refresh(lake, workers=1, steps=["wearable_daily", "wearable_circadian"])
    return lake, first, heart, steps[~off]


def test_downsample_keeps_shape_and_extremes():
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    y[4321] = 50.0
    y[777] = np.nan
    chosen = downsample(x, y, 2000)
    assert len(chosen) <= 2000 and 4321 in chosen and 777 not in chosen
    assert np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(downsample(x[:50], y[:50], 2000), np.arange(50))


def test_person_minutes_sends_at_most_2000_points_a_line_and_keeps_the_spike(lake):
    lake, person, heart, _ = lake
    view = PersonMinutes(lake=lake, person_id=person, start=pd.Timestamp("2024-06-01").date(),
                         end=pd.Timestamp("2024-06-28").date())
    data = view.data()
    assert data["heart_rate"].attrs["rows"] == 28 * 1440
    assert 1000 < len(data["heart_rate"]) <= 2000 and data["steps"].steps.notna().sum() <= 2000
    # the morning of June 10th off the wrist: the steps line breaks there (one missing value)
    assert data["heart_rate"].heart_rate_value.notna().all()
    breaks = data["steps"][data["steps"].steps.isna()]
    assert len(breaks) == 1 and breaks.datetime.iloc[0].date() == pd.Timestamp("2024-06-09").date()
    assert data["heart_rate"].heart_rate_value.max() == 190
    mine = heart[(heart.person_id == person) & (heart.datetime < "2024-06-29")]
    assert data["heart_rate"].heart_rate_value.min() == mine.heart_rate_value.min()
    # what Bokeh would send to the browser: every data source of the rendered figure
    model = hv.render(view.panel(), backend="bokeh")
    from bokeh.models import ColumnDataSource

    points = [int(np.isfinite(np.asarray(s.data[column], dtype=float)).sum())
              for s in model.select({"type": ColumnDataSource})
              for column in ("heart_rate_value", "steps") if column in s.data]
    assert len(points) == 2 and max(points) <= 2000


def test_person_minutes_defaults_to_the_last_four_weeks_and_names_a_wrong_id(lake):
    lake, person, _, _ = lake
    data = PersonMinutes(lake=lake, person_id=person).data()
    assert data["heart_rate"].datetime.min() >= pd.Timestamp("2024-06-30") - pd.Timedelta(days=27)
    with pytest.raises(ExplorerError, match="no heart-rate minutes for person_id 'nobody'"):
        PersonMinutes(lake=lake, person_id="nobody").data()


def test_actogram_is_double_plotted_and_leaves_unworn_time_blank(lake):
    lake, person, _, steps = lake
    grid = Actogram(lake=lake, person_id=person, days=20, bin_minutes=30).data()
    assert grid.shape == (20, 96)
    left, right = grid.iloc[:, :48].to_numpy(), grid.iloc[:, 48:].to_numpy()
    np.testing.assert_array_equal(right[:-1], left[1:])  # row d's second day is row d+1's first
    june_10 = grid.loc[pd.Timestamp("2024-06-10")].iloc[:48]
    assert june_10.iloc[:24].isna().all() and june_10.iloc[24:].notna().all()  # unworn morning: blank, not zero
    mine = steps[(steps.person_id == person) & (steps.datetime.dt.date == pd.Timestamp("2024-06-05").date())]
    assert grid.loc[pd.Timestamp("2024-06-05")].iloc[:48].sum() == mine.steps.sum()
    with pytest.raises(ExplorerError, match="must divide a day"):
        Actogram(lake=lake, person_id=person, bin_minutes=7).data()
    assert hv.render(Actogram(lake=lake, person_id=person, days=5).panel(), backend="bokeh") is not None


def test_cohort_distributions_count_every_value_once(lake):
    lake, _, _, _ = lake
    data = CohortWearableDistributions(lake=lake).data()
    valid_days = lake.sql("SELECT count(*) AS n FROM wearable_daily WHERE valid_day")["n"].item()
    assert data["daily_steps"]["count"].sum() == data["daily_steps"].attrs["n"] == valid_days
    assert data["resting_hr"].attrs["n"] == 2
    assert data["interdaily_stability"]["count"].sum() == lake.sql(
        "SELECT count(interdaily_stability) AS n FROM wearable_circadian")["n"].item()
    # fixed bins: no edge is anyone's value, values beyond the range land in the end bins
    assert data["interdaily_stability"].left.iloc[0] == 0 and data["interdaily_stability"].right.iloc[-1] == 1
    assert data["daily_steps"].right.iloc[-1] == 30_000 and len(data["resting_hr"]) == 30
    assert "(/min)" in data["resting_hr"].attrs["label"] and "Interdaily stability" in data["interdaily_stability"].attrs["label"]
    assert hv.render(CohortWearableDistributions(lake=lake).panel(), backend="bokeh") is not None


def test_public_role_gets_no_person_rows_and_protected_bins(lake):
    from explorer.privacy import DisclosureControl, PermissionDenied

    lake, person, _, _ = lake
    for view in (PersonMinutes(lake=lake, person_id=person, role="public"), Actogram(lake=lake, person_id=person, role="public")):
        with pytest.raises(PermissionDenied, match="needs the researcher role"):
            view.data()
    ukb = DisclosureControl(profile="ukbiobank")
    public = CohortWearableDistributions(lake=lake, role="public", disclosure=ukb).data()
    exact = CohortWearableDistributions(lake=lake).data()
    resting = public["resting_hr"]  # 2 persons: every bin and the total are small
    assert resting["count"].fillna(0).eq(0).all() and resting.attrs["n"] != resting.attrs["n"]  # NaN: hidden
    assert (resting.loc[exact["resting_hr"]["count"] > 0, "shown"] == "<5").all()
    steps = public["daily_steps"]  # persons by their median daily steps, not person-days
    medians = lake.sql("SELECT median(steps) AS m FROM wearable_daily WHERE valid_day GROUP BY person_id")["m"]
    per_person, _ = np.histogram(np.clip(medians, 0, 30_000), bins=np.arange(0, 30_001, 1000))
    assert ((steps["count"] == per_person) | steps["count"].isna()).all() and "per-person median" in steps.attrs["label"]
    assert exact["daily_steps"]["count"].sum() > len(medians)
    assert hv.render(CohortWearableDistributions(lake=lake, role="public").panel(), backend="bokeh") is not None


def test_a_hidden_bin_is_drawn_up_to_the_largest_hidden_count_and_labelled(lake):
    """A public histogram whose bins are hidden must not read as empty: each hidden bin is a box
    up to the profile's largest hidden count with its text, and the axis starts at 0."""
    from bokeh.models import ColumnDataSource

    from explorer.privacy import DisclosureControl

    lake, _, _, _ = lake
    ukb = DisclosureControl(profile="ukbiobank")
    view = CohortWearableDistributions(lake=lake, role="public", disclosure=ukb)
    hidden = view.data()["resting_hr"]
    hidden = hidden[hidden["count"].isna()]
    assert len(hidden)  # 2 persons: their bins are hidden
    figure = hv.render(view.panel(), backend="bokeh")
    sources = [m for m in figure.references() if isinstance(m, ColumnDataSource)]
    texts = [t for s in sources for t in s.data.get("Label", [])]  # hv.Labels' text column
    assert {"<5", "<5 each"} & set(texts)
    tops = [top for s in sources for top in s.data.get("top", [])]
    assert ukb.rules.largest_hidden in tops  # the boxes reach the largest count the profile hides
    titles = [p.title.text for p in figure.select({"type": __import__("bokeh.models", fromlist=["Plot"]).Plot})
              if p.title is not None]
    assert all("nan" not in t.lower() and "none" not in t.lower() for t in titles)
