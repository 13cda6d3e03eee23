"""The two stages of the circadian metrics: minute states per person-day (bitmaps), then the
month's metrics from them, checked against the public functions on the minute series they
stand for (pyActigraphy's conventions), for any states."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer import wearables
from explorer.errors import ExplorerError
from explorer.wearables.circadian import summarise_minutes
from explorer.wearables.periods import (DayStates, circadian_by_month, circadian_days, months_from_days, pack_days,
                                        unpack_days)


def random_states(seed: int, persons: int = 2) -> DayStates:
    """Person-months of calendar days (some missing), each worn for a stretch with gaps, active
    minutes at random (often in runs, so windows tie), and sleep segments across midnight."""
    rng = np.random.default_rng(seed)
    ids, dates, recorded, active, asleep = [], [], [], [], []
    for person in range(persons):
        month = np.datetime64("2024-03") + int(rng.integers(0, 3))
        days = np.sort(rng.choice(31 if month != np.datetime64("2024-04") else 30, size=int(rng.integers(3, 20)),
                                  replace=False))
        for day in days:
            worn = np.zeros(1440, bool)
            start = int(rng.integers(0, 600))
            worn[start:start + int(rng.integers(200, 1440))] = True
            worn &= rng.random(1440) > rng.choice([0.0, 0.02, 0.3])
            moving = worn & (np.repeat(rng.random(48) < 0.5, 30) if rng.random() < 0.5 else rng.random(1440) < 0.3)
            night = np.zeros(1440, bool)
            if rng.random() < 0.7:
                night[:int(rng.integers(0, 480))] = True
                night[int(rng.integers(1320, 1440)):] = True
            ids.append(f"p{person}")
            dates.append(month.astype("datetime64[D]") + int(day))
            recorded.append(worn)
            active.append(moving)
            asleep.append(night)
    return DayStates(np.array(ids, dtype=object), np.array(dates, dtype="datetime64[D]"), np.array(recorded),
                     np.array(active), np.array(asleep))


def month_series(states: DayStates, rows: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The person-month's steps (10 where active, 0 where recorded, NaN elsewhere) and sleep
    states on a calendar grid of days x minutes, from its first to its last recorded day."""
    days = pd.to_datetime(states.date[rows])
    calendar = pd.date_range(days.min(), days.max(), freq="1D")
    steps = pd.DataFrame(np.nan, index=calendar, columns=range(1440))
    sleep = pd.DataFrame(np.nan, index=calendar, columns=range(1440))
    for row, day in zip(rows, days):
        steps.loc[day] = np.where(states.recorded[row], np.where(states.active[row], 10.0, 0.0), np.nan)
        sleep.loc[day] = np.where(states.asleep[row], 1.0, np.where(states.recorded[row], 0.0, np.nan))
    return steps, sleep


def first_extreme_window(series: pd.Series, hours: int, lowest: bool) -> tuple[int, float]:
    """(onset minute, mean) of the first window of the mean day with the extreme mean, by exact
    fractions: the definition, free of float ties."""
    from fractions import Fraction

    active = series.gt(4).where(series.notna())
    minute = series.index.hour * 60 + series.index.minute
    sums, counts = active.fillna(0).groupby(minute).sum(), active.notna().groupby(minute).sum()
    profile = [Fraction(int(s), int(c)) if c else None for s, c in zip(sums.reindex(range(1440), fill_value=0),
                                                                       counts.reindex(range(1440), fill_value=0))]
    cyclic, width = profile + profile, hours * 60
    total, known = [Fraction(0)], [0]  # running sums of the means and of the minutes with one
    for value in cyclic:
        total.append(total[-1] + (value or 0))
        known.append(known[-1] + (value is not None))
    means = [(total[t + width] - total[t]) / width if known[t + width] > known[t] else None
             for t in range(2880 - width + 1)]
    present = [m for m in means if m is not None]
    best = min(present) if lowest else max(present)
    return means.index(best), float(best)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([60, 300, 600]))
