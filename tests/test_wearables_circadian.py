"""Circadian rest-activity metrics: known answers from the published definitions, the
pyActigraphy conventions (sample variance, resampling by sum), and invariants."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.errors import ExplorerError
from explorer.wearables import circadian as c


def hourly(values, start="2024-01-01"):
    return pd.Series(np.asarray(values, dtype="float64"), index=pd.date_range(start, periods=len(values), freq="1h"))


def minutely_from_hours(profile, days):
    """A minute series repeating an hourly profile (each hour's value every minute) for ``days`` days."""
    values = np.repeat(np.tile(np.asarray(profile, dtype="float64"), days), 60)
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="1min"))


PROFILE = [0] * 7 + [3, 8, 9, 7, 6, 9, 10, 8, 6, 5, 7, 4, 2, 1, 0, 0, 0]


def test_perfectly_periodic_signal_has_is_one_under_wittings_population_variances():
    series = hourly(PROFILE * 7)
    assert c.interdaily_stability(series, binarize=False, ddof=0) == pytest.approx(1.0, abs=1e-12)
    # pyActigraphy's sample variances: (24 D - 1) / (23 D) for D days of hourly bins
    assert c.interdaily_stability(series, binarize=False) == pytest.approx((24 * 7 - 1) / (23 * 7), abs=1e-12)


def test_no_daily_pattern_has_is_near_zero():
    rng = np.random.default_rng(0)
    assert c.interdaily_stability(hourly(rng.normal(10, 2, 24 * 60)), binarize=False) < 0.05


def test_iv_hand_computed():
    # alternating 0, 1 hourly for two days: every successive squared difference is 1
    series = hourly([0, 1] * 24)
    n = 48
    sample_variance = (n / 4) / (n - 1)  # 24 ones and 24 zeros around a mean of 1/2
    assert c.intradaily_variability(series, binarize=False) == pytest.approx(1 / sample_variance, abs=1e-12)
    # a smooth profile varies little from hour to hour: IV far below white noise's ~2
    smooth = hourly(np.tile(10 + 5 * np.sin(np.arange(24) * 2 * np.pi / 24), 5))
    assert c.intradaily_variability(smooth, binarize=False) < 0.1


def test_l5_m10_ra_on_a_day_active_from_8_to_18():
    day = [0] * 8 + [1] * 10 + [0] * 6
    series = minutely_from_hours(day, 3)
    low, high = c.l5(series, binarize=False), c.m10(series, binarize=False)
    assert low == c.ActivityWindow(pd.Timedelta(0), 0.0)  # the first all-rest window of the day
    assert high == c.ActivityWindow(pd.Timedelta(hours=8), 1.0)
    assert c.relative_amplitude(series, binarize=False) == 1.0


def test_l5_window_may_run_across_midnight():
    day = [0, 0, 0] + [5] * 19 + [0, 0]  # rest from 22:00 to 03:00
    low = c.l5(minutely_from_hours(day, 2), binarize=False)
    assert low == c.ActivityWindow(pd.Timedelta(hours=22), 0.0)


def test_binarize_counts_epochs_above_threshold_and_keeps_missing():
    series = pd.Series([0, 4, 5, np.nan, 100], index=pd.date_range("2024-01-01", periods=5, freq="1min"))
    assert c.binarized(series).tolist()[:3] == [0.0, 0.0, 1.0] and np.isnan(c.binarized(series).iloc[3])


def test_resampling_sums_bins_from_the_first_sample():
    minutes = pd.Series(1.0, index=pd.date_range("2024-01-01 00:30", periods=180, freq="1min"))
    data = c._prepared(minutes, "1h", binarize=False, threshold=4)
    assert data.index[0] == pd.Timestamp("2024-01-01 00:30") and (data == 60).all()


def test_irregular_series_is_refused_with_what_to_do():
    series = pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:05"]))
    with pytest.raises(ExplorerError, match="asfreq"):
        c.interdaily_stability(series)


def test_registry_lists_every_metric_with_units():
    from explorer.catalog.metrics import METRICS

    circadian = METRICS.select(table="wearable_circadian")
    assert set(circadian) == {"interdaily_stability", "intradaily_variability", "relative_amplitude", "l5", "m10",
                              "sleep_regularity_index"}
    assert all(m.units and m.reference and callable(m.function) for m in circadian.values())


