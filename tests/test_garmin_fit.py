"""Garmin FIT monitoring and activity files (tests/data/garmin_fit, written message by message with
Garmin's FIT SDK encoder by tests/write_fit_fixtures.py from the FIT Protocol and Profile; tests/data/README.md
cites them): heart rate per local minute, monitoring steps from running totals per activity type,
compressed timestamps expanded, every message accounted; damaged files refused with what to do."""

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import explorer
from explorer.ingest.readers.garmin_fit import FIT_EPOCH_S, expand_timestamp_16, participant_of

DATA = Path(__file__).resolve().parent / "data"
KEY = "garmin-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    return explorer.open(tmp_path / "lake")


def test_fit_fixture_bytes_follow_the_protocol():
    for name in ("Monitor/M0501.FIT", "Activity/A0501.FIT"):
        data = (DATA / "garmin_fit" / "1000002" / "GARMIN" / name).read_bytes()
        assert data[0] == 14 and data[8:12] == b".FIT"  # 14-byte header, signature
        assert int.from_bytes(data[4:8], "little") == len(data) - 14 - 2  # data size: all but header and CRC


def test_monitoring_and_activity_known_answers(lake):
    lake.ingest(DATA / "garmin_fit", now=NOW)
    files = lake.sql("SELECT source_name, format, status, rows_read, rows_accepted, rows_quarantined, rows_ignored "
                     "FROM ingest_file ORDER BY source_name")
    assert files["format"].tolist() == ["garmin_fit"] * 2 and files["status"].tolist() == ["accepted"] * 2
    counts = {Path(n).name: r for n, r in zip(files["source_name"],
                                              files[["rows_read", "rows_accepted", "rows_quarantined", "rows_ignored"]].values.tolist())}
    # monitoring: file_id, monitoring_info, 5 monitoring = 7; minutes numbered by messages 3 (heart rate) and 5
    # (steps); ignored: file_id, monitoring_info, the 08:00:30 sample merged, running's first total (a baseline),
    # the message with HR 255 (invalid) only
    assert counts["M0501.FIT"] == [7, 2, 0, 5]
    # activity: file_id, 4 records, activity = 6; minutes from records 2 and 4; 124 merged; HR 0 invalid
    assert counts["A0501.FIT"] == [6, 2, 0, 4]
    heart = lake.sql("SELECT datetime, heart_rate_value, sample_count FROM heart_rate_minute ORDER BY datetime")
    # 15:00 UTC with local_timestamp 7 h behind = 08:00 local: (70 + 74) / 2; activity 17:00 UTC = 10:00
    assert heart["datetime"].tolist() == [pd.Timestamp("2024-05-01 08:00"), pd.Timestamp("2024-05-01 10:00"),
                                          pd.Timestamp("2024-05-01 10:01")]
    assert heart["heart_rate_value"].tolist() == [72, 122, 130] and heart["sample_count"].tolist() == [2, 2, 1]
    steps = lake.sql("SELECT datetime, steps FROM steps_minute ORDER BY datetime")
    # the file starts at 08:00, not at midnight: walking's first total 100 and running's 40 are steps taken
    # before the file (baselines); walking 100 -> 160 is 60 steps at 08:01
    assert steps["steps"].tolist() == [60]
    assert steps["datetime"].tolist() == [pd.Timestamp("2024-05-01 08:01")]


def test_truncated_fit_refused_with_what_to_do(lake, tmp_path):
    data = (DATA / "garmin_fit" / "1000002" / "GARMIN" / "Monitor" / "M0501.FIT").read_bytes()
    target = tmp_path / "in" / "4711" / "GARMIN" / "Monitor" / "M0502.FIT"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:-20])
    lake.ingest(tmp_path / "in", now=NOW)
    found = lake.sql("SELECT status, reason FROM ingest_file")
    assert found["status"].iloc[0] != "accepted"
    assert "truncated or damaged" in found["reason"].iloc[0] and "copy it from the device again" in found["reason"].iloc[0]


def test_fit_outside_a_participant_folder_refused(lake, tmp_path):
    target = tmp_path / "M0501.FIT"
    target.write_bytes((DATA / "garmin_fit" / "1000002" / "GARMIN" / "Monitor" / "M0501.FIT").read_bytes())
    lake.ingest(target, now=NOW)
    assert "participant" in lake.sql("SELECT reason FROM ingest_file")["reason"].iloc[0]
    assert "--participant" in lake.sql("SELECT reason FROM ingest_file")["reason"].iloc[0]
    named = explorer.open(tmp_path / "named-lake")  # the same file with the person named is read
    named.ingest(target, now=NOW, participant="1000002")
    assert named.sql("SELECT status FROM ingest_file")["status"].tolist() == ["accepted"]


