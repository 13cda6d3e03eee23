"""Apple Health export.xml (tests/data/apple_health, written by hand from Apple's HealthKit
documentation and the export's DTD; tests/data/README.md cites them): rows landed, quarantined
and ignored, minutes in the sample's local time, step intervals split by overlap with one source
kept, sleep stages as sleep_level levels; refusals that say what to do; and the round trip: one
synthetic person written as All of Us CSV and as export.xml gives the same wearable_daily rows."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.ingest.readers.apple_health import AppleHealthXmlReader, parse_date, participant_of
from explorer.synth.apple_health import write_apple_health_export
from explorer.synth.cohort import make_cohort
from explorer.synth.config import SynthConfig
from explorer.synth.wearables import simulate_person
from explorer.synth.writers import sleep_level_rows, write_csv
from explorer.wearables.daily import daily_summary_sql

DATA = Path(__file__).resolve().parent / "data"
KEY = "apple-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    return explorer.open(tmp_path / "lake")


def table(lake, name, order):
    return lake.sql(f"SELECT * EXCLUDE (person_id, source_file) FROM {name} ORDER BY {order}")


def test_export_known_answers(lake):
    lake.ingest(DATA / "apple_health", now=NOW)
    files = lake.sql("SELECT format, status, rows_read, rows_accepted, rows_quarantined, rows_ignored, ignored FROM ingest_file")
    assert files["format"].tolist() == ["apple_health_xml"] and files["status"].tolist() == ["accepted"]
    # 20 records after ExportDate and Me: 9 landed, 3 quarantined, 8 ignored by kind
    assert files.iloc[0][["rows_read", "rows_accepted", "rows_quarantined", "rows_ignored"]].tolist() == [20, 9, 3, 8]
    heart = table(lake, "heart_rate_minute", "datetime")
    # 72, 75, 80 in 08:03 -> mean 75.67 -> 76 of 3 samples; 300 at 08:04 out of range (quarantined);
    # 10:00 -0700 written but recorded in America/New_York (HKTimeZone): 17:00 UTC = 13:00 EDT
    assert heart["datetime"].tolist() == [pd.Timestamp("2024-05-01 08:03"), pd.Timestamp("2024-05-02 13:00")]
    assert heart["heart_rate_value"].tolist() == [76, 64] and heart["sample_count"].tolist() == [3, 1]
    assert heart["confidence"].isna().all()
    # Watch 120 steps over 08:00:30-08:02:30 -> 30, 60, 30 by seconds of overlap; 40 over 08:02-08:03 -> 08:02 has 70;
    # the iPhone's 500 steps over 08:00-08:10 are a second source that day: not added
    steps = table(lake, "steps_minute", "datetime")
    assert steps["steps"].tolist() == [30, 60, 70]
    assert steps["datetime"].tolist() == list(pd.date_range("2024-05-01 08:00", periods=3, freq="min"))
    sleep = table(lake, "sleep_level", "start_datetime")
    assert sleep["level"].tolist() == ["light", "deep", "rem", "wake", "light", "asleep"]
    assert sleep["duration_minutes"].tolist() == [90, 50, 30, 5, 255, 30]
    assert sleep["is_main_sleep"].tolist() == [True] * 5 + [False]  # the night, not the 14:00 nap
    assert sleep["start_datetime"].iloc[0] == pd.Timestamp("2024-04-30 23:10")
    ignored = files.iloc[0]["ignored"]
    ignored = {kind: int(n) for kind, n in (part.rsplit(": ", 1) for part in ignored.split("; "))}
    assert ignored["HKQuantityTypeIdentifierBodyMass"] == 1 and ignored["Workout"] == 1 and ignored["ActivitySummary"] == 1
    assert sum(v for k, v in ignored.items() if "InBed" in k) == 1
    assert sum(v for k, v in ignored.items() if "second source" in k) == 1
    reasons = lake.sql("SELECT row_number, reason FROM quarantine_row ORDER BY row_number")
    assert reasons["row_number"].tolist() == [4, 5, 18]
    assert "count/s" in reasons["reason"].iloc[1] and "expected 'count/min'" in reasons["reason"].iloc[1]
    assert "Snoring" in reasons["reason"].iloc[2]


def test_export_outside_a_participant_folder_is_refused_with_what_to_do(lake, tmp_path):
    loose = tmp_path / "export.xml"
    loose.write_bytes((DATA / "apple_health" / "1000001" / "apple_health_export" / "export.xml").read_bytes())
    lake.ingest(loose, now=NOW)
    found = lake.sql("SELECT status, reason FROM ingest_file")
    assert found["status"].iloc[0] != "accepted"
    assert "participant" in found["reason"].iloc[0] and "apple_health_export" in found["reason"].iloc[0]
    assert "--participant" in found["reason"].iloc[0]
    named = explorer.open(tmp_path / "named-lake")  # the same file with the person named lands whole
    named.ingest(loose, now=NOW, participant="1000001")
    landed = named.sql("SELECT status, rows_read, rows_accepted FROM ingest_file")
    assert landed["status"].tolist() == ["accepted"] and landed[["rows_read", "rows_accepted"]].iloc[0].tolist() == [20, 9]


def test_truncated_export_names_the_line(lake, tmp_path):
    text = (DATA / "apple_health" / "1000001" / "apple_health_export" / "export.xml").read_text(encoding="utf-8")
    target = tmp_path / "4711" / "apple_health_export" / "export.xml"
    target.parent.mkdir(parents=True)
    target.write_text(text[: len(text) // 2], encoding="utf-8")
    lake.ingest(target, now=NOW)
    found = lake.sql("SELECT status, reason FROM ingest_file")
    assert found["status"].iloc[0] != "accepted" and "line" in found["reason"].iloc[0]
    assert "truncated" in found["reason"].iloc[0]


def test_entities_are_refused_not_expanded(tmp_path):
    target = tmp_path / "4711" / "apple_health_export" / "export.xml"
    target.parent.mkdir(parents=True)
    target.write_text('<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY a "aaaaaaaaaa">]>'
                      '<HealthData locale="en_US">&a;</HealthData>')
    from explorer.ingest.readers.base import ReaderError
    with pytest.raises(ReaderError, match="entities"):
        AppleHealthXmlReader().read(target, _context(str(target)))


def _context(name):
    class Named:  # the reader needs the source name and the pseudonyms only
        source_name = name

        @staticmethod
        def pseudonymize(ids):
            return [f"p-{i}" for i in ids]
    return Named()


def test_participant_from_the_folder():
    assert participant_of("up/4711/apple_health_export/export.xml") == "4711"
    assert participant_of("up/4711/export.zip!apple_health_export/export.xml") == "4711"
    assert participant_of("up/export.xml") is None


def test_dates_known_answers():
    assert parse_date("2024-05-01 08:03:12 -0700") == (int(datetime(2024, 5, 1, 15, 3, 12).timestamp()
                                                          - datetime(1970, 1, 1).timestamp()), -420)
    assert parse_date("2024-01-01 00:00:00 +0530") == (1704047400, 330)  # 2023-12-31 18:30 UTC
    with pytest.raises(ValueError, match="expected YYYY-MM-DD HH:MM:SS"):
        parse_date("2024-05-01T08:03:12Z")


def _steps_export(tmp_path, intervals):
    lines = "".join(
        f' <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Watch" unit="count" '
        f'startDate="{(base + pd.Timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")} +0000" '
        f'endDate="{(base + pd.Timedelta(seconds=s + d)).strftime("%Y-%m-%d %H:%M:%S")} +0000" value="{v}"/>\n'
        for base in [pd.Timestamp("2024-05-01 06:00")] for s, d, v in intervals)
    target = tmp_path / "p" / "apple_health_export" / "export.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'<?xml version="1.0"?>\n<HealthData locale="en_US">\n<ExportDate value="2025-01-01 00:00:00 +0000"/>\n'
                      f"{lines}</HealthData>\n")
    return AppleHealthXmlReader().read(target, _context(str(target)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6 * 3600), st.integers(0, 3 * 3600), st.integers(0, 5000)), min_size=1, max_size=12))
def test_step_intervals_keep_the_day_total_and_every_record_is_counted(tmp_path_factory, intervals):
    result = _steps_export(tmp_path_factory.mktemp("steps"), intervals)
    minutes = result.tables.get("steps_minute", pd.DataFrame({"steps": [], "_row": []}))
    # all intervals fall on 2024-05-01 (06:00 + at most 9 h): the day's total is the total of the records not
    # quarantined (a record over 300 steps in a minute is), rounded once
    bad = set(result.quarantined["_row"])
    assert int(minutes["steps"].sum()) == int(np.floor(sum(v for k, (_s, _d, v) in enumerate(intervals, 1) if k not in bad) + 0.5))
    assert (minutes["steps"] >= 0).all()
    assert result.rows_read == len(intervals) == len(set(minutes["_row"])) + len(bad) + sum(result.ignored.values())
    assert not bad & set(minutes["_row"])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 86399), st.integers(1, 600), st.integers(1, 300))
def test_a_step_interval_splits_by_overlap(tmp_path_factory, start, length, value):
    result = _steps_export(tmp_path_factory.mktemp("split"), [(start, length, value)])
    minutes = result.tables["steps_minute"]
    first, last = start // 60, (start + length - 1) // 60
    assert len(minutes) == last - first + 1  # every minute it overlaps, no other
    if first < last:  # a full minute inside the interval gets value * 60 / length, within rounding
        inner = minutes["steps"].iloc[1:-1]
        assert ((inner - value * 60 / length).abs() <= 1).all()


# -- the round trip ---------------------------------------------------------------------------


def _person(days=3):
    config = SynthConfig(participants=1, days=days, seed=7, workers=1, artefact_rate=0.0)
    person = next(make_cohort(config).persons.itertuples(index=False))
    window = pd.date_range(config.start, periods=days, freq="D")
    daily = pd.DataFrame({"date": window.date, "time_zone": "America/Denver", "tas_anomaly": 0.0,
                          "latitude": 39.7, "longitude": -105.0})
    return person, simulate_person(person, daily, config, np.random.default_rng([7, 3, int(person.source_id)]))


def _daily(lake):
    return lake.sql(daily_summary_sql()).sort_values(["person_id", "date"]).reset_index(drop=True)


def test_same_person_as_aou_csv_and_apple_export_gives_the_same_daily_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    person, streams = _person()
    sid = person.source_id
    aou = tmp_path / "aou"
    write_csv(streams.heart_rate[["datetime", "heart_rate_value"]].assign(person_id=sid)[["person_id", "datetime", "heart_rate_value"]],
              aou / "heart_rate_minute_level.csv")
    write_csv(streams.steps.assign(person_id=sid)[["person_id", "datetime", "steps"]], aou / "steps_intraday.csv")
    write_csv(sleep_level_rows(sid, streams.sleep_logs), aou / "sleep_level.csv")
    write_apple_health_export(tmp_path / "apple" / sid, streams)
    by_csv, by_xml = explorer.open(tmp_path / "lake_csv"), explorer.open(tmp_path / "lake_xml")
    by_csv.ingest(aou, now=NOW)
    by_xml.ingest(tmp_path / "apple", now=NOW)
    files = by_xml.sql("SELECT status, rows_read, rows_accepted, rows_quarantined, rows_ignored FROM ingest_file")
    assert files["status"].tolist() == ["accepted"] and files["rows_quarantined"].tolist() == [0]
    expected, got = _daily(by_csv), _daily(by_xml)
    assert len(expected) == 3 and expected["steps"].sum() > 0
    pd.testing.assert_frame_equal(got, expected)


def test_synth_writes_apple_exports_that_ingest_whole(tmp_path, monkeypatch):
    from explorer.synth.generate import generate

    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    config = SynthConfig(participants=4, days=2, seed=5, workers=1, json_fraction=0.0, apple_health_fraction=0.5,
                         artefact_rate=0.0)  # the 0 and 255 bpm artefacts are quarantined like any bad sample
    generate(tmp_path / "cohort", config)
    exports = sorted((tmp_path / "cohort" / "apple_health").glob("*/apple_health_export/export.xml"))
    assert len(exports) == 2  # half of the 4 CSV people
    lake = explorer.open(tmp_path / "lake")
    lake.ingest(tmp_path / "cohort" / "apple_health", now=NOW)
    files = lake.sql("SELECT status, rows_quarantined FROM ingest_file")
    assert files["status"].tolist() == ["accepted"] * 2 and files["rows_quarantined"].sum() == 0
    assert lake.sql("SELECT count(DISTINCT person_id) AS n FROM heart_rate_minute")["n"].iloc[0] == 2


def test_step_interval_over_the_range_is_quarantined_once_with_its_reason(tmp_path):
    # 1000 steps over 2 minutes is 500 a minute, over the 300 of the catalog: one record quarantined
    # (not one row per minute it touched), the other record lands
    result = _steps_export(tmp_path, [(0, 120, 1000), (600, 60, 80)])
    assert result.rows_read == 2 and result.quarantined["_row"].tolist() == [1]
    assert "more than 300 steps" in result.quarantined["reason"].iloc[0]
    assert result.tables["steps_minute"]["steps"].tolist() == [80]


def test_explorer_ingest_command_reads_the_export(tmp_path, capsys):
    from explorer.command import main

    key = tmp_path / "key"
    key.write_text(KEY)
    assert main(["--lake", str(tmp_path / "lake"), "ingest", str(DATA / "apple_health"), "--key-file", str(key)]) == 0
    said = capsys.readouterr().out
    assert "rows: 9 accepted, 3 quarantined, 8 of kinds not stored" in said
    assert "HKQuantityTypeIdentifierBodyMass 1" in said


def test_the_other_files_of_an_export_are_counted_as_not_stored_not_quarantined(lake, tmp_path):
    # an export folder as the Health app writes it: export_cda.xml, workout-routes/, electrocardiograms/
    lake.ingest(DATA / "apple_health_companions", now=NOW)
    files = lake.sql("SELECT source_name, format, status, rows_read, rows_ignored, ignored FROM ingest_file ORDER BY source_name")
    assert files["status"].tolist() == ["accepted"] * 3 and set(files["format"]) == {"apple_health_companion"}
    assert files["rows_read"].tolist() == [1, 1, 1] and files["rows_ignored"].tolist() == [1, 1, 1]
    kinds = " ".join(files["ignored"])
    assert "export_cda.xml" in kinds and "workout route GPX" in kinds and "electrocardiogram CSV" in kinds
    # outside an export a GPX track is refused, saying what it is and where it would be read
    loose = tmp_path / "route.gpx"
    loose.write_bytes(next((DATA / "apple_health_companions").rglob("*.gpx")).read_bytes())
    other = explorer.open(tmp_path / "other-lake")  # in the first lake the same bytes are already ingested
    other.ingest(loose, now=NOW)
    refused = other.sql("SELECT status, reason FROM ingest_file")
    assert refused["status"].iloc[0] != "accepted"
    assert "GPX track" in refused["reason"].iloc[0] and "apple_health_export" in refused["reason"].iloc[0]


def test_an_export_folder_ingested_alone_with_its_person_named_keeps_its_companions_not_stored(lake, tmp_path):
    """`explorer ingest apple_health_export/ --participant ID`: no participant folder above the
    export, and the companion files are still told by the export folder (they were refused
    for lacking a participant folder)."""
    import shutil

    export = tmp_path / "apple_health_export"
    shutil.copytree(DATA / "apple_health_companions" / "1000003" / "apple_health_export", export)
    lake.ingest(export, now=NOW, participant="1000003")
    files = lake.sql("SELECT status, format, rows_ignored FROM ingest_file")
    assert files["status"].tolist() == ["accepted"] * 3 and set(files["format"]) == {"apple_health_companion"}
    assert files["rows_ignored"].tolist() == [1, 1, 1]