def test_months_from_days_equal_the_public_functions_on_the_valid_days(seed, valid_minutes):
    states = random_states(seed)
    found = months_from_days(states, valid_minutes=valid_minutes, min_days=3)
    month = states.date.astype("datetime64[M]")
    assert len(found) == len({(p, m) for p, m in zip(states.person_id, month)})
    for row in found.itertuples():
        rows = np.flatnonzero((states.person_id == row.person_id)
                              & (month == np.datetime64(pd.Timestamp(row.period_start), "M")))
        steps, sleep = month_series(states, rows)
        valid = steps.notna().sum(axis=1) >= valid_minutes
        assert (row.days_recorded, row.valid_days) == (len(rows), int(valid.sum()))
        if valid.sum() < 3:
            assert np.isnan(row.interdaily_stability) and np.isnan(row.sleep_regularity_index)
            continue
        kept = steps[valid].to_numpy().ravel()
        summary = summarise_minutes(kept, first_minute_of_day=0)
        assert row.interdaily_stability == pytest.approx(summary.interdaily_stability, rel=1e-12, nan_ok=True)
        assert row.intradaily_variability == pytest.approx(summary.intradaily_variability, rel=1e-12, nan_ok=True)
        assert row.relative_amplitude == pytest.approx(summary.relative_amplitude, rel=1e-12, nan_ok=True)
        series = pd.Series(kept, index=pd.date_range(steps.index[valid][0], periods=len(kept), freq="1min"))
        for value, onset_hour, hours, lowest in ((row.l5, row.l5_onset_hour, 5, True),
                                                 (row.m10, row.m10_onset_hour, 10, False)):
            onset, mean = first_extreme_window(series, hours, lowest)
            assert value == pytest.approx(mean, abs=1e-15)
            assert onset_hour == pytest.approx(onset / 60)
        states_series = sleep.where(valid, np.nan, axis=0).to_numpy().ravel()
        slept = (sleep[valid] == 1).any().any()
        expected = wearables.sleep_regularity_index(pd.Series(states_series, index=pd.date_range(
            sleep.index[0], periods=len(states_series), freq="1min"))) if slept else np.nan
        assert row.sleep_regularity_index == pytest.approx(expected, abs=1e-12, nan_ok=True)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_bitmaps_keep_every_minute_state(seed):
    states = random_states(seed)
    back = unpack_days(pack_days(states))
    for name in DayStates._fields:
        assert np.array_equal(getattr(back, name), getattr(states, name)), name
    assert pack_days(states)["active"].map(len).eq(180).all()


def test_a_bitmap_of_another_length_is_refused_with_the_column_named():
    rows = pack_days(random_states(1))
    rows.loc[0, "active"] = rows.loc[0, "active"][:100]
    with pytest.raises(ExplorerError, match="active: a day's bitmap is not 180 bytes"):
        unpack_days(rows)


def test_day_states_from_minutes_by_hand():
    """A day with a minute recorded twice (its mean decides), a night's segment across midnight
    marking the next morning, and a segment longer than a day cut at 24 h."""
    con = duckdb.connect()
    minutes = pd.DataFrame({"person_id": "p1", "datetime": pd.to_datetime(
        ["2024-11-03 01:30", "2024-11-03 01:30", "2024-11-03 08:00", "2024-11-04 06:59", "2024-11-06 12:00"]),
        "steps": [2.0, 9.0, 4.0, 30.0, 1.0]})
    sleep = pd.DataFrame({"person_id": "p1", "level": ["light", "wake", "asleep"],
                          "start_datetime": pd.to_datetime(["2024-11-03 23:00", "2024-11-04 03:00", "2024-11-04 12:00"]),
                          "duration_minutes": [480.0, 30.0, 3000.0]})
    con.register("steps_minute", minutes)
    con.register("sleep_level", sleep)
    rows = circadian_days(con)
    states = unpack_days(rows)
    assert [str(d) for d in states.date] == ["2024-11-03", "2024-11-04", "2024-11-06"]
    assert rows["recorded_minutes"].tolist() == [2, 1, 1]
    assert np.flatnonzero(states.active[0]).tolist() == [90]  # mean 5.5 > 4; 08:00 has 4, not more
    assert np.flatnonzero(states.active[1]).tolist() == [419]
    assert np.flatnonzero(states.asleep[0]).tolist() == list(range(1380, 1440))
    # 00:00-07:00 of the light segment, then 12:00 onwards of the long one (the wake segment is not asleep)
    assert np.flatnonzero(states.asleep[1]).tolist() == list(range(0, 420)) + list(range(720, 1440))
    assert np.flatnonzero(states.asleep[2]).tolist() == []  # the long segment stops 24 h after 12:00 on the 4th
    only = unpack_days(circadian_days(con, days=["2024-11-04"]))
    assert np.array_equal(only.asleep[0], states.asleep[1])  # the day alone reads the night before
    assert unpack_days(circadian_days(con, has_sleep=False)).asleep.sum() == 0


def test_circadian_by_month_is_the_two_stages_and_matches_by_blocks(monkeypatch):
    from explorer.wearables import periods

    states = random_states(7, persons=5)
    con = duckdb.connect()
    frames = []
    for k in range(len(states.date)):
        minute = np.flatnonzero(states.recorded[k])
        frames.append(pd.DataFrame({"person_id": states.person_id[k],
                                    "datetime": pd.Timestamp(states.date[k]) + pd.to_timedelta(minute, "min"),
                                    "steps": np.where(states.active[k][minute], 12.0, 1.0)}))
    con.register("steps_minute", pd.concat(frames, ignore_index=True))
    whole = circadian_by_month(con, has_sleep=False, min_days=3)
    monkeypatch.setattr(periods, "PERSONS_PER_READ", 2)
    blocked = circadian_by_month(con, has_sleep=False, min_days=3)
    pd.testing.assert_frame_equal(whole, blocked)
    expected = months_from_days(states._replace(asleep=np.zeros_like(states.asleep)), min_days=3)
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)
