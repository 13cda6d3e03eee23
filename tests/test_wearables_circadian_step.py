"""The wearable_circadian refresh step: per person and month, the same numbers as the public
functions on that person-month's minute series, and the sleep regularity index from sleep_level."""

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
    # a gap of non-wear (rows missing) and a person with only 5 days in June
    steps = steps[~((steps.person_id == steps.person_id.iloc[0]) & steps.datetime.between("2024-06-03 10:00", "2024-06-04 02:00"))]
    late = steps.person_id.unique()[2]
    steps = steps[(steps.person_id != late) | (steps.datetime >= "2024-06-24 09:17")]
    nights = pd.date_range("2024-05-20 23:00", periods=40, freq="1D")
    first = steps.person_id.unique()[0]
    sleep = pd.DataFrame({"person_id": first, "start_datetime": nights + pd.to_timedelta(np.arange(40) % 2 * 60, "min"),
                          "level": "asleep", "duration_minutes": 420.0, "is_main_sleep": True})
    lake = explorer.open(tmp_path_factory.mktemp("circadian") / "lake")
    lake.write("steps_minute", steps)
    lake.write("sleep_level", sleep)
    refresh(lake, workers=1, steps=["wearable_circadian"])
    return lake, steps, sleep


def test_each_person_month_equals_the_public_functions_on_its_series(lake):
    lake, steps, _ = lake
    rows = lake.sql("SELECT * FROM wearable_circadian ORDER BY person_id, period_start")
    assert len(rows) == 5  # May and June for each person, June only for the late starter
    for row in rows.itertuples():
        month = steps[(steps.person_id == row.person_id)
                      & (steps.datetime.dt.to_period("M") == pd.Timestamp(row.period_start).to_period("M"))]
        series = month.set_index("datetime")["steps"].astype(float).asfreq("1min")  # from its first minute to its last
        assert row.days_recorded == month.datetime.dt.date.nunique()
        assert row.minutes_recorded == len(month)
        if row.days_recorded < 7:
            assert np.isnan(row.interdaily_stability) and np.isnan(row.m10)
            continue
        assert row.interdaily_stability == pytest.approx(wearables.interdaily_stability(series), abs=1e-12)
        assert row.intradaily_variability == pytest.approx(wearables.intradaily_variability(series), abs=1e-12)
        assert row.relative_amplitude == pytest.approx(wearables.relative_amplitude(series), abs=1e-12)
        low, high = wearables.l5(series), wearables.m10(series)
        assert row.l5 == pytest.approx(low.value, abs=1e-12) and row.m10 == pytest.approx(high.value, abs=1e-12)
        assert row.m10_onset_hour == pytest.approx((high.onset / pd.Timedelta("1h")) % 24)
        assert 7 <= row.m10_onset_hour <= 12  # the factory's persons are active 07:00-22:00


def test_sleep_regularity_from_sleep_level(lake):
    lake, steps, sleep = lake
    rows = lake.sql("SELECT person_id, period_start, sleep_regularity_index AS sri FROM wearable_circadian "
                    "WHERE days_recorded >= 7").set_index(["person_id", "period_start"])
    sleeper = sleep.person_id.iloc[0]
    # bedtime alternates 23:00 / 00:00 for 7 h: about 60 of every 1440 pairs differ (awake where steps were recorded)
    june = rows.loc[(sleeper, pd.Timestamp("2024-06-01")), "sri"]
    month = steps[(steps.person_id == sleeper) & (steps.datetime.dt.month == 6)].set_index("datetime")["steps"]
    states = pd.Series(0.0, index=month.index).asfreq("1min")
    for start in sleep.start_datetime:
        states[(states.index >= start) & (states.index < start + pd.Timedelta(minutes=420))] = 1.0
    assert june == pytest.approx(wearables.sleep_regularity_index(states), abs=1e-12)
    assert 80 < june < 100
    others = rows.drop(index=sleeper, level=0)["sri"]
    assert (others == 100).all()  # no sleep recorded: awake every recorded minute, the same every day
