"""Parquet files of a unified table (another site's extract, a partner's delivery).

The table is the one named in the file's key-value metadata (``explorer.table``), else the one
unified table whose columns the file has. A ``person_id`` column is taken as the *source*
identifier and pseudonymized at the door like every other reader's: the lake never holds a
source identifier, and ingest cannot tell a foreign pseudonym from a participant ID. A
``source_file`` column is replaced by this file's own hash (provenance in this lake is the raw
file). Columns the table does not have make the whole file refused with their names, rather
than dropped; values that do not fit a column's type quarantine their row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from explorer.catalog import default_catalog
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult

PARQUET_MAGIC = b"PAR1"
TABLE_KEY = b"explorer.table"


def unified_entries() -> dict:
    return {e.name: e for e in default_catalog() if e.kind == "table" and e.layer == "unified"}


class ParquetTableReader(Reader):
    format = "unified_parquet"
    order = 50
    description = "Parquet of a unified table (named in metadata explorer.table, or matched by columns)"

    def sniff(self, path: Path, head: bytes) -> str | None:
        if head[:4] != PARQUET_MAGIC:
            return "not Parquet (no PAR1 signature)"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        try:
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReaderError(f"cannot open as Parquet ({exc})") from None
        entry = self._table_of(schema)
        wanted = [c for c in entry.column_names if c != "source_file"]
        extra = [n for n in schema.names if n not in entry.column_names]
        if extra:
            raise ReaderError(f"column(s) {', '.join(extra)} are not in table {entry.name} "
                              f"({', '.join(wanted)}); drop them, or add them to data_catalog/{entry.name}.yaml")
        try:
            frame = parquet.read(columns=[c for c in wanted if c in schema.names]).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReaderError(f"cannot read the data of {entry.name} ({exc})") from None
        reasons = pd.Series([None] * len(frame), dtype=object)
        rows = pd.DataFrame({"_row": np.arange(1, len(frame) + 1)})
        for column in wanted:
            values = frame[column] if column in frame else pd.Series([None] * len(frame), dtype=object)
            converted, bad = _cast(values, entry.column(column).arrow_type)
            fresh = bad & reasons.isna().to_numpy()
            reasons[fresh] = [f"{column}: {v!r} is not a {entry.column(column).type}" for v in values[fresh]]
            rows[column] = converted
        if "person_id" in wanted:
            source = rows["person_id"]
            reasons[source.isna().to_numpy() & reasons.isna().to_numpy()] = "person_id: empty"
            rows["_source_person"] = source
            rows["person_id"] = context.pseudonymize(source.where(source.notna(), ""))
        bad = reasons.notna().to_numpy()
        records = [json.dumps(r, default=str) for r in frame.loc[bad].to_dict(orient="records")]
        quarantined = pd.DataFrame({"_row": rows.loc[bad, "_row"].to_numpy(), "table": entry.name,
                                    "reason": reasons[bad].to_numpy(), "record": records})
        return ReadResult(rows_read=len(frame), tables={entry.name: rows[~bad].reset_index(drop=True)}, quarantined=quarantined)

    @staticmethod
    def _table_of(schema: pa.Schema):
        entries = unified_entries()
        named = (schema.metadata or {}).get(TABLE_KEY)
        if named is not None:
            name = named.decode("utf-8", "replace")
            if name not in entries:
                raise ReaderError(f"metadata explorer.table names {name!r}, not a unified table ({', '.join(sorted(entries))})")
            return entries[name]
        columns = set(schema.names) - {"source_file"}
        # a table fits if the file has its required columns; of several, the one that leaves the
        # fewest columns over (extra columns are then refused by name, not dropped)
        fits = [e for e in entries.values() if columns & set(e.column_names)
                and all(c.name in columns for c in e.schema if not c.nullable)]
        if fits:
            fewest = min(len(columns - set(e.column_names)) for e in fits)
            fits = [e for e in fits if len(columns - set(e.column_names)) == fewest]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise ReaderError(f"columns {', '.join(sorted(columns))} are not those of any unified table; "
                              "name the table in the file's metadata (explorer.table)")
        raise ReaderError(f"columns fit tables {', '.join(e.name for e in fits)}; name one in the file's metadata (explorer.table)")


def _cast(values: pd.Series, arrow_type: pa.DataType) -> tuple[pd.Series, np.ndarray]:
    """Values in ``arrow_type`` and which non-missing values could not be converted."""
    present = values.notna().to_numpy()
    if pa.types.is_timestamp(arrow_type):
        converted = pd.to_datetime(values, errors="coerce", utc=arrow_type.tz is not None)
        if arrow_type.tz is None and getattr(converted.dt, "tz", None) is not None:
            converted = converted.dt.tz_localize(None)
    elif pa.types.is_date(arrow_type):
        converted = pd.to_datetime(values, errors="coerce").dt.date
    elif pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        try:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        except (TypeError, ValueError, OverflowError):  # e.g. uint64 beyond int64: read value by value
            numbers = pd.Series([_float_or_nan(v) for v in values], index=values.index, dtype="float64")
        finite = np.isfinite(numbers.fillna(0).to_numpy())
        if pa.types.is_integer(arrow_type):
            info = np.iinfo(arrow_type.to_pandas_dtype())
            whole = (numbers.fillna(0) == numbers.fillna(0).round()).to_numpy()
            fits = ((numbers.fillna(0) >= info.min) & (numbers.fillna(0) <= info.max)).to_numpy()
            keep = finite & whole & fits
            converted = pd.array([int(v) if ok and v == v else None for v, ok in zip(numbers, keep)], dtype="Int64")
            converted = pd.Series(converted, index=values.index)
        else:
            converted = numbers.where(finite)
    elif pa.types.is_boolean(arrow_type):
        mapping = {True: True, False: False, "true": True, "false": False, "True": True, "False": False, 1: True, 0: False}
        converted = values.map(lambda v: mapping.get(v) if v is not None else None).astype("boolean")
    else:
        converted = values.astype("string").astype(object).where(values.notna(), None)
    return converted, present & pd.isna(converted).to_numpy()


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
