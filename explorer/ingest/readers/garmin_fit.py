"""Garmin FIT monitoring and activity files, decoded with Garmin's own FIT Python SDK.

A FIT file (Garmin *FIT Protocol*, FIT SDK documentation) is a 12- or 14-byte header with the
signature ``.FIT`` at bytes 8-11, definition and data messages, and a CRC-16. ``garmin-fit-sdk``
(Garmin's decoder) checks the header and CRC and applies the *FIT Profile* (scales, sub-fields,
components). Times are seconds since the FIT epoch, 1989-12-31 00:00 UTC; a ``timestamp_16``
carries the low 16 bits only and is expanded from the last full timestamp as the protocol
describes (``t + ((t16 - t) & 0xFFFF)``).

What lands, in the tables of the All of Us Fitbit shape:

- monitoring files (``file_id.type`` ``monitoring_a``/``monitoring_b``, the watch's all-day
  ``GARMIN/Monitor/*.FIT``): ``monitoring.heart_rate`` samples averaged per minute into
  ``heart_rate_minute`` (``sample_count``); ``monitoring.steps`` is a running total per
  ``activity_type`` since local midnight, so a message's steps are the increase over the previous
  total of its activity type (a total that falls is a new day: the increase is the total), counted
  in the minute of the message, into ``steps_minute``. A file's first total of a type counts only
  in the day's first minute; later, it holds steps of an earlier file and is taken as the baseline.
  An increase over 300 in one message (the catalog's range) quarantines the message whole;
- activity files (``file_id.type`` ``activity``): ``record.heart_rate`` (about one a second)
  averaged per minute into ``heart_rate_minute``.

Local time: the lake keeps the wall clock. The offset is ``local_timestamp - timestamp`` of the
file's ``monitoring_info`` (monitoring) or ``activity`` message (activity), else the
``device_settings`` ``time_offset``; a file with none is refused (UTC is not the wall clock).

Accounting: every data message is a record. A stored minute's ``_row`` is its first message; the
other messages merged into it, messages of kinds no table holds (``file_id``, ``device_info``,
``event`` ..., by kind) and monitoring messages without heart rate or steps are counted as ignored.
The participant is the folder holding ``GARMIN/`` (or ``Monitor/``, ``Activity/``, ``garmin_fit/``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

#: seconds from the Unix epoch to the FIT epoch (1989-12-31 00:00:00 UTC), FIT Protocol "date_time"
FIT_EPOCH_S = 631065600
FOLDERS = ("garmin", "monitor", "activity", "garmin_fit")
MONITORING_TYPES = ("monitoring_a", "monitoring_b")
#: steps a minute can hold (data_catalog/steps_minute.yaml range)
STEPS_PER_MINUTE_MAX = 300


def participant_of(source_name: str) -> str | None:
    """The folder above the first ``GARMIN``/``Monitor``/``Activity``/``garmin_fit`` folder.

    Examples
    --------
    >>> participant_of("uploads/4711/GARMIN/Monitor/A1234567.FIT")
    '4711'
    """
    parts = Path(source_name.replace("!", "/")).parts[:-1]
    for k, part in enumerate(parts):
        if part.lower() in FOLDERS and k > 0:
            return parts[k - 1]
    return None


def expand_timestamp_16(last: int, low16: int) -> int:
    """The full FIT time of a ``timestamp_16`` after the full time ``last`` (FIT Protocol,
    compressed and 16-bit timestamps: the count rolls over every 65536 s).

    Examples
    --------
    >>> expand_timestamp_16(0x1234FFF0, 0x0010)  # past the roll-over
    305463312
    """
    return last + ((low16 - last) & 0xFFFF)


class GarminFitReader(Reader):
    """Garmin FIT monitoring and activity files into ``heart_rate_minute`` and ``steps_minute``
    (see the module's description; Garmin FIT SDK, FIT Protocol and FIT Profile)."""

    format = "garmin_fit"
    order = 27
    description = "Garmin FIT monitoring (heart rate, steps) and activity (heart rate) files, in <participant>/GARMIN/"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if len(head) < 12:
            return "shorter than a FIT header (12 bytes)"
        if head[8:12] != b".FIT" or head[0] not in (12, 14):
            return "no .FIT signature at bytes 8-11"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        from garmin_fit_sdk import Decoder, Stream

        name = context.source_name or str(path)
        # --participant names one person's delivery and wins over folder names, as for Fitbit exports
        participant = getattr(context, "participant", None) or participant_of(name)
        if participant is None:
            raise ReaderError(f"{name}: not inside <participant>/GARMIN/ (or Monitor/, Activity/): cannot tell whose "
                              "data it is; pass --participant ID (lake.ingest(path, participant=ID)) for one person's "
                              "files, or put the device's files under a folder named by the participant ID and "
                              "ingest the folder above it")
        data = bytearray(path.read_bytes())
        decoder = Decoder(Stream.from_byte_array(data))
        if not decoder.is_fit():
            raise ReaderError(f"{name}: not a FIT file (header size or .FIT signature wrong)")
        if not Decoder(Stream.from_byte_array(data)).check_integrity():
            raise ReaderError(f"{name}: FIT CRC or data size does not match the header: the file is truncated or "
                              "damaged; copy it from the device again")
        ordered: list[tuple[int, dict]] = []
        _messages, errors = Decoder(Stream.from_byte_array(data)).read(
            convert_datetimes_to_dates=False, mesg_listener=lambda number, message: ordered.append((number, message)))
        if errors:
            raise ReaderError(f"{name}: the FIT decoder stopped: {errors[0]}")
        person = context.pseudonymize([participant])[0]
        return _Messages(name, ordered).result(person, participant)


class _Messages:
    """One decoded file's messages, in file order (``_row`` is the 1-based message number)."""

    def __init__(self, name: str, ordered: list[tuple[int, dict]]):
        from garmin_fit_sdk import Profile

        names = {number: key.lower() for key, number in Profile["mesg_num"].items()}
        self.name = name
        self.messages = [(k, names.get(number, f"mesg_num {number}"), message) for k, (number, message) in enumerate(ordered, 1)]
        self.ignored: Counter = Counter()
        self.rejected: list[dict] = []

    def first(self, kind: str) -> dict | None:
        return next((m for _k, n, m in self.messages if n == kind), None)

    def offset(self, kind: str) -> int:
        """Seconds local time is ahead of UTC: the ``kind`` message's local_timestamp, else device_settings."""
        found = self.first(kind)
        if found and found.get("local_timestamp") is not None and found.get("timestamp") is not None:
            return int(found["local_timestamp"]) - int(found["timestamp"])
        settings = self.first("device_settings")
        if settings and settings.get("time_offset") is not None:
            value = settings["time_offset"]
            return int(value[0] if isinstance(value, (list, tuple)) else value)
        raise ReaderError(f"{self.name}: no {kind} local_timestamp and no device_settings time_offset: the local time "
                          "cannot be told (FIT times are UTC); export the file with its monitoring_info/activity message")

    def result(self, person: str, participant: str) -> ReadResult:
        file_id = self.first("file_id") or {}
        kind = str(file_id.get("type", ""))
        if kind in MONITORING_TYPES:
            stream, offset = "monitoring", self.offset("monitoring_info")
        elif kind == "activity":
            stream, offset = "record", self.offset("activity")
        else:
            raise ReaderError(f"{self.name}: FIT file type {kind or 'missing'!r}; this reader takes monitoring "
                              "(monitoring_a, monitoring_b) and activity files")
        heart, steps = [], []  # (row, FIT time, value)
        last, totals, activity = None, {}, None
        for k, kind_name, message in self.messages:
            if kind_name != stream:
                self.ignored[f"FIT {kind_name} message"] += 1
                continue
            if message.get("timestamp") is not None:
                last = int(message["timestamp"])
            elif message.get("timestamp_16") is not None and last is not None:
                last = expand_timestamp_16(last, int(message["timestamp_16"]))
            if last is None:
                self.ignored[f"FIT {stream} message before any timestamp"] += 1
                continue
            increase, baseline = None, False
            if stream == "monitoring":
                activity = message.get("activity_type", activity)
                if message.get("steps") is not None:
                    total = int(message["steps"])
                    before = totals.get(activity)
                    totals[activity] = total
                    if before is None and (last + offset) % 86400 >= 60:
                        # a file's first total after the day's first minute counts steps taken before
                        # the file (in an earlier one): the baseline, not steps of this minute
                        baseline = True
                    else:  # since local midnight, or a total that fell: the day began again
                        increase = total if before is None or total < before else total - before
            if increase is not None and increase > STEPS_PER_MINUTE_MAX:
                # the message is quarantined whole (its heart rate too): one record, one outcome
                self.rejected.append({"_row": k, "table": "steps_minute", "record": repr(message)[:2000],
                                      "reason": f"FIT monitoring steps increase by {increase} in one message, over "
                                                f"{STEPS_PER_MINUTE_MAX} a minute (a reset total or a device error)"})
                continue
            used = increase is not None
            if increase is not None:
                steps.append((k, last, increase))
            if message.get("heart_rate") not in (None, 0, 255):  # 0 and 255 are the profile's invalid values
                heart.append((k, last, float(message["heart_rate"])))
                used = True
            if not used and baseline:
                self.ignored["FIT monitoring running total taken as the baseline (steps before this file)"] += 1
            elif not used:
                self.ignored[f"FIT {stream} message without heart rate or steps"] += 1
        tables = {}
        for table, column, samples in (("heart_rate_minute", "heart_rate_value", heart), ("steps_minute", "steps", steps)):
            if not samples:
                continue
            frame = pd.DataFrame(samples, columns=["row", "time", "value"])
            frame["local"] = (frame["time"] + FIT_EPOCH_S + offset) // 60 * 60
            minutes = frame.groupby("local", sort=True).agg(_row=("row", "min"), mean=("value", "mean"),
                                                             total=("value", "sum"), n=("value", "size")).reset_index()
            rows = pd.DataFrame({"_row": minutes["_row"].astype("int64"), "person_id": person,
                                 "datetime": pd.to_datetime(minutes["local"], unit="s").astype("datetime64[us]")})
            if table == "heart_rate_minute":
                rows["heart_rate_value"] = np.floor(minutes["mean"] + 0.5).astype("int32")
                rows["sample_count"] = minutes["n"].astype("int32")
                rows["confidence"] = pd.array([None] * len(minutes), dtype="Int32")
            else:
                rows["steps"] = minutes["total"].astype("int32")
            rows["_source_person"] = participant
            tables[table] = rows
        # a message that numbers no minute of either table was merged into minutes other messages number
        used = {row for row, _t, _v in heart + steps}
        numbered = set().union(*(set(t["_row"]) for t in tables.values())) if tables else set()
        if len(used - numbered):
            self.ignored[f"FIT {stream} sample merged into a minute numbered by an earlier message"] += len(used - numbered)
        rejected = pd.DataFrame(self.rejected, columns=["_row", "table", "reason", "record"])
        return ReadResult(len(self.messages), tables, rejected, self.ignored)
