"""Heat waves agree with xclim on a real daily temperature series (NOAA's Seattle daily maximum
and minimum, 2012-2015, as shipped in the vega_datasets package) given in K, degC and degF, and
the unit does not change the answer; the per-day flags used for exposure_daily count the same
days and events as xclim."""

from importlib import resources

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from xclim import indices

from explorer.errors import ExplorerError
from explorer.exposure import heat_wave_days, heat_waves

# Seattle rarely passes 30/22 degC: the lower thresholds make heat waves happen in this record
THRESHOLDS = [("22 degC", "30 degC"), ("13 degC", "25 degC"), ("11 degC", "23 degC")]


@pytest.fixture(scope="module")
def seattle():
    with resources.files("vega_datasets").joinpath("_data/seattle-weather.csv").open() as handle:
        frame = pd.read_csv(handle, parse_dates=["date"])
    frame = frame.set_index("date").asfreq("D")
    assert len(frame) == 1461 and frame[["temp_max", "temp_min"]].notna().all().all()
    return frame


def series(values, units):
    converted = {"degC": values, "K": values + 273.15, "degF": values * 9 / 5 + 32}[units]
    return xr.DataArray(converted.to_numpy(), dims="time", coords={"time": converted.index.to_numpy()}, attrs={"units": units})


@pytest.mark.parametrize("units", ["K", "degC", "degF"])
@pytest.mark.parametrize("thresholds", THRESHOLDS)
@pytest.mark.parametrize("op", [">", ">="])
def test_heat_waves_equal_xclim_in_every_unit(seattle, units, thresholds, op):
    tasmin, tasmax = series(seattle["temp_min"], units), series(seattle["temp_max"], units)
    thresh_tasmin, thresh_tasmax = thresholds
    ours = heat_waves(tasmin, tasmax, thresh_tasmin=thresh_tasmin, thresh_tasmax=thresh_tasmax, op=op)
    reference = {name: function(series(seattle["temp_min"], units), series(seattle["temp_max"], units),
                                thresh_tasmin=thresh_tasmin, thresh_tasmax=thresh_tasmax, window=3, freq="YS", op=op)
                 for name, function in (("frequency", indices.heat_wave_frequency),
                                        ("max_length", indices.heat_wave_max_length),
                                        ("total_length", indices.heat_wave_total_length))}
    for name, expected in reference.items():
        np.testing.assert_array_equal(ours[name].values, expected.values)
    assert list(ours.time.dt.year.values) == [2012, 2013, 2014, 2015]


@pytest.mark.parametrize("units", ["K", "degF"])
def test_the_unit_of_the_input_does_not_change_the_answer(seattle, units):
    # thresholds between the record's 0.1 degC steps: no value sits on one, whatever the unit
    options = dict(thresh_tasmin="12.95 degC", thresh_tasmax="24.95 degC")
    in_degc = heat_waves(series(seattle["temp_min"], "degC"), series(seattle["temp_max"], "degC"), **options)
    converted = heat_waves(series(seattle["temp_min"], units), series(seattle["temp_max"], units), **options)
    for name in ("frequency", "max_length", "total_length"):
        np.testing.assert_array_equal(converted[name].values, in_degc[name].values)
    assert in_degc["frequency"].sum() > 0


def test_the_record_has_heat_waves_at_lower_thresholds(seattle):
    found = heat_waves(series(seattle["temp_min"], "degC"), series(seattle["temp_max"], "degC"),
                       thresh_tasmin="13 degC", thresh_tasmax="25 degC")
    assert found["frequency"].sum() > 3 and found["total_length"].sum() >= 3 * found["frequency"].sum()


@pytest.mark.parametrize("thresholds", THRESHOLDS)
@pytest.mark.parametrize("window", [1, 3, 5])
def test_per_day_flags_count_what_xclim_counts(seattle, thresholds, window):
    low, high = (float(t.split()[0]) for t in thresholds)
    flags = pd.Series(heat_wave_days(seattle["temp_min"].to_numpy(), seattle["temp_max"].to_numpy(),
                                     thresh_tasmin=low, thresh_tasmax=high, window=window), index=seattle.index)
    tasmin, tasmax = series(seattle["temp_min"], "degC"), series(seattle["temp_max"], "degC")
    total = indices.heat_wave_total_length(tasmin, tasmax, thresh_tasmin=thresholds[0], thresh_tasmax=thresholds[1],
                                           window=window, freq="YS")
    frequency = indices.heat_wave_frequency(tasmin, tasmax, thresh_tasmin=thresholds[0], thresh_tasmax=thresholds[1],
                                            window=window, freq="YS")
    # no run in this record crosses New Year, so counting per year after flagging is the same
    np.testing.assert_array_equal(flags.groupby(flags.index.year).sum().to_numpy(), total.values)
    starts = flags & ~flags.shift(1, fill_value=False)
    np.testing.assert_array_equal(starts.groupby(starts.index.year).sum().to_numpy(), frequency.values)


def test_flags_of_many_series_at_once_never_join_runs_across_series():
    hot = np.array([[23, 23, 23, 0, 23], [23, 23, 0, 0, 0]], dtype=float)
    flags = heat_wave_days(hot, hot + 10, window=3)
    assert flags.tolist() == [[True, True, True, False, False], [False] * 5]
    flat = heat_wave_days(np.r_[23, 23, 23, 23], np.r_[33, 33, 33, 33], window=3, run_id=np.array(["a", "a", "b", "b"]))
    assert not flat.any()  # two days each: no heat wave for either person
    with_gap = heat_wave_days(np.r_[23, 23, np.nan, 23, 23, 23], np.r_[33] * 6, window=3)
    assert with_gap.tolist() == [False, False, False, True, True, True]


def test_a_series_without_units_or_a_bad_operator_is_refused(seattle):
    bare = xr.DataArray(seattle["temp_min"].to_numpy(), dims="time", coords={"time": seattle.index.to_numpy()})
    with pytest.raises(ExplorerError, match="tasmin has no units attribute"):
        heat_waves(bare, series(seattle["temp_max"], "degC"))
    with pytest.raises(ExplorerError, match="op '<' is not one of"):
        heat_waves(series(seattle["temp_min"], "degC"), series(seattle["temp_max"], "degC"), op="<")


def test_pandas_series_with_units_are_accepted(seattle):
    tasmin, tasmax = seattle["temp_min"].copy(), seattle["temp_max"].copy()
    tasmin.attrs["units"] = tasmax.attrs["units"] = "degC"
    found = heat_waves(tasmin, tasmax, thresh_tasmin="13 degC", thresh_tasmax="25 degC")
    expected = heat_waves(series(seattle["temp_min"], "degC"), series(seattle["temp_max"], "degC"),
                          thresh_tasmin="13 degC", thresh_tasmax="25 degC")
    xr.testing.assert_equal(found, expected)
