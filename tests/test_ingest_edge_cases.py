"""Regressions from review: shapes real deliveries have that once lost, miscounted or crashed."""

import json
import zipfile

import pandas as pd
import pytest

import explorer
from explorer.ingest import Pseudonymizer

KEY = "edge-case-key-0123456789abcdef0123"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    return explorer.open(tmp_path / "lake")


def files_of(lake):
    return lake.sql("SELECT * FROM ingest_file").set_index("source_name")


def test_optional_column_missing_from_one_file_does_not_stop_the_commit(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("participant_id,specimen_collected,loinc_code,result,unit\n1,2020-01-02 08:00,2345-7,5.1,mmol/L\n")
    (folder / "b.csv").write_text("participant_id,specimen_collected,loinc_code,test_name,result,unit\n"
                                  "2,2020-01-03 08:00,2345-7,Glucose,90,mg/dL\n")
    lake.ingest(folder)
    assert lake.sql("SELECT count(*) AS n FROM measurement")["n"].item() == 2


def test_zip_members_keep_their_participant_and_a_damaged_zip_is_quarantined(lake, tmp_path):
    archive = tmp_path / "upload.zip"
    day = json.dumps([{"dateTime": "08/15/24 00:00:00", "value": "0"}])
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("1000001/Physical Activity/steps-2024-08-15.json", day)
        zf.writestr("1000002/Physical Activity/steps-2024-08-15.json", day)  # identical bytes, other person
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:60])
    folder = tmp_path / "in"
    folder.mkdir()
    for f in (archive, broken):
        (folder / f.name).write_bytes(f.read_bytes())
    report = lake.ingest(folder)
    people = set(lake.sql("SELECT DISTINCT person_id FROM steps_minute")["person_id"])
    pseudonym = Pseudonymizer(KEY.encode())
    assert people == {pseudonym("1000001"), pseudonym("1000002")}  # both land, each under its own folder
    files = files_of(lake)
    assert files.loc["upload.zip", "status"] == "unpacked"
    assert files.loc["broken.zip", "status"] == "quarantined"
    assert not report.errors


def test_fhir_patient_identity_is_the_participant_identifier_not_the_first(lake, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [
             {"system": "urn:hospital:mrn", "value": "MRN-77"},
             {"system": "urn:cohort-explorer:participant-id", "value": "1000009"}]}}]}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    lake.ingest(tmp_path / "b.json")
    assert lake.sql("SELECT person_id FROM person")["person_id"].tolist() == [Pseudonymizer(KEY.encode())("1000009")]


@pytest.mark.parametrize("body, reason", [
    ("person_id,datetime,heart_rate_value,heart_rate_value\n1,2024-01-01 00:00:00,60,999\n", "appear more than once"),
    ("person_id,datetime,heart_rate_value,steps\n1,2024-01-01 00:00:00,60,10\n", "another format"),
])
def test_ambiguous_headers_quarantine_the_file(lake, tmp_path, body, reason):
    (tmp_path / "f.csv").write_text(body)
    lake.ingest(tmp_path / "f.csv")
    row = files_of(lake).iloc[0]
    assert row["status"] == "quarantined" and reason in row["reason"]


def test_non_finite_values_and_the_spring_gap_are_quarantined_per_row(lake, tmp_path):
    (tmp_path / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,39.7,-104.9\n")
    (tmp_path / "hr.csv").write_text(
        "person_id,datetime,heart_rate_value\n"
        "1,2024-03-10 01:59:00,60\n1,2024-03-10 02:30:00,61\n1,2024-03-10 02:30:00,62\n"  # 02:30 does not exist in Denver
        "1,2024-03-10 03:00:00,inf\n")
    lake.ingest(tmp_path)
    reasons = lake.sql("SELECT reason FROM quarantine_row ORDER BY row_number")["reason"].tolist()
    assert any("not a finite number" in r for r in reasons)
    assert any("duplicate" in r for r in reasons)
    files = files_of(lake)
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"]).all()


def test_a_person_delivered_again_is_updated_not_duplicated(lake, tmp_path):
    def bundle(year):
        return {"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001",
             "resource": {"resourceType": "Patient", "birthDate": f"{year}-01-01",
                          "identifier": [{"system": "urn:cohort-explorer:participant-id", "value": "1000009"}]}}]}

    (tmp_path / "first.json").write_text(json.dumps(bundle(1950)))
    lake.ingest(tmp_path / "first.json")
    (tmp_path / "corrected.json").write_text(json.dumps(bundle(1951)))
    lake.ingest(tmp_path / "corrected.json")
    people = lake.sql("SELECT person_id, year_of_birth FROM person")
    assert len(people) == 1 and people["year_of_birth"].item() == 1951
    assert lake.sql("SELECT year_of_birth FROM person", versions={"person": 0})["year_of_birth"].item() == 1950
    assert lake.versions("person")["mode"].tolist() == ["append", "upsert"]
    assert lake.verify().ok


