"""Fitbit account exports and Google Takeout (tests/data/fitbit_account, tests/data/google_takeout,
written by hand from Fitbit's export documentation; tests/data/README.md cites it): sub-minute
heart rate averaged to minutes with its sample count and lowest confidence, every sample
accounted for, the Takeout layout's person from the folder or --participant, the warning and
data-quality failure when no time zone is known, and the round trip: one person written as All
of Us CSV and as a Fitbit export gives the same wearable_daily rows."""

import json
import math
import shutil
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.ingest import Pseudonymizer
from explorer.ingest.readers import fitbit_json
from explorer.ingest.readers.fitbit_json import FitbitExportReader, layout_of
from explorer.wearables import daily_summary_sql
from explorer.testing.ingest import file_outcomes as files, row_counts as counts
from conftest import run_cli

DATA = Path(__file__).resolve().parent / "data"
KEY = "fitbit-export-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)
ZONE = "America/Denver"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.delenv("EXPLORER_PARTICIPANT", raising=False)
    return explorer.open(tmp_path / "lake")


def pseudonym(source_id: str) -> str:
    return Pseudonymizer(KEY.encode())(source_id)


def heart(lake) -> pd.DataFrame:
    return lake.sql("SELECT person_id, datetime, heart_rate_value, sample_count, confidence FROM heart_rate_minute "
                    "ORDER BY datetime")


def check(lake, check_id: str) -> dict:
    return lake.sql("SELECT * FROM dq_result WHERE check_id = ?", [check_id]).iloc[0].to_dict()


# -- the account export ------------------------------------------------------------------------


def test_account_export_minutes_are_means_of_their_samples(lake):
    report = lake.ingest(DATA / "fitbit_account", default_time_zone=ZONE, now=NOW)
    found = files(lake)
    assert set(found["status"]) == {"accepted"} and set(found["format"]) == {"fitbit_export_json"}
    # 10 samples: 4 + 2 averaged into 08:00 and 08:01, 300 bpm left out of 08:02, no bpm, an ISO time
    assert counts(found, "heart_rate-2024-03-09.json") == [10, 7, 3, 0]
    # 02:30 on 2024-03-10 does not exist in Denver (02:00 -> 03:00): its minute of 2 samples is quarantined, both counted
    assert counts(found, "heart_rate-2024-03-10.json") == [4, 2, 2, 0]
    assert counts(found, "steps-2024-03-09.json") == [3, 2, 1, 0]
    assert counts(found, "calories-2024-03-09.json") == [2, 0, 0, 2]
    assert found.loc["calories-2024-03-09.json", "ignored"] == "Fitbit calories record (stream not stored): 2"
    assert counts(found, "sleep-2024-03-09.json") == [1, 1, 0, 0]

    rows = heart(lake)
    assert set(rows["person_id"]) == {pseudonym("P001")}
    by_minute = rows.set_index("datetime")[["heart_rate_value", "sample_count", "confidence"]]
    # (70 + 72 + 71 + 73) / 4 = 71.5, rounded half up = 72; the lowest confidence of 3, 2, 3, 3 is 2
    assert by_minute.loc[pd.Timestamp("2024-03-09 08:00")].tolist() == [72, 4, 2]
    assert by_minute.loc[pd.Timestamp("2024-03-09 08:01")].tolist() == [81, 2, 1]  # (80 + 81) / 2 = 80.5 -> 81
    assert by_minute.loc[pd.Timestamp("2024-03-09 08:02")].tolist() == [65, 1, 2]  # the 300 bpm sample is not in it
    assert by_minute.loc[pd.Timestamp("2024-03-10 01:59")].tolist() == [60, 1, 3]
    assert pd.Timestamp("2024-03-10 02:30") not in by_minute.index
    skipped = lake.sql("SELECT reason, source_records FROM quarantine_row WHERE source_name LIKE '%2024-03-10.json'")
    assert skipped["source_records"].tolist() == [2]  # one minute row standing for its 2 samples
    quarantined = lake.sql("SELECT source_name, row_number, reason FROM quarantine_row ORDER BY source_name, row_number")
    reasons = quarantined["reason"].tolist()
    assert any("300 bpm outside 25-250" in r for r in reasons)
    assert any("'2024-03-09 08:04:00': expected MM/DD/YY HH:MM:SS" in r for r in reasons)
    assert any("many" in r for r in reasons)
    steps = lake.sql("SELECT datetime, steps FROM steps_minute ORDER BY datetime")
    assert steps["steps"].tolist() == [12, 0]
    sleep = lake.sql("SELECT level, duration_minutes, is_main_sleep FROM sleep_level ORDER BY start_datetime")
    assert sleep["level"].tolist() == ["wake", "light", "deep", "rem"]
    assert sleep["duration_minutes"].tolist() == [10.0, 200.0, 100.0, 110.0]  # seconds / 60
    assert not report.warnings and check(lake, "wearable_zone_unknown")["passed"]


