"""CSV readers: All of Us-style Fitbit tables, residence history, long-format lab results,
area-level indices. Columns are matched by name; every value is read as text first, so a bad
value quarantines its row with the reason instead of failing the file."""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from explorer.catalog.units import MARKER_UNITS, to_si
from explorer.errors import shorten
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult
from explorer.ingest.readers.lab_values import ABNORMAL_FLAGS, declared_options, parse_results, parse_times


HEAD = 65536


@lru_cache(maxsize=4)
def _header(head: bytes) -> tuple[str, ...] | str:
    """Column names from the first line, or a reason the bytes are not a UTF-8 CSV header.

    Cached: every CSV reader's sniff asks it of the same first bytes, and a file of one long
    line (a FHIR bundle, a day of a Fitbit export) would otherwise be split into thousands of
    "columns" once per reader."""
    if not head:
        return "empty file (0 bytes)"
    text = head.removeprefix(b"\xef\xbb\xbf")
    if text.lstrip()[:1] in (b"{", b"["):  # cheap to tell, and a bundle's one line would split into thousands
        return "a JSON document, not a CSV header"
    if len(head) >= HEAD and b"\n" not in text:  # no header is that long: binary, or one-line text
        return f"first line is longer than {HEAD // 1024} KB: not a CSV header"
    line = text.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"first line is not UTF-8 text (byte {exc.start}: {line[exc.start:exc.start + 1]!r})"
    if "," not in decoded and len(decoded.split()) < 2:
        return "first line is not a comma-separated header"
    return tuple(c.strip().strip('"') for c in decoded.split(","))


def semicolon_head(head: bytes) -> bytes | None:
    """The first bytes with the header's semicolons as commas when the header is separated by
    semicolons (as spreadsheets write CSV where the comma is the decimal mark), else None."""
    end = head.find(b"\n")
    first = head if end < 0 else head[:end]
    if b";" not in first or b"," in first:
        return None
    return first.replace(b";", b",") + head[len(first):]


def _loose(name: str) -> str:
    """A column name without case, spaces or punctuation: 'Person ID' and 'person_id' meet."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def read_text_table(path: Path, null_values: list[str] | None = None, delimiter: str = ",") -> pd.DataFrame:
    """Every column as text (pyarrow's parser, checked UTF-8), empty cells as missing; with
    ``null_values``, only those cells are missing (a reader that counts ``NA`` as a declared code
    passes ``[""]``), else pyarrow's list (``NA``, ``NULL``, ``NaN``... too)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD)
            header = _header(semicolon_head(head) if delimiter == ";" else head)
        if isinstance(header, str):
            raise ReaderError(header)
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                               parse_options=pacsv.ParseOptions(delimiter=delimiter),
                               convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in header},
                                                                    strings_can_be_null=True,
                                                                    **({"null_values": null_values} if null_values is not None else {})))
        frame = table.to_pandas()
    except pa.ArrowInvalid as exc:
        message = str(exc).splitlines()[0]
        if "utf8" in message.lower():
            raise ReaderError(f"not valid UTF-8 text ({message}); re-export the file as UTF-8") from None
        raise ReaderError(f"not a well-formed CSV: {message}") from None
    frame.insert(0, "_row", np.arange(1, len(frame) + 1))
    return frame


