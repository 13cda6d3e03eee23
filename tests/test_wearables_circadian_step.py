"""The wearable_circadian refresh step: per person and month, the same numbers as the public
functions on that person-month's valid days put end to end, and the sleep regularity index
from sleep_level on the calendar days."""

import numpy as np
import pandas as pd
import pytest

import explorer
from explorer import wearables
from explorer.jobs import refresh
from explorer.testing.factories import make_steps_minutes


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    steps = make_steps_minutes(n_persons=3, days=40, seed=4, start="2024-05-20")
    first, _, late = steps.person_id.unique()
    # non-wear: most of June 3rd off the wrist (an invalid day), and a person with only 5 days in June
    steps = steps[~((steps.person_id == first) & steps.datetime.between("2024-06-03 06:00", "2024-06-04 02:00"))]
    steps = steps[(steps.person_id != late) | (steps.datetime >= "2024-06-24 09:17")]
    nights = pd.date_range("2024-05-20 23:00", periods=40, freq="1D")
    sleep = pd.DataFrame({"person_id": first, "start_datetime": nights + pd.to_timedelta(np.arange(40) % 2 * 60, "min"),
                          "level": "asleep", "duration_minutes": 420.0, "is_main_sleep": True})
    lake = explorer.open(tmp_path_factory.mktemp("circadian") / "lake")
    lake.write("steps_minute", steps)
    lake.write("sleep_level", sleep)
    refresh(lake, workers=1, steps=["wearable_circadian"])
    rows = lake.sql("SELECT * FROM wearable_circadian ORDER BY person_id, period_start")
    return rows, steps, sleep


def month_grid(steps, person, period_start) -> pd.DataFrame:
    """The person-month's steps on a grid of whole days (rows) x minutes of the day (columns)."""
    mine = steps[(steps.person_id == person) & (steps.datetime.dt.to_period("M") == pd.Timestamp(period_start).to_period("M"))]
    series = mine.set_index("datetime")["steps"].astype(float)
    days = pd.date_range(series.index.min().normalize(), series.index.max().normalize(), freq="1D")
    full = series.reindex(pd.date_range(days[0], periods=len(days) * 1440, freq="1min"))
    return pd.DataFrame(full.to_numpy().reshape(len(days), 1440), index=days)


def window_means(series: pd.Series, hours: int) -> np.ndarray:
    """Mean share of active minutes (more than 4 steps) of the mean day over the window of
    ``hours`` starting at each minute of the day, running across midnight; NaN minutes add 0."""
    active = series.gt(4).where(series.notna())
    profile = active.groupby(series.index.hour * 60 + series.index.minute).mean().reindex(range(1440)).fillna(0)
    cyclic = np.r_[profile.to_numpy(), profile.to_numpy()]
    return np.array([cyclic[t:t + hours * 60].sum() for t in range(1440)]) / (hours * 60)


def test_each_person_month_equals_the_public_functions_on_its_valid_days(lake):
    rows, steps, _ = lake
    assert len(rows) == 5  # May and June for each person, June only for the late starter
    for row in rows.itertuples():
        grid = month_grid(steps, row.person_id, row.period_start)
        valid = grid.notna().sum(axis=1) >= 600
        assert (row.days_recorded, row.valid_days) == (grid.notna().any(axis=1).sum(), valid.sum())
        if row.valid_days < 7:
            assert np.isnan(row.interdaily_stability) and np.isnan(row.m10) and np.isnan(row.sleep_regularity_index)
            continue
        kept = grid[valid].to_numpy().ravel()  # valid days end to end, from midnight of the first
        series = pd.Series(kept, index=pd.date_range(grid.index[valid][0], periods=len(kept), freq="1min"))
        assert row.interdaily_stability == pytest.approx(wearables.interdaily_stability(series), abs=1e-12)
        assert row.intradaily_variability == pytest.approx(wearables.intradaily_variability(series), abs=1e-12)
        assert row.relative_amplitude == pytest.approx(wearables.relative_amplitude(series), abs=1e-12)
        low, high = wearables.l5(series), wearables.m10(series)
        assert row.l5 == pytest.approx(low.value, abs=1e-12) and row.m10 == pytest.approx(high.value, abs=1e-12)
        # the onset is the first window of the day whose mean is the extreme; pandas' float
        # rolling sums may pick a later window of the same mean (a tie broken by rounding)
        for onset_hour, hours, extreme in ((row.l5_onset_hour, 5, low.value), (row.m10_onset_hour, 10, high.value)):
            means = window_means(series, hours)
            first = int(np.flatnonzero(np.abs(means - extreme) <= 1e-12)[0])
            assert onset_hour == pytest.approx(first / 60)
        assert 7 <= row.m10_onset_hour <= 12  # the factory's persons are active 07:00-22:00
    june_3rd_off = rows[(rows.person_id == steps.person_id.iloc[0]) & (rows.period_start == pd.Timestamp("2024-06-01"))]
    assert june_3rd_off.valid_days.item() == june_3rd_off.days_recorded.item() - 1


