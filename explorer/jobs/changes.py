"""Which partitions of a step's output an input's new versions touch, read from the Delta log.

Between the version a step last read and the current one, every commit lists the data files it
added and removed. Rows in either kind of file are rows that appeared or disappeared, so their
person buckets (and days) are exactly the partitions to recompute; rows in untouched files
cannot have changed. A MERGE that rewrote a file lists the rewritten copy's unchanged rows too,
which only recomputes a few partitions more than needed, never fewer. When the log between the
two versions is incomplete, or a removed file is gone (vacuumed), the answer is None: recompute all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import duckdb

from explorer.jobs.steps import bucket_sql


@dataclass
class Changes:
    """Touched person buckets and, when a time column was given, (bucket, day) pairs."""

    buckets: set[int] = field(default_factory=set)
    bucket_days: set[tuple[int, date]] = field(default_factory=set)
    files: int = 0

    def __bool__(self) -> bool:
        return bool(self.files)


def changed_files(table_path: Path, old: int, new: int) -> list[Path] | None:
    """Data files added or removed by the commits ``old + 1 .. new``; None if any commit's log
    entry is missing."""
    files = []
    for version in range(old + 1, new + 1):
        log = table_path / "_delta_log" / f"{version:020d}.json"
        if not log.is_file():
            return None
        for line in log.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action and action[kind].get("dataChange", True):
                    files.append(table_path / unquote(action[kind]["path"]))
    return files


def changes(table_path: Path, old: int, new: int, *, time_column: str | None = None,
            person_column: str = "person_id") -> Changes | None:
    """The partitions the commits ``old + 1 .. new`` of a table touched; None: recompute all."""
    files = changed_files(table_path, old, new)
    if files is None or any(not f.is_file() for f in files):
        return None
    out = Changes(files=len(files))
    if not files:
        return out
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
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
            out.bucket_days = {(b, d) for b, d in rows if d is not None}
            out.buckets = {b for b, _ in rows}
        else:
            rows = con.execute(f"SELECT DISTINCT {bucket} FROM read_parquet(?, union_by_name = true) "
                               f"WHERE {person_column} IS NOT NULL", [paths]).fetchall()
            out.buckets = {b for (b,) in rows}
    finally:
        con.close()
    return out
