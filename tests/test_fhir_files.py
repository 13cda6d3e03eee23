"""FHIR as it is delivered (issue 22, item 2): a Synthea-shaped transaction bundle, effective[x]
variants and a bulk NDJSON export, all written by hand from the FHIR R4 specification and
Synthea's R4 exporter (tests/data/README.md cites them). Known answers per file: rows landed,
values in SI, times in the participant's zone, censored values flagged, and every entry or line
accounted for: landed + quarantined + ignored = rows in the file."""

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explorer
from explorer.ingest.context import Context
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.readers.fhir import FhirBundleReader, measurement_rows, parse_time
from explorer.ingest.reference import Reference
from explorer.testing.ingest import file_outcomes as files, quarantine_reasons as reasons, row_counts as counts

DATA = Path(__file__).resolve().parent / "data"
KEY = "fhir-fixture-key-0123456789abcdef"
NOW = datetime(2025, 1, 1)
SYNTHEA_ID = "b3f2c8e1-4a5d-4e6f-8a7b-9c0d1e2f3a4b"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.delenv("EXPLORER_FHIR_SERVER", raising=False)
    return explorer.open(tmp_path / "lake")


def pseudonym(source_id: str) -> str:
    return Pseudonymizer(KEY.encode())(source_id)


def labs(lake) -> pd.DataFrame:
    return lake.sql("SELECT person_id, measurement_datetime, datetime_precision, loinc_code, value_as_number, "
                    "value_comparator, result_flag, unit, value_si, unit_si, si_note FROM measurement "
                    "ORDER BY measurement_datetime, loinc_code")


# -- Synthea bundle ----------------------------------------------------------------------------


