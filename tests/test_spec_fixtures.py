"""The readers against files written by hand from their formats' published specifications
(tests/data/README.md cites each): known answers for rows, SI values, local times, and every row
of every file accounted for."""

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import explorer
from explorer.ingest import Pseudonymizer

DATA = Path(__file__).resolve().parent / "data"
KEY = "spec-fixture-key-0123456789abcdef"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    return explorer.open(tmp_path / "lake")


def pseudonym(source_id: str) -> str:
    return Pseudonymizer(KEY.encode())(source_id)


def files(lake) -> pd.DataFrame:
    frame = lake.sql("SELECT source_name, format, status, rows_read, rows_accepted, rows_quarantined, rows_ignored FROM ingest_file")
    frame["source_name"] = frame["source_name"].map(lambda name: Path(name).name)
    assert (frame["rows_read"] == frame["rows_accepted"] + frame["rows_quarantined"] + frame["rows_ignored"]).all()  # nothing lost
    return frame.set_index("source_name")


def reasons(lake, table: str) -> list[str]:
    return lake.sql("SELECT reason FROM quarantine_row WHERE target_table = ? ORDER BY row_number", [table])["reason"].tolist()


def test_all_of_us_fitbit_tables(lake):
    report = lake.ingest(DATA / "aou_fitbit", default_time_zone="America/Denver", now=datetime(2025, 1, 1))
    assert not report.errors
    found = files(lake)
    assert found.loc["heart_rate_minute_level.csv", "format"] == "fitbit_aou_heart_rate_minute"
    assert found.loc["steps_intraday.csv", "format"] == "fitbit_aou_steps_intraday"
    assert found.loc["sleep_level.csv", "format"] == "fitbit_aou_sleep_level"
    assert found[["rows_read", "rows_accepted", "rows_quarantined"]].loc["heart_rate_minute_level.csv"].tolist() == [8, 6, 2]
    assert found[["rows_read", "rows_accepted", "rows_quarantined"]].loc["steps_intraday.csv"].tolist() == [5, 4, 1]
    assert found[["rows_read", "rows_accepted", "rows_quarantined"]].loc["sleep_level.csv"].tolist() == [6, 5, 1]

    heart = reasons(lake, "heart_rate_minute")
    assert "heart_rate_value 300 bpm outside 25-250" in heart[0]  # the range the catalog declares
    assert "2024-03-10 02:30" in heart[1] and "America/Denver" in heart[1]  # a minute the clocks skipped
    assert "steps 350" in reasons(lake, "steps_minute")[0]
    assert "snoring" in reasons(lake, "sleep_level")[0]

    rows = lake.sql("SELECT person_id, datetime, heart_rate_value FROM heart_rate_minute ORDER BY person_id, datetime")
    first = rows[rows.person_id == pseudonym("1000001")]
    assert first["heart_rate_value"].tolist() == [61, 63, 62, 66]
    assert first["datetime"].iloc[-1] == pd.Timestamp("2024-03-10 03:00")  # local wall clock, as the export writes it
    sleep = lake.sql("SELECT level, duration_minutes, is_main_sleep FROM sleep_level WHERE person_id = ? "
                     "ORDER BY start_datetime", [pseudonym("1000001")])
    assert sleep["level"].tolist() == ["wake", "light", "deep", "rem", "asleep"]
    assert sleep["is_main_sleep"].tolist() == [True, True, True, True, False]
    assert sleep["duration_minutes"].sum() == 5 + 45 + 60 + 30 + 20


def test_fhir_r4_bundle(lake):
    report = lake.ingest(DATA / "fhir_bundle", now=datetime(2025, 1, 1))
    assert not report.errors and report.count("accepted") == 1
    assert files(lake).loc["bundle.json", "format"] == "fhir_r4_bundle"
    person = pseudonym("1000003")
    assert lake.sql("SELECT person_id, year_of_birth FROM person").values.tolist() == [[person, 1957]]
    labs = lake.sql("SELECT loinc_code, measurement_datetime, value_as_number, unit, value_si, unit_si "
                    "FROM measurement ORDER BY loinc_code").set_index("loinc_code")
    assert labs.loc["2345-7", "value_si"] == pytest.approx(99 / 18.016, rel=1e-4) and labs.loc["2345-7", "unit_si"] == "mmol/L"
    assert labs.loc["2160-0", "value_si"] == pytest.approx(1.1 * 88.42, rel=1e-4) and labs.loc["2160-0", "unit_si"] == "umol/L"
    assert (labs["measurement_datetime"] == pd.Timestamp("2023-04-05 08:30")).all()  # the wall clock of its offset
    condition = lake.sql("SELECT person_id, condition_start_date, code FROM condition_occurrence")
    assert condition.astype({"condition_start_date": "datetime64[us]"}).values.tolist() == [[person, pd.Timestamp("2019-11-02"), "E11.9"]]


def test_fhir_bulk_ndjson(lake):
    report = lake.ingest(DATA / "fhir_bulk", now=datetime(2025, 1, 1))
    assert not report.errors
    found = files(lake)
    assert found["format"].to_dict() == {"Patient.ndjson": "fhir_r4_ndjson_patient", "Observation.ndjson": "fhir_r4_ndjson"}
    assert found.loc["Observation.ndjson", "rows_accepted"] == 2
    labs = lake.sql("SELECT person_id, measurement_datetime, value_si FROM measurement ORDER BY measurement_datetime")
    assert (labs["person_id"] == pseudonym("1000004")).all()
    assert labs["value_si"].tolist() == pytest.approx([5.6, 108 / 18.016], rel=1e-4)
    assert labs["measurement_datetime"].tolist() == [pd.Timestamp("2022-10-01 07:45"), pd.Timestamp("2022-10-08 07:40")]
