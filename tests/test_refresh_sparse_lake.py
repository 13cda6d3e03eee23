"""Every refresh step on a lake that holds only part of the data: a step whose required inputs are
absent is skipped with the reason, a step whose optional inputs are absent runs and succeeds (its
output has the catalog's types, even empty), and none fails. The lake of issue 22: persons,
residences and a climate grid but no clinical event, where event_exposure once failed with
``cannot store double as date32[day]``."""

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import explorer
from explorer.jobs.refresh import refresh
from explorer.testing.factories import make_heart_rate_minutes, make_measurements, make_persons

KEY = "sparse-lake-key-0123456789abcdef"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    return explorer.open(tmp_path / "lake")


def add_residences_and_grid(lake, tmp_path, persons: pd.DataFrame):
    lake.write("residence", pd.DataFrame({
        "person_id": persons["person_id"], "start_date": date(2024, 1, 1), "end_date": None,
        "latitude": 35.0, "longitude": -106.0, "zip3": "871", "tract_geoid": None, "block_group_geoid": None,
        "source_file": "residence.csv"}))
    folder = tmp_path / "grid"
    folder.mkdir()
    days = pd.date_range("2024-07-01", periods=10, freq="D")
    tx = np.full((10, 2, 2), 33.0)
    xr.Dataset({"tasmax": (("time", "lat", "lon"), tx, {"units": "degC"}),
                "tasmin": (("time", "lat", "lon"), tx - 10.0, {"units": "degC"})},
               coords={"time": days, "lat": [34.5, 35.5], "lon": [-106.5, -105.5]}).to_netcdf(folder / "g.nc", engine="scipy")
    report = lake.ingest(folder, now=datetime(2025, 1, 1))
    assert lake.sql("SELECT count(*) AS n FROM array_store")["n"].iloc[0] == 2, report


def outcomes(report) -> dict[str, tuple[str, str | None]]:
    return {s.step: (s.status, s.error) for s in report.steps}


def test_persons_residences_and_grid_without_events(lake, tmp_path, client):
    persons = make_persons(4, 0)
    lake.write("person", persons)
    add_residences_and_grid(lake, tmp_path, persons)
    found = outcomes(refresh(lake, client=client))
    assert not [s for s, (status, _) in found.items() if status == "failed"], found
    assert found["exposure_daily"][0] == "succeeded"
    assert found["event_exposure"][0] == "succeeded", found["event_exposure"]
    assert lake.sql("SELECT count(*) AS n FROM event_exposure")["n"].iloc[0] == 0
    assert lake.sql("SELECT count(*) AS n FROM exposure_daily")["n"].iloc[0] == 4 * 10
    # an empty output keeps the catalog's types: event_date is a date, not a double
    kinds = dict(lake.sql("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM event_exposure)").values)
    assert kinds["event_date"] == "DATE"


def test_events_but_no_residence_or_grid(lake, client):
    persons = make_persons(4, 0)
    lake.write("person", persons)
    lake.write("measurement", make_measurements(4, 2, 0))
    found = outcomes(refresh(lake, client=client))
    assert not [s for s, (status, _) in found.items() if status == "failed"], found
    # exposure_daily cannot run without residences; event_exposure's reason says so, not that something failed
    assert found["exposure_daily"] == ("skipped", "input residence, array_store not in the lake yet")
    assert found["event_exposure"] == ("skipped", "its input exposure_daily was skipped in this run")


@pytest.mark.parametrize("contents", ["persons", "wearables"])
def test_persons_only_or_wearables_only(lake, client, contents):
    persons = make_persons(3, 0)
    lake.write("person", persons)
    if contents == "wearables":
        lake.write("heart_rate_minute", make_heart_rate_minutes(3, 2, 0))
    found = outcomes(refresh(lake, client=client))
    assert not [s for s, (status, _) in found.items() if status == "failed"], found
    assert found["cohort_summary"][0] == "succeeded"
    for status, reason in found.values():
        assert status in ("succeeded", "skipped", "up_to_date") and (status != "skipped" or "failed" not in reason), found
    if contents == "wearables":
        assert found["data_availability"][0] == "succeeded" and found["modality_coverage"][0] == "succeeded"
