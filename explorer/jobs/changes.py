"""Which partitions of a step's output an input's new versions touch, read from the Delta log.

Between the version a step last read and the current one, every commit lists the data files it
added and removed. Rows in either kind of file are rows that appeared or disappeared, so their
person buckets (and days) are exactly the partitions to recompute; rows in untouched files
cannot have changed. A MERGE that rewrote a file lists the rewritten copy's unchanged rows too,
which only recomputes a few partitions more than needed, never fewer. When the log between the
two versions is incomplete, or a removed file is gone (vacuumed), the answer is None: recompute all.

Most commits answer from their own log: an add action's statistics hold each column's minimum
and maximum, and since a bucket is a contiguous range of pseudonyms, the buckets from the
bucket of the smallest person_id to that of the largest, times the days from the earliest to
the latest timestamp, cover every row of the file. Only files without such statistics are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import unquote

from explorer.jobs.steps import bucket_sql
from explorer.lake.engine import new_connection


@dataclass
class Changes:
    """Touched person buckets and, when a time column was given, (bucket, day) pairs."""

    buckets: set[int] = field(default_factory=set)
    bucket_days: set[tuple[int, date]] = field(default_factory=set)
    files: int = 0

    def __bool__(self) -> bool:
        return bool(self.files)


def changed_actions(table_path, old: int, new: int, storage=None) -> list[dict] | None:
    """The add and remove actions (with their statistics, where written) of ``old + 1 .. new``.
    ``table_path``: the table's folder, or its key in ``storage`` (a lake on object storage)."""
    files = []
    for version in range(old + 1, new + 1):
        try:
            if storage is None:
                text = (Path(table_path) / "_delta_log" / f"{version:020d}.json").read_text(encoding="utf-8")
            else:
                text = storage.read_text(f"{table_path}/_delta_log/{version:020d}.json")
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action and action[kind].get("dataChange", True):
                    files.append(action[kind])
    return files


def _from_statistics(action: dict, person_column: str, time_column: str | None):
    """(buckets, days) covering every row of the file, from its statistics; None if they do not say."""
    from explorer.jobs.steps import person_bucket

    try:
        stats = json.loads(action.get("stats") or "null")
    except ValueError:
        return None
    if not isinstance(stats, dict):
        return None
    if stats.get("numRecords") == 0:
        return set(), set()
    low, high = stats.get("minValues") or {}, stats.get("maxValues") or {}
    first, last = low.get(person_column), high.get(person_column)
    if not (isinstance(first, str) and isinstance(last, str) and len(first) >= 8 and len(last) >= 8):
        return None
    try:
        buckets = set(range(person_bucket(first), person_bucket(last) + 1))
    except ValueError:  # not a hex pseudonym
        return None
    if not time_column:
        return buckets, set()
    start, end = low.get(time_column), high.get(time_column)
    if not (isinstance(start, str) and isinstance(end, str)) or any(c in start + end for c in "Z+"):
        return None  # missing, or an instant whose local day the statistics cannot tell
    try:
        first_day, last_day = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    except ValueError:
        return None
    return buckets, {date.fromordinal(d) for d in range(first_day.toordinal(), last_day.toordinal() + 1)}


def changes(table_path, old: int, new: int, *, time_column: str | None = None,
            person_column: str = "person_id", storage=None) -> Changes | None:
    """The partitions the commits ``old + 1 .. new`` of a table touched; None: recompute all.
    ``table_path``: the table's folder, or its key in ``storage`` (a lake on object storage)."""
    actions = changed_actions(table_path, old, new, storage)
    if actions is None:
        return None
    out = Changes(files=len(actions))
    files = []
    for action in actions:
        known = _from_statistics(action, person_column, time_column)
        if known is None:
            if storage is not None and not storage.is_local:
                return None  # a file without statistics would have to be downloaded: recompute all
            files.append(Path(storage.uri(table_path) if storage is not None else table_path) / unquote(action["path"]))
            continue
        buckets, days = known
        out.buckets |= buckets
        out.bucket_days |= {(b, d) for b in buckets for d in days}
    if any(not f.is_file() for f in files):
        return None
    if not files:
        return out
    con = new_connection()
    try:
        paths = [str(f) for f in files]
        names = {r[0] for r in con.execute("SELECT name FROM parquet_schema(?)", [paths]).fetchall()}
        if person_column not in names:
            return None  # not a person-level table: every partition may depend on it
        bucket = bucket_sql(person_column)
        if time_column:
            if time_column not in names:
                return None
            rows = con.execute(f"SELECT DISTINCT {bucket}, CAST({time_column} AS DATE) FROM read_parquet(?, union_by_name = true) "
                               f"WHERE {person_column} IS NOT NULL", [paths]).fetchall()
            out.bucket_days |= {(b, d) for b, d in rows if d is not None}
            out.buckets |= {b for b, _ in rows}
        else:
            rows = con.execute(f"SELECT DISTINCT {bucket} FROM read_parquet(?, union_by_name = true) "
                               f"WHERE {person_column} IS NOT NULL", [paths]).fetchall()
            out.buckets |= {b for (b,) in rows}
    finally:
        con.close()
    return out
