"""Readers beyond the synthetic cohort's own files: wide lab CSV with its mapping, FHIR bulk
NDJSON, Parquet of a unified table, Zarr grids (folder and zipped store)."""

import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import explorer
from explorer.ingest import Pseudonymizer

KEY = "format-test-key-0123456789abcdef012"
PARTICIPANTS = "urn:cohort-explorer:participant-id"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    return explorer.open(tmp_path / "lake")


def pseudonym(source_id):
    return Pseudonymizer(KEY.encode())(source_id)


def files_of(lake):
    return lake.sql("SELECT * FROM ingest_file").set_index("source_name")


def assert_nothing_lost(lake):
    files = lake.sql("SELECT * FROM ingest_file WHERE status IN ('accepted', 'quarantined')")
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"] + files["rows_ignored"]).all()


# -- wide lab CSV with a mapping file ---------------------------------------------------------

def test_wide_lab_file_is_read_through_its_mapping_cell_by_cell(lake, tmp_path):
    folder = tmp_path / "labs"
    folder.mkdir()
    (folder / "mapping.csv").write_text("column_name,loinc_code,unit,test_name\n"
                                        "GLU,2345-7,mg/dL,Glucose\nCREA,2160-0,mg/dL,Creatinine\n")
    (folder / "panel.csv").write_text("participant_id,specimen_collected,GLU,CREA\n"
                                      "1,2021-03-01 08:00,90.08,1.0\n"
                                      "2,2021-03-02 08:00,abc,0.8\n"  # bad glucose, good creatinine
                                      "3,2021-03-03 08:00,,1.2\n")  # glucose not measured
    report = lake.ingest(folder)
    assert not report.errors
    rows = lake.sql("SELECT person_id, loinc_code, value_si, unit_si FROM measurement ORDER BY person_id, loinc_code")
    assert len(rows) == 4  # 5 cells filled, one quarantined
    glucose = rows[(rows.person_id == pseudonym("1")) & (rows.loinc_code == "2345-7")]
    assert glucose["value_si"].item() == pytest.approx(90.08 / 18.016) and glucose["unit_si"].item() == "mmol/L"
    creatinine = rows[(rows.person_id == pseudonym("1")) & (rows.loinc_code == "2160-0")]
    assert creatinine["value_si"].item() == pytest.approx(88.42)
    bad = lake.sql("SELECT reason, record FROM quarantine_row")
    assert len(bad) == 1 and "result: not a number" in bad["reason"].item()
    assert json.loads(bad["record"].item())["column_name"] == "GLU"
    panel = files_of(lake).loc["panel.csv"]
    assert (panel["format"], panel["rows_read"], panel["rows_accepted"], panel["rows_quarantined"]) == ("lab_results_wide_csv", 5, 4, 1)
    assert_nothing_lost(lake)


def test_wide_lab_column_without_mapping_quarantines_the_file_and_says_what_to_send(lake, tmp_path):
    (tmp_path / "panel.csv").write_text("participant_id,specimen_collected,HBA1C\n1,2021-03-01 08:00,5.6\n")
    lake.ingest(tmp_path / "panel.csv")
    outcome = files_of(lake).loc[str(tmp_path / "panel.csv")]
    assert outcome["status"] == "quarantined"
    assert "HBA1C have no mapping" in outcome["reason"] and "mapping file" in outcome["reason"]


def test_mapping_with_an_unconvertible_unit_is_flagged_not_guessed(lake, tmp_path):
    (tmp_path / "mapping.csv").write_text("column_name,loinc_code,unit\nGLU,2345-7,stone\nCREA,2160-0,mg/dL\n")
    lake.ingest(tmp_path / "mapping.csv")
    assert lake.sql("SELECT column_name FROM lab_column_map")["column_name"].tolist() == ["CREA"]
    assert "unit" in lake.sql("SELECT reason FROM quarantine_row")["reason"].item()


# -- FHIR bulk NDJSON -------------------------------------------------------------------------

def patient(logical_id, participant, birth="1950-04-02"):
    return {"resourceType": "Patient", "id": logical_id, "birthDate": birth, "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": f"MRN{logical_id}"}, {"system": PARTICIPANTS, "value": participant}]}