def test_three_hours_of_5_to_15_s_samples_are_180_wear_minutes(lake, tmp_path):
    """The issue's case: samples every 5-15 s over 3 h had become 1,240 'minutes' and a valid day."""
    rng = np.random.default_rng(22)
    start, end = pd.Timestamp("2024-06-03 09:00:00"), pd.Timestamp("2024-06-03 12:00:00")
    stamps, t = [], start + pd.Timedelta(seconds=int(rng.integers(0, 5)))
    while t < end:
        stamps.append(t)
        t += pd.Timedelta(seconds=int(rng.choice([5, 10, 15])))
    records = [{"dateTime": s.strftime("%m/%d/%y %H:%M:%S"), "value": {"bpm": int(rng.integers(60, 90)), "confidence": 3}}
               for s in stamps]
    folder = tmp_path / "in" / "P005" / "Physical Activity"
    folder.mkdir(parents=True)
    (folder / "heart_rate-2024-06-03.json").write_text(json.dumps(records))
    minutes = {s.floor("min") for s in stamps}
    (folder / "steps-2024-06-03.json").write_text(json.dumps(  # Fitbit writes a step count for every minute
        [{"dateTime": m.strftime("%m/%d/%y %H:%M:%S"), "value": "0"} for m in sorted(minutes)]))
    lake.ingest(tmp_path / "in", default_time_zone=ZONE, now=NOW)
    assert len(stamps) > 700 and len(minutes) == 180
    rows = heart(lake)
    assert len(rows) == 180 and int(rows["sample_count"].sum()) == len(stamps)
    day = lake.sql(daily_summary_sql(has_sleep=False))
    assert int(day["wear_minutes"].item()) == 180 and not bool(day["valid_day"].item())


def test_a_repeated_autumn_hour_gives_two_rows_per_local_minute(lake, tmp_path):
    # 2024-11-03 in Denver: 01:00-01:59 happens twice; the export's clock runs back from 01:59:50 to 01:00:05
    first = [("11/03/24 01:30:05", 70), ("11/03/24 01:30:35", 72), ("11/03/24 01:59:50", 75)]
    second = [("11/03/24 01:00:05", 64), ("11/03/24 01:30:10", 80), ("11/03/24 01:30:40", 82)]
    folder = tmp_path / "in" / "P006" / "Physical Activity"
    folder.mkdir(parents=True)
    (folder / "heart_rate-2024-11-03.json").write_text(json.dumps(
        [{"dateTime": t, "value": {"bpm": b, "confidence": 3}} for t, b in first + second]))
    lake.ingest(tmp_path / "in", default_time_zone=ZONE, now=NOW)
    rows = heart(lake)
    at_0130 = rows.loc[rows["datetime"] == pd.Timestamp("2024-11-03 01:30"), "heart_rate_value"].tolist()
    assert sorted(at_0130) == [71, 81]  # the daylight-time minute and the standard-time one; never their mean 76
    assert counts(files(lake), "heart_rate-2024-11-03.json") == [6, 6, 0, 0]


# -- Google Takeout ----------------------------------------------------------------------------


def test_takeout_without_a_person_is_refused_naming_the_option(lake):
    report = lake.ingest(DATA / "google_takeout", default_time_zone=ZONE, now=NOW)
    found = files(lake)
    assert set(found["status"]) == {"quarantined"}
    reason = found.loc["heart_rate-2024-03-09.json", "reason"]
    assert "Takeout/Fitbit/Global Export Data/" in reason and "cannot tell whose data it is" in reason
    assert "--participant ID" in reason and "P001/Takeout/" in reason
    assert "--participant" in str(report)
    assert not lake.has_table("heart_rate_minute")


def takeout_known_answers(lake, person: str) -> None:
    found = files(lake)
    assert set(found["status"]) == {"accepted"}
    assert counts(found, "heart_rate-2024-03-09.json") == [7, 7, 0, 0]
    assert counts(found, "calories-2024-03-09.json") == [1, 0, 0, 1]
    rows = heart(lake)
    assert set(rows["person_id"]) == {pseudonym(person)}
    # (60 + 62 + 61 + 63 + 64 + 62) / 6 = 62 from 6 samples, lowest confidence 1; one sample at 08:02
    assert rows[["heart_rate_value", "sample_count", "confidence"]].values.tolist() == [[62, 6, 1], [70, 1, 2]]
    assert lake.sql("SELECT steps FROM steps_minute ORDER BY datetime")["steps"].tolist() == [30, 0, 7]
    assert lake.sql("SELECT level FROM sleep_level ORDER BY start_datetime")["level"].tolist() == ["awake", "asleep"]


