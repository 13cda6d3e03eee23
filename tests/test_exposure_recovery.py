"""The exposure aggregates recover what ``explorer synth`` planted: each person-day's temperature
anomaly at home (moves included), and the effect of that anomaly on resting heart rate, found by
the worked association within its confidence interval; event windows equal a recount from
exposure_daily."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from explorer.exposure import resting_hr_on_anomaly
from explorer.synth import SynthConfig
from explorer.testing.cohorts import synthetic_lake, truth

CONFIG = SynthConfig(participants=30, days=28, seed=11, start=date(2024, 6, 3), faults=False, workers=1)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("exposure")
    lake = synthetic_lake(root, CONFIG, ["wearable_daily", "exposure_daily", "event_exposure"], workers=2)
    planted = truth(root, "truth_daily")
    planted["date"] = pd.to_datetime(planted["date"])
    return lake, planted


def test_planted_anomaly_at_home_recovered_for_every_person_day(cohort):
    lake, truth = cohort
    exposure = lake.sql("SELECT person_id, date, tas_anomaly, residence_status FROM exposure_daily")
    exposure["date"] = pd.to_datetime(exposure["date"])
    both = truth.merge(exposure, on=["person_id", "date"], suffixes=("_planted", ""))
    assert len(both) == len(truth) and (both["residence_status"] == "ok").all()
    # the grid went through NetCDF (K for the baseline year) and float32: agreement to 1e-3 K
    np.testing.assert_allclose(both["tas_anomaly"], both["tas_anomaly_planted"], atol=1e-3)
    assert both["tas_anomaly"].std() > 1.0  # a real signal, not a constant


def test_planted_heat_effect_recovered_within_the_confidence_interval(cohort):
    lake, _ = cohort
    for table in ("wearable_daily", "exposure_daily"):
        lake.sql(f"SELECT 1 FROM {table} LIMIT 0")
    found = resting_hr_on_anomaly(lake.connection())
    assert found.ci_low <= CONFIG.heat_effect_bpm_per_k <= found.ci_high, str(found)
    assert found.ci_high - found.ci_low < 0.2 and found.ci_low > 0, str(found)


def test_event_windows_equal_a_recount_from_exposure_daily(cohort):
    lake, _ = cohort
    windows = lake.sql("SELECT * FROM event_exposure WHERE event_table = 'measurement' ORDER BY event_id, window_days")
    assert set(windows["window_days"]) == {7, 30, 365} and windows["event_id"].is_unique is False
    recount = lake.sql("""
        SELECT e.event_id, e.window_days, avg(x.tasmax) AS tasmax_mean, count(x.tasmax) AS days_with_value,
               count(*) FILTER (WHERE x.heat_wave) AS heat_wave_days
        FROM event_exposure e JOIN exposure_daily x ON x.person_id = e.person_id
             AND x.date BETWEEN e.event_date - e.window_days AND e.event_date
        WHERE e.event_table = 'measurement' GROUP BY ALL ORDER BY e.event_id, e.window_days""")
    merged = windows.merge(recount, on=["event_id", "window_days"], how="left", suffixes=("", "_recount"))
    known = merged["days_with_value"] > 0
    assert known.sum() >= 100  # the grids cover only the last year and a half of a decade of visits
    np.testing.assert_allclose(merged.loc[known, "tasmax_mean"], merged.loc[known, "tasmax_mean_recount"], rtol=1e-9)
    assert (merged.loc[known, "heat_wave_days"] == merged.loc[known, "heat_wave_days_recount"]).all()
    assert (merged.loc[known, "days_with_value"] == merged.loc[known, "days_with_value_recount"]).all()


def test_views_show_what_the_tables_hold(cohort):
    from explorer.errors import ExplorerError
    from explorer.exposure import open_grids
    from explorer.views import ExposureMap, ExposureResponse, HeatWaveCalendar

    lake, _ = cohort
    calendar = HeatWaveCalendar(lake=lake).data()
    expected = lake.sql("""SELECT date, count(*) FILTER (WHERE heat_wave) AS hot FROM exposure_daily
                           WHERE residence_status = 'ok' GROUP BY date ORDER BY date""")
    assert calendar["in_heat_wave"].tolist() == expected["hot"].tolist()
    assert calendar["share"].between(0, 1).all() and calendar["in_heat_wave"].sum() > 0
    day = pd.Timestamp(CONFIG.start) + pd.Timedelta(days=5)
    field = ExposureMap(lake=lake, variable="pm25", date=day.to_pydatetime()).data()
    grid = open_grids(lake.sql("SELECT * FROM array_store"), lake.root, ("pm25",))["pm25"]
    np.testing.assert_array_equal(field.values, grid.sel(time=day).values)
    with pytest.raises(ExplorerError, match="pm25 has no day 1999-01-01; the grid covers"):
        ExposureMap(lake=lake, variable="pm25", date=pd.Timestamp("1999-01-01").to_pydatetime()).data()
    response = ExposureResponse(lake=lake).data()
    assert response["bins"]["n"].sum() == response["fit"].n_obs
    assert response["fit"].slope == pytest.approx(resting_hr_on_anomaly(lake.connection()).slope)
    # the bins rise with the anomaly, as planted
    bins = response["bins"][response["bins"]["n"] >= 20]
    assert np.corrcoef(bins["anomaly"], bins["mean"])[0, 1] > 0.8
    for view in (ExposureMap(lake=lake), HeatWaveCalendar(lake=lake), ExposureResponse(lake=lake)):
        assert view.panel() is not None


def test_exposure_views_for_the_public_role(cohort):
    from explorer.privacy import DisclosureControl
    from explorer.views import ExposureResponse, HeatWaveCalendar

    lake, _ = cohort
    aou = DisclosureControl(profile="aou")
    exact = HeatWaveCalendar(lake=lake).data()
    public = HeatWaveCalendar(lake=lake, role="public", disclosure=aou).data()
    assert len(public) == len(exact)
    hidden = public["in_heat_wave"].isna()
    assert hidden.any() and (exact.loc[hidden, "in_heat_wave"].between(1, 20) | (exact.loc[hidden, "persons"]
                                                                                   - exact.loc[hidden, "in_heat_wave"]).between(1, 20)).all()
    assert public["share"][hidden].isna().all() and (public["in_heat_wave"].dropna().eq(0) | public["in_heat_wave"].dropna().gt(20)).all()
    bins = ExposureResponse(lake=lake, role="public", disclosure=aou).data()["bins"]
    assert bins["mean"].isna().any() and (bins.loc[bins["mean"].notna(), "persons"] > 20).all()
    assert "n" not in bins  # person-days would be a finer count beside the protected persons
    finer = ExposureResponse(lake=lake, role="public", disclosure=aou, bin_width=0.5).data()["bins"]
    pd.testing.assert_frame_equal(finer, bins)
    assert ExposureResponse(lake=lake, role="public").panel() is not None