def _records(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """The original values of rejected rows, as JSON text, so a quarantined row keeps every field."""
    columns = [c for c in frame.columns if c != "_row"]
    return [json.dumps(dict(zip(columns, values)), default=str) for values in frame.loc[mask, columns].itertuples(index=False)]


class CsvTableReader(Reader):
    """A CSV whose header holds ``required`` columns; ``convert`` maps it onto ``table``."""

    required: ClassVar[tuple[str, ...]] = ()
    forbidden: ClassVar[tuple[str, ...]] = ()  # a column that says the file is another format
    table: ClassVar[str] = ""

    def sniff(self, path: Path, head: bytes) -> str | None:
        columns = _header(head)
        if isinstance(columns, str):
            return columns
        names = frozenset(columns)
        missing = [c for c in self.required if c not in names]
        if missing:
            return f"needs column(s) {', '.join(missing)}; the header has {shorten(', '.join(columns) or 'nothing', 100)}"
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            return f"column(s) {', '.join(repeated)} appear more than once in the header: which one is meant?"
        clash = [c for c in self.forbidden if c in columns]
        if clash:
            return f"has column(s) {', '.join(clash)} of another format"
        return None

    #: what would make a near-miss file readable (shown when no reader accepted it)
    remedy: ClassVar[str] = ("rename those columns in the header (names are matched exactly), or add a reader for "
                             "this layout through the explorer.readers entry points")

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        """Overlap of the required columns and the header's, as matched columns over all columns
        of either (a Jaccard index: a reader needing two of ten columns is not nearer than one
        needing nine of them); a column whose name differs only in case, spaces or punctuation
        counts 0.9 and is named. With what is missing and what to do."""
        columns = _header(head)
        if isinstance(columns, str) or not self.required:
            return None
        loose = {_loose(c): c for c in columns}
        exact = [c for c in self.required if c in columns]
        renamed = {c: loose[_loose(c)] for c in self.required if c not in columns and _loose(c) in loose}
        missing = [c for c in self.required if c not in columns and c not in renamed]
        matched = len(exact) + len(renamed)
        score = (len(exact) + 0.9 * len(renamed)) / (len(self.required) + len(set(columns)) - matched)
        parts = [f"it needs column(s) {', '.join(self.required)}; this header has {len(exact)} of them"]
        if renamed:
            parts.append("spelled differently: " + ", ".join(f"{found!r} for {wanted}" for wanted, found in renamed.items()))
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        return score, "; ".join(parts) + f". To read it: {self.remedy}"

    def read(self, path: Path, context: Context) -> ReadResult:
        frame = read_text_table(path)
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise ReaderError(f"column(s) {', '.join(missing)} missing")
        rows, reasons = self.convert(frame, context)
        bad = reasons.notna().to_numpy()
        quarantined = pd.DataFrame({"_row": frame.loc[bad, "_row"].to_numpy(), "table": self.table,
                                    "reason": reasons[bad].to_numpy(), "record": _records(frame, bad)})
        return ReadResult(rows_read=len(frame), tables={self.table: rows[~bad].reset_index(drop=True)}, quarantined=quarantined)

    def convert(self, frame: pd.DataFrame, context) -> tuple[pd.DataFrame, pd.Series]:
        raise NotImplementedError


class Problems:
    """Collects the first reason per row while conversions run."""

    def __init__(self, n: int):
        self.reasons = pd.Series([None] * n, dtype=object)

    def flag(self, mask, reason) -> None:
        mask = np.asarray(mask, dtype=bool) & self.reasons.isna().to_numpy()
        if isinstance(reason, pd.Series):
            self.reasons[mask] = reason[mask].to_numpy()
        else:
            self.reasons[mask] = reason

    def number(self, frame, column, kind=float):
        values = pd.to_numeric(frame[column], errors="coerce")
        self.flag(frame[column].isna(), f"{column}: empty")
        self.flag(values.isna() & frame[column].notna(), "{}: not a number".format(column))
        infinite = ~np.isfinite(values.fillna(0).to_numpy(dtype="float64"))
        self.flag(infinite, f"{column}: not a finite number")
        return values.where(~infinite)

    def datetime(self, frame, column, fmt=None):
        values = pd.to_datetime(frame[column], errors="coerce", format=fmt)
        self.flag(values.isna(), f"{column}: not a date-time (expected {fmt or 'ISO 8601'})")
        return values

    def date(self, frame, column, required=True):
        values = pd.to_datetime(frame[column], errors="coerce", format="%Y-%m-%d")
        bad = values.isna() & (frame[column].notna() if not required else True)
        self.flag(bad, f"{column}: not a date (expected YYYY-MM-DD)")
        return values.dt.date

    def person(self, frame, column, context):
        self.flag(frame[column].isna(), f"{column}: empty")
        return pd.Series(context.pseudonymize(frame[column].fillna("")), index=frame.index)


class FitbitMinuteReader(CsvTableReader):
    value_column: ClassVar[str] = ""
    unified_column: ClassVar[str] = ""

    def read(self, path: Path, context: Context) -> ReadResult:
        """Fast path first: pyarrow parses the typed columns in C. Only a file with a value that
        does not parse takes the text path, which finds and explains every bad row."""
        try:
            table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                   convert_options=pacsv.ConvertOptions(
                                       column_types={"person_id": pa.string(), "datetime": pa.timestamp("s"),
                                                     self.value_column: pa.int64()},
                                       timestamp_parsers=["%Y-%m-%d %H:%M:%S"], strings_can_be_null=True,
                                       include_columns=["person_id", "datetime", self.value_column]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            return super().read(path, context)
        if any(table[c].null_count for c in table.column_names):
            return super().read(path, context)
        source = table["person_id"].to_pandas()
        rows = pd.DataFrame({"_row": np.arange(1, table.num_rows + 1), "person_id": context.pseudonymize(source),
                             "datetime": table["datetime"].to_pandas().astype("datetime64[us]"),
                             self.unified_column: table[self.value_column].to_pandas(), "_source_person": source})
        return ReadResult(rows_read=table.num_rows, tables={self.table: rows})

    def convert(self, frame, context):
        p = Problems(len(frame))
        person = p.person(frame, "person_id", context)
        when = p.datetime(frame, "datetime", "%Y-%m-%d %H:%M:%S")
        value = p.number(frame, self.value_column)
        p.flag(value.abs() > 1e9, f"{self.value_column}: implausibly large")
        safe = value.where(value.abs() <= 1e9)
        rows = pd.DataFrame({"_row": frame["_row"], "person_id": person, "datetime": when,
                             self.unified_column: safe.round().astype("Int64"), "_source_person": frame["person_id"]})
        return rows, p.reasons


class AouHeartRateReader(FitbitMinuteReader):
    format = "fitbit_aou_heart_rate_minute"
    order = 20
    description = "All of Us heart_rate_minute_level export: person_id, datetime, heart_rate_value"
    required = ("person_id", "datetime", "heart_rate_value")
    forbidden = ("steps",)  # a file with both streams is not one this reader can take whole
    table = "heart_rate_minute"
    value_column = unified_column = "heart_rate_value"


class AouStepsReader(FitbitMinuteReader):
    format = "fitbit_aou_steps_intraday"
    order = 21
    description = "All of Us steps_intraday export: person_id, datetime, steps"
    required = ("person_id", "datetime", "steps")
    forbidden = ("heart_rate_value",)
    table = "steps_minute"
    value_column = unified_column = "steps"


class AouSleepLevelReader(CsvTableReader):
    format = "fitbit_aou_sleep_level"
    order = 22
    description = "All of Us sleep_level export: person_id, sleep_date, is_main_sleep, level, start_datetime, duration_in_min"
    required = ("person_id", "sleep_date", "is_main_sleep", "level", "start_datetime", "duration_in_min")
    table = "sleep_level"
    LEVELS = {"wake", "light", "deep", "rem", "asleep", "restless", "awake"}

    def convert(self, frame, context):
        p = Problems(len(frame))
        person = p.person(frame, "person_id", context)
        start = p.datetime(frame, "start_datetime", "%Y-%m-%d %H:%M:%S")
        minutes = p.number(frame, "duration_in_min")
        level = frame["level"].str.strip().str.lower()
        p.flag(~level.isin(self.LEVELS), "level: " + frame["level"].fillna("(empty)").astype(str)
               + " is not a Fitbit sleep level (" + ", ".join(sorted(self.LEVELS)) + ")")
        main = frame["is_main_sleep"].str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
        p.flag(main.isna(), "is_main_sleep: expected true or false")
        rows = pd.DataFrame({"_row": frame["_row"], "person_id": person, "start_datetime": start, "level": level,
                             "duration_minutes": minutes, "is_main_sleep": main.astype("boolean"),
                             "_source_person": frame["person_id"]})
        return rows, p.reasons


class ResidenceReader(CsvTableReader):
    format = "residence_history_csv"
    order = 10  # first: wearable readers take each person's time zone from where they lived
    description = "Residence history: person_id, start_date, end_date, latitude, longitude[, zip3, tract_geoid, block_group_geoid]"
    required = ("person_id", "start_date", "end_date", "latitude", "longitude")
    table = "residence"

    def convert(self, frame, context):
        p = Problems(len(frame))
        person = p.person(frame, "person_id", context)
        start = p.date(frame, "start_date")
        end = p.date(frame, "end_date", required=False)
        lat, lon = p.number(frame, "latitude"), p.number(frame, "longitude")
        p.flag((lat.abs() > 90) | (lon.abs() > 180), "latitude/longitude outside -90..90 / -180..180")
        p.flag(pd.Series([e is not None and s is not None and e == e and s == s and e < s for s, e in zip(start, end)]),
               "end_date before start_date")
        rows = pd.DataFrame({"_row": frame["_row"], "person_id": person, "start_date": start,
                             "end_date": end.where(frame["end_date"].notna(), None), "latitude": lat, "longitude": lon,
                             "zip3": frame.get("zip3"), "tract_geoid": frame.get("tract_geoid"),
                             "block_group_geoid": frame.get("block_group_geoid")})
        return rows, p.reasons


class LabLongCsvReader(CsvTableReader):
    """Lab results, one row per test, as laboratories and EHR extracts write them.

    Times and results are parsed by :mod:`explorer.ingest.readers.lab_values`: date-only times
    kept with precision ``day``, ISO 8601 with ``T``, ``Z`` or an offset converted to the
    participant's local time on that date (the measurement table is local wall-clock time),
    US or day-first slash dates told apart per file; censored results (``<0.5``) kept as the
    limit with ``value_comparator``, abnormal flags (``5.0 H``, or a ``flag`` column) in
    ``result_flag``. A declared missing-result code is counted as ignored ("missing result
    code"), never stored. A result whose LOINC code or unit has no SI conversion lands with
    ``value_si`` empty and ``si_note`` saying why; a bad value, time, person or code, or a
    unit stated but not of the analyte's kind (creatinine in ``%``: the value is in doubt),
    quarantines its row.
    """

    format = "lab_results_long_csv"
    order = 30
    description = "Lab results, one row per test: participant_id, specimen_collected, loinc_code, result, unit"
    required = ("participant_id", "specimen_collected", "loinc_code", "result", "unit")
    table = "measurement"
    #: an optional column of abnormal flags (HL7 v2 OBX-8), used where the result cell has none
    flag_column: ClassVar[str] = "flag"

    def sniff(self, path: Path, head: bytes) -> str | None:
        return super().sniff(path, semicolon_head(head) or head)  # a ';'-separated export is read too

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        return super().nearness(path, semicolon_head(head) or head)

    def read(self, path: Path, context: Context) -> ReadResult:
        with path.open("rb") as handle:
            delimiter = ";" if semicolon_head(handle.read(HEAD)) else ","
        frame = read_text_table(path, null_values=[""], delimiter=delimiter)  # "NA" is a missing code to count
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise ReaderError(f"column(s) {', '.join(missing)} missing")
        return self.lab_result(frame, context)

    def lab_result(self, frame: pd.DataFrame, context: Context) -> ReadResult:
        """Accepted, quarantined and ignored records of ``frame`` (one row per result)."""
        rows, reasons, ignored = self.convert_labs(frame, context)
        bad = reasons.notna().to_numpy() & ~ignored
        kept = ~bad & ~ignored
        quarantined = pd.DataFrame({"_row": frame.loc[bad, "_row"].to_numpy(), "table": self.table,
                                    "reason": reasons[bad].to_numpy(), "record": _records(frame, bad)})
        return ReadResult(rows_read=len(frame), tables={self.table: rows[kept].reset_index(drop=True)},
                          quarantined=quarantined, ignored=Counter({"missing result code": int(ignored.sum())})
                          if ignored.any() else Counter())

    def convert(self, frame, context):
        rows, reasons, _ignored = self.convert_labs(frame, context)
        return rows, reasons

    def convert_labs(self, frame, context) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
        """Rows of ``measurement``, the reason each bad row is quarantined, and which rows hold a
        declared missing-result code (ignored, whatever else they hold)."""
        options = declared_options()
        p = Problems(len(frame))
        person = p.person(frame, "participant_id", context)
        try:
            times = parse_times(frame["specimen_collected"], date_format=options["date_format"])
        except ValueError as exc:  # slash dates whose order nothing in the file settles
            raise ReaderError(str(exc)) from None
        p.flag(times["problem"].notna(), times["problem"])
        when = self._local_times(times, person, p, context)
        results = parse_results(frame["result"], decimal_comma=options["decimal_comma"],
                                missing_codes=options["missing_codes"])
        ignored = results["missing"].to_numpy()
        p.flag(results["problem"].notna(), results["problem"])
        value = results["value"]
        flag = results["flag"]
        if self.flag_column in frame:
            given = frame[self.flag_column].str.strip().str.upper()
            p.flag(given.notna() & ~given.isin(ABNORMAL_FLAGS),
                   f"{self.flag_column}: not an HL7 table 0078 abnormal flag ({', '.join(ABNORMAL_FLAGS)})")
            clash = flag.notna() & given.notna() & (flag != given)
            p.flag(clash, "result: flag " + flag.fillna("") + f" after the number disagrees with {self.flag_column} "
                   + given.fillna("") + "; which one did the laboratory report?")
            flag = flag.where(flag.notna(), given.where(given.notna(), None))
        loinc = frame["loinc_code"].str.strip()
        p.flag(loinc.isna() | ~loinc.fillna("").str.fullmatch(r"\d{1,7}-\d"), "loinc_code: not a LOINC code (digits-check digit)")
        unit = frame["unit"].str.strip().where(frame["unit"].notna(), None)
        value_si, unit_si, si_note = si_values(loinc.fillna(""), value, unit)
        # a unit stated but not of the analyte's kind (creatinine in %) puts the value itself in doubt:
        # quarantined, as before; an empty unit or a code without a conversion only lacks an SI form
        stated = unit.fillna("").astype(str).str.strip() != ""
        p.flag(loinc.fillna("").isin(list(MARKER_UNITS)) & stated & si_note.notna(), si_note)
        p.flag(value <= 0, "result: zero or negative, impossible for a concentration or count")
        day = when.dt.normalize()
        p.flag(np.where(times["precision"] == "day", day > context.now.normalize(), when > context.now),
               "specimen_collected: in the future")
        rows = pd.DataFrame({"_row": frame["_row"], "person_id": person, "measurement_datetime": when,
                             "datetime_precision": times["precision"],
                             "loinc_code": loinc, "measurement_name": frame.get("test_name"),
                             "value_as_number": value, "value_comparator": results["comparator"],
                             "result_flag": flag, "unit": unit, "value_si": value_si, "unit_si": unit_si,
                             "si_note": si_note, "_source_person": frame["participant_id"]})
        return rows, p.reasons, ignored

    @staticmethod
    def _local_times(times: pd.DataFrame, person: pd.Series, p: Problems, context: Context) -> pd.Series:
        """Wall-clock times as the measurement table keeps them: a time with a UTC offset or ``Z``
        converted to the zone the participant lived in on that (UTC) date, from the residence
        history or ``--default-time-zone``; with neither, the row is quarantined (a zone is never
        guessed)."""
        when = times["wall"].copy()
        instant = times["offset_minutes"].notna().to_numpy()
        if not instant.any():
            return when
        utc = when[instant] - pd.to_timedelta(times["offset_minutes"][instant], unit="min")
        codes, days = context.reference.local_days(pd.Series(np.asarray(person)[instant]), utc.reset_index(drop=True))
        zones = pd.Series(days["time_zone"].to_numpy()[codes], dtype=object)
        utc = utc.reset_index(drop=True)
        local = pd.Series(pd.NaT, index=utc.index, dtype="datetime64[ns]")
        for zone in zones.dropna().unique():  # one vectorised conversion per zone, not per row
            of_zone = (zones == zone).to_numpy()
            local[of_zone] = utc[of_zone].dt.tz_localize("UTC").dt.tz_convert(zone).dt.tz_localize(None).to_numpy()
        no_zone = np.zeros(len(when), dtype=bool)
        no_zone[np.flatnonzero(instant)[zones.isna().to_numpy()]] = True
        p.flag(no_zone, "specimen_collected: the time carries a UTC offset but no residence of this participant covers "
               "that date, so its local time is unknown; ingest the residence history first (or with this file), or "
               "pass --default-time-zone")
        when[instant] = local.to_numpy()
        return when


def si_values(loinc: pd.Series, value: pd.Series, unit: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """``value_si``, ``unit_si`` and ``si_note`` per row (:func:`explorer.catalog.units.to_si`):
    a LOINC code without a conversion, an empty unit or a unit not of that analyte's kind leaves
    ``value_si`` empty with the reason in ``si_note``; the row keeps its value as received."""
    pairs = pd.DataFrame({"code": loinc.to_numpy(), "unit": pd.Series(unit, dtype=object).to_numpy()})
    pairs["unit"] = pairs["unit"].where(pairs["unit"].notna(), "")
    factor = pd.Series(np.nan, index=pairs.index)
    unit_si = pd.Series([None] * len(pairs), index=pairs.index, dtype=object)
    note = pd.Series([None] * len(pairs), index=pairs.index, dtype=object)
    # one decision per distinct (code, unit): a file holds few of them in many rows
    for (code, given), rows in pairs.groupby(["code", "unit"], sort=False).groups.items():
        if code not in MARKER_UNITS:
            why = (f"LOINC {code} has no SI conversion in this suite (explorer.catalog.units); value kept as received"
                   if code else None)
        elif not str(given).strip():
            why = f"unit empty: LOINC {code} needs one of {', '.join(sorted(MARKER_UNITS[code][1]))} to convert"
        else:
            one, si_unit, why = to_si(code, 1.0, given)
            if why is None:
                factor[rows] = one
                unit_si[rows] = si_unit
        note[rows] = why
    value_si = pd.Series(np.asarray(value, dtype="float64") * factor.to_numpy(), index=loinc.index)
    return value_si, pd.Series(unit_si.to_numpy(), index=loinc.index), pd.Series(note.to_numpy(), index=loinc.index)


class LabColumnMapReader(CsvTableReader):
    """The small mapping file that says what each column of a wide lab file holds. Read before
    the wide files of the same ingest (a reference reader), kept in ``lab_column_map``."""

    format = "lab_column_map_csv"
    order = 6
    description = "Wide-lab mapping: column_name, loinc_code, unit[, test_name]"
    required = ("column_name", "loinc_code", "unit")
    table = "lab_column_map"

    def convert(self, frame, context):
        p = Problems(len(frame))
        column = frame["column_name"].str.strip()
        p.flag(column.isna(), "column_name: empty")
        loinc = frame["loinc_code"].str.strip()
        p.flag(~loinc.fillna("").str.fullmatch(r"\d{1,7}-\d"), "loinc_code: not a LOINC code (digits-check digit)")
        unit = frame["unit"].str.strip()
        known = [to_si(code, 1.0, u)[2] is None for code, u in zip(loinc.fillna(""), unit.fillna(""))]
        p.flag(~np.asarray(known), "unit: not a unit this suite converts for that LOINC code (see explorer.catalog.units)")
        p.flag(column.duplicated(keep=False), "column_name: mapped twice in this file")
        rows = pd.DataFrame({"_row": frame["_row"], "column_name": column, "loinc_code": loinc, "unit": unit,
                             "test_name": frame.get("test_name")})
        return rows, p.reasons


class LabWideCsvReader(CsvTableReader):
    """Lab results with one row per specimen and one column per test, named as in a mapping
    file (``lab_column_map``). Each non-empty result cell is one source record: a specimen
    row with a bad glucose still delivers its creatinine, and the counts add up per cell."""

    format = "lab_results_wide_csv"
    order = 31
    description = "Wide lab results: participant_id, specimen_collected, then one column per mapped test"
    required = ("participant_id", "specimen_collected")
    forbidden = ("loinc_code", "result", "person_id")
    table = "measurement"
    keys: ClassVar[tuple[str, ...]] = ("participant_id", "specimen_collected")

    def sniff(self, path: Path, head: bytes) -> str | None:
        return super().sniff(path, semicolon_head(head) or head)  # a ';'-separated export is read too

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        return super().nearness(path, semicolon_head(head) or head)

    def read(self, path: Path, context: Context) -> ReadResult:
        with path.open("rb") as handle:
            delimiter = ";" if semicolon_head(handle.read(HEAD)) else ","
        frame = read_text_table(path, null_values=[""], delimiter=delimiter)
        results = [c for c in frame.columns if c not in ("_row", *self.keys)]
        if not results:
            raise ReaderError("no result columns after participant_id, specimen_collected")
        mapping = context.reference.lab_columns()
        unmapped = [c for c in results if c not in mapping]
        if unmapped:
            raise ReaderError(f"column(s) {shorten(', '.join(unmapped), 200)} have no mapping; deliver a mapping file "
                              "(column_name,loinc_code,unit[,test_name]) with them, then ingest again with --retry-quarantined")
        cells = frame.rename(columns={"_row": "source_row"}).melt(
            id_vars=["source_row", *self.keys], value_vars=results, var_name="column_name", value_name="result")
        cells = cells[cells["result"].notna()].sort_values(["source_row", "column_name"], kind="stable", ignore_index=True)
        cells.insert(0, "_row", np.arange(1, len(cells) + 1))
        cells["loinc_code"] = [mapping[c][0] for c in cells["column_name"]]
        cells["unit"] = [mapping[c][1] for c in cells["column_name"]]
        cells["test_name"] = [mapping[c][2] for c in cells["column_name"]]
        return LabLongCsvReader().lab_result(cells, context)  # the same times, results and SI notes as long files


class WeatherStationCsvReader(CsvTableReader):
    """Daily weather-station observations in GHCN-Daily style, one row per station, day and
    element. Values are stored in SI (degC, mm) beside the value and unit as received; a unit
    that is not one of the element's known spellings is quarantined, never guessed (GHCN writes
    temperatures in tenths of a degree: read as degrees they would be ten times too hot)."""

    format = "weather_station_csv"
    order = 55
    description = "Weather-station daily CSV (GHCN-Daily style): station_id, latitude, longitude, date, element, value, units"
    required = ("station_id", "latitude", "longitude", "date", "element", "value", "units")
    table = "weather_station_daily"
    TEMPERATURE = {"tenths of degC": lambda v: v / 10.0, "degC": lambda v: v, "C": lambda v: v,
                   "degF": lambda v: (v - 32.0) * 5.0 / 9.0, "K": lambda v: v - 273.15}
    PRECIPITATION = {"tenths of mm": lambda v: v / 10.0, "mm": lambda v: v, "in": lambda v: v * 25.4}
    ELEMENTS = {"TMAX": ("degC", TEMPERATURE), "TMIN": ("degC", TEMPERATURE), "TAVG": ("degC", TEMPERATURE),
                "PRCP": ("mm", PRECIPITATION)}

    def convert(self, frame, context):
        p = Problems(len(frame))
        p.flag(frame["station_id"].isna(), "station_id: empty")
        latitude, longitude = p.number(frame, "latitude"), p.number(frame, "longitude")
        p.flag((latitude.abs() > 90) | (longitude.abs() > 180), "latitude/longitude: outside -90..90 / -180..180")
        day = p.date(frame, "date")
        element = frame["element"].str.strip().str.upper()
        p.flag(~element.isin(list(self.ELEMENTS)), f"element: expected one of {', '.join(self.ELEMENTS)}")
        value = p.number(frame, "value")
        units = frame["units"].str.strip()
        si = pd.Series(np.nan, index=frame.index)
        unit_si = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        for name, (target, conversions) in self.ELEMENTS.items():
            of_element = (element == name).to_numpy()
            known = units.isin(list(conversions)).to_numpy()
            p.flag(of_element & ~known, f"units: not a unit for {name}; expected one of {', '.join(conversions)}")
            for unit, convert in conversions.items():
                mask = of_element & (units == unit).to_numpy()
                si[mask] = convert(value[mask])
                unit_si[mask] = target
        rows = pd.DataFrame({"_row": frame["_row"], "station_id": frame["station_id"], "latitude": latitude,
                             "longitude": longitude, "date": day, "element": element, "value": si, "unit": unit_si,
                             "source_value": value, "source_unit": units})
        return rows, p.reasons


class AreaIndexReader(CsvTableReader):
    """Tract-level indices, one column per variable: ``tract_geoid[, year], <variable>...``."""

    format = "area_index_csv"
    order = 50
    description = "Area-level CSV: tract_geoid, optional year, then one column per index (lead risk decile, deprivation)"
    required = ("tract_geoid",)
    forbidden = ("person_id", "participant_id")
    table = "area_exposure"
    UNITS = {"lead_risk_decile": "1", "deprivation_index": "1"}
    #: SVI's column families, as its documentation defines them: percentile rankings 0-1, percentages
    PREFIX_UNITS = {"rpl_": "1", "ep_": "%", "svi_rpl_": "1", "svi_ep_": "%"}
    MISSING = -999

    def convert(self, frame, context):
        p = Problems(len(frame))
        variables = [c for c in frame.columns if c not in ("_row", "tract_geoid", "year")]
        if not variables:
            raise ReaderError("no value columns besides tract_geoid and year")
        p.flag(~frame["tract_geoid"].fillna("").str.fullmatch(r"\d{11}"), "tract_geoid: expected 11 digits")
        year = p.number(frame, "year") if "year" in frame else pd.Series([np.nan] * len(frame))
        values = {v: p.number(frame, v) for v in variables}
        for v in variables:  # SVI and Census tables write -999 for a value they could not compute
            p.flag(values[v] == self.MISSING, f"{v}: -999, the missing-value code of SVI and Census tables, is not stored "
                   "(this row is quarantined whole; CDC's own SVI layout, read by cdc_svi_csv, keeps the row's other values)")
        if "lead_risk_decile" in values:
            v = values["lead_risk_decile"]
            p.flag((v < 1) | (v > 10) | (v != v.round()), "lead_risk_decile: expected a whole decile 1-10")
        rows = pd.DataFrame({"_row": frame["_row"], "area_type": "tract", "area_id": frame["tract_geoid"],
                             "year": year.astype("Int64"),
                             "_values": [dict(zip(variables, vals)) for vals in zip(*[values[v] for v in variables])]})
        return rows, p.reasons

    def read(self, path: Path, context: Context) -> ReadResult:
        result = super().read(path, context)
        wide = result.tables[self.table]
        records = []
        for row in wide.to_dict("records"):
            for variable, value in row["_values"].items():
                records.append({"_row": row["_row"], "area_type": row["area_type"], "area_id": row["area_id"],
                                "year": row["year"], "variable": variable, "value": float(value),
                                "unit": self.UNITS.get(variable) or next(
                                    (u for prefix, u in self.PREFIX_UNITS.items() if variable.lower().startswith(prefix)), None)})
        result.tables[self.table] = pd.DataFrame(records, columns=["_row", "area_type", "area_id", "year", "variable", "value", "unit"])
        return result


class AouDailySummaryReader(CsvTableReader):
    """All of Us daily Fitbit summaries: every numeric column kept under its export name."""

    date_column: ClassVar[str] = "date"
    text_columns: ClassVar[tuple[str, ...]] = ()
    bool_columns: ClassVar[tuple[str, ...]] = ()

    def convert(self, frame, context):
        p = Problems(len(frame))
        rows = pd.DataFrame({"_row": frame["_row"], "person_id": p.person(frame, "person_id", context),
                             "date": p.date(frame, self.date_column), "_source_person": frame["person_id"]})
        for column in self.required:
            if column in ("person_id", self.date_column):
                continue
            if column in self.text_columns:
                rows[column] = frame[column]
                p.flag(frame[column].isna(), f"{column}: empty")
            elif column in self.bool_columns:
                value = frame[column].str.strip().str.lower().map({"true": True, "false": False})
                p.flag(value.isna(), f"{column}: expected true or false")
                rows[column] = value.astype("boolean")
            else:
                value = p.number(frame, column)
                p.flag(value < 0, f"{column}: negative")
                rows[column] = value
        return rows, p.reasons


class AouActivitySummaryReader(AouDailySummaryReader):
    format = "fitbit_aou_activity_summary"
    order = 23
    description = "All of Us activity_summary export: steps, active minutes and calories per day"
    required = ("person_id", "date", "activity_calories", "calories_bmr", "calories_out", "elevation",
                "fairly_active_minutes", "floors", "lightly_active_minutes", "marginal_calories",
                "sedentary_minutes", "steps", "very_active_minutes")
    table = "fitbit_activity_daily"


class AouSleepSummaryReader(AouDailySummaryReader):
    format = "fitbit_aou_sleep_daily_summary"
    order = 23
    description = "All of Us sleep_daily_summary export: minutes in bed, asleep and per stage per sleep"
    required = ("person_id", "sleep_date", "is_main_sleep", "minute_in_bed", "minute_asleep", "minute_after_wakeup",
                "minute_awake", "minute_restless", "minute_deep", "minute_light", "minute_rem", "minute_wake")
    date_column = "sleep_date"
    bool_columns = ("is_main_sleep",)
    table = "fitbit_sleep_daily"


class AouHeartRateSummaryReader(AouDailySummaryReader):
    format = "fitbit_aou_heart_rate_summary"
    order = 23
    description = "All of Us heart_rate_summary export: minutes per heart-rate zone per day"
    required = ("person_id", "date", "zone_name", "min_heart_rate", "max_heart_rate", "minute_in_zone", "calorie_count")
    text_columns = ("zone_name",)
    table = "fitbit_heart_rate_zone_daily"