def test_takeout_person_from_the_folder_above_takeout(lake, tmp_path):
    shutil.copytree(DATA / "google_takeout", tmp_path / "in" / "P003")
    lake.ingest(tmp_path / "in", default_time_zone=ZONE, now=NOW)
    takeout_known_answers(lake, "P003")


def test_takeout_person_named_in_python(lake):
    lake.ingest(DATA / "google_takeout", default_time_zone=ZONE, now=NOW, participant="P004")
    takeout_known_answers(lake, "P004")


def test_takeout_person_named_on_the_command_line(tmp_path):
    env = {"EXPLORER_PSEUDONYM_KEY": KEY, "EXPLORER_PSEUDONYM_KEY_FILE": ""}
    result = run_cli("ingest", DATA / "google_takeout", "--participant", "P002", "--default-time-zone", ZONE,
                     lake_root=tmp_path / "lake", env=env)
    assert result.returncode == 0, result.stderr
    assert "4 accepted" in result.stdout and "warning" not in result.stdout
    takeout_known_answers(explorer.open(tmp_path / "lake"), "P002")


def test_other_files_of_an_export_are_counted_not_refused(lake, tmp_path):
    folder = tmp_path / "in" / "P007" / "Physical Activity"
    folder.mkdir(parents=True)
    (folder / "exercise-0.json").write_text(json.dumps([{"logId": 1, "activityName": "Walk"}, {"logId": 2}]))
    (folder / "heart_rate-2024-03-09 (1).json").write_text(json.dumps(
        [{"dateTime": "03/09/24 08:00:03", "value": {"bpm": 70, "confidence": 3}}]))
    lake.ingest(tmp_path / "in", now=NOW)
    found = files(lake)
    assert counts(found, "exercise-0.json") == [2, 0, 0, 2]
    assert found.loc["exercise-0.json", "ignored"] == "Fitbit exercise record (stream not stored): 2"
    assert found.loc["heart_rate-2024-03-09 (1).json", "status"] == "quarantined"
    assert "expected heart_rate-, steps- or sleep-YYYY-MM-DD.json" in found.loc["heart_rate-2024-03-09 (1).json", "reason"]


def test_layouts():
    assert layout_of("P001/Physical Activity/heart_rate-2024-03-09.json") == ("account", "P001")
    assert layout_of("export.zip!Jane/Sleep/sleep-2024-03-09.json") == ("account", "Jane")
    assert layout_of("Takeout/Fitbit/Global Export Data/steps-2024-03-09.json") == ("takeout", None)
    assert layout_of("P9/Takeout/Fitbit/Global Export Data/steps-2024-03-09.json") == ("takeout", "P9")
    assert layout_of("heart_rate-2024-03-09.json") == (None, None)


# -- no time zone --------------------------------------------------------------------------------


def test_local_times_without_a_zone_warn_and_fail_a_quality_check(lake):
    report = lake.ingest(DATA / "fitbit_account", now=NOW)
    assert report.unzoned_persons == {pseudonym("P001")}
    [warning] = report.warnings
    assert "1 person " in warning and "--default-time-zone" in warning and "residence history" in warning
    assert warning in str(report)
    zone = check(lake, "wearable_zone_unknown")
    assert (zone["numerator"], zone["denominator"], bool(zone["passed"])) == (2, 2, False)  # both days, 9 and 10 March
    assert not lake.has_table("wearable_day_zone")


# -- round trip ------------------------------------------------------------------------------------


def one_person_day(rng):
    """One person's minutes (2024-06-03, 07:00-21:00, 840 minutes) and last night's main sleep."""
    minutes = pd.date_range("2024-06-03 07:00", periods=840, freq="1min")
    walking = (np.arange(840) // 40) % 3 == 1  # 40-minute walks between 80-minute rests
    steps = np.where(walking, rng.integers(60, 110, 840), 0)
    hr = np.where(walking, rng.integers(85, 120, 840), rng.integers(52, 68, 840))
    sleep = [("wake", "2024-06-02 23:00:00", 10), ("light", "2024-06-02 23:10:00", 200),
             ("deep", "2024-06-03 02:30:00", 120), ("rem", "2024-06-03 04:30:00", 90)]
    return minutes, steps, hr, sleep


def write_all_of_us(folder: Path, person: str, minutes, steps, hr, sleep) -> None:
    folder.mkdir(parents=True)
    stamp = minutes.strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"person_id": person, "datetime": stamp, "heart_rate_value": hr}).to_csv(
        folder / "heart_rate_minute_level.csv", index=False)
    pd.DataFrame({"person_id": person, "datetime": stamp, "steps": steps}).to_csv(folder / "steps_intraday.csv", index=False)
    pd.DataFrame({"person_id": person, "sleep_date": "2024-06-03", "is_main_sleep": "true", "level": [s[0] for s in sleep],
                  "start_datetime": [s[1] for s in sleep], "duration_in_min": [s[2] for s in sleep]}).to_csv(
        folder / "sleep_level.csv", index=False)