def observation(logical_id, subject, value, unit="mg/dL", when="2022-05-01T09:30:00-05:00"):
    return {"resourceType": "Observation", "id": logical_id, "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit, "code": unit}}


def ndjson(path, resources):
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def test_bulk_export_ndjson_links_observations_to_patients_across_files_and_ingests(lake, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    ndjson(export / "Patient.ndjson", [patient("p1", "1000001"), patient("p2", "1000002")])
    ndjson(export / "Observation.ndjson", [
        observation("o1", "Patient/p1", 90.08),
        observation("o2", "Patient/p9", 100),  # nobody by that reference
        {**observation("o3", "Patient/p2", 90), "valueQuantity": {"value": "ninety"}},  # fails validation
    ])
    (export / "Observation.ndjson").open("a").write("{not json\n")
    report = lake.ingest(export)
    assert not report.errors
    people = lake.sql("SELECT person_id FROM person ORDER BY person_id")["person_id"].tolist()
    assert people == sorted([pseudonym("1000001"), pseudonym("1000002")])  # the participant ID, not the MRN
    glucose = lake.sql("SELECT person_id, value_si FROM measurement")
    assert glucose["person_id"].tolist() == [pseudonym("1000001")]
    assert glucose["value_si"].item() == pytest.approx(5.0, rel=1e-3)
    reasons = " | ".join(lake.sql("SELECT reason FROM quarantine_row ORDER BY row_number")["reason"])
    assert "Patient/p9 is not a Patient delivered to this lake" in reasons
    assert "not a valid FHIR R4 Observation" in reasons and "not a JSON object" in reasons
    links = lake.sql("SELECT * FROM fhir_patient_link")
    assert not links["patient_ref"].isin(["p1", "p2", "Patient/p1"]).any()  # the reference only as a keyed hash
    assert_nothing_lost(lake)

    # a later export's observations find patients delivered in an earlier ingest
    later = tmp_path / "later"
    later.mkdir()
    ndjson(later / "Observation.ndjson", [observation("o4", "Patient/p2", 5.5, unit="mmol/L")])
    lake.ingest(later)
    assert pseudonym("1000002") in set(lake.sql("SELECT person_id FROM measurement")["person_id"])


def test_ndjson_agrees_with_fhir_resources_on_validity(lake, tmp_path):
    from fhir.resources.R4B.observation import Observation
    from pydantic import ValidationError

    ndjson(tmp_path / "Patient.ndjson", [patient("p1", "1000001")])
    lake.ingest(tmp_path / "Patient.ndjson")
    candidates = [observation("a", "Patient/p1", 90), {**observation("b", "Patient/p1", 90), "status": "bogus"},
                  {**observation("c", "Patient/p1", 90), "valueQuantity": {"value": "ninety"}},
                  {**observation("d", "Patient/p1", 90), "effectiveDateTime": "yesterday"}]
    ndjson(tmp_path / "Observation.ndjson", candidates)
    lake.ingest(tmp_path / "Observation.ndjson")
    rejected = set(lake.sql("SELECT row_number FROM quarantine_row")["row_number"])
    for n, resource in enumerate(candidates, 1):
        try:
            Observation.model_validate(resource)
            valid = True
        except ValidationError:
            valid = False
        assert (n not in rejected) == valid, resource["id"]


# -- Parquet of a unified table ---------------------------------------------------------------

def test_parquet_of_a_unified_table_is_pseudonymized_checked_and_counted(lake, tmp_path):
    frame = pd.DataFrame({"person_id": ["1000001"] * 3 + ["1000002"],
                          "datetime": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:02", "2024-01-01 00:00"]),
                          "heart_rate_value": [60, 400, 61, 70]})  # 400 bpm fails the range check
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "hr.parquet")
    lake.ingest(tmp_path / "hr.parquet")
    rows = lake.sql("SELECT person_id, heart_rate_value FROM heart_rate_minute ORDER BY heart_rate_value")
    assert rows["heart_rate_value"].tolist() == [60, 61, 70]
    assert set(rows["person_id"]) == {pseudonym("1000001"), pseudonym("1000002")}
    outcome = files_of(lake).loc[str(tmp_path / "hr.parquet")]
    assert (outcome["format"], outcome["rows_quarantined"]) == ("unified_parquet", 1)
    assert "outside 25-250" in lake.sql("SELECT reason FROM quarantine_row")["reason"].item()


def test_parquet_table_named_in_metadata_and_extra_columns_refused_by_name(lake, tmp_path):
    table = pa.table({"person_id": ["1"], "datetime": ["2024-01-01 00:00:00"], "steps": ["12"]})
    pq.write_table(table.replace_schema_metadata({"explorer.table": "steps_minute"}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"person_id": ["1"], "datetime": ["2024-01-01"], "steps": [3], "device": ["x"]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"colour": ["red"]}), tmp_path / "c.parquet")
    lake.ingest(tmp_path)
    assert lake.sql("SELECT steps FROM steps_minute")["steps"].tolist() == [12]  # text cast to the column's type
    files = files_of(lake)
    assert "device are not in table steps_minute" in files.loc["b.parquet", "reason"]
    assert "not those of any unified table" in files.loc["c.parquet", "reason"]


# -- Zarr grids -------------------------------------------------------------------------------

def grid(variable, units, values):
    import xarray as xr

    time = pd.date_range("2023-07-01", periods=3)
    data = np.full((3, 2, 2), values, dtype="float32")
    ds = xr.Dataset({variable: (("time", "lat", "lon"), data, {"units": units})},
                    coords={"time": time, "lat": [40.0, 40.5], "lon": [-75.0, -74.5]})
    return ds


