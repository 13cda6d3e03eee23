"""Fitbit account export and Google Takeout (JSON): ``heart_rate-YYYY-MM-DD.json``,
``steps-YYYY-MM-DD.json`` and ``sleep-YYYY-MM-DD.json``, local times without zone
(``MM/DD/YY HH:MM:SS``).

Two layouts carry these files:

- the Fitbit account export ("Export your account archive"): ``<Name>/Physical Activity/...`` and
  ``<Name>/Sleep/...``; the cohort's upload tool delivers each person's export in a folder named
  by their participant ID, and that folder name is the source identifier;
- Google Takeout, since Fitbit accounts moved to Google: ``Takeout/Fitbit/Global Export Data/...``,
  all streams in one folder and no person named anywhere. The person is the folder above
  ``Takeout`` (``P001/Takeout/...``), or the one named on the command line
  (``explorer ingest PATH --participant ID``, ``lake.ingest(path, participant=ID)``), which
  takes precedence over any folder name.

Heart rate comes one sample every 5-15 s (``{"dateTime", "value": {"bpm", "confidence"}}``); the
unified table holds minutes, so the samples of each local minute become one row: the mean bpm
(rounded half up to the column's integer type), the number of samples (``sample_count``) and the
lowest sensor confidence among them (``confidence``, Fitbit's 0-3; the lowest, because one
unreliable sample makes the minute's mean unreliable). A minute with one sample or more is a
minute worn, so ``wear_minutes`` counts minutes with a sample, never samples. A sample outside
the catalog's heart-rate range is quarantined on its own before averaging, so it cannot pull a
minute's mean. Where the local clock runs backwards inside a file (the repeated hour of an
autumn clock change) the samples after it form a second pass: a repeated local minute then
yields two rows, which the ingest's duplicate check places as the earlier and later instant.

Times are read as floating local times in the account's zone, as Fitbit stores them (Vital's
Fitbit integration notes "Fitbit stores all their data in floating time"; A. Kong, "Timezone
correcting Fitbit sleep data", 2023, shows export times follow the wearer's local clock). Forum
posts claiming export heart rate is in UTC could not be confirmed from a published source; the
reader assumes local time for every stream. The zone of each day comes from the person's
residence history or ``--default-time-zone``; without either the ingest warns and the
``wearable_zone_unknown`` data-quality check fails.

Other daily files of these layouts (``calories-``, ``distance-``, ``altitude-`` ...) hold
streams the suite does not store: their records are counted as ignored by kind, not quarantined.

References
----------
Fitbit Help, "How do I export my Fitbit data?" (account archive: folders per category, one JSON
file per day). Google, "Download your Fitbit data" (Takeout: ``Takeout/Fitbit/Global Export Data``).
Fitbit Web API, Heart Rate Intraday and Sleep Log (v1.2) documentation (fields ``bpm``,
``confidence``, ``levels.data`` with ``dateTime``, ``level``, ``seconds``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.catalog import default_catalog
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult, load_json

STREAMS = {"heart_rate": "heart_rate_minute", "steps": "steps_minute", "sleep": "sleep_level"}
#: any daily stream file of an export: ``<stream>-YYYY-MM-DD.json``
NAME = re.compile(r"^([a-z][a-z0-9_]*)-(\d{4}-\d{2}-\d{2})\.json$")
#: names whose data a file is when its layout does not (set by ``explorer ingest --participant``)
PARTICIPANT_VARIABLE = "EXPLORER_PARTICIPANT"
#: the kind of any other JSON file of an export: its name up to the first ``-``, digit or dot
OTHER_NAME = re.compile(r"^([^-.\d]*)")
ACCOUNT_FOLDERS = ("Physical Activity", "Sleep")
TAKEOUT_PATH = ("Takeout", "Fitbit", "Global Export Data")
TIME_FORMAT = "%m/%d/%y %H:%M:%S"


def layout_of(source_name: str) -> tuple[str | None, str | None]:
    """Which export layout a file sits in, and the participant its folders name.

    Parameters
    ----------
    source_name : str
        The file's name as received (``archive.zip!member`` inside a zip: the member path counts).

    Returns
    -------
    (layout, participant) : (str or None, str or None)
        ``layout`` is ``"account"`` (``<participant>/Physical Activity/`` or ``/Sleep/``),
        ``"takeout"`` (``[<participant>/]Takeout/Fitbit/Global Export Data/``) or None;
        ``participant`` the folder naming the person, None where the layout names nobody.
    """
    parts = Path(source_name.rsplit("!", 1)[-1]).parts
    for k in range(len(parts) - len(TAKEOUT_PATH)):
        if parts[k:k + len(TAKEOUT_PATH)] == TAKEOUT_PATH:
            return "takeout", parts[k - 1] if k > 0 else None
    for k, part in enumerate(parts[:-1]):
        if part in ACCOUNT_FOLDERS:
            return "account", parts[k - 1] if k > 0 else None
    return None, None


def participant_of(source_name: str, named: str | None = None) -> str | None:
    """The participant a file belongs to: ``named`` (``ingest(participant=)``, ``--participant``)
    or ``$EXPLORER_PARTICIPANT`` if set, else the folder its layout names (see :func:`layout_of`),
    else None."""
    named = named or os.environ.get(PARTICIPANT_VARIABLE, "").strip()
    return named or layout_of(source_name)[1]


def _heart_rate_range() -> tuple[float, float]:
    """The heart-rate range the catalog declares, applied here to each sample before averaging."""
    column = next(c for c in default_catalog().get("heart_rate_minute").schema if c.name == "heart_rate_value")
    return column.checks.range


class FitbitExportReader(Reader):
    """Fitbit account exports and Google Takeout Fitbit folders (see the module notes)."""

    format = "fitbit_export_json"
    order = 25
    description = ("Fitbit account export or Google Takeout JSON, one file per day per stream, sub-minute heart rate "
                   "averaged per minute; the person from the folder or --participant")

    def sniff(self, path: Path, head: bytes) -> str | None:
        if not head:
            return "empty file (0 bytes)"
        if head.lstrip()[:1] != b"[":
            return "not a JSON array"
        if b'"dateTime"' not in head[:4096] and b'"logId"' not in head[:4096]:
            return "no Fitbit dateTime or logId in the first 4 KB"
        return None

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        # a JSON array of records is the likeliest wearable export of another shape: say the shape
        # this reader takes and the two ways to bring other minute data in
        if head.lstrip()[:1] != b"[" or b"{" not in head[:4096]:
            return None
        return 0.2, ("it is a JSON array of records, but not of a Fitbit export (records with \"dateTime\" "
                     "'MM/DD/YY HH:MM:SS' and \"value\", in files named heart_rate-, steps- or sleep-YYYY-MM-DD.json); "
                     "write minute data of another device as the All of Us CSV (person_id, datetime, "
                     "heart_rate_value or steps) or add a reader from a site package (README, Extending)")

    def read(self, path: Path, context: Context) -> ReadResult:
        name = context.source_name or str(path)
        match = NAME.match(Path(name).name)
        layout, _ = layout_of(name)
        if not match and layout is None:
            raise ReaderError(f"file name {Path(name).name!r}: expected heart_rate-, steps- or sleep-YYYY-MM-DD.json")
        participant = participant_of(name, context.participant)
        if participant is None:
            where = ("a Google Takeout folder (Takeout/Fitbit/Global Export Data/) names no participant"
                     if layout == "takeout" else
                     "not inside <participant>/Physical Activity/, <participant>/Sleep/ or Takeout/Fitbit/Global Export Data/")
            raise ReaderError(f"{where}: cannot tell whose data it is; name the person with `explorer ingest PATH "
                              f"--participant ID` (participant= in Python), or put the export in a folder "
                              "named by the participant ID (P001/Takeout/..., P001/Physical Activity/...)")
        # inside an export, a file of another name (exercise-0.json, a stream not kept) is counted, not refused
        stream = match.group(1) if match else OTHER_NAME.match(Path(name).name).group(1) or Path(name).stem
        if (stream not in STREAMS and layout is None) or (stream in STREAMS and not match):
            raise ReaderError(f"file name {Path(name).name!r}: expected heart_rate-, steps- or sleep-YYYY-MM-DD.json")
        try:
            records = load_json(path.read_bytes())
        except UnicodeDecodeError as exc:
            raise ReaderError(f"not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ReaderError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                              "(a truncated upload?)") from None
        if not isinstance(records, list):
            raise ReaderError("expected a JSON array of records")
        if stream not in STREAMS or not match:  # calories-, exercise-...: a stream the suite does not store
            return ReadResult(len(records), ignored=Counter({f"Fitbit {stream} record (stream not stored)": len(records)}))
        person = context.pseudonymize([participant])[0]
        if stream == "sleep":
            return self._sleep(records, person, participant)
        return self._per_minute(records, stream, person, participant)

    @staticmethod
    def _per_minute(records: list, stream: str, person, participant: str) -> ReadResult:
        """Heart-rate samples or step counts, one row per local minute (see the module notes).

        Each row carries ``_records``, the source records it stands for, so the ingest counts
        every sample as accepted or quarantined with its minute.
        """
        table = STREAMS[stream]
        rejected = []
        fast = _well_formed_columns(records, stream)
        if fast is not None:
            numbers, stamps, values, confidences = fast
        else:
            numbers, stamps, values, confidences = [], [], [], []
            for i, record in enumerate(records, 1):
                try:
                    if stream == "heart_rate":
                        value, confidence = record["value"]["bpm"], record["value"].get("confidence")
                        confidence = None if confidence is None else int(confidence)
                    else:
                        value, confidence = record["value"], None
                    stamp, number = str(record["dateTime"]), float(value)
                    if not np.isfinite(number):
                        raise ValueError(f"value {value!r} is not a finite number")
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    rejected.append({"_row": i, "table": table, "reason": f"record not in Fitbit {stream} shape ({exc!r})",
                                     "record": json.dumps(record)[:2000]})
                    continue
                numbers.append(i)
                stamps.append(stamp)
                values.append(number)
                confidences.append(confidence)
        samples = pd.DataFrame({"_row": np.array(numbers, dtype="int64"),
                                "when": parse_local_times(stamps),
                                "value": np.array(values, dtype="float64"),
                                "confidence": pd.array(confidences, dtype="Int32")})
        bad = samples["when"].isna().to_numpy()
        if stream == "heart_rate":  # a sample the sensor cannot have read must not pull its minute's mean
            low, high = _heart_rate_range()
            out_of_range = ~bad & ((samples["value"] < low) | (samples["value"] > high)).to_numpy()
        else:
            out_of_range = np.zeros(len(samples), dtype=bool)
        for k in np.flatnonzero(bad | out_of_range):
            i = int(samples["_row"].iat[k])
            reason = (f"dateTime {stamps[k]!r}: expected MM/DD/YY HH:MM:SS" if bad[k] else
                      f"heart-rate sample {values[k]:g} bpm outside {low:g}-{high:g} (left out of its minute's mean)")
            rejected.append({"_row": i, "table": table, "reason": reason, "record": json.dumps(records[i - 1])[:2000]})
        samples = samples[~(bad | out_of_range)]
        rows = _minutes(samples, stream).assign(person_id=person, _source_person=participant)
        rejected.sort(key=lambda r: r["_row"])
        return ReadResult(len(records), {table: rows},
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


def _well_formed_columns(records: list, stream: str):
    """``(numbers, stamps, values, confidences)`` of ``records`` when every record has the
    stream's shape with plain JSON types (text ``dateTime``, a number or number as text for the
    value, integer or absent ``confidence``), one pass per field; None when any record does not, so that the
    record-by-record reading names each bad record. A day's file holds some 10,000 samples:
    this is the common case, and what makes an export's reading fast."""
    try:
        stamps = [record["dateTime"] for record in records]
        if stream == "heart_rate":
            values = [record["value"]["bpm"] for record in records]
            confidences = [record["value"].get("confidence") for record in records]
        else:
            values = [record["value"] for record in records]
            confidences = [None] * len(records)
    except (KeyError, TypeError, AttributeError, IndexError):
        return None
    # bool is an int to Python but not a count or a bpm: such records take the careful path.
    # Text is a value as exports write it (the account export's steps are "12"), read by float
    # as the careful path reads it
    kinds = set(map(type, values))
    if not (kinds <= {int, float, str} and set(map(type, stamps)) <= {str}
            and set(map(type, confidences)) <= {int, type(None)}):
        return None
    try:
        numbers = np.array(list(map(float, values)) if str in kinds else values, dtype="float64")
    except (OverflowError, ValueError):  # an integer beyond float64, text not a number: named by the careful path
        return None
    if not np.isfinite(numbers).all():
        return None
    return np.arange(1, len(records) + 1, dtype="int64"), stamps, numbers, confidences