def write_fitbit_export(folder: Path, minutes, steps, hr, sleep, rng) -> int:
    """The same minutes as an account export: heart rate every 5, 10 or 15 s, each minute's samples
    the minute's value plus deviations that cancel (+d, -d pairs), so their mean is the value."""
    activity, night = folder / "Physical Activity", folder / "Sleep"
    activity.mkdir(parents=True)
    night.mkdir(parents=True)
    samples = []
    for minute, value in zip(minutes, hr):
        every = int(rng.choice([5, 10, 15]))
        n = 60 // every
        deviations = [d for k in range(n // 2) for d in (k + 1, -(k + 1))] + [0] * (n % 2)
        offset = int(rng.integers(0, every))
        for j, d in enumerate(deviations):
            samples.append({"dateTime": (minute + pd.Timedelta(seconds=offset + j * every)).strftime("%m/%d/%y %H:%M:%S"),
                            "value": {"bpm": int(value) + d, "confidence": int(rng.integers(1, 4))}})
    (activity / "heart_rate-2024-06-03.json").write_text(json.dumps(samples))
    (activity / "steps-2024-06-03.json").write_text(json.dumps(
        [{"dateTime": m.strftime("%m/%d/%y %H:%M:%S"), "value": str(int(s))} for m, s in zip(minutes, steps)]))
    seconds = [minutes_ * 60 for _, _, minutes_ in sleep]
    log = {"logId": 1, "dateOfSleep": "2024-06-03", "startTime": "2024-06-02T23:00:00.000",
           "endTime": "2024-06-03T06:00:00.000", "duration": sum(seconds) * 1000, "mainSleep": True, "type": "stages",
           "timeInBed": sum(seconds) // 60, "minutesAsleep": sum(seconds[1:]) // 60,
           "levels": {"data": [{"dateTime": pd.Timestamp(start).strftime("%Y-%m-%dT%H:%M:%S.000"), "level": level,
                                "seconds": s} for (level, start, _), s in zip(sleep, seconds)]}}
    (night / "sleep-2024-06-03.json").write_text(json.dumps([log]))
    return len(samples)


def test_one_person_as_all_of_us_csv_and_as_fitbit_export_gives_the_same_wearable_daily(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from explorer.jobs import refresh

    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PARTICIPANT", raising=False)
    rng = np.random.default_rng(4)
    minutes, steps, hr, sleep = one_person_day(rng)
    write_all_of_us(tmp_path / "aou", "3000001", minutes, steps, hr, sleep)
    n_samples = write_fitbit_export(tmp_path / "export" / "3000001", minutes, steps, hr, sleep, rng)
    assert n_samples > 3 * len(minutes)
    daily = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for source in ("aou", "export"):
            lake = explorer.open(tmp_path / f"lake-{source}")
            lake.ingest(tmp_path / source, default_time_zone=ZONE, now=NOW)
            refresh(lake, client=client, steps=["wearable_daily"])
            daily[source] = lake.sql("SELECT * FROM wearable_daily ORDER BY person_id, date")
            if source == "export":
                accounted = lake.sql("SELECT sum(rows_read) AS n, sum(rows_accepted) AS a FROM ingest_file "
                                     "WHERE source_name LIKE '%heart_rate-%'")
                assert accounted["n"].item() == accounted["a"].item() == n_samples
                assert lake.sql("SELECT count(*) AS n FROM heart_rate_minute")["n"].item() == len(minutes)
    aou, export = daily["aou"], daily["export"]
    day = aou.iloc[-1]
    assert pd.Timestamp(day["date"]) == pd.Timestamp("2024-06-03") and bool(day["valid_day"])
    assert int(day["wear_minutes"]) == 840 and int(day["steps"]) == int(steps.sum())
    assert float(day["mean_hr"]) == pytest.approx(hr.mean())
    pd.testing.assert_frame_equal(aou, export)


# -- properties ------------------------------------------------------------------------------------


@st.composite
def samples(draw):
    """Heart-rate records over a few minutes, some malformed, in clock order (a device writes no
    two samples in one second; a time that does not advance starts a new pass, tested above)."""
    seconds = sorted(draw(st.lists(st.integers(0, 299), max_size=40, unique=True)))
    records = []
    for s in seconds:
        kind = draw(st.sampled_from(["good"] * 8 + ["no_bpm", "bad_time", "out_of_range"]))
        stamp = (pd.Timestamp("2024-06-03 10:00") + pd.Timedelta(seconds=s)).strftime("%m/%d/%y %H:%M:%S")
        if kind == "no_bpm":
            records.append({"dateTime": stamp, "value": {"confidence": 2}})
        elif kind == "bad_time":
            records.append({"dateTime": "yesterday", "value": {"bpm": 70, "confidence": 2}})
        else:
            bpm = draw(st.integers(251, 400)) if kind == "out_of_range" else draw(st.integers(25, 250))
            records.append({"dateTime": stamp, "value": {"bpm": bpm, "confidence": draw(st.integers(0, 3))}})
    return records


@settings(max_examples=60, deadline=None)
@given(samples())
def test_every_sample_is_in_one_minute_or_quarantined(records):
    result = FitbitExportReader._per_minute(records, "heart_rate", "pid", "P1")
    rows = result.tables["heart_rate_minute"]
    assert result.rows_read == len(records) == int(rows["_records"].sum()) + len(result.quarantined)
    good = [r for r in records if "bpm" in r["value"] and r["dateTime"] != "yesterday" and r["value"]["bpm"] <= 250]
    by_minute = {}
    for r in good:
        by_minute.setdefault(pd.Timestamp(datetime.strptime(r["dateTime"], "%m/%d/%y %H:%M:%S")).floor("min"), []).append(r)
    assert sorted(rows["datetime"]) == sorted(by_minute)
    for row in rows.itertuples():
        values = [r["value"]["bpm"] for r in by_minute[row.datetime]]
        mean = Fraction(sum(values), len(values))
        assert row.heart_rate_value == math.floor(mean + Fraction(1, 2))  # half up, exactly
        assert row.sample_count == len(values)
        assert row.confidence == min(r["value"]["confidence"] for r in by_minute[row.datetime])


def test_a_json_array_of_another_device_is_told_the_fitbit_shape_and_what_to_do(lake, tmp_path):
    other = tmp_path / "watch_hr.json"
    other.write_text('[{"time": "2024-05-01T08:00:00", "hr": 70}, {"time": "2024-05-01T08:01:00", "hr": 72}]')
    lake.ingest(other)
    found = lake.sql("SELECT status, reason FROM ingest_file")
    assert found["status"].iloc[0] != "accepted"
    reason = found["reason"].iloc[0]
    assert "the nearest is fitbit_export_json" in reason and '"dateTime"' in reason
    assert "All of Us CSV" in reason and "site package" in reason


def test_an_autumn_day_of_the_account_export_keeps_each_pass_of_the_repeated_hour(lake):
    """tests/data/fitbit_account_autumn (written from the export's documented shape, steps as text):
    on 3 November 2024 Denver's clocks go back from 02:00 to 01:00, so a local minute may come
    twice, once per pass, and a third time is a conflicting duplicate."""
    steps_file = DATA / "fitbit_account_autumn" / "P002" / "Physical Activity" / "steps-2024-11-03.json"
    records = json.loads(steps_file.read_text())
    assert fitbit_json._well_formed_columns(records, "steps") is not None  # text counts take the fast reading
    lake.ingest(DATA / "fitbit_account_autumn", default_time_zone=ZONE, now=NOW)
    found = files(lake)
    # 4 samples, 3 minute rows: 01:00 (60) and 01:59 (70) on the first pass, 01:00 again (80, 81) on the second
    assert counts(found, "heart_rate-2024-11-03.json") == [4, 4, 0, 0]
    assert sorted(heart(lake)[["heart_rate_value", "sample_count", "confidence"]].values.tolist()) == \
        [[60, 1, 2], [70, 1, 3], [81, 2, 1]]  # 80.5 rounds half up
    assert counts(found, "steps-2024-11-03.json") == [5, 4, 1, 0]
    steps = lake.sql("SELECT steps FROM steps_minute ORDER BY datetime, steps")["steps"].tolist()
    assert steps == [3, 5, 4, 7]
    reason = lake.sql("SELECT reason FROM quarantine_row")["reason"].iloc[0]
    assert reason.startswith("conflicting duplicate of row 1") and "beyond the repeated DST hour" in reason