def test_quality_report_counts_known_answers(lake, tmp_path):
    from conftest import run_cli

    rows = ["person_id,datetime,heart_rate_value"]
    start = pd.Timestamp("2024-05-01 08:00")
    values = [60 + (i % 7) for i in range(100)] + [72] * 35 + [30, 31]  # 35-minute flat line, two sub-35 readings
    rows += [f"1,{(start + pd.Timedelta(minutes=i)):%Y-%m-%d %H:%M:%S},{v}" for i, v in enumerate(values)]
    (tmp_path / "hr.csv").write_text("\n".join(rows) + "\n")
    lake.ingest(tmp_path / "hr.csv")
    result = run_cli("quality", lake_root=lake.root, env={"EXPLORER_PSEUDONYM_KEY": KEY})
    assert result.returncode == 0, result.stderr
    report = lake.sql("SELECT * FROM dq_result").set_index("check_id")
    assert report.loc["hr_floor", "numerator"] == 2 and report.loc["hr_floor", "denominator"] == 137
    assert report.loc["hr_flatline", "numerator"] == 6  # minutes 30..35 of the 35-minute run close a flat window
    assert report.loc["hr_wear_time", "numerator"] == 1 and report.loc["hr_wear_time", "denominator"] == 1
    assert not report.loc["hr_floor", "passed"] and "FAIL hr_floor" in result.stdout
    assert report.loc["conformance_fitbit_aou_heart_rate_minute", "numerator"] == 0  # 30 and 31 bpm are in 25-250


def test_a_corrected_file_supersedes_the_rows_of_the_earlier_delivery(lake, tmp_path):
    folder = tmp_path / "delivery"
    folder.mkdir()
    labs = folder / "labs.csv"
    other = folder / "other.csv"
    header = "participant_id,specimen_collected,loinc_code,result,unit\n"
    labs.write_text(header + "1,2020-01-02 08:00,2345-7,90,mg/dL\n2,2020-01-02 08:00,2345-7,900,mg/dL\n")
    other.write_text(header + "3,2020-01-05 08:00,2345-7,5.0,mmol/L\n")
    lake.ingest(folder)
    before = lake.sql("SELECT value_as_number FROM measurement ORDER BY value_as_number")["value_as_number"].tolist()
    assert before == [5.0, 90.0, 900.0]
    version_before = lake.versions("measurement")["version"].max()

    labs.write_text(header + "1,2020-01-02 08:00,2345-7,90,mg/dL\n2,2020-01-02 08:00,2345-7,95,mg/dL\n")  # typo fixed
    report = lake.ingest(folder)
    assert report.count("accepted") == 1 and report.count("skipped") == 1  # other.csv is unchanged
    after = lake.sql("SELECT value_as_number FROM measurement ORDER BY value_as_number")["value_as_number"].tolist()
    assert after == [5.0, 90.0, 95.0]  # the 900 is gone, nothing doubled, the other file untouched
    old = lake.sql("SELECT value_as_number FROM measurement ORDER BY value_as_number",
                   versions={"measurement": int(version_before)})["value_as_number"].tolist()
    assert old == before  # the earlier version reads as it did
    assert lake.versions("measurement")["version"].max() == version_before + 1  # one new version
    reason = files_of(lake).reset_index().query("status == 'accepted' and source_name == 'labs.csv'")["reason"].dropna()
    assert reason.str.contains("supersedes the earlier delivery").any()

    # a garbled correction is quarantined and replaces nothing
    labs.write_text("this is not a lab file any more\n")
    lake.ingest(folder)
    assert len(lake.sql("SELECT * FROM measurement")) == 3
    # a correction that feeds another table now still removes what the earlier one put there
    labs.write_text("person_id,start_date,end_date,latitude,longitude\n1,2019-01-01,,40.7,-74.0\n")
    lake.ingest(folder)
    assert lake.sql("SELECT value_as_number FROM measurement")["value_as_number"].tolist() == [5.0]
    assert len(lake.sql("SELECT * FROM residence")) == 1
    assert lake.verify().ok


