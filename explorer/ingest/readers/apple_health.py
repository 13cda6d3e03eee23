"""Apple Health ``export.xml``: heart rate, step counts and sleep analysis, streamed.

The Health app's "Export All Health Data" writes ``apple_health_export/export.xml``: a root
``HealthData`` holding ``ExportDate``, ``Me`` and then one element per sample, mostly ``Record``
(attributes ``type``, ``sourceName``, ``sourceVersion``, ``device``, ``unit``, ``creationDate``,
``startDate``, ``endDate``, ``value``; children ``MetadataEntry key= value=``), besides
``Correlation``, ``Workout``, ``ActivitySummary``, ``ClinicalRecord`` and ``Audiogram`` (the
internal DTD at the top of every export declares them). Dates are written
``YYYY-MM-DD HH:MM:SS +HHMM``. Identifiers and values follow Apple's HealthKit documentation
(``HKQuantityTypeIdentifierHeartRate`` in ``count/min``, ``HKQuantityTypeIdentifierStepCount`` in
``count``, ``HKCategoryTypeIdentifierSleepAnalysis`` with ``HKCategoryValueSleepAnalysis*`` values).

What lands, in the tables of the All of Us Fitbit shape:

- ``heart_rate_minute``: samples averaged per minute (``sample_count`` how many), the mean rounded.
- ``steps_minute``: a step record covers an interval of any length; its count is split across the
  minutes it covers in proportion to the seconds of overlap (an instant record counts whole in its
  minute), summed per minute, and rounded so that each day's total is kept (the minute counts are
  differences of the rounded running total).
- ``sleep_level``: ``AsleepCore`` is ``light``, ``AsleepDeep`` ``deep``, ``AsleepREM`` ``rem``,
  ``Awake`` ``wake``, ``Asleep``/``AsleepUnspecified`` (no stages) ``asleep``. ``InBed`` is time
  in bed, not a stage: ignored by kind. A night's segments at most an hour apart form one sleep;
  the longest sleep ending on a day is its main sleep (Apple marks none).

Local time: the lake keeps the wall clock where the sample was taken. Apple writes every date in
the zone the phone had *at export*, so a record's ``HKTimeZone`` metadata (the zone where it was
recorded, when the device wrote it) wins; otherwise the written offset is the local time.

Two sources: an iPhone and a Watch both count steps (and may both write heart rate or sleep).
Counting both doubles the day. For each record type and local day one source is kept: the one
whose ``device`` or ``sourceName`` names an Apple Watch, else the one with most records that day
(then the first by name); the other sources' records are ignored by kind, not summed.

Accounting: every top-level element is a record (``rows_read``). A stored record's number is the
``_row`` of the minute(s) it made; a sample merged into a minute another record already numbers is
counted as ignored (kind ``... merged into a minute``), as are record types no table holds (by
``type``) and other elements (by tag).

The file is streamed (``xml.etree.ElementTree.iterparse``, each finished element cleared), so a
several-GB export reads in flat memory; expat resolves no external entity and fetches no DTD, and
a file that declares entities is refused. The participant is the folder holding
``apple_health_export/`` (the cohort's upload tool names it by participant ID).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from array import array
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

HEART_RATE = "HKQuantityTypeIdentifierHeartRate"
STEPS = "HKQuantityTypeIdentifierStepCount"
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
UNITS = {HEART_RATE: "count/min", STEPS: "count"}
#: HKCategoryValueSleepAnalysis values to the sleep_level levels of the Fitbit shape (None: not a stage)
SLEEP_LEVELS = {
    "HKCategoryValueSleepAnalysisAsleepCore": "light",
    "HKCategoryValueSleepAnalysisAsleepDeep": "deep",
    "HKCategoryValueSleepAnalysisAsleepREM": "rem",
    "HKCategoryValueSleepAnalysisAwake": "wake",
    "HKCategoryValueSleepAnalysisAsleep": "asleep",
    "HKCategoryValueSleepAnalysisAsleepUnspecified": "asleep",
    "HKCategoryValueSleepAnalysisInBed": None,
}
#: sleep segments at most this far apart belong to one sleep (as the daily summary's episodes)
SLEEP_GAP_MINUTES = 60
#: steps a minute can hold (data_catalog/steps_minute.yaml range); a record whose share of a minute
#: passes it is quarantined whole by the reader: its other minutes must not land without it
STEPS_PER_MINUTE_MAX = 300
DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) ([+-])(\d{2})(\d{2})$")
EXPORT_FOLDER = "apple_health_export"


def participant_of(source_name: str) -> str | None:
    """The folder holding ``apple_health_export/`` (skipping an ``export.zip`` it came in).

    Examples
    --------
    >>> participant_of("uploads/4711/apple_health_export/export.xml")
    '4711'
    >>> participant_of("uploads/4711/export.zip!apple_health_export/export.xml")
    '4711'
    """
    parts = [p for p in Path(source_name.replace("!", "/")).parts if not p.lower().endswith(".zip")]
    for k, part in enumerate(parts):
        if part == EXPORT_FOLDER and k > 0:
            return parts[k - 1]
    return None


def parse_date(text: str | None) -> tuple[int, int]:
    """Seconds since the epoch (UTC) and the written offset in minutes of an export date.

    Raises
    ------
    ValueError
        When the date is not ``YYYY-MM-DD HH:MM:SS +HHMM``.

    Examples
    --------
    >>> parse_date("2024-05-01 08:03:12 -0700")
    (1714575792, -420)
    """
    match = DATE.match(text or "")
    if not match:
        raise ValueError(f"date {text!r}: expected YYYY-MM-DD HH:MM:SS +HHMM")
    day, clock, sign, hours, minutes = match.groups()
    offset = (1 if sign == "+" else -1) * (int(hours) * 60 + int(minutes))
    wall = datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    return int(wall) - offset * 60, offset


class _Zones:
    """Offsets of HKTimeZone names at an instant, the zones looked up once."""

    def __init__(self):
        self._zones: dict[str, ZoneInfo | None] = {}

    def offset(self, name: str, epoch: int) -> int | None:
        if name not in self._zones:
            try:
                self._zones[name] = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                self._zones[name] = None
        zone = self._zones[name]
        if zone is None:
            return None
        return int(datetime.fromtimestamp(epoch, zone).utcoffset().total_seconds() // 60)


def _is_watch(source: str, device: str) -> bool:
    return "watch" in source.lower() or "name:Apple Watch" in device


class AppleHealthXmlReader(Reader):
    """Apple Health ``export.xml`` into ``heart_rate_minute``, ``steps_minute`` and ``sleep_level``
    (see the module's description; Apple HealthKit documentation and the export's DTD)."""

    format = "apple_health_xml"
    order = 26
    description = ("Apple Health export.xml (heart rate, steps, sleep analysis), streamed, in "
                   "<participant>/apple_health_export/")

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        if b"<HealthData" not in head:
            return "no <HealthData> root in the first 64 KB (not an Apple Health export.xml)"
        return None

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        if b"<Record " in head and b"HKQuantityTypeIdentifier" in head:
            return 0.5, ("it has HealthKit <Record> elements but no <HealthData> root: export it again with "
                         "Health > profile > Export All Health Data and upload apple_health_export/export.xml whole")
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        name = context.source_name or str(path)
        # --participant names one person's delivery and wins over folder names, as for Fitbit exports
        participant = getattr(context, "participant", None) or participant_of(name)
        if participant is None:
            raise ReaderError(f"{name}: not inside <participant>/{EXPORT_FOLDER}/: cannot tell whose data it is "
                              "(an export names no one); pass --participant ID (lake.ingest(path, participant=ID)) "
                              "for one person's export, or put the export under a folder named by the participant ID "
                              "and ingest the folder above it (explorer ingest uploads/, not uploads/4711/), so that "
                              "the name keeps the participant folder")
        with open(path, "rb") as stream:
            head = stream.read(1 << 16)
        if b"<!ENTITY" in head:
            raise ReaderError(f"{name}: declares XML entities, which no Health export does; refused rather than expanded")
        person = context.pseudonymize([participant])[0]
        return _Parse(name).run(path, person, participant)


class _Parse:
    """One streaming pass over an export, collecting samples in compact arrays."""

    def __init__(self, name: str):
        self.name = name
        self.zones = _Zones()
        self.sources: dict[str, int] = {}
        self.watch: set[int] = set()
        self.ignored: Counter = Counter()
        self.rejected: list[dict] = []
        self.rows = 0
        # heart rate samples and step minute shares: record, source, UTC minute, local offset, value;
        # 16 bytes a sample (int32 record and minute, int16 source and offset, float32 value) so that
        # the millions of samples of a several-GB export stay small
        self.hr = {k: array(t) for k, t in (("row", "i"), ("source", "h"), ("minute", "i"), ("offset", "h"), ("value", "f"))}
        self.st = {k: array(t) for k, t in (("row", "i"), ("source", "h"), ("minute", "i"), ("offset", "h"), ("value", "f"))}
        self.sleep: list[tuple] = []

    def run(self, path: Path, person: str, participant: str) -> ReadResult:
        depth, root = 0, None
        try:
            for event, element in ET.iterparse(path, events=("start", "end")):
                if event == "start":
                    depth += 1
                    if depth == 1:
                        if element.tag != "HealthData":
                            raise ReaderError(f"{self.name}: root element <{element.tag}>; expected <HealthData>")
                        root = element
                    continue
                depth -= 1
                if depth == 1:
                    self.element(element)
                    root.clear()  # keep memory flat: nothing of a finished record stays referenced
        except ET.ParseError as exc:
            raise ReaderError(f"{self.name}: not well-formed XML at line {exc.position[0]} column {exc.position[1]} "
                              f"({exc}); a truncated upload? export again and upload the whole file") from None
        if root is None:
            raise ReaderError(f"{self.name}: no <HealthData> element")
        tables = {"heart_rate_minute": self.heart_rate(person, participant),
                  "steps_minute": self.steps(person, participant),
                  "sleep_level": self.sleep_rows(person, participant)}
        rejected = pd.DataFrame(sorted(self.rejected, key=lambda r: r["_row"]), columns=["_row", "table", "reason", "record"])
        return ReadResult(self.rows, {k: v for k, v in tables.items() if len(v)}, rejected, self.ignored)

    # -- one element -----------------------------------------------------------------------

    def element(self, element: ET.Element) -> None:
        if element.tag in ("ExportDate", "Me"):
            return  # the export's header, not a record
        self.rows += 1
        if element.tag != "Record":
            self.ignored[element.tag] += 1
            return
        kind = element.get("type", "")
        if kind not in (HEART_RATE, STEPS, SLEEP):
            self.ignored[kind or "Record without type"] += 1
            return
        table = {HEART_RATE: "heart_rate_minute", STEPS: "steps_minute", SLEEP: "sleep_level"}[kind]
        try:
            self.record(kind, element)
        except ValueError as exc:
            self.rejected.append({"_row": self.rows, "table": table, "reason": f"{kind} record: {exc}",
                                  "record": ET.tostring(element, encoding="unicode")[:2000]})

    def record(self, kind: str, element: ET.Element) -> None:
        start, written_offset = parse_date(element.get("startDate"))
        end, _ = parse_date(element.get("endDate"))
        if end < start:
            raise ValueError(f"endDate {element.get('endDate')!r} before startDate {element.get('startDate')!r}")
        offset = written_offset
        for entry in element.iter("MetadataEntry"):
            if entry.get("key") == "HKTimeZone":
                found = self.zones.offset(entry.get("value", ""), start)
                if found is None:
                    raise ValueError(f"HKTimeZone {entry.get('value')!r} is no IANA time zone")
                offset = found
        source_name = element.get("sourceName", "")
        source = self.sources.setdefault(source_name, len(self.sources))
        if _is_watch(source_name, element.get("device", "")):
            self.watch.add(source)
        if kind == SLEEP:
            value = element.get("value", "")
            if value not in SLEEP_LEVELS:
                raise ValueError(f"value {value!r} is no HKCategoryValueSleepAnalysis value "
                                 f"({', '.join(sorted(v.removeprefix('HKCategoryValueSleepAnalysis') for v in SLEEP_LEVELS))})")
            if SLEEP_LEVELS[value] is None:
                self.ignored[value + " (time in bed, not a sleep stage)"] += 1
                return
            self.sleep.append((self.rows, source, start, end, offset, SLEEP_LEVELS[value]))
            return
        if element.get("unit") != UNITS[kind]:
            raise ValueError(f"unit {element.get('unit')!r}: expected {UNITS[kind]!r}")
        try:
            value = float(element.get("value", ""))
        except ValueError:
            raise ValueError(f"value {element.get('value')!r}: expected a number") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"value {value!r}: expected a finite number, at least 0")
        if kind == HEART_RATE:
            self._append(self.hr, self.rows, source, start // 60, offset, value)
            return
        if end == start:  # an instant counts whole in its minute
            self._append(self.st, self.rows, source, start // 60, offset, value)
            return
        for minute in range(start // 60, (end - 1) // 60 + 1):  # share by seconds of overlap
            overlap = min(end, minute * 60 + 60) - max(start, minute * 60)
            self._append(self.st, self.rows, source, minute, offset, value * overlap / (end - start))

    @staticmethod
    def _append(columns, row, source, minute, offset, value) -> None:
        columns["row"].append(row)
        columns["source"].append(source)
        columns["minute"].append(minute)
        columns["offset"].append(offset)
        columns["value"].append(value)

    # -- tables ----------------------------------------------------------------------------

    @staticmethod
    def _arrays(columns) -> dict[str, np.ndarray]:
        """The samples as numpy arrays; the growing arrays are emptied (a several-GB export must
        not hold both)."""
        out = {}
        for name, column in columns.items():  # one column at a time: never both copies of all
            out[name] = np.frombuffer(column, dtype=np.dtype(column.typecode)).copy()
            del column[:]
        out["day"] = (out["minute"] + out["offset"].astype(np.int32)) // 1440  # local day
        return out

    def _keep(self, row: np.ndarray, day: np.ndarray, source: np.ndarray, kind: str) -> np.ndarray:
        """Which samples to keep: one source per local day, the Watch, else the source with most
        records (then the first by name); the other sources' records are counted as ignored."""
        if len(self.sources) <= 1:
            return np.ones(len(row), dtype=bool)
        width = len(self.sources)
        key = day.astype(np.int64) * width + source
        first = np.ones(len(row), dtype=bool)  # a step record split over minutes counts once
        first[1:] = row[1:] != row[:-1]
        pairs, records = np.unique(key[first], return_counts=True)
        names = {v: k for k, v in self.sources.items()}
        per = pd.DataFrame({"day": pairs // width, "source": pairs % width, "n": records})
        per["watch"] = per["source"].isin(self.watch)
        per["name"] = per["source"].map(names)
        per = per.sort_values(["day", "watch", "n", "name"], ascending=[True, False, False, True]).drop_duplicates("day")
        keep = np.isin(key, (per["day"] * width + per["source"]).to_numpy())
        dropped = int((first & ~keep).sum())
        if dropped:
            self.ignored[f"{kind} of a second source the same day (one source kept, not counted twice)"] += dropped
        return keep

    def _minutes(self, columns, kind: str) -> dict[str, np.ndarray] | None:
        """Per minute (UTC minute and local offset) of the kept source: first record, sum, count,
        local time; the samples merged into minutes other records number are counted."""
        a = self._arrays(columns)
        if not len(a["row"]):
            return None
        keep = self._keep(a["row"], a["day"], a["source"], kind)
        row, value = a["row"][keep], a["value"][keep].astype(np.float64)
        key = a["minute"][keep].astype(np.int64) * 4096 + (a["offset"][keep].astype(np.int64) + 2048)  # offsets: +-1440 min
        del a, keep
        order = np.argsort(key, kind="stable")
        key, row, value = key[order], row[order], value[order]
        del order
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        if kind == STEPS:  # an interval's shares over the catalog's range: quarantine the records, once each
            over = np.add.reduceat(value, starts) > STEPS_PER_MINUTE_MAX
            if over.any():
                bad_rows = np.unique(row[np.repeat(over, np.diff(np.r_[starts, len(key)]))])
                for bad in bad_rows.tolist():
                    self.rejected.append({"_row": int(bad), "table": "steps_minute",
                                          "reason": f"{kind} record puts more than {STEPS_PER_MINUTE_MAX} steps in a "
                                                    "minute (split by overlap), over the catalog's range: a device error",
                                          "record": f"Record {bad} of the export"})
                good = ~np.isin(row, bad_rows)
                key, row, value = key[good], row[good], value[good]
                if not len(key):
                    return None
                starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        first_row = np.minimum.reduceat(row, starts)
        merged = len(np.setdiff1d(np.unique(row), first_row))
        if merged:
            self.ignored[f"{kind} sample merged into a minute numbered by an earlier record"] += merged
        minute, offset = key[starts] // 4096, key[starts] % 4096 - 2048
        return {"_row": first_row, "sum": np.add.reduceat(value, starts), "count": np.diff(np.r_[starts, len(key)]),
                "local": (minute + offset) * 60}

    def heart_rate(self, person, participant) -> pd.DataFrame:
        m = self._minutes(self.hr, HEART_RATE)
        if m is None:
            return pd.DataFrame()
        n = len(m["_row"])
        return pd.DataFrame({"_row": m["_row"].astype("int64"), "person_id": person,
                             "datetime": m["local"].astype("datetime64[s]").astype("datetime64[us]"),
                             "heart_rate_value": np.floor(m["sum"] / m["count"] + 0.5).astype("int32"),
                             "sample_count": m["count"].astype("int32"),
                             "confidence": pd.arrays.IntegerArray(np.zeros(n, dtype="int32"), np.ones(n, dtype=bool)),
                             "_source_person": participant})

    def steps(self, person, participant) -> pd.DataFrame:
        m = self._minutes(self.st, STEPS)
        if m is None:
            return pd.DataFrame()
        order = np.argsort(m["local"], kind="stable")  # whole steps that keep each local day's total:
        m = {k: v[order] for k, v in m.items()}  # differences of the rounded running total
        day = m["local"] // 86400
        running = np.floor(pd.Series(m["sum"]).groupby(day).cumsum().to_numpy() + 0.5)
        whole = np.diff(np.r_[0.0, running])
        new_day = np.r_[True, day[1:] != day[:-1]]
        whole[new_day] = running[new_day]
        return pd.DataFrame({"_row": m["_row"].astype("int64"), "person_id": person,
                             "datetime": m["local"].astype("datetime64[s]").astype("datetime64[us]"),
                             "steps": whole.astype("int32"), "_source_person": participant})

    def sleep_rows(self, person, participant) -> pd.DataFrame:
        if not self.sleep:
            return pd.DataFrame()
        frame = pd.DataFrame(self.sleep, columns=["row", "source", "start", "end", "offset", "level"])
        frame["local"] = frame["start"] + frame["offset"] * 60
        frame["local_end"] = frame["end"] + frame["offset"] * 60
        frame["day"] = frame["local_end"] // 86400  # a night belongs to the day it ends
        frame = frame.loc[self._keep(frame["row"].to_numpy(), frame["day"].to_numpy(), frame["source"].to_numpy(), SLEEP)]
        frame = frame.sort_values("start").reset_index(drop=True)
        # sleeps: segments at most SLEEP_GAP_MINUTES apart; the longest ending on a day is its main sleep
        gap = frame["start"] - frame["end"].cummax().shift()
        frame["sleep"] = (gap.isna() | (gap > SLEEP_GAP_MINUTES * 60)).cumsum()
        span = frame.groupby("sleep").agg(first=("start", "min"), last=("end", "max"), day=("day", "max"))
        span["length"] = span["last"] - span["first"]
        main = span.sort_values(["day", "length"], ascending=[True, False]).drop_duplicates("day").index
        return pd.DataFrame({"_row": frame["row"].astype("int64"), "person_id": person,
                             "start_datetime": pd.to_datetime(frame["local"], unit="s").astype("datetime64[us]"),
                             "level": frame["level"], "duration_minutes": (frame["end"] - frame["start"]) / 60.0,
                             "is_main_sleep": frame["sleep"].isin(main).astype(bool), "_source_person": participant})


#: the other files an Apple Health export holds beside ``export.xml`` (the Health app writes them
#: into the same ``apple_health_export/`` folder), judged from their first bytes, with the kind
#: they are counted as: none carries minutes the suite stores that ``export.xml`` does not
COMPANIONS = (
    ("HL7 CDA document", (b"<ClinicalDocument",),
     "Apple Health export_cda.xml (an HL7 CDA copy of export.xml's vital signs; export.xml is read)"),
    ("GPX track", (b"<gpx",), "Apple Health workout route GPX (locations along a workout, not stored)"),
    ("Apple Watch ECG", (b"Recorded Date,", b"Classification,"),
     "Apple Health electrocardiogram CSV (a 30-second waveform, not stored)"),
)


class AppleHealthCompanionReader(Reader):
    """The files an Apple Health export holds beside ``export.xml``: ``export_cda.xml`` (HL7 CDA R2,
    the same vital signs again), ``workout-routes/*.gpx`` (GPX 1.1 tracks) and
    ``electrocardiograms/*.csv`` (Apple Watch ECG waveforms). Inside ``apple_health_export/`` each
    is one record counted as ignored by kind, so a whole export folder ingests without files
    quarantined for what it deliberately does not store; outside an export the file is refused,
    saying what it is.

    References
    ----------
    Apple, "Export all health data" (Health app, iPhone User Guide); HL7 CDA R2; GPX 1.1 schema
    (topografix.com/GPX/1/1).
    """

    format = "apple_health_companion"
    order = 27
    description = "files beside an Apple Health export.xml (export_cda.xml, workout routes, ECGs), counted as ignored"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if any(all(mark in head[:4096] for mark in marks) for _, marks, _ in COMPANIONS):
            return None
        return "not an HL7 CDA document, GPX track or Apple Watch ECG CSV"

    def read(self, path: Path, context: Context) -> ReadResult:
        name = context.source_name or str(path)
        with open(path, "rb") as stream:
            head = stream.read(4096)
        what, kind = next((what, kind) for what, marks, kind in COMPANIONS if all(mark in head for mark in marks))
        # inside an export folder by its name, or in a delivery whose person was named
        # (`explorer ingest apple_health_export/ --participant ID`: names are relative to the
        # folder ingested, so that folder's own name is not in them), as export.xml is read
        inside_export = EXPORT_FOLDER in Path(name.replace("!", "/")).parts or getattr(context, "participant", None)
        if not inside_export:
            raise ReaderError(f"{name}: a {what}, which the suite reads only as part of an Apple Health export "
                              f"(<participant>/{EXPORT_FOLDER}/), where it is counted as not stored; nothing in it is read")
        return ReadResult(1, ignored=Counter({kind: 1}))
