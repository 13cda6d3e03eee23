"""FHIR R4 transaction/collection Bundles (JSON): Patient, Encounter, Observation, Condition.

The bundle must validate against the ``fhir.resources`` R4B models; one that does not is
quarantined whole with the first errors and their paths. Each entry is one source record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

import pandas as pd

from explorer.catalog.units import to_si
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
LOINC = "http://loinc.org"
#: identifier system of the cohort's participant IDs (the ones wearable and lab files carry)
PARTICIPANT_SYSTEM = os.environ.get("EXPLORER_PARTICIPANT_SYSTEM", "urn:cohort-explorer:participant-id")


def participant_id(resource: dict):
    """The Patient's cohort participant ID: the identifier of PARTICIPANT_SYSTEM, or the only
    identifier there is; an MRN listed first must not become the person's identity."""
    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
    chosen = [i for i in identifiers if i.get("system") == PARTICIPANT_SYSTEM] or (identifiers if len(identifiers) == 1 else [])
    value = chosen[0].get("value") if chosen else None
    return str(value).strip() if value not in (None, "") else None


def _extension_text(resource: dict, url: str):
    for extension in resource.get("extension", []):
        if extension.get("url") == url:
            for part in extension.get("extension", []):
                if part.get("url") == "text":
                    return part.get("valueString")
    return None


def _local(when: str | None):
    """FHIR dateTime as local wall-clock time (the offset says which zone it was written in)."""
    if not when:
        return None
    stamp = pd.Timestamp(when)
    return stamp.tz_localize(None) if stamp.tzinfo is None else stamp.tz_convert(stamp.tzinfo).tz_localize(None)


TABLE_OF = {"Patient": "person", "Encounter": "visit_occurrence", "Observation": "measurement",
            "Condition": "condition_occurrence"}


def resource_row(kind, i, resource, person, source_id, context) -> tuple[str, dict]:
    """The unified table and row of one Encounter, Observation or Condition; ValueError says
    why a resource cannot become one."""
    if kind == "Encounter":
        period = resource.get("period") or {}
        return "visit_occurrence", {"_row": i, "person_id": person, "visit_start_datetime": _local(period.get("start")),
                                    "visit_end_datetime": _local(period.get("end")),
                                    "visit_class": (resource.get("class") or {}).get("code"), "_source_person": source_id}
    if kind == "Observation":
        return "measurement", FhirBundleReader._measurement(i, resource, person, source_id, context)
    if kind == "Condition":
        coding = (resource.get("code") or {}).get("coding") or [{}]
        onset = resource.get("onsetDateTime") or resource.get("recordedDate")
        if not onset:
            raise ValueError("Condition has neither onsetDateTime nor recordedDate")
        return "condition_occurrence", {"_row": i, "person_id": person, "condition_start_date": pd.Timestamp(onset[:10]).date(),
                                        "code_system": coding[0].get("system"), "code": coding[0].get("code"),
                                        "_source_person": source_id}
    raise ValueError(f"resource type {kind} is not one this suite stores (Patient, Encounter, Observation, Condition)")


