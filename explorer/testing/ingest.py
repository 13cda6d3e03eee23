"""What an ingest made of each file, for tests of readers (like xarray's ``testing`` helpers)."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from explorer.lake import Lake

COUNTS = ["rows_read", "rows_accepted", "rows_quarantined", "rows_ignored"]


def file_outcomes(lake: Lake) -> pd.DataFrame:
    """``ingest_file`` by the file's base name, after checking that nothing was lost per file.

    Parameters
    ----------
    lake : Lake

    Returns
    -------
    pandas.DataFrame
        Indexed by base name: format, status, reason, the four counts and ``ignored``.

    Raises
    ------
    AssertionError
        When a file's ``rows_read != rows_accepted + rows_quarantined + rows_ignored``.
    """
    frame = lake.sql("SELECT source_name, format, status, reason, rows_read, rows_accepted, rows_quarantined, "
                     "rows_ignored, ignored FROM ingest_file")
    frame["source_name"] = frame["source_name"].map(lambda name: PurePosixPath(name).name)
    lost = frame[frame["rows_read"] != frame["rows_accepted"] + frame["rows_quarantined"] + frame["rows_ignored"]]
    assert lost.empty, f"rows not accounted for:\n{lost[['source_name', *COUNTS]]}"
    return frame.set_index("source_name")


def row_counts(outcomes: pd.DataFrame, name: str) -> list[int]:
    """Rows read, accepted, quarantined and ignored of one file of :func:`file_outcomes`."""
    return outcomes.loc[name, COUNTS].tolist()


def quarantine_reasons(lake: Lake, source: str | None = None) -> list[str]:
    """Reasons in ``quarantine_row`` in row order, of the file whose base name is ``source`` (all
    files if None); empty when nothing was ever quarantined."""
    if not lake.has_table("quarantine_row"):
        return []
    frame = lake.sql("SELECT source_name, reason FROM quarantine_row ORDER BY row_number")
    return [reason for name, reason in zip(frame["source_name"], frame["reason"])
            if source is None or PurePosixPath(name).name == source]
