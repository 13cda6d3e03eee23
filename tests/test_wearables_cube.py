"""The minute cube: person x minute in Zarr, chunked for Dask; cohort metrics on it stay lazy
until computed and equal the DuckDB daily summary and a pandas mean-day profile."""

import numpy as np
import pandas as pd
import pytest

import explorer
from explorer.errors import ExplorerError
from explorer.testing.dask import raise_if_dask_computes
from explorer.testing.factories import make_heart_rate_minutes, make_steps_minutes
from explorer.wearables import daily_summary_sql
from explorer.wearables.cube import cube_path, daily_totals, mean_day_profile, open_minute_cube, write_minute_cube


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    heart = make_heart_rate_minutes(n_persons=5, days=9, seed=3, start="2024-03-04")
    steps = make_steps_minutes(n_persons=5, days=9, seed=3, start="2024-03-04")
    rng = np.random.default_rng(0)
    heart = heart[rng.random(len(heart)) > 0.3]  # non-wear: a third of the minutes missing
    steps = steps.iloc[: len(steps) - 1440]  # the last person's last day has no steps
    # the repeated autumn hour: two readings of one local minute, both lived
    heart = pd.concat([heart, heart.iloc[[100, 101]].assign(heart_rate_value=[150, 151])], ignore_index=True)
    steps = pd.concat([steps, steps.iloc[[100]].assign(steps=[77])], ignore_index=True)
    lake = explorer.open(tmp_path_factory.mktemp("cube") / "lake")
    lake.write("heart_rate_minute", heart)
    lake.write("steps_minute", steps)
    write_minute_cube(lake, chunk_persons=2, chunk_days=3)
    return lake, heart, steps


def test_cube_holds_every_minute_once_chunked_for_dask(lake):
    lake, heart, steps = lake
    cube = open_minute_cube(lake, build=False)
    assert dict(cube.sizes) == {"person": 5, "minute": 9 * 1440}
    assert cube["steps"].chunks == ((2, 2, 1), (3 * 1440,) * 3)
    assert int(cube["heart_rate_readings"].sum()) == len(heart)
    assert int(cube["heart_rate"].notnull().sum()) == len(heart) - 2
    assert float(cube["steps"].sum()) == steps.steps.sum()
    twice = heart.iloc[100]
    assert float(cube["heart_rate"].sel(person=twice.person_id, minute=twice.datetime)) == \
        heart[(heart.person_id == twice.person_id) & (heart.datetime == twice.datetime)].heart_rate_value.mean()
    one = heart.iloc[1234]
    assert float(cube["heart_rate"].sel(person=one.person_id, minute=one.datetime)) == one.heart_rate_value
    assert write_minute_cube(lake) == cube_path(lake)  # already built: the same store


def test_cohort_metrics_stay_lazy_then_equal_the_daily_summary(lake):
    lake, heart, steps = lake
    cube = open_minute_cube(lake, build=False)
    with raise_if_dask_computes():
        totals = daily_totals(cube)
        profile = mean_day_profile(cube, bin_minutes=60)
    assert totals["steps"].chunks is not None and profile.chunks is not None
    frame = totals.to_dataframe().reset_index()
    expected = lake.sql(daily_summary_sql(has_sleep=False))
    merged = expected.assign(date=pd.to_datetime(expected.date)).merge(
        frame.rename(columns={"person": "person_id"}), on=["person_id", "date"], suffixes=("", "_cube"))
    assert len(merged) == len(expected) == 5 * 9
    np.testing.assert_array_equal(merged.steps, merged.steps_cube)
    np.testing.assert_array_equal(merged.wear_minutes, merged.wear_minutes_cube)
    np.testing.assert_allclose(merged.mean_hr, merged.mean_hr_cube, rtol=1e-6)
    person = steps.person_id.iloc[0]
    per_minute = steps[steps.person_id == person].groupby("datetime").steps.sum()  # a minute lived twice: its steps add
    by_hour = per_minute.groupby(per_minute.index.hour).mean()
    np.testing.assert_allclose(profile.sel(person=person).to_numpy(), by_hour.to_numpy(), rtol=1e-6)


def test_cube_needs_the_minute_tables(tmp_path):
    with pytest.raises(ExplorerError, match="needs table 'heart_rate_minute'"):
        write_minute_cube(explorer.open(tmp_path / "empty"))


def test_wearables_command(tmp_path, lake):
    from conftest import run_cli

    listed = run_cli("wearables", "metrics", lake_root=tmp_path / "none")
    assert listed.returncode == 0 and "sleep_regularity_index" in listed.stdout and "Phillips et al. 2017" in listed.stdout
    no_lake = run_cli("wearables", "view", lake_root=tmp_path / "none")
    assert no_lake.returncode == 2 and "no lake at" in no_lake.stderr and not (tmp_path / "none").exists()
    (tmp_path / "empty" / "tables").mkdir(parents=True)
    missing = run_cli("wearables", "view", lake_root=tmp_path / "empty")
    assert missing.returncode == 2 and "run `explorer refresh` first" in missing.stderr
    lake, heart, _ = lake
    out = tmp_path / "person.html"
    made = run_cli("wearables", "view", "--person", heart.person_id.iloc[0], "--days", "5", "--out", out, lake_root=lake.root)
    assert made.returncode == 0, made.stderr
    assert out.stat().st_size > 10_000 and "bokeh" in out.read_text()[:200_000].lower()
