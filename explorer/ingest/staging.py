"""Staging: accepted rows written as Parquet parts per table, waiting for the commit.

Files are read (in this process or in workers) into parts under ``<lake>/_staging/<ingest>``;
the commit then streams each table's parts into one Delta commit, so memory does not grow with
the delivery, and nothing reaches a table before every file has been read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from explorer.ingest.report import FileOutcome


@dataclass
class StagedFile:
    """One file read: its outcome and where its rows were staged.

    Attributes
    ----------
    outcome : FileOutcome
        What became of the file.
    parts : dict
        Table -> the Parquet part holding the file's accepted rows (a part may hold several
        files of one batch).
    quarantine : Path or None
        The part holding the file's quarantined rows, if any.
    reference_rows : dict
        Table -> the file's accepted rows of a reference table, which later files look up.
    """

    outcome: FileOutcome
    parts: dict[str, Path]
    quarantine: Path | None
    reference_rows: dict[str, pd.DataFrame]


@dataclass
class Staged:
    """Everything an ingest staged, by table: what its commit writes.

    Attributes
    ----------
    parts : dict
        Table -> its Parquet parts, each once.
    inputs : dict
        Table -> the raw files (``raw:<sha256>``) its rows came from: the commit's lineage.
    quarantine : list of Path
        Parts of quarantined rows.
    """

    parts: dict[str, list[Path]] = field(default_factory=dict)
    inputs: dict[str, set[str]] = field(default_factory=dict)
    quarantine: list[Path] = field(default_factory=list)

    @classmethod
    def collect(cls, files: list[StagedFile]) -> Staged:
        """Gather the parts of every file read, in the order read."""
        staged = cls()
        for file in files:
            for table, part in file.parts.items():
                if part not in staged.parts.setdefault(table, []):
                    staged.parts[table].append(part)
                staged.inputs.setdefault(table, set()).add(f"raw:{file.outcome.sha256}")
            if file.quarantine is not None and file.quarantine not in staged.quarantine:
                staged.quarantine.append(file.quarantine)
        return staged


def concat_arrow(frames: list[pd.DataFrame]) -> pa.Table:
    """Frames as one Arrow table, rows clustered by ``person_id``.

    Categorical columns (pseudonyms, source files) stay dictionary encoded, each frame with its
    own dictionary (pandas would turn categoricals with different categories into millions of
    Python strings); a frame holding the same column as plain text is encoded to match. Parquet
    stores either as strings. Sorting by person (stable, so each person's rows keep their order)
    gives every row group a narrow range of pseudonyms, which a query or a refresh task reading
    one range of persons skips to by the row groups' statistics; the sort runs on small integer
    ranks of the dictionaries, not on the strings.
    """
    tables = [pa.Table.from_pandas(frame, preserve_index=False) for frame in frames]
    encoded = {c.name for t in tables for c in t.schema if pa.types.is_dictionary(c.type)}
    target = pa.dictionary(pa.int32(), pa.string())
    out = []
    for table in tables:
        for i, column in enumerate(table.schema):
            if column.name in encoded and column.type != target:
                data = table.column(i)
                if not pa.types.is_dictionary(column.type):
                    data = pc.dictionary_encode(data.cast(pa.string()))
                table = table.set_column(i, pa.field(column.name, target), data.cast(target))
        out.append(table)
    table = pa.concat_tables(out, promote_options="permissive")
    if "person_id" in encoded and table.num_rows > 1:
        chunks = table.column("person_id").chunks
        values = sorted({v for chunk in chunks for v in chunk.dictionary.to_pylist() if v is not None})
        rank_of = {v: k for k, v in enumerate(values)}
        ranks = np.concatenate([
            np.append(np.array([rank_of.get(v, len(values)) for v in chunk.dictionary.to_pylist()], dtype="int64"),
                      len(values))[chunk.indices.fill_null(len(chunk.dictionary)).to_numpy(zero_copy_only=False)]
            for chunk in chunks])
        order = np.argsort(ranks, kind="stable")
        if (order[1:] < order[:-1]).any():  # not already in order
            table = table.take(pa.array(order))
    return table


def stage_rows(tables: dict[str, list[pd.DataFrame]], quarantined: list[pd.DataFrame], staging: Path,
               tag: str) -> tuple[dict[str, Path], Path | None]:
    """Write accepted rows as one Parquet part per table, and quarantined rows as one part.

    Parameters
    ----------
    tables : dict
        Table -> frames of accepted rows (of one or several files).
    quarantined : list of pandas.DataFrame
        Quarantined rows with their reasons and original records.
    staging : Path
        The ingest's staging folder; parts go to ``<table>/part-<tag>.parquet``.
    tag : str
        Names the parts of this batch apart from the others'.

    Returns
    -------
    parts : dict
        Table -> its part.
    quarantine : Path or None
        The part of quarantined rows, if there were any.
    """
    parts = {}
    for table, frames in tables.items():
        part = staging / table / f"part-{tag}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(concat_arrow(frames), part, store_schema=False)  # read back as plain strings
        parts[table] = part
    quarantine = None
    if quarantined:
        quarantine = staging / "_quarantine" / f"part-{tag}.parquet"
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(quarantined, ignore_index=True).to_parquet(quarantine, index=False)
    return parts, quarantine


