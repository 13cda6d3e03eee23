"""`--faults`: a documented set of damaged files, delivered beside the good ones.

Each fault is listed in ``truth/truth.json`` under ``faults`` with its path, kind, what a
correct ingest does with it (quarantine the whole file, or quarantine some rows and accept the
rest) and how many rows are bad. Row-level faults use real participants but days just before
the wearable window, so they never collide with good rows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from explorer.synth.writers import write_csv

UNKNOWN_PARTICIPANT = "1999001"


def _participants(out: Path) -> tuple[str, str]:
    """A participant of the CSV export and one of the FHIR bundles (the first of each)."""
    csv_person = None
    for part in sorted((out / "fitbit_aou" / "heart_rate_minute_level").glob("part-0*.csv")):
        csv_person = part.read_text().splitlines()[1].split(",")[0]
        break
    fhir_person = sorted(p.stem for p in (out / "fhir").glob("*.json"))[0]
    return csv_person or fhir_person, fhir_person


def write_faults(out: Path, config) -> list[dict]:
    rng = np.random.default_rng([config.seed, 9])
    person, fhir_person = _participants(out)
    before = pd.Timestamp(config.start) - timedelta(days=1)
    minutes = pd.date_range(before, periods=120, freq="min")
    faults = []

    def add(path: Path, kind: str, expect: str, bad_rows: int, detail: str):
        faults.append({"path": str(path.relative_to(out)), "kind": kind, "expect": expect,
                       "bad_rows": bad_rows, "detail": detail})

    # 1. truncated JSON: a Fitbit export file cut off mid-record
    export = out / "fitbit_export" / UNKNOWN_PARTICIPANT / "Physical Activity"
    export.mkdir(parents=True, exist_ok=True)
    body = json.dumps([{"dateTime": t.strftime("%m/%d/%y %H:%M:%S"), "value": {"bpm": 60 + i % 7, "confidence": 2}}
                       for i, t in enumerate(minutes)])
    path = export / f"heart_rate-{before.date()}.json"
    path.write_text(body[: len(body) // 2])
    add(path, "truncated_json", "quarantine_file", 0, "JSON ends mid-record (a failed upload)")

    # 2. a FHIR bundle that fails validation: an Observation without status, a month 13
    source = json.loads((out / "fhir" / f"{fhir_person}.json").read_text())
    broken = json.loads(json.dumps(source))
    broken["id"] = broken["id"][:-4] + "dead"
    observations = [e for e in broken["entry"] if e["resource"]["resourceType"] == "Observation"]
    if observations:
        observations[0]["resource"].pop("status")
    if len(observations) > 1:
        observations[1]["resource"]["effectiveDateTime"] = "2020-13-01T08:00:00-07:00"
    path = out / "fhir" / "invalid_bundle.json"
    path.write_text(json.dumps(broken, indent=1))
    add(path, "fhir_invalid", "quarantine_file", 0, "Observation.status missing; effectiveDateTime month 13")

    # 3. wrong text encoding: Windows-1252 bytes where UTF-8 is expected
    labs = pd.DataFrame({"participant_id": [person] * 3,
                         "specimen_collected": [f"{(before - timedelta(days=30)).date()} 08:1{i}" for i in range(3)],
                         "loinc_code": ["2160-0", "2345-7", "1751-7"],
                         "test_name": ["Créatinine sérique", "Glucose à jeun", "Albumine"],
                         "result": [79.5, 5.2, 41.0], "unit": ["µmol/L", "mmol/L", "g/L"],
                         "lab_name": ["Laboratoire Übersee"] * 3})
    path = out / "labs" / "outside_lab_cp1252.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(labs.to_csv(index=False).encode("cp1252"))
    add(path, "wrong_encoding", "quarantine_file", 0, "cp1252 bytes (µ, é) in a file that must be UTF-8")

    # 4. unknown or wrong units
    when = f"{(before - timedelta(days=60)).date()} 09:00"
    units = pd.DataFrame({"participant_id": [person] * 4, "specimen_collected": [when] * 4,
                          "loinc_code": ["2345-7", "2160-0", "1751-7", "6690-2"],
                          "test_name": ["Glucose", "Creatinine", "Albumin", "Leukocytes"],
                          "result": [98.0, 0.9, 4.1, 6.2], "unit": ["furlong/fortnight", "%", "g/dL", "10*3/uL"],
                          "lab_name": ["Faulty Lab"] * 4})
    path = out / "labs" / "outside_lab_units.csv"
    write_csv(units, path)
    add(path, "unknown_or_wrong_unit", "quarantine_rows", 2,
        "glucose in an unknown unit; creatinine in %, not a unit of its kind; the other two rows are good")

    # 5. impossible values: heart rate 400 and -5, steps 1000 per minute
    hr = pd.DataFrame({"person_id": person, "datetime": minutes, "heart_rate_value": 60 + rng.integers(0, 20, len(minutes))})
    hr.loc[[10, 50], "heart_rate_value"] = [400, -5]
    path = out / "fitbit_aou" / "heart_rate_minute_level" / "part-90001.csv"
    write_csv(hr, path)
    add(path, "impossible_values", "quarantine_rows", 2, "heart rate 400 and -5 bpm among plausible rows")
    steps = pd.DataFrame({"person_id": person, "datetime": minutes, "steps": rng.integers(0, 40, len(minutes))})
    steps.loc[[7], "steps"] = 1000
    path = out / "fitbit_aou" / "steps_intraday" / "part-90001.csv"
    write_csv(steps, path)
    add(path, "impossible_values", "quarantine_rows", 1, "1000 steps in one minute")

    # 6. duplicated records: every row of a file twice
    duplicated = pd.concat([steps.assign(steps=steps["steps"].clip(upper=60))] * 2).sort_values("datetime", kind="stable")
    duplicated["datetime"] = duplicated["datetime"] - timedelta(hours=3)
    path = out / "fitbit_aou" / "steps_intraday" / "part-90002.csv"
    write_csv(duplicated, path)
    add(path, "duplicated_records", "quarantine_rows", len(steps), "each minute appears twice with the same value")

    # 7. a renamed column
    path = out / "fitbit_aou" / "heart_rate_minute_level" / "part-90003.csv"
    write_csv(hr.assign(heart_rate_value=hr["heart_rate_value"].clip(40, 180)).rename(columns={"heart_rate_value": "hr_value"}), path)
    add(path, "renamed_column", "quarantine_file", 0, "column heart_rate_value arrives as hr_value")

    # 8. an empty file
    path = out / "fitbit_aou" / "sleep_level" / "part-90004.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    add(path, "empty_file", "quarantine_file", 0, "zero bytes")

    # 9. a NetCDF grid without units
    grid = sorted((out / "environment").glob("tasmax_day_*.nc"))[-1]
    with xr.open_dataset(grid, engine="scipy") as ds:
        stripped = ds.load()
    stripped["tasmax"].attrs.pop("units", None)
    path = out / "environment" / "tasmax_day_nounits.nc"
    stripped.to_netcdf(path, engine="scipy")
    add(path, "netcdf_without_units", "quarantine_file", 0, "tasmax has no units attribute (K or degC?)")
    return faults