#: ``MM/DD/YY HH:MM:SS``: where the separators stand, and the digits' places
_SEPARATORS = {2: ord("/"), 5: ord("/"), 8: ord(" "), 11: ord(":"), 14: ord(":")}
_DIGITS = [k for k in range(17) if k not in _SEPARATORS]


def parse_local_times(stamps: list[str]) -> pd.Series:
    """Fitbit export times ``MM/DD/YY HH:MM:SS`` as naive timestamps, NaT where a text is not one.

    The same as ``pd.to_datetime(stamps, format=TIME_FORMAT, errors="coerce")`` (two-digit years
    as :func:`time.strptime` reads them: 69-99 are 1969-1999, 00-68 are 2000-2068), but the
    texts of exactly that shape, all of them in an export, are read as digits in one array
    operation; any other text (one-digit fields, a day the month lacks) is left to pandas.

    Parameters
    ----------
    stamps : list of str

    Returns
    -------
    pandas.Series of datetime64[us]
    """
    n = len(stamps)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")  # the unit pandas gives parsed text
    regular = np.fromiter(map(len, stamps), dtype="int64", count=n) == 17 if n else np.zeros(0, dtype=bool)
    joined = "".join(s for s, r in zip(stamps, regular) if r) if not regular.all() else "".join(stamps)
    try:
        chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, 17)
    except UnicodeEncodeError:  # non-ASCII text somewhere: pandas reads every one
        chars, regular = np.zeros((0, 17), dtype=np.uint8), np.zeros(n, dtype=bool)
    digits = chars[:, _DIGITS].astype("int64") - ord("0")
    shaped = ((digits >= 0) & (digits <= 9)).all(axis=1)
    for place, code in _SEPARATORS.items():
        shaped &= chars[:, place] == code
    two = digits[:, 0::2] * 10 + digits[:, 1::2]  # month, day, year, hour, minute, second
    month, day, year, hour, minute, second = two.T
    year = np.where(year < 69, 2000 + year, 1900 + year)
    month_start = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    month_days = ((month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype("int64")
    valid = (shaped & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
             & (hour <= 23) & (minute <= 59) & (second <= 59))
    stamp = (month_start.astype("datetime64[D]") + (day - 1)).astype("datetime64[s]") + hour * 3600 + minute * 60 + second
    regular_rows = np.flatnonzero(regular)
    out[regular_rows[valid]] = stamp[valid]
    rest = np.setdiff1d(np.arange(n), regular_rows[valid], assume_unique=True)
    if len(rest):
        out[rest] = pd.to_datetime(pd.Series([stamps[k] for k in rest], dtype=object), format=TIME_FORMAT,
                                   errors="coerce").to_numpy(dtype="datetime64[us]")
    # pandas gives whole seconds where no text was a time: the same unit, whichever way it was read
    return pd.Series(out if (~np.isnat(out)).any() else out.astype("datetime64[s]"))


def _minutes(samples: pd.DataFrame, stream: str) -> pd.DataFrame:
    """Samples (``_row``, ``when``, ``value``, ``confidence``) as one row per local minute.

    A minute is keyed by its pass through the clock as well as its wall time: each time the
    local time runs backwards or stands still (an autumn clock change repeats an hour; a record
    written twice) a new pass begins, so a repeated local minute gives two rows instead of one
    mean of two different instants, and the ingest's duplicate check judges them as it judges
    per-minute sources.

    Heart rate: ``heart_rate_value`` = mean bpm rounded half up (``floor(mean + 0.5)``: 72.5
    reads 73, where Python's round would give 72), ``sample_count``, ``confidence`` = the lowest.
    Steps: ``steps`` = the sum (a count; Fitbit writes one record per minute).
    """
    when = samples["when"].to_numpy()
    stamp = when.astype("int64")
    # a sample no later than the one before starts a new pass: the clock went back (or a record repeats)
    clock_pass = np.concatenate([[0], np.cumsum(stamp[1:] <= stamp[:-1])]) if len(stamp) else stamp
    minute = when.astype("datetime64[m]")  # rounds towards the past, as floor does
    order = np.lexsort((minute, clock_pass))  # stable: the samples of a minute keep their order
    minute, clock_pass = minute[order], clock_pass[order]
    starts = np.flatnonzero(np.concatenate([[True], (minute[1:] != minute[:-1]) | (clock_pass[1:] != clock_pass[:-1])])) \
        if len(order) else np.zeros(0, dtype="int64")
    counts = np.diff(np.append(starts, len(order)))
    value = samples["value"].to_numpy(dtype="float64")[order]
    out = pd.DataFrame({"_row": np.minimum.reduceat(samples["_row"].to_numpy()[order], starts) if len(starts) else
                        np.zeros(0, dtype="int64"),
                        "datetime": minute[starts].astype(when.dtype)})
    total = np.add.reduceat(value, starts) if len(starts) else np.zeros(0)
    if stream == "heart_rate":
        out["heart_rate_value"] = np.floor(total / np.maximum(counts, 1) + 0.5).astype("int32")
        out["sample_count"] = counts.astype("int32")
        # the lowest confidence of the minute, missing only where no sample says one
        confidence = samples["confidence"].to_numpy(dtype="float64", na_value=np.inf)[order]
        lowest = np.minimum.reduceat(confidence, starts) if len(starts) else np.zeros(0)
        out["confidence"] = pd.array(np.where(np.isinf(lowest), 0, lowest).astype("int64"), dtype="Int32")
        out.loc[np.isinf(lowest), "confidence"] = pd.NA
        columns = ["_row", "datetime", "heart_rate_value", "sample_count", "confidence", "_records"]
    else:
        out["steps"] = np.round(total).astype("int64")
        columns = ["_row", "datetime", "steps", "_records"]
    out["_records"] = counts.astype("int64")
    return out[columns]
