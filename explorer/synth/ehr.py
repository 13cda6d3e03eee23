"""Clinical data: yearly lab visits following each person's planted ageing slopes, conditions,
written as FHIR R4 transaction Bundles and as outside-lab CSV with the unit mixes labs send."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import tzfpy

from explorer.synth.cohort import MARKERS, residence_on

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
PARTICIPANT_SYSTEM = "urn:cohort-explorer:participant-id"

#: Units a lab may report a marker in: (unit, factor to the SI unit of MARKERS), per LOINC.
#: Factors: glucose 1 mg/dL = 0.0555 mmol/L (molar mass 180.16 g/mol); creatinine 1 mg/dL =
#: 88.42 umol/L (113.12 g/mol); albumin 1 g/dL = 10 g/L; CRP 1 mg/dL = 10 mg/L.
CONVENTIONAL = {
    "2345-7": ("mg/dL", 1 / 18.016),
    "2160-0": ("mg/dL", 88.42),
    "1751-7": ("g/dL", 10.0),
    "1988-5": ("mg/dL", 10.0),
}

CONDITIONS = {  # ageotype -> (probability, system, code, display)
    "metabolic": (0.45, ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
    "nephrotic": (0.35, ICD10CM, "N18.30", "Chronic kidney disease, stage 3 unspecified"),
    "hepatic": (0.3, ICD10CM, "K76.0", "Fatty (change of) liver, not elsewhere classified"),
    "immune": (0.2, ICD10CM, "M06.9", "Rheumatoid arthritis, unspecified"),
}
HYPERTENSION = ((ICD10CM, "I10", "Essential (primary) hypertension"), (SNOMED, "38341003", "Hypertensive disorder"))

RACE_CODES = {"White": "2106-3", "Black or African American": "2054-5", "Asian": "2028-9",
              "American Indian or Alaska Native": "1002-5", "Other": "2131-1"}
ETHNICITY_CODES = {"Hispanic or Latino": "2135-2", "Not Hispanic or Latino": "2186-5"}


def lab_visits(person, markers: pd.DataFrame, residences: pd.DataFrame, config, rng, *, route: str) -> pd.DataFrame:
    """One row per (visit, marker): local datetime, LOINC, value in SI units (the planted model).

    ``route`` "fhir" gives yearly visits before the window; "lab_csv" gives visits half a year
    offset from them at an outside lab.
    """
    offset = 0 if route == "fhir" else 182
    visits = []
    for k in range(config.lab_years):
        day = config.start - timedelta(days=365 * (config.lab_years - k) - offset + int(rng.integers(-45, 45)))
        if rng.random() < 0.1 or day >= config.start:
            continue
        visits.append(datetime(day.year, day.month, day.day, int(rng.integers(7, 11)), int(rng.integers(0, 60))))
    rows = []
    # plain tuples: a pandas row lookup per (visit, marker) was most of the demo's synth time
    own = {row.loinc_code: row for row in markers[markers["source_id"] == person.source_id].itertuples(index=False)}
    birth = pd.Timestamp(person.birth_date)
    for when in visits:
        age = (pd.Timestamp(when) - birth).days / 365.25
        for loinc, name, unit, *_rest, scale in MARKERS:
            if rng.random() < 0.04:  # a test not run at this visit
                continue
            p = own[loinc]
            level = p.level_at_reference + p.slope_per_year * (age - p.reference_age) + rng.normal(0, p.within_sd)
            # physiological floor: a steep slope or a low draw must not produce an impossible
            # level (an alkaline phosphatase of 2 U/L)
            value = float(np.exp(level)) if scale == "log" else max(float(level), 0.35 * _rest[0])
            rows.append({"datetime": when, "loinc_code": loinc, "name": name, "value_si": value, "unit_si": unit, "age": age})
    frame = pd.DataFrame(rows, columns=["datetime", "loinc_code", "name", "value_si", "unit_si", "age"])
    if len(frame):
        home = residence_on(residences, person.source_id, pd.DatetimeIndex(frame["datetime"]).normalize())
        frame["time_zone"] = home["time_zone"].to_numpy()
        # FHIR times are instants: write each with the offset of the zone an ingest finds for the
        # residence (tzfpy's real boundaries, which differ from the simplified map on the Navajo
        # Nation and in eastern Colorado), so the local time read back is the wall clock planted
        frame["fhir_offset_zone"] = [tzfpy.get_tz(float(lon), float(lat)) or zone for lat, lon, zone in
                                     zip(home["latitude"], home["longitude"], home["time_zone"])]
    else:
        frame["time_zone"] = []
        frame["fhir_offset_zone"] = []
    frame["value_si"] = frame["value_si"].clip(lower=0.01)
    return frame


def _decimals(loinc: str) -> int:
    return {"2345-7": 1, "2160-0": 2, "1751-7": 1, "1988-5": 2, "736-9": 1, "787-2": 1, "788-0": 1, "6768-6": 0, "6690-2": 2}[loinc]


def reported(loinc: str, value_si: float, conventional: bool) -> tuple[float, str]:
    """The value and unit a lab reports: conventional US units where ``conventional``, else SI."""
    if conventional and loinc in CONVENTIONAL:
        unit, factor = CONVENTIONAL[loinc]
        places = _decimals(loinc) + 1
        value = value_si / factor
    else:
        unit = next(m[2] for m in MARKERS if m[0] == loinc)
        places, value = _decimals(loinc), value_si
    # a lab reports a very low result as its smallest reportable value, never as 0
    return max(round(value, places), 10.0 ** -places), unit


def _uuid(seed: int, *parts) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "cohort-explorer-synth/" + "/".join(map(str, (seed, *parts)))))


def _fhir_datetime(when: datetime, zone: str) -> str:
    return when.replace(tzinfo=ZoneInfo(zone)).isoformat(timespec="seconds")


def conditions(person, config, rng) -> list[tuple[date, str, str, str]]:
    out = []
    history_start = date(config.start.year - config.lab_years, 1, 1)
    span = (config.start - history_start).days
    probability, system, code, display = CONDITIONS[person.ageotype]
    if rng.random() < probability:
        out.append((history_start + timedelta(days=int(rng.integers(0, span))), system, code, display))
    if rng.random() < 0.3:
        system, code, display = HYPERTENSION[int(rng.integers(0, 2))]
        out.append((history_start + timedelta(days=int(rng.integers(0, span))), system, code, display))
    return sorted(out)


def fhir_bundle(person, residence_now, visits: pd.DataFrame, person_conditions, config) -> dict:
    """A FHIR R4 transaction Bundle: Patient, an Encounter per visit, Observations, Conditions."""
    seed = config.seed
    patient_id = _uuid(seed, person.source_id, "Patient")
    patient_ref = f"urn:uuid:{patient_id}"
    race, ethnicity = person.race, person.ethnicity
    entries = [{
        "fullUrl": patient_ref,
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": PARTICIPANT_SYSTEM, "value": person.source_id}],
            "gender": person.sex_at_birth,
            "birthDate": person.birth_date.isoformat(),
            "address": [{"use": "home", "state": {"04": "AZ", "08": "CO", "48": "TX"}[residence_now.tract_geoid[:2]],
                         "postalCode": residence_now.zip3 + "00"}],
            "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                 "extension": [{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                                      "code": RACE_CODES[race], "display": race}},
                               {"url": "text", "valueString": race}]},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                 "extension": [{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                                      "code": ETHNICITY_CODES[ethnicity], "display": ethnicity}},
                               {"url": "text", "valueString": ethnicity}]},
            ],
        },
        "request": {"method": "POST", "url": "Patient"},
    }]
    # plain records, in pandas' groupby order (by time, stable): pandas row access was most of the time
    records = sorted(visits.to_dict("records"), key=lambda record: record["datetime"])
    for when, group in itertools.groupby(records, key=lambda record: record["datetime"]):
        group = list(group)
        when = pd.Timestamp(when)
        zone = group[0].get("fhir_offset_zone", group[0]["time_zone"])
        encounter_id = _uuid(seed, person.source_id, "Encounter", when.isoformat())
        start = _fhir_datetime(when, zone)
        entries.append({
            "fullUrl": f"urn:uuid:{encounter_id}",
            "resource": {"resourceType": "Encounter", "status": "finished",
                         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                         "subject": {"reference": patient_ref},
                         "period": {"start": start, "end": _fhir_datetime(when + timedelta(minutes=30), zone)}},
            "request": {"method": "POST", "url": "Encounter"},
        })
        for row in (SimpleNamespace(**record) for record in group):
            value, unit = reported(row.loinc_code, row.value_si, conventional=True)
            entries.append({
                "fullUrl": f"urn:uuid:{_uuid(seed, person.source_id, 'Observation', when.isoformat(), row.loinc_code)}",
                "resource": {
                    "resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "laboratory"}]}],
                    "code": {"coding": [{"system": LOINC, "code": row.loinc_code, "display": row.name}], "text": row.name},
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": f"urn:uuid:{encounter_id}"},
                    "effectiveDateTime": start,
                    "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                },
                "request": {"method": "POST", "url": "Observation"},
            })
    for onset, system, code, display in person_conditions:
        entries.append({
            "fullUrl": f"urn:uuid:{_uuid(seed, person.source_id, 'Condition', code)}",
            "resource": {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
                "subject": {"reference": patient_ref},
                "onsetDateTime": onset.isoformat(),
            },
            "request": {"method": "POST", "url": "Condition"},
        })
    return {"resourceType": "Bundle", "id": _uuid(seed, person.source_id, "Bundle"), "type": "transaction", "entry": entries}


LAB_NAMES = ("Desert Clinical Laboratory", "Mesa Reference Lab")


def lab_csv_rows(person, visits: pd.DataFrame, rng) -> list[dict]:
    """Outside-lab rows: one lab reports conventional units, the other SI; CRP in mg/L or mg/dL."""
    rows = []
    for row in visits.itertuples():
        lab = int(rng.integers(0, 2))
        conventional = lab == 0 if row.loinc_code != "1988-5" else bool(rng.random() < 0.5)
        value, unit = reported(row.loinc_code, row.value_si, conventional)
        rows.append({"participant_id": person.source_id, "specimen_collected": row.datetime.strftime("%Y-%m-%d %H:%M"),
                     "loinc_code": row.loinc_code, "test_name": row.name, "result": value, "unit": unit,
                     "lab_name": LAB_NAMES[lab]})
    return rows