def test_synthea_bundle_with_residence(lake, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("synthea_bundle.json", "residence.csv"):
        shutil.copy(DATA / "fhir_synthea" / name, folder / name)
    report = lake.ingest(folder, now=NOW, quality=False)
    assert not report.errors
    found = files(lake)
    assert found.loc["synthea_bundle.json", "format"] == "fhir_r4_bundle"
    # 12 entries: Patient, Encounter, Condition and 3 quantity Observations land; Organization,
    # Practitioner, Immunization, Claim, ExplanationOfBenefit and the coded smoking status are counted
    assert counts(found, "synthea_bundle.json") == [12, 6, 0, 6]
    ignored = dict(part.rsplit(": ", 1) for part in found.loc["synthea_bundle.json", "ignored"].split("; "))
    assert ignored == {"FHIR Organization": "1", "FHIR Practitioner": "1", "FHIR Immunization": "1", "FHIR Claim": "1",
                       "FHIR ExplanationOfBenefit": "1", "FHIR Observation valueCodeableConcept": "1"}
    person = pseudonym(SYNTHEA_ID)  # the participant is the bundle's Patient, by its Synthea identifier
    assert lake.sql("SELECT person_id, year_of_birth, sex_at_birth, race, zip3 FROM person").values.tolist() == \
        [[person, 1961, "female", "White", "850"]]
    got = labs(lake).set_index("loinc_code")
    assert (got["person_id"] == person).all()
    assert sorted(got.index) == ["2160-0", "2345-7", "8462-4", "8480-6"]  # the BP panel 85354-9 split in two
    # Phoenix keeps MST (UTC-7) all year: 09:00Z is 02:00, 12:00-04:00 (16:00Z) is 09:00
    assert got.loc["2345-7", "measurement_datetime"] == pd.Timestamp("2023-03-14 02:00")
    assert got.loc["2160-0", "measurement_datetime"] == pd.Timestamp("2023-03-14 09:00")
    assert got.loc["8480-6", "measurement_datetime"] == got.loc["8462-4", "measurement_datetime"] == pd.Timestamp("2023-03-14 09:05")
    assert (got["datetime_precision"] == "second").all()
    # glucose 126 mg/dL / 18.016 = 6.9938 mmol/L, flagged H by the lab
    assert got.loc["2345-7", "value_si"] == pytest.approx(126 / 18.016, rel=1e-4) and got.loc["2345-7", "result_flag"] == "H"
    # creatinine "<0.5 mg/dL": the limit kept with its comparator, 0.5 x 88.42 = 44.21 umol/L
    assert got.loc["2160-0", "value_as_number"] == 0.5 and got.loc["2160-0", "value_comparator"] == "<"
    assert got.loc["2160-0", "value_si"] == pytest.approx(44.21, rel=1e-4)
    assert got.loc["8480-6", "value_as_number"] == 128 and got.loc["8462-4", "value_as_number"] == 82
    assert (got.loc[["8480-6", "8462-4"], "unit"] == "mm[Hg]").all()
    assert got.loc[["8480-6", "8462-4"], "value_si"].isna().all()
    assert got.loc["8480-6", "si_note"] == "no SI conversion known for LOINC 8480-6"
    assert pd.isna(got.loc["2345-7", "value_comparator"]) and pd.isna(got.loc["2345-7", "si_note"])
    visit = lake.sql("SELECT visit_start_datetime, visit_end_datetime, visit_class FROM visit_occurrence")
    assert visit.values.tolist() == [[pd.Timestamp("2023-03-14 09:00"), pd.Timestamp("2023-03-14 09:30"), "AMB"]]
    condition = lake.sql("SELECT condition_start_date, code_system, code FROM condition_occurrence")
    assert condition.astype({"condition_start_date": "datetime64[us]"}).values.tolist() == \
        [[pd.Timestamp("2023-03-14"), "http://snomed.info/sct", "59621000"]]


def test_synthea_bundle_without_a_zone_refuses_only_the_utc_time(lake):
    lake.ingest(DATA / "fhir_synthea" / "synthea_bundle.json", now=NOW, quality=False)
    found = files(lake)
    assert counts(found, "synthea_bundle.json") == [12, 5, 1, 6]
    [reason] = reasons(lake, "synthea_bundle.json")
    assert "effectiveDateTime 2023-03-14T09:00:00Z is in UTC" in reason
    assert "residence history" in reason and "--default-time-zone" in reason
    # a time written with its offset keeps that offset's wall clock when no zone is known
    got = labs(lake).set_index("loinc_code")
    assert got.loc["2160-0", "measurement_datetime"] == pd.Timestamp("2023-03-14 12:00")


def test_effective_x_variants(lake):
    lake.ingest(DATA / "fhir_synthea" / "effective_variants.json", default_time_zone="America/Phoenix", now=NOW, quality=False)
    found = files(lake)
    # 8 entries: the Patient and 4 Observations land, the month-only and timeless ones are
    # quarantined, the one whose value is absent for a stated reason is counted
    assert counts(found, "effective_variants.json") == [8, 5, 2, 1]
    assert found.loc["effective_variants.json", "ignored"] == "FHIR Observation dataAbsentReason: 1"
    got = labs(lake)
    assert (got["person_id"] == pseudonym("1000021")).all()
    assert got["measurement_datetime"].tolist() == [
        pd.Timestamp("2023-05-02 00:00"),         # effectiveDateTime, a date: 00:00, precision day
        pd.Timestamp("2023-05-03 07:10"),         # effectivePeriod: its start
        pd.Timestamp("2023-05-04 07:15:30.250"),  # effectiveInstant 14:15:30.250Z in MST
        pd.Timestamp("2023-05-05 08:00"),         # effectiveTiming: its first event, 15:00Z
    ]
    assert got["datetime_precision"].tolist() == ["day", "second", "second", "second"]
    assert got["value_si"].iloc[0] == pytest.approx(90 / 18.016, rel=1e-4)
    said = reasons(lake, "effective_variants.json")
    assert len(said) == 2
    assert "'2023-05' gives only a year or month" in said[0]
    assert "no effective[x]" in said[1]


def test_several_patients_need_the_participant_system(lake):
    lake.ingest(DATA / "fhir_synthea" / "two_patients.json", now=NOW, quality=False)
    row = files(lake).loc["two_patients.json"]
    assert row["status"] == "quarantined"
    assert "2 Patients" in row["reason"] and "EXPLORER_PARTICIPANT_SYSTEM" in row["reason"]


def test_conditional_patient_reference_and_configured_system(lake, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:aaaaaaaa-0000-4000-8000-00000000000{k}",
         "resource": {"resourceType": "Patient", "id": f"aaaaaaaa-0000-4000-8000-00000000000{k}", "identifier": [
             {"system": "http://hospital.smarthealthit.org", "value": f"MRN-{k}"},
             {"system": "urn:cohort-explorer:participant-id", "value": f"100004{k}"}]},
         "request": {"method": "POST", "url": "Patient"}} for k in (1, 2)] + [
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                      "subject": {"reference": "Patient?identifier=http://hospital.smarthealthit.org|MRN-2"},
                      "effectiveDateTime": "2024-02-01T08:00:00-05:00",
                      "valueQuantity": {"value": 5.0, "unit": "mmol/L", "code": "mmol/L"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    lake.ingest(tmp_path / "b.json", default_time_zone="America/New_York", now=NOW, quality=False)
    assert counts(files(lake), "b.json") == [3, 3, 0, 0]
    got = labs(lake)
    assert got["person_id"].tolist() == [pseudonym("1000042")]
    assert got["measurement_datetime"].tolist() == [pd.Timestamp("2024-02-01 08:00")]


# -- bulk NDJSON -------------------------------------------------------------------------------


def test_bulk_export_as_delivered(lake):
    report = lake.ingest(DATA / "fhir_synthea_bulk", default_time_zone="America/New_York", now=NOW, quality=False)
    assert not report.errors
    found = files(lake)
    assert found["format"].to_dict() == {"Patient.ndjson": "fhir_r4_ndjson_patient", "Encounter.ndjson": "fhir_r4_ndjson",
                                         "Immunization.ndjson": "fhir_r4_ndjson", "Observation.ndjson": "fhir_r4_ndjson"}
    assert counts(found, "Patient.ndjson") == [2, 2, 0, 0]
    assert counts(found, "Encounter.ndjson") == [1, 1, 0, 0]
    assert counts(found, "Immunization.ndjson") == [2, 0, 0, 2]
    assert found.loc["Immunization.ndjson", "status"] == "accepted"  # a file of a kind not stored is not an error
    assert found.loc["Immunization.ndjson", "ignored"] == "FHIR Immunization: 2"
    assert counts(found, "Observation.ndjson") == [5, 3, 1, 1]
    assert found.loc["Observation.ndjson", "ignored"] == "FHIR Observation valueCodeableConcept: 1"
    [reason] = reasons(lake, "Observation.ndjson")
    assert "subject Patient/zz is not a Patient delivered to this lake" in reason
    synthea, cohort = pseudonym("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), pseudonym("1000031")
    got = labs(lake)
    assert got[["person_id", "measurement_datetime", "loinc_code"]].values.tolist() == [
        [cohort, pd.Timestamp("2022-07-01 10:00"), "2345-7"],   # -04:00 is New York's EDT already
        [cohort, pd.Timestamp("2022-07-03 02:30"), "2160-0"],   # 23:30-07:00 is 06:30Z, 02:30 EDT the next day
        [synthea, pd.Timestamp("2022-11-07 09:30"), "8462-4"],  # 14:30Z in EST (UTC-5) after the autumn change
        [synthea, pd.Timestamp("2022-11-07 09:30"), "8480-6"],
    ]
    glucose = got.iloc[0]
    assert glucose["value_comparator"] == ">" and glucose["result_flag"] == "HH"
    assert glucose["value_si"] == pytest.approx(600 / 18.016, rel=1e-4)
    assert got.iloc[1]["value_si"] == pytest.approx(1.2 * 88.42, rel=1e-4)
    assert got.iloc[2:]["value_as_number"].tolist() == [93, 141]
    visit = lake.sql("SELECT person_id, visit_start_datetime, visit_end_datetime FROM visit_occurrence")
    assert visit.values.tolist() == [[synthea, pd.Timestamp("2022-11-07 09:00"), pd.Timestamp("2022-11-07 09:45")]]


# -- properties --------------------------------------------------------------------------------


def context(default_zone="UTC") -> Context:
    return Context(Pseudonymizer(KEY.encode()), pd.Timestamp(NOW), "b.json", "0" * 64, Path("."),
                   Reference({}, default_zone))


KINDS = ["Observation", "ObservationBP", "ObservationCoded", "ObservationBad", "Immunization", "Organization", "Claim",
         "Condition", "Encounter"]


def entry(kind: str, k: int) -> dict:
    subject = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}
    observation = {"resourceType": "Observation", "id": f"o{k}", "status": "final", "subject": subject,
                   "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                   "effectiveDateTime": "2024-01-01T08:00:00Z"}
    if kind == "Observation":
        resource = {**observation, "valueQuantity": {"value": 5.0 + k, "unit": "mmol/L", "code": "mmol/L"}}
    elif kind == "ObservationBP":
        resource = {**observation, "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}, "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "valueQuantity": {"value": v, "code": "mm[Hg]"}}
            for c, v in (("8480-6", 120), ("8462-4", 80))]}
    elif kind == "ObservationCoded":
        resource = {**observation, "valueString": "negative"}
    elif kind == "ObservationBad":
        resource = {**observation, "effectiveDateTime": "2024", "valueQuantity": {"value": 5.0, "code": "mmol/L"}}
    elif kind == "Immunization":
        resource = {"resourceType": kind, "id": f"i{k}", "status": "completed", "patient": subject,
                    "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2024-01-01"}
    elif kind == "Organization":
        resource = {"resourceType": kind, "id": f"g{k}", "name": "clinic"}
    elif kind == "Claim":
        resource = {"resourceType": kind, "id": f"c{k}", "status": "active", "use": "claim", "patient": subject,
                    "type": {"text": "professional"}, "created": "2024-01-01", "provider": {"display": "x"},
                    "priority": {"text": "normal"}, "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "x"}}]}
    elif kind == "Condition":
        resource = {"resourceType": kind, "id": f"d{k}", "subject": subject, "code": {"text": "x"}, "onsetDateTime": "2020-01-01"}
    else:
        resource = {"resourceType": kind, "id": f"e{k}", "status": "finished", "class": {"code": "AMB"}, "subject": subject,
                    "period": {"start": "2024-01-01T08:00:00Z"}}
    return {"resource": resource}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(KINDS), max_size=12))