@settings(max_examples=40, deadline=None)
@given(days=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), scale=st.floats(0.5, 20))
def test_invariants(days, seed, scale):
    rng = np.random.default_rng(seed)
    series = minutely_from_hours(rng.poisson(5, 24), days) + rng.poisson(1, days * 1440)
    ra = c.relative_amplitude(series, binarize=False)
    assert 0 <= ra <= 1
    assert c.l5(series, binarize=False).value <= c.m10(series, binarize=False).value
    # scaling the counts changes none of the ratios
    assert c.interdaily_stability(series * scale, binarize=False) == pytest.approx(c.interdaily_stability(series, binarize=False))
    assert c.intradaily_variability(series * scale, binarize=False) == pytest.approx(c.intradaily_variability(series, binarize=False))
    assert 0 <= c.interdaily_stability(series, binarize=False, ddof=0) <= 1 + 1e-12


def minutes_of(states, start="2024-01-01"):
    return pd.Series(np.asarray(states, dtype="float64"), index=pd.date_range(start, periods=len(states), freq="1min"))


def test_sleep_regularity_index_known_answers():
    night = np.r_[np.ones(7 * 60), np.zeros(17 * 60)]  # asleep 00:00-07:00
    assert c.sleep_regularity_index(minutes_of(np.tile(night, 5))) == pytest.approx(100.0)
    # each day the reverse of the one before: never the same state 24 h apart
    assert c.sleep_regularity_index(minutes_of(np.concatenate([night, 1 - night, night]))) == pytest.approx(-100.0)
    # hand count: day 2 sleeps one hour later (08:00 instead of 07:00 wake): 60 of 1440 pairs differ
    later = np.r_[np.ones(8 * 60), np.zeros(16 * 60)]
    assert c.sleep_regularity_index(minutes_of(np.concatenate([night, later]))) == pytest.approx(200 * 1380 / 1440 - 100)
    # unknown minutes drop their pairs: the same as if those pairs were not there
    gap = np.concatenate([night, later])
    gap[1440 + 7 * 60:1440 + 8 * 60] = np.nan
    assert c.sleep_regularity_index(minutes_of(gap)) == pytest.approx(100.0)
    assert np.isnan(c.sleep_regularity_index(minutes_of(night)))  # one day: no pair


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), days=st.integers(1, 9), extra=st.integers(0, 1439), first=st.integers(0, 1439),
       bin_minutes=st.sampled_from([1, 15, 60, 120]), binarize=st.booleans(), gaps=st.booleans())
def test_batch_core_equals_the_public_functions(seed, days, extra, first, bin_minutes, binarize, gaps):
    rng = np.random.default_rng(seed)
    n = days * 1440 + extra
    values = rng.poisson(rng.gamma(0.5, 8, n)).astype("float64")
    if gaps:
        for at in rng.integers(0, n, 4):
            values[at:at + int(rng.integers(1, 300))] = np.nan
    values[0] = 3.0  # a recording starts with a sample
    series = minutes_of(values, start=pd.Timestamp("2024-03-01") + pd.Timedelta(minutes=first))
    fast = c.summarise_minutes(values, first, bin_minutes=bin_minutes, binarize=binarize)
    freq = f"{bin_minutes}min"
    expected = (c.interdaily_stability(series, freq=freq, binarize=binarize),
                c.intradaily_variability(series, freq=freq, binarize=binarize),
                c.relative_amplitude(series, binarize=binarize))
    np.testing.assert_allclose(fast[:3], expected, rtol=1e-12, atol=1e-12)
    assert fast.l5 == c.l5(series, binarize=binarize)
    assert fast.m10 == c.m10(series, binarize=binarize)


def test_no_activity_at_all_gives_nan_not_an_error():
    series = minutes_of(np.where(np.arange(8 * 1440) % 7 == 0, 3.0, 0.0))  # never above the threshold of 4
    assert np.isnan(c.relative_amplitude(series)) and np.isnan(c.interdaily_stability(series))
    fast = c.summarise_minutes(series.to_numpy(), 0)
    assert np.isnan(fast.relative_amplitude) and fast.l5.value == fast.m10.value == 0
    with pytest.raises(ExplorerError, match="at least one recorded minute"):
        c.summarise_minutes(np.full(100, np.nan), 0)
    with pytest.raises(ExplorerError, match="must divide a day"):
        c.sleep_regularity_index(pd.Series([0.0, 1.0, 1.0], index=pd.date_range("2024-01-01", periods=3, freq="7min")))


def test_the_wearable_registry_matches_the_catalog():
    from explorer.catalog import default_catalog
    from explorer.wearables import METRICS

    catalog = default_catalog()
    assert {"resting_hr", "sleep_hr", "interdaily_stability", "sleep_regularity_index"} <= set(METRICS)
    for metric in METRICS.values():
        column = catalog.get(metric.table).column(metric.column)
        assert metric.units and metric.reference and callable(metric.function)
        if metric.table == "wearable_daily":  # circadian L5/M10 are stored binarised: a share, unit 1
            assert (column.unit or "1") == metric.units, metric