def test_participant_and_epoch():
    assert participant_of("up/4711/GARMIN/Monitor/M1.FIT") == "4711"
    assert participant_of("up/M1.FIT") is None
    assert datetime.utcfromtimestamp(FIT_EPOCH_S) == datetime(1989, 12, 31)  # FIT Protocol: the FIT epoch


@given(st.integers(0, 2**32 - 1 - 70000), st.integers(0, 65535))
def test_timestamp_16_expands_to_the_next_time_with_those_low_bits(last, elapsed):
    expanded = expand_timestamp_16(last, (last + elapsed) & 0xFFFF)
    assert expanded == last + elapsed  # within one roll-over the time is recovered exactly
    assert expanded & 0xFFFF == (last + elapsed) & 0xFFFF and 0 <= expanded - last < 65536


def test_same_person_as_aou_csv_and_fit_monitoring_gives_the_same_daily_rows(tmp_path, monkeypatch):
    import numpy as np

    from explorer.synth.cohort import make_cohort
    from explorer.synth.config import SynthConfig
    from explorer.synth.garmin_fit import write_garmin_monitoring
    from explorer.synth.wearables import simulate_person
    from explorer.synth.writers import write_csv
    from explorer.wearables.daily import daily_summary_sql

    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    config = SynthConfig(participants=1, days=3, seed=7, workers=1, artefact_rate=0.0)
    person = next(make_cohort(config).persons.itertuples(index=False))
    window = pd.date_range(config.start, periods=3, freq="D")
    daily = pd.DataFrame({"date": window.date, "time_zone": "America/Denver", "tas_anomaly": 0.0,
                          "latitude": 39.7, "longitude": -105.0})
    streams = simulate_person(person, daily, config, np.random.default_rng([7, 3, int(person.source_id)]))
    sid = person.source_id
    write_csv(streams.heart_rate[["datetime", "heart_rate_value"]].assign(person_id=sid)[["person_id", "datetime", "heart_rate_value"]],
              tmp_path / "aou" / "heart_rate_minute_level.csv")
    write_csv(streams.steps.assign(person_id=sid)[["person_id", "datetime", "steps"]], tmp_path / "aou" / "steps_intraday.csv")
    files = write_garmin_monitoring(tmp_path / "fit" / sid, streams)
    assert len(files) == 3  # one monitoring file a local day
    by_csv, by_fit = explorer.open(tmp_path / "lake_csv"), explorer.open(tmp_path / "lake_fit")
    by_csv.ingest(tmp_path / "aou", now=NOW)
    by_fit.ingest(tmp_path / "fit", now=NOW)
    outcome = by_fit.sql("SELECT status, rows_quarantined FROM ingest_file")
    assert outcome["status"].tolist() == ["accepted"] * 3 and outcome["rows_quarantined"].sum() == 0
    query = daily_summary_sql(has_sleep=False)  # FIT monitoring files carry no sleep stages
    expected = by_csv.sql(query).sort_values("date").reset_index(drop=True)
    got = by_fit.sql(query).sort_values("date").reset_index(drop=True)
    assert len(expected) == 3 and expected["steps"].sum() > 0 and expected["resting_hr"].notna().any()
    pd.testing.assert_frame_equal(got, expected)


def test_explorer_synth_writes_fit_people_that_ingest_whole(tmp_path, monkeypatch):
    from explorer.command import main

    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    assert main(["synth", "--participants", "4", "--days", "2", "--seed", "5", "--json-fraction", "0",
                 "--garmin-fit-fraction", "0.5", "--out", str(tmp_path / "cohort")]) == 0
    people = sorted(p.name for p in (tmp_path / "cohort" / "garmin_fit").iterdir())
    assert len(people) == 2 and all(len(list((tmp_path / "cohort" / "garmin_fit" / p).rglob("*.FIT"))) == 2 for p in people)
    lake = explorer.open(tmp_path / "lake")
    lake.ingest(tmp_path / "cohort" / "garmin_fit", now=NOW)
    outcome = lake.sql("SELECT format, status FROM ingest_file")
    assert set(outcome["format"]) == {"garmin_fit"} and set(outcome["status"]) == {"accepted"}
    assert lake.sql("SELECT count(DISTINCT person_id) AS n FROM steps_minute")["n"].iloc[0] == 2