def test_every_entry_is_landed_quarantined_or_ignored(tmp_path, kinds):
    """Whatever mix of resources a bundle holds, each entry is one accepted record (however many
    rows it became), one quarantined record, or one ignored record; a BP panel is two rows."""
    patient = {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
               "resource": {"resourceType": "Patient", "id": "00000000-0000-4000-8000-000000000001"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [patient] + [entry(k, i) for i, k in enumerate(kinds)]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    result = FhirBundleReader().read(path, context())
    accepted = set().union(*[set(frame["_row"]) for frame in result.tables.values()])
    assert result.rows_read == len(accepted) + len(result.quarantined) + sum(result.ignored.values())
    assert not accepted & set(result.quarantined["_row"])
    tally = Counter(kinds)
    assert len(result.quarantined) == tally["ObservationBad"]
    assert sum(result.ignored.values()) == tally["Immunization"] + tally["Organization"] + tally["Claim"] + tally["ObservationCoded"]
    measurement = result.tables.get("measurement", pd.DataFrame(columns=["loinc_code"]))
    assert len(measurement) == tally["Observation"] + 2 * tally["ObservationBP"]
    assert (measurement["loinc_code"] == "8480-6").sum() == (measurement["loinc_code"] == "8462-4").sum() == tally["ObservationBP"]


quantities = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(st.sampled_from(["8480-6", "8462-4", "8867-4", "2345-7"]), quantities), min_size=1, max_size=6),
       st.sampled_from([None, "<", "<=", ">", ">="]))