def test_sleep_regularity_from_sleep_level_on_calendar_days(lake):
    rows, steps, sleep = lake
    sleeper = sleep.person_id.iloc[0]
    june = rows[(rows.person_id == sleeper) & (rows.period_start == pd.Timestamp("2024-06-01"))].iloc[0]
    grid = month_grid(steps, sleeper, june.period_start)
    states = pd.Series(np.where(np.isnan(grid.to_numpy().ravel()), np.nan, 0.0),
                       index=pd.date_range(grid.index[0], periods=grid.size, freq="1min"))
    for start in sleep.start_datetime:
        states[(states.index >= start) & (states.index < start + pd.Timedelta(minutes=420))] = 1.0
    invalid = grid.index[grid.notna().sum(axis=1) < 600]
    states[states.index.normalize().isin(invalid)] = np.nan  # days off the wrist: unknown
    assert june.sleep_regularity_index == pytest.approx(wearables.sleep_regularity_index(states), abs=1e-12)
    # bedtime alternates 23:00 / 00:00 for 7 h: the first and last hour of each night differ
    # from the night before, 120 of every 1440 pairs (hand count)
    assert june.sleep_regularity_index == pytest.approx(200 * 1320 / 1440 - 100, abs=1e-9)
    others = rows[(rows.person_id != sleeper) & (rows.valid_days >= 7)]
    assert len(others) and others.sleep_regularity_index.isna().all()  # no sleep logged: no index, not 100


def test_a_new_day_or_a_late_correction_recomputes_its_month_and_equals_a_full_refresh(lake, tmp_path):
    import shutil

    rows, steps, sleep = lake
    source = explorer.open(tmp_path / "lake")
    source.write("steps_minute", steps)
    source.write("sleep_level", sleep)
    refresh(source, workers=1, steps=["wearable_circadian"])
    first = sorted(steps.person_id.unique())[0]
    # a new day in July, and a correction on the last day of May (its sleep counts for June too)
    new_day = steps[(steps.person_id == first) & (steps.datetime.dt.date == pd.Timestamp("2024-06-20").date())].copy()
    new_day["datetime"] = new_day["datetime"] + pd.Timedelta(days=11)  # 1 July
    correction = pd.DataFrame({"person_id": first, "datetime": [pd.Timestamp("2024-05-31 12:00")], "steps": [999]})
    source.write("steps_minute", pd.concat([new_day, correction]))
    report = refresh(source, workers=1, steps=["wearable_circadian"])
    day_step, step = report.steps
    assert day_step.step == "wearable_circadian_day" and day_step.status == "succeeded"
    assert step.status == "succeeded" and "2024-05-01" in step.partitions and "2024-07-01" in step.partitions
    incremental = source.sql("SELECT * FROM wearable_circadian ORDER BY person_id, period_start")
    shutil.copytree(source.root, tmp_path / "copy")
    full = explorer.open(tmp_path / "copy")
    refresh(full, workers=1, steps=["wearable_circadian"], full=True)
    pd.testing.assert_frame_equal(incremental, full.sql("SELECT * FROM wearable_circadian ORDER BY person_id, period_start"))
    assert len(incremental) == len(rows) + 1  # July is new
