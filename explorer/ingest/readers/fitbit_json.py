"""Fitbit personal data export (JSON): ``heart_rate-YYYY-MM-DD.json``, ``steps-YYYY-MM-DD.json``
and ``sleep-YYYY-MM-DD.json``, local times without zone (``MM/DD/YY HH:MM:SS``).

An export carries no participant identifier: the cohort's upload tool delivers each person's
export in a folder named by their participant ID (``<participant>/Physical Activity/...``,
``<participant>/Sleep/...``), and that folder name is the source identifier.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

STREAMS = {"heart_rate": "heart_rate_minute", "steps": "steps_minute", "sleep": "sleep_level"}
NAME = re.compile(r"^(heart_rate|steps|sleep)-(\d{4}-\d{2}-\d{2})\.json$")


def participant_of(source_name: str) -> str | None:
    """The folder holding ``Physical Activity/`` or ``Sleep/``; inside a zip, within the member path."""
    parts = Path(source_name.rsplit("!", 1)[-1]).parts
    for k, part in enumerate(parts):
        if part in ("Physical Activity", "Sleep") and k > 0:
            return parts[k - 1]
    return None


class FitbitExportReader(Reader):
    format = "fitbit_export_json"
    order = 25
    description = "Fitbit personal-export JSON, one file per day per stream, in a folder named by participant"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        if head.lstrip()[:1] != b"[":
            return "not a JSON array"
        if b'"dateTime"' not in head[:4096] and b'"logId"' not in head[:4096]:
            return "no Fitbit dateTime or logId in the first 4 KB"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        name = context.source_name or str(path)
        match = NAME.match(Path(name).name)
        if not match:
            raise ReaderError(f"file name {Path(name).name!r}: expected heart_rate-, steps- or sleep-YYYY-MM-DD.json")
        participant = participant_of(name)
        if participant is None:
            raise ReaderError("not inside <participant>/Physical Activity/ or <participant>/Sleep/: cannot tell whose data it is")
        try:
            records = json.loads(path.read_bytes())
        except UnicodeDecodeError as exc:
            raise ReaderError(f"not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ReaderError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                              "(a truncated upload?)") from None
        if not isinstance(records, list):
            raise ReaderError("expected a JSON array of records")
        stream = match.group(1)
        person = context.pseudonymize([participant])[0]
        if stream == "sleep":
            return self._sleep(records, person, participant)
        column = "heart_rate_value" if stream == "heart_rate" else "steps"
        good_index, stamps, values, rejected = [], [], [], []
        for i, record in enumerate(records, 1):
            try:
                value = record["value"]["bpm"] if stream == "heart_rate" else record["value"]
                stamps.append(str(record["dateTime"]))
                values.append(int(round(float(value))))
                good_index.append(i)
            except (KeyError, TypeError, ValueError) as exc:
                if len(stamps) > len(values):
                    stamps.pop()
                rejected.append({"_row": i, "table": STREAMS[stream], "reason": f"record not in Fitbit {stream} shape ({exc!r})",
                                 "record": json.dumps(record)[:2000]})
        when = pd.to_datetime(pd.Series(stamps, dtype=object), format="%m/%d/%y %H:%M:%S", errors="coerce")
        bad_time = when.isna().to_numpy()
        for k in [k for k in range(len(stamps)) if bad_time[k]]:
            rejected.append({"_row": good_index[k], "table": STREAMS[stream],
                             "reason": f"dateTime {stamps[k]!r}: expected MM/DD/YY HH:MM:SS", "record": json.dumps(records[good_index[k] - 1])[:2000]})
        keep = ~bad_time
        rows = pd.DataFrame({"_row": pd.Series(good_index, dtype="int64")[keep].to_numpy(), "person_id": person,
                             "datetime": when[keep].to_numpy(), column: pd.Series(values, dtype="int64")[keep].to_numpy(),
                             "_source_person": participant})
        rejected.sort(key=lambda r: r["_row"])
        return ReadResult(len(records), {STREAMS[stream]: rows},
                          pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"]))

    @staticmethod
    def _sleep(logs, person, participant) -> ReadResult:
        rows, rejected = [], []
        for i, log in enumerate(logs, 1):
            try:  # a log is one record: all its segments land, or the log is quarantined whole
                segments = [{"_row": i, "person_id": person,
                             "start_datetime": pd.Timestamp(segment["dateTime"]), "level": str(segment["level"]),
                             "duration_minutes": float(segment["seconds"]) / 60.0, "is_main_sleep": bool(log["mainSleep"]),
                             "_source_person": participant} for segment in log["levels"]["data"]]
                if not segments or any(pd.isna(s["start_datetime"]) for s in segments):
                    raise ValueError("no segments, or a segment without dateTime")
                rows.extend(segments)
            except (KeyError, TypeError, ValueError) as exc:
                rejected.append({"_row": i, "table": "sleep_level", "reason": f"sleep log not in Fitbit shape ({exc!r})",
                                 "record": json.dumps(log)[:2000]})
        return ReadResult(len(logs), {"sleep_level": pd.DataFrame(rows)},
                          pd.DataFrame(rejected, columns=["_row", "table", "reason", "record"]))