def test_components_split_one_row_each(parts, comparator):
    """A panel without its own value becomes one row per component, in order, each under the
    component's code with its value and comparator; the panel's code is not stored."""
    resource = {"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "effectiveDateTime": "2024-01-01T08:00:00+01:00",
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                               "valueQuantity": {"value": value, "code": "mmol/L" if code == "2345-7" else "mm[Hg]",
                                                 **({"comparator": comparator} if comparator else {})}}
                              for code, value in parts]}
    rows = measurement_rows(7, resource, "p", "source", context())
    assert [(r["loinc_code"], r["value_as_number"]) for r in rows] == [(c, float(v)) for c, v in parts]
    assert all(r["_row"] == 7 and r["value_comparator"] == comparator for r in rows)
    assert len({r["measurement_datetime"] for r in rows}) == 1


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
       st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: m - m % 15))
def test_an_instant_is_the_same_moment_whatever_offset_wrote_it(moment, offset_minutes):
    """parse_time reads the offset: the same instant written in any offset is one UTC moment."""
    sign = "+" if offset_minutes >= 0 else "-"
    written = (pd.Timestamp(moment).floor("s") + pd.Timedelta(minutes=offset_minutes))
    text = written.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    when, precision = parse_time(text)
    assert precision == "second"
    assert when.tz_convert("UTC").tz_localize(None) == pd.Timestamp(moment).floor("s")


