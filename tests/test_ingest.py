"""Ingest: every file of the fault set handled with a reason, nothing lost, originals kept,
idempotent, pseudonymised, units converted by the stated factors."""

import hashlib
import hmac
import json
import os
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import explorer
from conftest import run_cli
from explorer.ingest import PseudonymKeyError, Pseudonymizer
from explorer.catalog.units import to_si
from explorer.synth import SynthConfig, generate

KEY = "an-example-key-for-tests-only-0123456789"


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A cohort spanning the November DST change, with every fault, ingested once."""
    root = tmp_path_factory.mktemp("ingest")
    cohort = root / "cohort"
    generate(cohort, SynthConfig(participants=12, days=6, seed=5, start=date(2024, 10, 30), faults=True,
                                 workers=1, json_fraction=0.2))
    os.environ["EXPLORER_PSEUDONYM_KEY"] = KEY
    lake = explorer.open(root / "lake")
    report = lake.ingest(cohort)
    return cohort, lake, report


def outcomes(lake) -> pd.DataFrame:
    return lake.sql("SELECT * FROM ingest_file")


def test_every_fault_is_handled_as_documented(ingested):
    cohort, lake, report = ingested
    files = outcomes(lake).set_index("source_name")
    faults = json.loads((cohort / "truth" / "truth.json").read_text())["faults"]
    for fault in faults:
        row = files.loc[fault["path"]]
        if fault["expect"] == "quarantine_file":
            assert row["status"] == "quarantined", fault
            assert row["reason"], fault
        else:
            assert row["status"] == "accepted", fault
            assert row["rows_quarantined"] == fault["bad_rows"], (fault, row.to_dict())
    assert not report.errors


def test_nothing_is_lost_rows_read_equal_accepted_plus_quarantined(ingested):
    cohort, lake, report = ingested
    files = outcomes(lake)
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"] + files["rows_ignored"]).all()
    # a quarantined minute of heart-rate samples (a Fitbit export) is one row standing for its samples
    quarantined = lake.sql("SELECT source_file, CAST(sum(coalesce(source_records, 1)) AS BIGINT) AS n FROM quarantine_row "
                           "GROUP BY ALL").set_index("source_file")["n"]
    per_file = files.set_index("sha256")["rows_quarantined"]
    assert quarantined.to_dict() == {k: v for k, v in per_file.items() if v}
    # every heart-rate row of every accepted CSV part is either in the table or in quarantine
    parts = files[files["format"] == "fitbit_aou_heart_rate_minute"]
    read = sum(len(pd.read_csv(cohort / name)) for name in parts["source_name"])
    in_table = lake.sql("SELECT count(*) AS n FROM heart_rate_minute WHERE source_file IN (SELECT sha256 FROM ingest_file "
                        "WHERE format = 'fitbit_aou_heart_rate_minute')")["n"].item()
    assert read == in_table + int(parts["rows_quarantined"].sum())
    # every file found is accounted for: ingested or ignored by .explorerignore
    found = [p for p in cohort.rglob("*") if p.is_file()]  # hidden files count as ignored
    assert len(found) == len(files) + report.ignored


def test_originals_are_kept_byte_for_byte(ingested):
    cohort, lake, _ = ingested
    for row in outcomes(lake).itertuples():
        original = (cohort / row.source_name).read_bytes()
        assert hashlib.sha256(original).hexdigest() == row.sha256
        assert lake.raw.path(row.sha256).read_bytes() == original
    manifest = lake.raw.manifest()
    assert set(manifest["sha256"]) == set(outcomes(lake)["sha256"])
    assert lake.verify().ok


def test_ingesting_again_changes_no_table(ingested):
    cohort, lake, _ = ingested
    before = {t: lake.version(t) for t in lake.tables()}
    again = lake.ingest(cohort)
    assert again.count("skipped") == len(again.files) and not again.versions
    assert {t: lake.version(t) for t in lake.tables()} == before


def test_source_identifiers_never_reach_the_unified_tables(ingested):
    cohort, lake, _ = ingested
    truth = pd.read_parquet(cohort / "truth" / "truth.parquet")
    expected = {Pseudonymizer(KEY.encode())(s) for s in truth["source_id"]}
    for table in ("person", "heart_rate_minute", "steps_minute", "measurement", "residence", "sleep_level"):
        ids = set(lake.sql(f"SELECT DISTINCT person_id FROM {table}")["person_id"])
        assert ids and ids <= expected, table
        assert not ids & set(truth["source_id"]), table
    assert len(set(lake.sql("SELECT person_id FROM person")["person_id"])) == 12  # sources link: one id per person


def test_daylight_saving_hour_is_kept_and_only_artefact_duplicates_are_quarantined(ingested):
    cohort, lake, _ = ingested
    repeated = lake.sql("""SELECT person_id, datetime, count(*) AS n FROM heart_rate_minute
                           WHERE datetime >= TIMESTAMP '2024-11-03 01:00' AND datetime < TIMESTAMP '2024-11-03 02:00'
                           GROUP BY ALL""")
    assert (repeated["n"] <= 2).all() and (repeated["n"] == 2).any()
    reasons = lake.sql("SELECT reason FROM quarantine_row WHERE target_table = 'heart_rate_minute'")["reason"]
    artefacts = pd.read_parquet(cohort / "truth" / "truth_artefacts.parquet")
    planted = artefacts[(artefacts["stream"] == "heart_rate")]
    assert reasons.str.contains("duplicate").sum() == (planted["kind"] == "duplicate_minute").sum()
    assert reasons.str.contains("outside 25-250").sum() >= planted["kind"].isin(["hr_zero", "hr_255"]).sum()


def test_lab_values_in_si_match_what_was_planted(ingested):
    cohort, lake, _ = ingested
    got = lake.sql("SELECT person_id, loinc_code, measurement_datetime, value_si FROM measurement")
    truth = pd.read_parquet(cohort / "truth" / "truth_lab_values.parquet")
    truth["person_id"] = truth["source_id"].map(Pseudonymizer(KEY.encode()))
    merged = got.merge(truth, left_on=["person_id", "loinc_code", "measurement_datetime"],
                       right_on=["person_id", "loinc_code", "datetime"], suffixes=("", "_true"))
    assert len(merged) == len(got) - 2  # the two good rows of the unit-fault file have no planted value
    from explorer.synth.ehr import CONVENTIONAL, _decimals

    # a reported value is rounded to the lab's precision: half a unit of its last place, in SI
    places = merged["loinc_code"].map(_decimals)
    factor = merged["loinc_code"].map(lambda c: CONVENTIONAL.get(c, ("", 1.0))[1])
    tolerance = 0.5 * 10.0 ** (-places) * np.maximum(factor, 1.0) + 1e-9
    assert ((merged["value_si"] - merged["value_si_true"]).abs() <= tolerance).all()


@pytest.mark.parametrize("loinc, value, unit, expected, si", [
    ("2345-7", 90.0, "mg/dL", 90 / 18.016, "mmol/L"),
    ("2345-7", 5.0, "mmol/L", 5.0, "mmol/L"),
    ("2345-7", 90.0, "mg/dl", 90 / 18.016, "mmol/L"),
    ("2160-0", 1.0, "mg/dL", 88.42, "umol/L"),
    ("2160-0", 80.0, "µmol/L", 80.0, "umol/L"),
    ("1751-7", 4.0, "g/dL", 40.0, "g/L"),
    ("1751-7", 41.0, "g/L", 41.0, "g/L"),
    ("1988-5", 1.0, "mg/dL", 10.0, "mg/L"),
    ("1988-5", 3.0, "mg/L", 3.0, "mg/L"),
    ("6690-2", 6500.0, "/uL", 6.5, "10*3/uL"),
    ("6690-2", 6.5, "10^9/L", 6.5, "10*3/uL"),
])
def test_unit_conversions_by_the_stated_factors(loinc, value, unit, expected, si):
    value_si, unit_si, problem = to_si(loinc, value, unit)
    assert problem is None and unit_si == si
    assert value_si == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("loinc, unit", [("2345-7", "furlong/fortnight"), ("2160-0", "%"), ("1751-7", "mg/dL")])
def test_unknown_or_wrong_units_are_flagged_not_guessed(loinc, unit):
    value_si, unit_si, problem = to_si(loinc, 1.0, unit)
    assert value_si is None and unit_si is None and f"unit {unit!r} is not a known unit for LOINC {loinc}" in problem


def test_pseudonyms_are_keyed_hmac_and_refused_without_a_key(tmp_path, monkeypatch):
    p = Pseudonymizer(KEY.encode())
    assert p("1000001") == hmac.new(KEY.encode(), b"participant:1000001", hashlib.sha256).hexdigest()[:32]
    assert Pseudonymizer(b"another-key-of-enough-length-000")("1000001") != p("1000001")
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY")
    lake = explorer.open(tmp_path / "lake")
    (tmp_path / "f.csv").write_text("person_id,datetime,steps\n1,2024-01-01 00:00:00,3\n")
    with pytest.raises(PseudonymKeyError, match="no pseudonym key"):
        lake.ingest(tmp_path / "f.csv")
    assert lake.tables() == []  # refused before keeping or writing anything
    inside = lake.root / "key"
    inside.write_text("k" * 40)
    with pytest.raises(PseudonymKeyError, match="inside the lake"):
        lake.ingest(tmp_path / "f.csv", key_file=inside)
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        Pseudonymizer(b"short")


def test_zip_input_and_member_names(tmp_path):
    import zipfile

    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("steps/part-1.csv", "person_id,datetime,steps\n7,2024-01-01 00:00:00,3\n7,2024-01-01 00:01:00,500\n")
        zf.writestr("notes.txt", "hello")
    lake = explorer.open(tmp_path / "lake")
    report = lake.ingest(archive)
    files = outcomes(lake).set_index("source_name")
    assert files.loc[f"{archive}!steps/part-1.csv", "rows_quarantined"] == 1
    assert files.loc[f"{archive}!notes.txt", "status"] == "quarantined"
    assert "no reader accepted" in files.loc[f"{archive}!notes.txt", "reason"]
    assert report.count("accepted") == 1


def test_ingest_command_reports_and_exits_zero_for_bad_data(ingested, tmp_path):
    cohort, _, _ = ingested
    result = run_cli("ingest", cohort, lake_root=tmp_path / "lake", env={"EXPLORER_PSEUDONYM_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert "accepted" in result.stdout and "quarantined" in result.stdout and "rows:" in result.stdout
    refused = run_cli("ingest", cohort, lake_root=tmp_path / "lake2", env={"EXPLORER_PSEUDONYM_KEY": ""})
    assert refused.returncode == 2 and "no pseudonym key" in refused.stderr


def test_fitbit_export_json_rows_arrive_under_the_folder_participant(ingested):
    cohort, lake, _ = ingested
    files = outcomes(lake)
    exported = files[files["format"] == "fitbit_export_json"]
    assert len(exported) > 10 and (exported["status"] == "accepted").all()
    truth = pd.read_parquet(cohort / "truth" / "truth.parquet")
    people = truth.loc[truth["wearable_source"] == "fitbit_export", "source_id"]
    expected = {Pseudonymizer(KEY.encode())(p) for p in people}
    got = set(lake.sql("SELECT DISTINCT person_id FROM heart_rate_minute WHERE source_file IN "
                       "(SELECT sha256 FROM ingest_file WHERE format = 'fitbit_export_json')")["person_id"])
    assert got == expected
    records = sum(len(json.loads((cohort / name).read_text())) for name in exported["source_name"]
                  if "heart_rate-" in name)
    heart = exported[exported["source_name"].str.contains("heart_rate-")]
    assert records == int(heart["rows_accepted"].sum() + heart["rows_quarantined"].sum())


def test_netcdf_grids_become_zarr_in_celsius_whatever_the_source_unit(ingested):
    import xarray as xr

    cohort, lake, _ = ingested
    stores = lake.sql("SELECT variable, store, units, source_units, time_start FROM array_store ORDER BY variable, time_start")
    assert set(stores["variable"]) == {"tasmax", "tasmin", "pm25"}
    kelvin = stores[(stores["variable"] == "tasmax") & (stores["source_units"] == "K")].iloc[0]
    assert kelvin["units"] == "degC"
    with xr.open_dataset(cohort / "environment" / "tasmax_day_2023.nc") as source:
        expected = source["tasmax"].values - 273.15
    stored = xr.open_zarr(lake.root / kelvin["store"], consolidated=False)["tasmax"].values
    np.testing.assert_allclose(stored, expected, atol=1e-3)
    assert 5 < float(np.nanmean(stored)) < 40  # degrees Celsius, not kelvin


def test_the_summary_groups_reasons_by_kind_and_shows_a_real_one():
    from collections import Counter

    from explorer.ingest.report import FileOutcome, IngestReport

    first = FileOutcome("a.csv", "0" * 64, "accepted", row_reasons=Counter({
        "heart_rate_value 255 bpm outside 25-250": 3, "heart_rate_value 300 bpm outside 25-250": 1}))
    second = FileOutcome("labs.csv", "1" * 64, "accepted", row_reasons=Counter({
        "unit '%' is not a known unit for LOINC 2345-7": 2, "heart_rate_value 255 bpm outside 25-250": 1}))
    text = str(IngestReport("t", [first, second], {}))
    assert "         5 rows  heart_rate_value 255 bpm outside 25-250  (e.g.; 1 other reason like it)" in text
    assert "         2 rows  unit '%' is not a known unit for LOINC 2345-7" in text
    assert "#" not in text
