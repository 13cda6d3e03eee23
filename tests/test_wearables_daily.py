"""Daily wearable summary: known answers from the stated definitions, and the same rows whatever
the partition a task computes."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explorer
from explorer.jobs import refresh
from explorer.jobs.steps import Partition, bucket_sql
from explorer.wearables import daily_summary_sql
from explorer.wearables.daily import daily_summary

PID = "a1" * 16


def minutes(start, n):
    return pd.date_range(start, periods=n, freq="min")


@pytest.fixture
def frames():
    walk = minutes("2024-06-01 08:00", 60)
    steps = pd.DataFrame({"person_id": PID, "datetime": walk, "steps": [10] * 20 + [0] * 40})
    heart = pd.DataFrame({"person_id": PID, "datetime": walk, "heart_rate_value": [100] * 32 + [60] * 28})
    night = minutes("2024-06-01 23:50", 16)  # 23:50 .. 00:05, no steps across midnight
    steps = pd.concat([steps, pd.DataFrame({"person_id": PID, "datetime": night, "steps": 0})], ignore_index=True)
    heart = pd.concat([heart, pd.DataFrame({"person_id": PID, "datetime": night, "heart_rate_value": 50})], ignore_index=True)
    sleep = pd.DataFrame({"person_id": PID, "start_datetime": pd.to_datetime(
        ["2024-06-01 23:00", "2024-06-02 00:00", "2024-06-02 00:10", "2024-06-02 14:00"]),
        "level": ["light", "wake", "deep", "asleep"], "duration_minutes": [60, 10, 50, 30],
        "is_main_sleep": [True, True, True, False]})
    return steps, heart, sleep


def both_ways(con, **options):
    """The summary by the query that defines it and by the numpy engine the refresh step runs,
    after checking that they give the same rows."""
    by_engine = daily_summary(con, **options)
    options = {k: v for k, v in options.items() if k not in ("persons_per_query", "cells_per_chunk")}
    by_sql = con.execute(daily_summary_sql(**options)).df()
    pd.testing.assert_frame_equal(by_engine, by_sql, check_exact=False, rtol=1e-12)
    return by_sql


def summary(frames, days=None):
    con = duckdb.connect()
    for name, frame in zip(("steps_minute", "heart_rate_minute", "sleep_level"), frames):
        con.register(name, frame)
    return both_ways(con, days=days).set_index("date")


def test_known_answers_from_the_definitions(frames):
    days = summary(frames)
    first, second = days.loc[pd.Timestamp("2024-06-01")], days.loc[pd.Timestamp("2024-06-02")]
    assert first.steps == 200 and first.wear_minutes == 70 and not first.valid_day
    assert first.mean_hr == pytest.approx((32 * 100 + 28 * 60 + 10 * 50) / 70)
    # resting: 08:32-08:59 (12 zero-step minutes before each). 00:02-00:05 the next day have 12
    # zero-step minutes before them too, but lie in the night's main sleep (a wake segment in bed)
    assert first.resting_hr == pytest.approx(60.0)
    assert pd.isna(second.resting_hr) and second.wear_minutes == 6
    # heart rate during main sleep: 23:50-23:59 (light) belong to the night that ends on the 2nd;
    # 00:00-00:05 are a wake segment, not asleep
    assert pd.isna(first.sleep_hr) and second.sleep_hr == pytest.approx(50.0)
    assert pd.isna(first.sleep_minutes)  # the night that ends on the 2nd counts for the 2nd
    assert second.sleep_minutes == 110 and second.sleep_efficiency == pytest.approx(110 / 120)  # the nap is not main sleep


def test_rest_outside_sleep_counts_across_midnight(frames):
    steps, heart, sleep = frames
    naps_only = sleep[~sleep.is_main_sleep]
    second = summary((steps, heart, naps_only)).loc[pd.Timestamp("2024-06-02")]
    # awake now: 00:02-00:05 have 12 recorded zero-step minutes before them, 23:50-00:01 of them
    # the day before (23:50-23:59 themselves have too few before them)
    assert second.resting_hr == pytest.approx(50.0) and pd.isna(second.sleep_hr)


def test_a_day_computed_alone_equals_that_day_computed_with_all_others(frames):
    alone = summary(frames, days=(pd.Timestamp("2024-06-02").date(),))
    together = summary(frames)
    pd.testing.assert_series_equal(alone.loc[pd.Timestamp("2024-06-02")], together.loc[pd.Timestamp("2024-06-02")])
    assert list(alone.index) == [pd.Timestamp("2024-06-02")]


def test_refresh_step_fills_wearable_daily_and_a_late_minute_updates_the_next_day(tmp_path, frames):
    from distributed import Client, LocalCluster

    steps, heart, sleep = frames
    lake = explorer.open(tmp_path / "lake")
    lake.write("steps_minute", steps)
    lake.write("heart_rate_minute", heart)
    lake.write("sleep_level", sleep[~sleep.is_main_sleep])  # the night's rest counts as awake
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        refresh(lake, client=client, steps=["wearable_daily"])
        before = lake.sql("SELECT resting_hr FROM wearable_daily WHERE date = DATE '2024-06-02'")["resting_hr"].item()
        # a step at 23:58 the evening before takes 00:00-00:10 out of rest: the 2nd must be recomputed
        lake.write("steps_minute", pd.DataFrame({"person_id": [PID], "datetime": [pd.Timestamp("2024-06-01 23:58:30")],
                                                 "steps": [5]}))
        report = refresh(lake, client=client, steps=["wearable_daily"])
        assert "2024-06-02" in report.steps[0].partitions
        after = lake.sql("SELECT resting_hr FROM wearable_daily WHERE date = DATE '2024-06-02'")["resting_hr"]
    assert before == pytest.approx(50.0) and after.isna().all()
    assert lake.sql(f"SELECT bool_and(person_bucket = {bucket_sql()}) AS ok FROM wearable_daily")["ok"].item()


def test_a_main_sleep_running_past_noon_is_one_night_dated_by_its_end():
    steps = pd.DataFrame({"person_id": PID, "datetime": minutes("2024-06-03 03:00", 600), "steps": 0})
    heart = pd.DataFrame({"person_id": PID, "datetime": minutes("2024-06-03 03:00", 600), "heart_rate_value": 55})
    heart.loc[heart.datetime >= "2024-06-03 11:00", "heart_rate_value"] = 45
    sleep = pd.DataFrame({"person_id": PID, "start_datetime": pd.to_datetime(["2024-06-03 04:00", "2024-06-03 10:00"]),
                          "level": ["light", "asleep"], "duration_minutes": [360, 150], "is_main_sleep": True})
    days = summary((steps, heart, sleep))
    night = days.loc[pd.Timestamp("2024-06-03")]
    assert night.sleep_minutes == 510 and night.sleep_efficiency == 1
    assert night.sleep_hr == pytest.approx((420 * 55 + 90 * 45) / 510)  # 04:00-11:00 at 55, 11:00-12:30 at 45
    assert pd.Timestamp("2024-06-04") not in days.index
    alone = summary((steps, heart, sleep), days=(pd.Timestamp("2024-06-03").date(),))
    pd.testing.assert_series_equal(alone.loc[pd.Timestamp("2024-06-03")], night)


def test_rows_without_a_value_are_not_readings():
    steps = pd.DataFrame({"person_id": PID, "datetime": minutes("2024-06-03 08:00", 40), "steps": 0})
    steps["steps"] = steps["steps"].astype("Int64")
    steps.loc[5, "steps"] = pd.NA  # 08:05 unrecorded: 08:06-08:17 lack 12 recorded minutes before them
    heart = pd.DataFrame({"person_id": PID, "datetime": minutes("2024-06-03 08:00", 40), "heart_rate_value": 60})
    heart["heart_rate_value"] = heart["heart_rate_value"].astype("Int64")
    heart.loc[30, "heart_rate_value"] = pd.NA
    heart.loc[heart.datetime < "2024-06-03 08:18", "heart_rate_value"] = 90
    empty_sleep = pd.DataFrame({"person_id": pd.Series([], dtype=str), "start_datetime": pd.Series([], dtype="datetime64[us]"),
                                "level": pd.Series([], dtype=str), "duration_minutes": pd.Series([], dtype=float),
                                "is_main_sleep": pd.Series([], dtype=bool)})
    day = summary((steps, heart, empty_sleep)).loc[pd.Timestamp("2024-06-03")]
    assert day.wear_minutes == 39
    assert day.resting_hr == pytest.approx(60.0)  # 08:18 onwards only; the 90s before are not at rest


@st.composite
def minute_streams(draw):
    """Two or three persons' heart rate, steps and sleep over three days, with what real exports
    hold: gaps, rows without a value, readings at odd seconds, minutes recorded twice, naps,
    overlapping segments and nights across midnight."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    persons = [f"{k:02x}" * 16 for k in range(draw(st.integers(2, 3)))]
    start = pd.Timestamp("2024-03-09")
    heart, steps, sleep = [], [], []
    for pid in persons:
        recorded = np.flatnonzero(rng.random(3 * 1440) < draw(st.sampled_from([0.3, 0.9, 1.0])))
        when = start + pd.to_timedelta(recorded, "min")
        twice = rng.random(len(when)) < draw(st.sampled_from([0.0, 0.01]))  # a repeated hour, a late correction
        odd = rng.random(len(when)) < 0.02
        when = when.append(when[twice]) + pd.to_timedelta(np.r_[odd * 30, np.zeros(twice.sum())], "s")
        quiet = rng.random(len(when)) < draw(st.sampled_from([0.5, 0.97]))  # mostly still: rest is found
        step_count = pd.array(np.where(quiet, 0, rng.integers(1, 60, len(when))), dtype="Int64")
        step_count[rng.random(len(when)) < 0.01] = pd.NA
        beats = pd.array(rng.integers(45, 120, len(when)), dtype="Int64")
        beats[rng.random(len(when)) < 0.01] = pd.NA
        heart.append(pd.DataFrame({"person_id": pid, "datetime": when, "heart_rate_value": beats}))
        steps.append(pd.DataFrame({"person_id": pid, "datetime": when, "steps": step_count}))
        segment_starts = np.sort(rng.choice(3 * 1440 * 60, size=draw(st.integers(0, 8)), replace=False))
        if len(segment_starts) > 1 and draw(st.booleans()):  # two segments starting together
            segment_starts[1] = segment_starts[0]
        level = rng.choice(["light", "deep", "rem", "wake", "asleep", "restless", None], len(segment_starts))
        sleep.append(pd.DataFrame({
            "person_id": pid, "start_datetime": start + pd.to_timedelta(segment_starts, "s"),
            "level": level,
            # up to a day and a half: chained episodes longer than a day are cut the same way
            "duration_minutes": rng.integers(5, draw(st.sampled_from([400, 2200])), len(segment_starts)).astype(float),
            "is_main_sleep": rng.random(len(segment_starts)) < 0.8}))
    if draw(st.booleans()):  # someone with a sleep log and no minutes
        sleep.append(pd.DataFrame({"person_id": "ff" * 16, "start_datetime": [start + pd.Timedelta(hours=23)],
                                   "level": ["light"], "duration_minutes": [420.0], "is_main_sleep": [True]}))
    days = draw(st.none() | st.lists(st.sampled_from([start.date() + pd.Timedelta(days=k) for k in (-1, 0, 1, 2, 3)]),
                                     min_size=0, max_size=3, unique=True).map(tuple))
    return pd.concat(heart), pd.concat(steps), pd.concat(sleep).astype({"start_datetime": "datetime64[us]"}), days


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minute_streams(), st.booleans(), st.integers(1, 2), st.sampled_from([1, 12, 60]), st.booleans())
def test_the_numpy_engine_gives_the_rows_of_the_defining_query(streams, has_sleep, persons_per_block, window,
                                                               some_persons):
    heart, steps, sleep, days = streams
    con = duckdb.connect()
    con.register("heart_rate_minute", heart)
    con.register("steps_minute", steps)
    con.register("sleep_level", sleep)
    # a bucket-like filter that leaves out a person inside the block's range of pseudonyms
    person_filter = "person_id <> '01010101010101010101010101010101'" if some_persons else "TRUE"
    # grids of a day or two: a run of days is cut into several
    both_ways(con, days=days, has_sleep=has_sleep, persons_per_query=persons_per_block, cells_per_chunk=3 * 1440,
              resting_window=window, person_filter=person_filter, bucket_column="length(person_id)")