def test_a_time_after_the_ingest_is_quarantined_once_for_a_panel(tmp_path):
    """A panel dated after the ingest (in local time) is one quarantined record, not two."""
    resource = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "effectiveDateTime": "2025-01-01T03:00:00-05:00",  # 08:00Z, after NOW (00:00) in UTC
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                               "valueQuantity": {"value": v, "code": "mm[Hg]"}} for c, v in (("8480-6", 120), ("8462-4", 80))]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "Patient/p", "resource": {"resourceType": "Patient", "id": "p"}}, {"resource": resource}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    result = FhirBundleReader().read(path, context("UTC"))
    assert result.quarantined["_row"].tolist() == [2] and "after the ingest" in result.quarantined["reason"].iloc[0]
    assert "measurement" not in result.tables
    # the same instant in Honolulu (UTC-10) is 2024-12-31 22:00 local, before the ingest: two rows
    result = FhirBundleReader().read(path, context("Pacific/Honolulu"))
    assert result.tables["measurement"]["measurement_datetime"].tolist() == [pd.Timestamp("2024-12-31 22:00")] * 2


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["Observation", "ObservationBP", "ObservationCoded", "ObservationBad", "Immunization",
                                 "Claim", "garbage", "stranger"]), min_size=1, max_size=12))
def test_every_ndjson_line_is_landed_quarantined_or_ignored(tmp_path, kinds):
    """A bulk file of any mix of lines (resource types not stored, unreadable lines, unknown
    subjects) accounts for each line once."""
    from explorer.ingest.readers.fhir import FhirNdjsonReader, patient_ref_key

    ctx = context()
    link = pd.DataFrame({"patient_ref": [patient_ref_key(ctx, "p")], "person_id": ["x"], "source_file": ["s"]})
    ctx = Context(ctx.pseudonymizer, ctx.now, "o.ndjson", "0" * 64, Path("."), Reference({"fhir_patient_link": [link]}, "UTC"))
    lines = []
    for k, kind in enumerate(kinds):
        if kind == "garbage":
            lines.append("{not json")
            continue
        resource = entry("Observation" if kind == "stranger" else kind, k)["resource"]
        for key in ("subject", "patient"):
            if key in resource:
                resource[key] = {"reference": "Patient/zz" if kind == "stranger" else "Patient/p"}
        lines.append(json.dumps(resource))
    path = tmp_path / "o.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = FhirNdjsonReader().read(path, ctx)
    accepted = set().union(*[set(frame["_row"]) for frame in result.tables.values()]) if result.tables else set()
    assert result.rows_read == len(kinds) == len(accepted) + len(result.quarantined) + sum(result.ignored.values())
    tally = Counter(kinds)
    assert len(result.quarantined) == tally["ObservationBad"] + tally["garbage"] + tally["stranger"]
    assert result.ignored["FHIR Immunization"] == tally["Immunization"] and result.ignored["FHIR Claim"] == tally["Claim"]