@pytest.mark.parametrize("zone, day, expected", [
    ("America/New_York", "2024-03-10", (-300, -240, "2024-03-10 02:00", 60)),
    ("America/New_York", "2024-11-03", (-240, -300, "2024-11-03 02:00", -60)),
    ("America/New_York", "2024-07-04", (-240, -240, None, None)),
    ("Europe/London", "2024-03-31", (0, 60, "2024-03-31 01:00", 60)),
    ("Australia/Lord_Howe", "2024-04-07", (660, 630, "2024-04-07 02:00", -30)),  # a half-hour change
    ("America/Phoenix", "2024-03-10", (-420, -420, None, None)),  # no daylight saving
])
def test_clock_change_known_answers_from_the_tz_database(zone, day, expected):
    from explorer.ingest.checks import clock_change

    start, end, change, shift = clock_change(zone, pd.Timestamp(day))
    assert (start, end, None if change is None else pd.Timestamp(change), shift) == \
        (expected[0], expected[1], None if expected[2] is None else pd.Timestamp(expected[2]), expected[3])


def test_a_lone_minute_in_the_spring_gap_is_quarantined_and_each_day_has_its_zone(lake, tmp_path):
    (tmp_path / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,39.7,-104.9\n")
    (tmp_path / "hr.csv").write_text(
        "person_id,datetime,heart_rate_value\n"
        "1,2024-03-09 12:00:00,60\n1,2024-03-10 01:59:00,60\n1,2024-03-10 02:15:00,61\n1,2024-03-10 03:00:00,62\n"
        "1,2024-11-03 01:30:00,63\n1,2024-11-03 01:30:00,64\n")  # autumn: 01:30 happens twice, both kept
    lake.ingest(tmp_path)
    bad = lake.sql("SELECT reason FROM quarantine_row")["reason"].tolist()
    assert bad == ["local time 2024-03-10 02:15:00 does not exist in America/Denver (the hour skipped when the clocks go forward)"]
    assert len(lake.sql("SELECT * FROM heart_rate_minute")) == 5
    days = lake.sql("SELECT CAST(date AS VARCHAR) AS day, * FROM wearable_day_zone ORDER BY date").set_index("day")
    assert list(days["time_zone"].unique()) == ["America/Denver"] and len(days) == 3
    spring = days.loc["2024-03-10"]
    assert (spring["utc_offset_start_minutes"], spring["utc_offset_end_minutes"], spring["clock_shift_minutes"]) == (-420, -360, 60)
    assert pd.isna(days.loc["2024-03-09", "clock_change_local"])
    assert days.loc["2024-11-03", "clock_change_local"] == pd.Timestamp("2024-11-03 02:00")


def test_quality_time_zone_jumps_and_a_dropped_autumn_hour_known_answers(lake, tmp_path):
    (tmp_path / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n"
                                      "1,2020-01-01,2024-11-02,39.7,-104.9\n1,2024-11-03,,40.7,-74.0\n"  # moves east
                                      "2,2020-01-01,,39.7,-104.9\n")
    rows = ["person_id,datetime,heart_rate_value"]
    for person in ("1", "2"):
        rows += [f"{person},2024-11-0{d} 12:00:00,60" for d in (1, 2)]
    repeated_hour = [pd.Timestamp("2024-11-03 01:00") + pd.Timedelta(minutes=m) for m in range(60)]
    rows += [f"1,{t:%Y-%m-%d %H:%M:%S},61" for t in repeated_hour]  # once only: the device dropped an hour
    rows += [f"2,{t:%Y-%m-%d %H:%M:%S},62" for t in repeated_hour * 2]  # twice, as the clock showed it
    (tmp_path / "hr.csv").write_text("\n".join(rows) + "\n")
    report = lake.ingest(tmp_path)
    assert report.quality is not None
    checks = report.quality.set_index("check_id")
    assert (checks.loc["wearable_tz_jump", "numerator"], checks.loc["wearable_tz_jump", "denominator"]) == (1, 6)
    assert (checks.loc["hr_dst_repeat_collapsed", "numerator"], checks.loc["hr_dst_repeat_collapsed", "denominator"]) == (1, 2)
    assert not checks.loc["hr_dst_repeat_collapsed", "passed"]
    assert "data quality:" in str(report) and "hr_dst_repeat_collapsed" in str(report)
    stored = lake.sql("SELECT check_id FROM dq_result WHERE ingest_id = ?", [report.ingest_id])
    assert len(stored) == len(checks)
    # running the report again replaces it instead of adding a second copy
    from explorer.ingest.quality import run_quality

    run_quality(lake, report.ingest_id)
    assert len(lake.sql("SELECT check_id FROM dq_result WHERE ingest_id = ?", [report.ingest_id])) == len(checks)


def test_staging_concatenates_categorical_and_plain_text_frames():
    from explorer.ingest.staging import concat_arrow as _concat_arrow

    a = pd.DataFrame({"person_id": pd.Categorical(["p1", "p1", "p2"]), "v": [1, 2, 3]})
    b = pd.DataFrame({"person_id": ["p3"], "v": [4]})  # a reader that built plain strings
    c = pd.DataFrame({"person_id": pd.Categorical(["p4"] * 200 + [f"q{i}" for i in range(200)]), "v": range(400)})
    for frames in ([a, c], [a, b, c], [b, a]):
        table = _concat_arrow(frames).to_pandas()
        rows = pd.concat([f.assign(person_id=f["person_id"].astype(str)) for f in frames], ignore_index=True)
        # the same rows, clustered by person, each person's rows in their original order
        expected = rows.sort_values("person_id", kind="stable", ignore_index=True)
        assert table["person_id"].astype(str).tolist() == expected["person_id"].tolist()
        assert table["v"].tolist() == expected["v"].tolist()


def test_an_ingest_stopped_between_its_table_commits_completes_on_the_next_run(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,39.7,-104.9\n")
    (folder / "hr.csv").write_text("person_id,datetime,heart_rate_value\n1,2024-05-01 08:00:00,60\n1,2024-05-01 08:01:00,61\n")
    first = lake.ingest(folder)
    # as if the process died after the table commits but before ingest_file recorded the files:
    # no ingest_file rows, and the marker it wrote before committing still there
    empty = lake.sql("SELECT * FROM ingest_file WHERE false")
    lake.write("ingest_file", empty, mode="overwrite", replace_where=f"ingest_id = '{first.ingest_id}'")
    marker = lake.root / "_staging" / f"{first.ingest_id}.unfinished"
    marker.write_text(json.dumps([f.sha256 for f in first.files]))
    second = lake.ingest(folder)
    assert second.count("accepted") == 2  # not recognised as done: it never finished
    assert len(lake.sql("SELECT * FROM heart_rate_minute")) == 2 and len(lake.sql("SELECT * FROM residence")) == 1
    assert not marker.exists()  # its files are recorded now
    assert lake.ingest(folder).count("skipped") == 2
    assert not list((lake.root / "_staging").glob("*.unfinished"))  # a finished ingest leaves no marker


def test_next_months_folder_with_the_same_file_names_is_a_delivery_not_a_correction(lake, tmp_path):
    header = "participant_id,specimen_collected,loinc_code,result,unit\n"
    for month, value in (("2024-01", 90), ("2024-02", 95)):
        (tmp_path / month).mkdir()
        (tmp_path / month / "labs.csv").write_text(header + f"1,{month}-05 08:00,2345-7,{value},mg/dL\n")
        lake.ingest(tmp_path / month)
    assert sorted(lake.sql("SELECT value_as_number FROM measurement")["value_as_number"]) == [90, 95]


def test_a_correction_taken_back_restores_the_first_delivery(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    labs = folder / "labs.csv"
    header = "participant_id,specimen_collected,loinc_code,result,unit\n"
    first, second = header + "1,2020-01-02 08:00,2345-7,90,mg/dL\n", header + "1,2020-01-02 08:00,2345-7,99,mg/dL\n"
    for text, expected in ((first, [90]), (second, [99]), (first, [90])):  # A, then B, then A again
        labs.write_text(text)
        lake.ingest(folder)
        assert lake.sql("SELECT value_as_number FROM measurement")["value_as_number"].tolist() == expected


def test_identical_fitbit_day_files_of_two_people_in_two_ingests_are_both_kept(lake, tmp_path):
    day = json.dumps([{"dateTime": "08/15/24 00:00:00", "value": "0"}, {"dateTime": "08/15/24 00:01:00", "value": "5"}])
    for export, participant in (("exportA", "1000001"), ("exportB", "1000002")):
        target = tmp_path / export / participant / "Physical Activity"
        target.mkdir(parents=True)
        (target / "steps-2024-08-15.json").write_text(day)
        lake.ingest(tmp_path / export)
    people = lake.sql("SELECT person_id, count(*) AS n FROM steps_minute GROUP BY ALL")
    assert sorted(people["n"]) == [2, 2]  # the second ingest did not take the first person's rows for its own


def test_retry_quarantined_reads_a_wide_lab_file_once_its_mapping_arrived(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "panel.csv").write_text("participant_id,specimen_collected,GLU\n1,2021-03-01 08:00,90\n")
    lake.ingest(folder)
    assert not lake.has_table("measurement")
    (folder / "mapping.csv").write_text("column_name,loinc_code,unit\nGLU,2345-7,mg/dL\n")
    assert lake.ingest(folder).count("skipped") == 1  # without the flag, a quarantined file stays as it was
    lake.ingest(folder, retry_quarantined=True)
    assert lake.sql("SELECT value_as_number FROM measurement")["value_as_number"].tolist() == [90]


@pytest.mark.parametrize("zone, day, shift, change", [
    ("America/Santiago", "2024-09-08", 60, "2024-09-08 00:00"),  # clocks go forward at midnight
    ("America/Santiago", "2024-04-06", -60, "2024-04-07 00:00"),  # and back at midnight, read on the old clock
    ("America/Havana", "2024-03-10", 60, "2024-03-10 00:00"),
])
def test_clock_changes_at_midnight(zone, day, shift, change):
    from explorer.ingest.checks import clock_change

    _, _, at, size = clock_change(zone, pd.Timestamp(day))
    assert (size, pd.Timestamp(at)) == (shift, pd.Timestamp(change))
    previous = clock_change(zone, pd.Timestamp(day) - pd.Timedelta(days=1))
    assert previous[3] is None  # reported on its own day only


def test_a_garbled_residence_correction_keeps_the_time_zones_it_would_have_replaced(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,39.7,-104.9\n")
    lake.ingest(folder)
    (folder / "res.csv").write_text("person_id,start_date,end_date,latitude,longitude\n1,2020-01-01,,999,-104.9\n")
    (folder / "hr.csv").write_text("person_id,datetime,heart_rate_value\n1,2024-03-10 02:15:00,60\n1,2024-03-10 04:00:00,61\n")
    lake.ingest(folder)
    assert lake.sql("SELECT time_zone FROM wearable_day_zone")["time_zone"].tolist() == ["America/Denver"]
    assert "does not exist in America/Denver" in lake.sql("SELECT reason FROM quarantine_row WHERE target_table = "
                                                          "'heart_rate_minute'")["reason"].item()
