"""FHIR R4 as it is delivered: Bundles (JSON) and bulk-data NDJSON, Synthea's included.

Stored: ``Patient`` (``person``), ``Encounter`` (``visit_occurrence``), ``Observation``
(``measurement``) and ``Condition`` (``condition_occurrence``). Every other resource type the
specification allows (``Immunization``, ``Organization``, ``Claim``, ...) is counted by kind in
:attr:`ReadResult.ignored` as ``FHIR <type>``, never quarantined as if it were bad data.

References: HL7 FHIR R4 (4.0.1) `Bundle`, `Observation` (``effective[x]``, ``component``,
``interpretation``), `Quantity` (``comparator``), the vital-signs profile (blood pressure panel
LOINC 85354-9 with components 8480-6 systolic and 8462-4 diastolic) and the ``dateTime`` and
``instant`` types (a time of day always comes with an offset or ``Z``); the Bulk Data Access IG
2.0.0 (NDJSON, one resource per line); Synthea's FHIR R4 exporter (``FhirR4.java``: ``urn:uuid``
fullUrls and references, Patient identifiers of systems ``https://github.com/synthetichealth/synthea``,
``http://hospital.smarthealthit.org``, ``http://hl7.org/fhir/sid/us-ssn``, ...).

Times. A FHIR time of day is an instant (it carries its offset); the lake keeps local wall-clock
time, so the instant is converted to the zone where the participant lived that day (the residence
history, else ``--default-time-zone``). With no zone known, a time written with a non-zero offset
keeps the wall clock of that offset (the clock of the place that wrote it, the best evidence
left), and a time written in UTC (``Z``, ``+00:00``) is quarantined: UTC is a server's clock, not
the participant's. A date without a time is stored at 00:00 with ``datetime_precision`` 'day'.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pandas as pd

from explorer.catalog.units import to_si
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult, load_json

RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
LOINC = "http://loinc.org"
#: the identifier system Synthea gives every Patient (its value is the Patient's own id)
SYNTHEA_SYSTEM = "https://github.com/synthetichealth/synthea"
#: environment variable naming the identifier system of the cohort's participant IDs
PARTICIPANT_SYSTEM_ENV = "EXPLORER_PARTICIPANT_SYSTEM"
#: identifier system of the cohort's participant IDs (the ones wearable and lab files carry)
PARTICIPANT_SYSTEM = os.environ.get(PARTICIPANT_SYSTEM_ENV, "urn:cohort-explorer:participant-id")

#: resource types the suite stores, and the table each goes to
TABLE_OF = {"Patient": "person", "Encounter": "visit_occurrence", "Observation": "measurement",
            "Condition": "condition_occurrence"}
#: FHIR date, dateTime and instant (R4 §2.24.0.1 primitive types): a date of year, month or day
#: precision, or a time of day to the second (fractions allowed) with its offset or Z
FHIR_TIME = re.compile(r"^(\d{4})(-\d{2})?(-\d{2})?(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")


class NotStored(ValueError):
    """A record the format allows but the suite does not store (an Observation whose value is a
    code or text, not a quantity): counted as ignored under its message, never quarantined."""


def ignored_kind(kind) -> str:
    """The name a resource type not stored is counted under in ``ingest_file.ignored``."""
    return f"FHIR {kind}"


def participant_id(resource: dict, *, only_patient: bool = True):
    """The Patient's cohort participant ID.

    In order: the identifier of :data:`PARTICIPANT_SYSTEM` (so an MRN listed first never becomes
    the person's identity); else, when this Patient is the only one of its file, its only
    identifier, its Synthea identifier, or its resource id (Synthea's bundles carry no cohort
    system: the participant is the bundle's Patient, whatever its identifier system).

    Parameters
    ----------
    resource : dict
        A FHIR Patient.
    only_patient : bool
        Whether it is the only Patient of its bundle (several need the configured system).

    Returns
    -------
    str or None
    """
    identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value") not in (None, "")]
    chosen = [i for i in identifiers if i.get("system") == PARTICIPANT_SYSTEM]
    if not chosen and only_patient:
        chosen = identifiers if len(identifiers) == 1 else [i for i in identifiers if i.get("system") == SYNTHEA_SYSTEM]
    if chosen:
        return str(chosen[0]["value"]).strip()
    if only_patient and resource.get("id"):
        return str(resource["id"]).strip()
    return None


def _extension_text(resource: dict, url: str):
    for extension in resource.get("extension", []):
        if extension.get("url") == url:
            for part in extension.get("extension", []):
                if part.get("url") == "text":
                    return part.get("valueString")
    return None


def parse_time(when) -> tuple[pd.Timestamp | None, str | None]:
    """A FHIR date, dateTime or instant as ``(timestamp, precision)``.

    A date gives midnight (naive) and 'day'; a time of day gives a zone-aware instant and
    'second' (R4 requires the seconds), or 'minute' where a source left them out. ValueError for
    a year or month only (too coarse for a measurement) or a malformed value.
    """
    if when in (None, ""):
        return None, None
    match = FHIR_TIME.match(str(when))
    if not match:
        raise ValueError(f"time {when!r} is not a FHIR date, dateTime or instant (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)")
    if match.group(3) is None:
        raise ValueError(f"time {when!r} gives only a year or month; a measurement needs at least the day")
    if match.group(4) is None:
        return pd.Timestamp(when), "day"
    if match.group(7) is None:
        raise ValueError(f"time {when!r} has a time of day but no offset; FHIR requires one (Z or +hh:mm)")
    return pd.Timestamp(when), "second" if match.group(5) else "minute"


def effective_time(resource: dict) -> tuple[str | None, str | None]:
    """The Observation's ``effective[x]`` as ``(value, element name)``.

    ``effectiveDateTime`` and ``effectiveInstant`` as they are; ``effectivePeriod`` by its start
    (when the specimen was taken or the measuring began; its end if it has no start);
    ``effectiveTiming`` by its first ``event``.
    """
    if resource.get("effectiveDateTime"):
        return resource["effectiveDateTime"], "effectiveDateTime"
    if resource.get("effectiveInstant"):
        return resource["effectiveInstant"], "effectiveInstant"
    period = resource.get("effectivePeriod") or {}
    if period.get("start") or period.get("end"):
        return period.get("start") or period.get("end"), "effectivePeriod.start" if period.get("start") else "effectivePeriod.end"
    events = (resource.get("effectiveTiming") or {}).get("event") or []
    if events:
        return events[0], "effectiveTiming.event[0]"
    return None, None


def _loinc(codeable: dict):
    codings = [c for c in (codeable or {}).get("coding", []) if c.get("system") == LOINC and c.get("code")]
    return codings[0] if codings else None


def measurement_rows(i, resource, person, source_id, context) -> list[dict]:
    """One ``measurement`` row per value of an Observation: its own ``valueQuantity``, or, for a
    panel with ``component`` and no value of its own (blood pressure 85354-9), one per component
    (8480-6 systolic, 8462-4 diastolic), each under the component's LOINC code.

    Times are left as parsed (instants zone-aware); :func:`to_local_time` converts them.
    ValueError, for the whole Observation, says why it cannot be stored.
    """
    written, element = effective_time(resource)
    when, precision = parse_time(written)
    if when is None:
        raise ValueError("Observation has no effective[x] (effectiveDateTime, effectivePeriod, effectiveInstant or "
                         "effectiveTiming.event)")
    flag = None
    for interpretation in resource.get("interpretation") or []:
        codes = [c.get("code") for c in interpretation.get("coding") or [] if c.get("code")]
        if codes:
            flag = codes[0]
            break
    if resource.get("valueQuantity") is not None or not resource.get("component"):
        parts = [("", resource.get("code"), resource.get("valueQuantity"))]
    else:
        parts = [(f"component {k} ", c.get("code"), c.get("valueQuantity")) for k, c in enumerate(resource["component"], 1)]
    # value[x] other than a Quantity (a smoking status, a survey answer) or a value absent for a
    # stated reason: the format allows them, the measurement table holds quantities only
    others = [key for key in resource if key.startswith("value") and key != "valueQuantity"] + \
        [key for c in resource.get("component") or [] for key in c if key.startswith("value") and key != "valueQuantity"]
    if all(quantity is None for _, _, quantity in parts):
        if others:
            raise NotStored(f"FHIR Observation {others[0]}")
        if resource.get("dataAbsentReason") or any(c.get("dataAbsentReason") for c in resource.get("component") or []):
            raise NotStored("FHIR Observation dataAbsentReason")
    rows = []
    for where, code, quantity in parts:
        coding = _loinc(code)
        if coding is None:
            raise ValueError(f"Observation {where}has no LOINC coding")
        if not quantity or quantity.get("value") is None:
            raise ValueError(f"Observation {where}(LOINC {coding['code']}) has no valueQuantity value; only quantities "
                             "are stored")
        value = float(quantity["value"])
        unit = quantity.get("code") or quantity.get("unit")
        value_si, unit_si, problem = to_si(coding["code"], value, unit)
        if problem:
            raise ValueError(f"{where}{problem}")
        if value <= 0 and quantity.get("comparator") not in ("<", "<="):
            raise ValueError(f"{where}value {value:g} zero or negative, impossible for a concentration, count or pressure")
        rows.append({"_row": i, "person_id": person, "measurement_datetime": when, "datetime_precision": precision,
                     "loinc_code": coding["code"], "measurement_name": coding.get("display"), "value_as_number": value,
                     "value_comparator": quantity.get("comparator"), "result_flag": flag, "unit": unit,
                     "value_si": value_si, "unit_si": unit_si,
                     "si_note": None if value_si is not None else f"no SI conversion known for LOINC {coding['code']}",
                     "_source_person": source_id, "_time_element": element, "_time_text": written})
    return rows


def resource_rows(kind, i, resource, person, source_id, context) -> list[tuple[str, dict]]:
    """The unified table and rows of one Encounter, Observation or Condition; ValueError says
    why a resource cannot become them."""
    if kind == "Encounter":
        period = resource.get("period") or {}
        start, _ = parse_time(period.get("start"))
        end, _ = parse_time(period.get("end"))
        return [("visit_occurrence", {"_row": i, "person_id": person, "visit_start_datetime": start,
                                      "visit_end_datetime": end, "visit_class": (resource.get("class") or {}).get("code"),
                                      "_source_person": source_id})]
    if kind == "Observation":
        return [("measurement", row) for row in measurement_rows(i, resource, person, source_id, context)]
    if kind == "Condition":
        coding = (resource.get("code") or {}).get("coding") or [{}]
        onset = resource.get("onsetDateTime") or resource.get("recordedDate")
        if not onset:
            raise ValueError("Condition has neither onsetDateTime nor recordedDate")
        # the date as written: a diagnosis is dated, not timed
        return [("condition_occurrence", {"_row": i, "person_id": person, "condition_start_date": pd.Timestamp(onset[:10]).date(),
                                          "code_system": coding[0].get("system"), "code": coding[0].get("code"),
                                          "_source_person": source_id})]
    raise ValueError(f"resource type {kind} is not one this suite stores (Patient, Encounter, Observation, Condition)")


#: the time columns of each table converted to local time, the first deciding the zone's day
TIME_COLUMNS = {"measurement": ["measurement_datetime"], "visit_occurrence": ["visit_start_datetime", "visit_end_datetime"]}


def to_local_time(table: str, rows: list[dict], context: Context) -> tuple[pd.DataFrame, list[dict]]:
    """The rows of ``table`` with their instants as local wall-clock time where the participant
    lived, and the records quarantined because no zone is known for a time written in UTC.

    The zone is that of the participant's residence on the day the time was written (in its own
    offset), else ``--default-time-zone`` (:meth:`Reference.local_days`). The rows one
    Observation became (its components) share its time, so they are kept or quarantined together.
    """
    columns = TIME_COLUMNS.get(table, [])
    if not rows or not columns:
        return pd.DataFrame(rows).drop(columns=["_time_element", "_time_text"], errors="ignore"), []

    def wall(t):  # an instant's wall clock in the offset it was written in; a date stays as it is
        return t.tz_localize(None) if isinstance(t, pd.Timestamp) and t.tzinfo is not None else t

    written = pd.Series([wall(row[columns[0]]) for row in rows], dtype="datetime64[ns]")
    codes, days = context.reference.local_days(pd.Series([row["person_id"] for row in rows], dtype=object), written)
    zones = days["time_zone"].to_numpy()[codes]
    kept, bad, refused = [], [], set()
    for row, zone in zip(rows, zones):
        if row["_row"] in refused:
            continue
        out = dict(row)
        for column in columns:
            t = row.get(column)
            if not (isinstance(t, pd.Timestamp) and t.tzinfo is not None):
                continue
            if zone:
                out[column] = t.tz_convert(zone).tz_localize(None)
            elif t.utcoffset() == pd.Timedelta(0):
                element = row.get("_time_element") or column
                text = row.get("_time_text") or t.isoformat()
                refused.add(row["_row"])
                bad.append({"_row": row["_row"], "table": table,
                            "reason": (f"{element} {text} is in UTC and no time zone is known for this "
                                       "participant on that day; ingest their residence history first (or with it), "
                                       "or pass --default-time-zone"),
                            "record": json.dumps({c: str(v) for c, v in row.items() if c != "person_id"})})
                break
            else:
                out[column] = wall(t)
        else:
            if table == "measurement" and out[columns[0]] > context.now:
                refused.add(row["_row"])
                bad.append({"_row": row["_row"], "table": table,
                            "reason": f"{row.get('_time_element') or columns[0]} {row.get('_time_text')} is after the ingest "
                                      f"({context.now:%Y-%m-%d %H:%M}) in the participant's local time: a specimen "
                                      "cannot be taken in the future; check the source's clock or year",
                            "record": json.dumps({c: str(v) for c, v in row.items() if c != "person_id"})})
                continue
            kept.append(out)
    kept = [row for row in kept if row["_row"] not in refused]
    frame = pd.DataFrame(kept).drop(columns=["_time_element", "_time_text"], errors="ignore")
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(pd.Series(list(frame[column]), dtype=object))
    return frame, bad


def frames_in_local_time(tables: dict[str, list], rejected: list, context: Context) -> dict[str, pd.DataFrame]:
    """Every table's rows with local times (:func:`to_local_time`); records refused for want of a
    zone are added to ``rejected``."""
    frames = {}
    for table, rows in tables.items():
        frame, bad = to_local_time(table, rows, context)
        rejected.extend(bad)
        if len(frame):
            frames[table] = frame
    return frames


def patient_keys(entry: dict, resource: dict) -> list[str]:
    """Every reference by which a bundle's entries may name this Patient: its ``fullUrl``
    (``urn:uuid:...`` in Synthea's bundles), ``Patient/<id>``, and the conditional references
    ``Patient?identifier=<system>|<value>`` of transaction bundles (R4 §3.1.0.9.5)."""
    keys = [entry.get("fullUrl"), f"Patient/{resource['id']}" if resource.get("id") else None]
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("value"):
            keys.append(f"Patient?identifier={identifier.get('system', '')}|{identifier['value']}")
            keys.append(f"Patient?identifier={identifier['value']}")
    return [k for k in keys if k]


class FhirBundleReader(Reader):
    """FHIR R4 Bundles (JSON) of any type: collection, transaction, batch, searchset.

    The bundle must validate against the ``fhir.resources`` R4B models; one that does not is
    refused whole with the first errors and their paths. Each entry is one source record: a
    Patient, Encounter, Observation or Condition becomes rows (an Observation with components one
    row per component); any other resource type is counted as ignored by kind.

    The participant is the bundle's Patient (:func:`participant_id`); a bundle of several
    Patients needs ``$EXPLORER_PARTICIPANT_SYSTEM`` to say which identifier is the participant's.
    """

    format = "fhir_r4_bundle"
    order = 40
    description = "FHIR R4 Bundle (JSON, Synthea's included), validated with fhir.resources R4B"

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
            document = load_json(text)
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
        patient_entries = [e for e in entries if (e.get("resource") or {}).get("resourceType") == "Patient"]
        only_patient = len(patient_entries) == 1
        patients = {}
        for entry in patient_entries:
            resource = entry["resource"]
            source_id = participant_id(resource, only_patient=only_patient)
            if source_id is None:
                raise ReaderError(f"the bundle holds {len(patient_entries)} Patients and Patient {resource.get('id')!r} "
                                  f"has no identifier of system {PARTICIPANT_SYSTEM}: set ${PARTICIPANT_SYSTEM_ENV} to "
                                  "the identifier system of your participant IDs (which says whose data each entry is)")
            for key in patient_keys(entry, resource):
                patients[key] = source_id
        tables: dict[str, list] = {}
        rejected, ignored = [], Counter()
        for i, entry in enumerate(entries, 1):
            resource = entry.get("resource") or {}
            kind = resource.get("resourceType")
            if kind not in TABLE_OF:
                ignored[ignored_kind(kind)] += 1
                continue
            try:
                if kind == "Patient":
                    tables.setdefault("person", []).append(self._person(i, resource, context, only_patient=only_patient))
                    continue
                reference = (resource.get("subject") or {}).get("reference")
                source_id = patients.get(reference)
                if source_id is None:
                    raise ValueError(f"subject {reference!r} names no Patient of this bundle (by fullUrl, Patient/<id> "
                                     "or Patient?identifier=)")
                person = context.pseudonym(source_id)
                for table, row in resource_rows(kind, i, resource, person, source_id, context):
                    tables.setdefault(table, []).append(row)
            except NotStored as exc:
                ignored[str(exc)] += 1
            except ValueError as exc:
                rejected.append({"_row": i, "table": TABLE_OF[kind], "reason": str(exc),
                                 "record": json.dumps(resource)[:20000]})
        frames = frames_in_local_time(tables, rejected, context)
        quarantined = pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"])
        return ReadResult(rows_read=len(entries), tables=frames, quarantined=quarantined, ignored=ignored)

    @staticmethod
    def _person(i, resource, context, *, only_patient=True):
        source_id = participant_id(resource, only_patient=only_patient)
        if source_id is None:
            raise ValueError(f"Patient has no identifier of system {PARTICIPANT_SYSTEM} (set ${PARTICIPANT_SYSTEM_ENV} "
                             "to your participant IDs' system)")
        birth = resource.get("birthDate")
        address = (resource.get("address") or [{}])[0]
        postal = address.get("postalCode")
        return {"_row": i, "person_id": context.pseudonym(source_id),
                "year_of_birth": int(birth[:4]) if birth else None,
                "sex_at_birth": resource.get("gender"), "race": _extension_text(resource, RACE),
                "ethnicity": _extension_text(resource, ETHNICITY), "zip3": postal[:3] if postal else None,
                "_source_person": source_id}


#: which FHIR server an export came from: Patient ids are unique per server, not per lake, so two
#: sites' ``Patient/1`` must not become one person. Set it (or ingest --fhir-server) per source.
FHIR_SERVER_ENV = "EXPLORER_FHIR_SERVER"


def patient_ref_key(context, patient_id: str) -> str:
    """The keyed hash a Patient reference is stored as (never the reference itself), scoped by
    the FHIR server the export came from (``$EXPLORER_FHIR_SERVER``, default ``default``)."""
    server = os.environ.get(FHIR_SERVER_ENV, "default").rstrip("/")
    return context.pseudonym(f"fhir:{server}/Patient/{patient_id}")


class FhirNdjsonReader(Reader):
    """FHIR R4 bulk-data export (NDJSON): one resource per line, one resource type per file.

    Each line is one source record. Encounter, Observation and Condition lines are validated on
    their own with the ``fhir.resources`` R4B model of their type; a line that fails is
    quarantined with the validation errors and the rest of the file is read. Lines of a resource
    type the suite does not store (an ``Immunization.ndjson``, a ``Claim.ndjson``) are counted as
    ignored by kind. Patient files are reference files: they are read first, and besides
    ``person`` they fill ``fhir_patient_link``, through which the other files of the export (this
    ingest or a later one) find their person by ``subject.reference``.
    """

    format = "fhir_r4_ndjson"
    order = 41
    description = ("FHIR R4 bulk-export NDJSON (Encounter, Observation, Condition; other types counted), "
                   "validated with fhir.resources R4B")
    resource_types: ClassVar[tuple[str, ...]] = ("Encounter", "Observation", "Condition")

    def _accepts(self, kind) -> bool:
        """Whether a file whose first resource is ``kind`` is this reader's: any FHIR resource
        type but Patient (the Patient reader's)."""
        if kind == "Patient" or not isinstance(kind, str):
            return False
        from fhir.resources.R4B import get_fhir_model_class
        try:
            get_fhir_model_class(kind)
        except (KeyError, ValueError, AttributeError, ImportError):
            return False
        return True

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
        if not self._accepts(kind):
            return f"first resource is {kind!r}, not a FHIR R4 resource type this reader reads"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError

        tables: dict[str, list] = {}
        rejected, ignored = [], Counter()
        links = None if self.resource_types == ("Patient",) else context.reference.fhir_patients()
        if links is not None:
            # a file names few Patients in many lines: hash each reference once, not once per line
            links = self._person_of(links, context)
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
                        if self._accepts(kind) and kind not in TABLE_OF:
                            ignored[ignored_kind(kind)] += 1  # a resource the suite does not store
                            continue
                        raise ValueError(f"resourceType {kind!r}; this file holds {', '.join(self.resource_types)}")
                    try:
                        get_fhir_model_class(kind).model_validate(resource)
                    except ValidationError as exc:
                        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
                        raise ValueError(f"not a valid FHIR R4 {kind} ({exc.error_count()} error(s)): {detail}") from None
                    for table, row in self._rows(kind, n, resource, links, context):
                        tables.setdefault(table, []).append(row)
                except NotStored as exc:
                    ignored[str(exc)] += 1
                except ValueError as exc:
                    rejected.append({"_row": n, "table": TABLE_OF.get(kind, "person"), "reason": str(exc),
                                     "record": line.decode("utf-8", "replace")[:20000]})
        if n == 0:
            raise ReaderError("no lines")
        frames = frames_in_local_time(tables, rejected, context)
        quarantined = pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"])
        return ReadResult(rows_read=n, tables=frames, quarantined=quarantined, ignored=ignored)

    @staticmethod
    def _person_of(known: dict, context: Context):
        """Patient id -> person_id through ``fhir_patient_link``, hashing each id once per file."""
        hashed = {}

        def person_of(patient_id: str):
            if patient_id not in hashed:
                hashed[patient_id] = patient_ref_key(context, patient_id)
            return known.get(hashed[patient_id])
        return person_of

    def _rows(self, kind, n, resource, links, context):
        reference = (resource.get("subject") or {}).get("reference") or ""
        if not reference.startswith("Patient/"):
            raise ValueError(f"subject {resource.get('subject')} is not a Patient reference")
        person = links(reference.removeprefix("Patient/"))
        if person is None:
            raise ValueError(f"subject {reference} is not a Patient delivered to this lake; ingest the export's "
                             "Patient file with it or before it (a file none of whose lines could be read is read again "
                             "by ingest --retry-quarantined)")
        return resource_rows(kind, n, resource, person, reference, context)


class FhirNdjsonPatientReader(FhirNdjsonReader):
    """The Patient file of a bulk export (a reference reader, read first)."""

    format = "fhir_r4_ndjson_patient"
    order = 7
    description = "FHIR R4 bulk-export NDJSON of Patient resources, validated with fhir.resources R4B"
    resource_types = ("Patient",)

    def _accepts(self, kind) -> bool:
        return kind == "Patient"

    def _rows(self, kind, n, resource, links, context):
        # a bulk Patient file holds many Patients: the configured system, else the only identifier or the id
        person = FhirBundleReader._person(n, resource, context, only_patient=True)
        yield "person", person
        if resource.get("id"):
            yield "fhir_patient_link", {"_row": n, "patient_ref": patient_ref_key(context, resource["id"]),
                                        "person_id": person["person_id"]}