def test_zarr_folder_and_zipped_store_are_grids_in_celsius(lake, tmp_path):
    import xarray as xr

    folder = tmp_path / "grids"
    folder.mkdir()
    grid("tasmax", "degF", 95.0).to_zarr(folder / "tasmax_f.zarr", zarr_format=3, consolidated=False)
    zipped = tmp_path / "stage.zarr"
    grid("tasmin", "K", 293.15).to_zarr(zipped, zarr_format=2, consolidated=False)
    with zipfile.ZipFile(folder / "tasmin_k.zarr.zip", "w") as archive:
        for file in sorted(p for p in zipped.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(zipped).as_posix())
    report = lake.ingest(folder)
    assert not report.errors and report.count("accepted") == 2, str(report)
    stores = lake.sql("SELECT variable, store, units, source_units FROM array_store ORDER BY variable")
    assert stores["source_units"].tolist() == ["degF", "K"] and set(stores["units"]) == {"degC"}
    values = {row.variable: float(xr.open_zarr(lake.root / row.store, consolidated=False)[row.variable].mean())
              for row in stores.itertuples()}
    assert values["tasmax"] == pytest.approx(35.0, abs=1e-3) and values["tasmin"] == pytest.approx(20.0, abs=1e-3)
    assert lake.ingest(folder).count("skipped") == 2  # the folder packs to the same bytes again
    assert lake.verify().ok


def test_zarr_without_units_is_quarantined_with_the_reason(lake, tmp_path):
    ds = grid("tasmax", "K", 300.0)
    del ds["tasmax"].attrs["units"]
    ds.to_zarr(tmp_path / "nounits.zarr", zarr_format=3, consolidated=False)
    lake.ingest(tmp_path / "nounits.zarr")
    outcome = files_of(lake).iloc[0]
    assert outcome["status"] == "quarantined" and "no units attribute" in outcome["reason"]


# -- weather stations -------------------------------------------------------------------------

def test_weather_station_values_in_si_and_unknown_units_quarantined(lake, tmp_path):
    (tmp_path / "stations.csv").write_text(
        "station_id,latitude,longitude,date,element,value,units\n"
        "USW00023000,31.763,-113.271,2023-01-01,TMAX,201,tenths of degC\n"
        "USW00023000,31.763,-113.271,2023-01-01,TMIN,50,degF\n"
        "USW00023000,31.763,-113.271,2023-01-01,PRCP,25,tenths of mm\n"
        "USW00023000,31.763,-113.271,2023-01-02,TMAX,201,degrees\n"  # not a unit: never guessed
        "USW00023000,31.763,-113.271,2023-01-02,SNOW,3,mm\n")  # an element this suite does not store
    lake.ingest(tmp_path / "stations.csv")
    rows = lake.sql("SELECT element, value, unit FROM weather_station_daily ORDER BY element").set_index("element")
    assert rows.loc["TMAX", "value"] == pytest.approx(20.1) and rows.loc["TMIN", "value"] == pytest.approx(10.0)
    assert rows.loc["PRCP", "value"] == pytest.approx(2.5) and rows.loc["PRCP", "unit"] == "mm"
    reasons = lake.sql("SELECT reason FROM quarantine_row ORDER BY row_number")["reason"].tolist()
    assert "units: not a unit for TMAX" in reasons[0] and "element: expected one of" in reasons[1]
    assert_nothing_lost(lake)


def test_parquet_values_that_do_not_fit_their_column_quarantine_their_row(lake, tmp_path):
    table = pa.table({"person_id": ["1", "2", "3"], "year_of_birth": pa.array([1950, 2**40, 1960], pa.int64()),
                      "sex_at_birth": ["female", "male", "female"]})
    pq.write_table(table.replace_schema_metadata({"explorer.table": "person"}), tmp_path / "people.parquet")
    big = pa.table({"person_id": ["1", "1"], "datetime": ["2024-01-01 00:00:00", "2024-01-01 00:01:00"],
                    "steps": pa.array([3, 2**63 + 5], pa.uint64())})
    pq.write_table(big, tmp_path / "steps.parquet")
    report = lake.ingest(tmp_path)
    assert not report.errors, [(f.source_name, f.reason) for f in report.errors]
    assert sorted(lake.sql("SELECT year_of_birth FROM person")["year_of_birth"]) == [1950, 1960]
    assert lake.sql("SELECT steps FROM steps_minute")["steps"].tolist() == [3]
    reasons = " | ".join(lake.sql("SELECT reason FROM quarantine_row")["reason"])
    assert "year_of_birth" in reasons and "steps" in reasons
    assert_nothing_lost(lake)


def test_two_fhir_servers_patient_1_are_two_people(lake, tmp_path, monkeypatch):
    for site, participant, value in (("https://site-a.example/fhir", "1000001", 90), ("https://site-b.example/fhir", "1000002", 180)):
        folder = tmp_path / site.split("//")[1].split(".")[0]
        folder.mkdir()
        ndjson(folder / "Patient.ndjson", [patient("1", participant)])
        ndjson(folder / "Observation.ndjson", [observation("o1", "Patient/1", value)])
        monkeypatch.setenv("EXPLORER_FHIR_SERVER", site)
        lake.ingest(folder)
    rows = lake.sql("SELECT person_id, value_as_number FROM measurement ORDER BY value_as_number")
    assert rows["person_id"].tolist() == [pseudonym("1000001"), pseudonym("1000002")]