class FhirBundleReader(Reader):
    format = "fhir_r4_bundle"
    order = 40
    description = "FHIR R4 Bundle (JSON), validated with fhir.resources R4B"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        start = head.lstrip()[:1]
        if start != b"{":
            return "not a JSON object"
        if b'"resourceType"' not in head[:8192] or b'"Bundle"' not in head[:8192]:
            return "no resourceType Bundle in the first 8 KB"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        from fhir.resources.R4B.bundle import Bundle
        from pydantic import ValidationError

        text = path.read_bytes()
        try:
            document = json.loads(text)
        except UnicodeDecodeError as exc:
            raise ReaderError(f"not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ReaderError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        try:
            Bundle.model_validate(document)
        except ValidationError as exc:
            errors = exc.errors()[:3]
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
            raise ReaderError(f"not a valid FHIR R4 Bundle ({exc.error_count()} error(s)): {detail}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # e.g. an unknown resourceType
            raise ReaderError(f"not a valid FHIR R4 Bundle: {type(exc).__name__}: {exc}") from None

        entries = document.get("entry", [])
        patients = {}
        for i, entry in enumerate(entries, 1):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Patient":
                source_id = participant_id(resource)
                if source_id is None:
                    continue  # its entries are quarantined below: whose data is it?
                for key in (entry.get("fullUrl"), f"Patient/{resource.get('id')}"):
                    if key:
                        patients[key] = source_id
        tables: dict[str, list] = {"person": [], "visit_occurrence": [], "measurement": [], "condition_occurrence": []}
        rejected = []
        for i, entry in enumerate(entries, 1):
            resource = entry.get("resource", {})
            kind = resource.get("resourceType")
            try:
                if kind == "Patient":
                    tables["person"].append(self._person(i, resource, patients, context))
                    continue
                source_id = patients.get((resource.get("subject") or {}).get("reference"))
                if source_id is None:
                    raise ValueError(f"subject {resource.get('subject')} is not a Patient of this bundle")
                person = context.pseudonymize([source_id])[0]
                table, row = resource_row(kind, i, resource, person, source_id, context)
                tables[table].append(row)
            except ValueError as exc:
                rejected.append({"_row": i, "table": TABLE_OF.get(kind, "person"), "reason": str(exc),
                                 "record": json.dumps(resource)[:20000]})
        frames = {name: pd.DataFrame(rows) for name, rows in tables.items() if rows}
        quarantined = pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"])
        return ReadResult(rows_read=len(entries), tables=frames, quarantined=quarantined)

    @staticmethod
    def _person(i, resource, patients, context):
        source_id = participant_id(resource)
        if source_id is None:
            raise ValueError(f"Patient has no identifier of system {PARTICIPANT_SYSTEM} (nor a single identifier)")
        birth = resource.get("birthDate")
        address = (resource.get("address") or [{}])[0]
        postal = address.get("postalCode")
        return {"_row": i, "person_id": context.pseudonymize([source_id])[0],
                "year_of_birth": int(birth[:4]) if birth else None,
                "sex_at_birth": resource.get("gender"), "race": _extension_text(resource, RACE),
                "ethnicity": _extension_text(resource, ETHNICITY), "zip3": postal[:3] if postal else None,
                "_source_person": source_id}

    @staticmethod
    def _measurement(i, resource, person, source_id, context):
        codings = [c for c in (resource.get("code") or {}).get("coding", []) if c.get("system") == LOINC]
        if not codings:
            raise ValueError("Observation has no LOINC coding")
        quantity = resource.get("valueQuantity")
        if not quantity or quantity.get("value") is None:
            raise ValueError("Observation has no valueQuantity value")
        value = float(quantity["value"])
        unit = quantity.get("code") or quantity.get("unit")
        value_si, unit_si, problem = to_si(codings[0]["code"], value, unit)
        if problem:
            raise ValueError(problem)
        if value <= 0:
            raise ValueError("value zero or negative, impossible for a concentration or count")
        when = _local(resource.get("effectiveDateTime"))
        if when is None:
            raise ValueError("Observation has no effectiveDateTime")
        if when > context.now:
            raise ValueError("effectiveDateTime in the future")
        return {"_row": i, "person_id": person, "measurement_datetime": when, "loinc_code": codings[0]["code"],
                "measurement_name": codings[0].get("display"), "value_as_number": value, "unit": unit,
                "value_si": value_si, "unit_si": unit_si, "_source_person": source_id}


#: which FHIR server an export came from: Patient ids are unique per server, not per lake, so two
#: sites' ``Patient/1`` must not become one person. Set it (or ingest --fhir-server) per source.
FHIR_SERVER_ENV = "EXPLORER_FHIR_SERVER"


def patient_ref_key(context, patient_id: str) -> str:
    """The keyed hash a Patient reference is stored as (never the reference itself), scoped by
    the FHIR server the export came from (``$EXPLORER_FHIR_SERVER``, default ``default``)."""
    server = os.environ.get(FHIR_SERVER_ENV, "default").rstrip("/")
    return context.pseudonymize([f"fhir:{server}/Patient/{patient_id}"])[0]


class FhirNdjsonReader(Reader):
    """FHIR R4 bulk-data export (NDJSON): one resource per line, one resource type per file.

    Each line is one source record, validated on its own with the ``fhir.resources`` R4B model
    of its type; a line that fails is quarantined with the validation errors and the rest of the
    file is read. Patient files are reference files: they are read first, and besides ``person``
    they fill ``fhir_patient_link``, through which the Observation, Encounter and Condition files
    of the export (this ingest or a later one) find their person by ``subject.reference``.
    """

    format = "fhir_r4_ndjson"
    order = 41
    description = "FHIR R4 bulk-export NDJSON (Encounter, Observation, Condition), validated with fhir.resources R4B"
    resource_types: ClassVar[tuple[str, ...]] = ("Encounter", "Observation", "Condition")

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        first = head.lstrip().split(b"\n", 1)[0]
        if not first.startswith(b"{"):
            return "not one JSON object per line"
        try:
            kind = json.loads(first).get("resourceType")
        except (ValueError, AttributeError):
            return "first line is not a JSON object"
        if kind not in self.resource_types:
            return f"first resource is {kind!r}, not one of {', '.join(self.resource_types)}"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError

        tables: dict[str, list] = {}
        rejected = []
        links = None if self.resource_types == ("Patient",) else context.reference.fhir_patients()
        n = 0
        with path.open("rb") as handle:
            for n, line in enumerate(handle, 1):
                kind, resource = None, None
                try:
                    try:
                        resource = json.loads(line)
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise ValueError(f"line {n} is not a JSON object ({exc})") from None
                    if not isinstance(resource, dict):
                        raise ValueError(f"line {n} is not a JSON object")
                    kind = resource.get("resourceType")
                    if kind not in self.resource_types:
                        raise ValueError(f"resourceType {kind!r}; this file holds {', '.join(self.resource_types)}")
                    try:
                        get_fhir_model_class(kind).model_validate(resource)
                    except ValidationError as exc:
                        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
                        raise ValueError(f"not a valid FHIR R4 {kind} ({exc.error_count()} error(s)): {detail}") from None
                    for table, row in self._rows(kind, n, resource, links, context):
                        tables.setdefault(table, []).append(row)
                except ValueError as exc:
                    rejected.append({"_row": n, "table": TABLE_OF.get(kind, "person"), "reason": str(exc),
                                     "record": line.decode("utf-8", "replace")[:20000]})
        if n == 0:
            raise ReaderError("no lines")
        quarantined = pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"])
        return ReadResult(rows_read=n, tables={t: pd.DataFrame(rows) for t, rows in tables.items()}, quarantined=quarantined)

    def _rows(self, kind, n, resource, links, context):
        reference = (resource.get("subject") or {}).get("reference") or ""
        if not reference.startswith("Patient/"):
            raise ValueError(f"subject {resource.get('subject')} is not a Patient reference")
        person = links.get(patient_ref_key(context, reference.removeprefix("Patient/")))
        if person is None:
            raise ValueError(f"subject {reference} is not a Patient delivered to this lake; ingest the export's "
                             "Patient file with it or before it (a file none of whose lines could be read is read again "
                             "by ingest --retry-quarantined)")
        yield resource_row(kind, n, resource, person, reference, context)


class FhirNdjsonPatientReader(FhirNdjsonReader):
    """The Patient file of a bulk export (a reference reader, read first)."""

    format = "fhir_r4_ndjson_patient"
    order = 7
    description = "FHIR R4 bulk-export NDJSON of Patient resources, validated with fhir.resources R4B"
    resource_types = ("Patient",)

    def _rows(self, kind, n, resource, links, context):
        person = FhirBundleReader._person(n, resource, {}, context)
        yield "person", person
        if resource.get("id"):
            yield "fhir_patient_link", {"_row": n, "patient_ref": patient_ref_key(context, resource["id"]),
                                        "person_id": person["person_id"]}
