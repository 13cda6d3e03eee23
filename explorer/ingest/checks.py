"""Row-level checks applied to unified rows after parsing: plausible ranges and duplicates.

Each check returns, per row, None (fine) or the reason the row goes to quarantine. Ranges:
heart rate 25-250 bpm (below and above what a wrist sensor can physiologically report),
steps 0-300 per minute (faster than a sprinter's cadence is a device error).

Duplicated minutes: a person's local minute may appear twice legitimately when the clocks go
back (the repeated hour of the autumn daylight-saving change), given the time zone of where the
person lived that day. There the first row is taken as the earlier (daylight) instant and the
second as the later (standard) one; any further copy, and any repeat outside such an hour, is
quarantined: an exact copy as "duplicate", a different value as "conflicting duplicate".
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

RANGES = {
    "heart_rate_minute": ("heart_rate_value", 25, 250, "bpm"),
    "steps_minute": ("steps", 0, 300, "steps per minute"),
}


def range_reasons(table: str, rows: pd.DataFrame) -> pd.Series:
    reasons = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    if table in RANGES:
        column, low, high, unit = RANGES[table]
        values = rows[column]
        bad = (values < low) | (values > high)
        reasons[bad.fillna(False).to_numpy()] = [f"{column} {v} {unit} outside {low}-{high}" for v in values[bad.fillna(False)]]
    return reasons


def ambiguous_local(when: pd.Series, zones: pd.Series) -> np.ndarray:
    """Whether each local wall-clock time falls in a repeated (fall-back) hour of its zone."""
    out = np.zeros(len(when), dtype=bool)
    for zone in zones.dropna().unique():
        mask = (zones == zone).to_numpy()
        info = ZoneInfo(zone)
        for i in np.flatnonzero(mask):
            t = when.iat[i].to_pydatetime()
            early, late = t.replace(tzinfo=info, fold=0), t.replace(tzinfo=info, fold=1)
            # repeated only if both folds are real instants that read back as this wall time
            # (in the spring gap the folds differ too, but neither instant exists)
            exists = early.astimezone(timezone.utc).astimezone(info).replace(tzinfo=None) == t
            out[i] = exists and early.utcoffset() != late.utcoffset()
    return out


def duplicate_reasons(rows: pd.DataFrame, value_column: str, zones: pd.Series) -> pd.Series:
    """Reasons for repeated (person, local minute) rows; see the module notes for the DST rule."""
    reasons = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    key = ["person_id", "datetime"]
    repeated = rows.duplicated(key, keep=False).to_numpy()
    if not repeated.any():
        return reasons
    group = rows.loc[repeated]
    allowed = ambiguous_local(group["datetime"], zones.loc[repeated])
    occurrence = group.groupby(key, sort=False).cumcount().to_numpy()
    first_row = group.groupby(key, sort=False)["_row"].transform("first").to_numpy()
    first_value = group.groupby(key, sort=False)[value_column].transform("first").to_numpy()
    for k, index in enumerate(group.index):
        limit = 2 if allowed[k] else 1
        if occurrence[k] >= limit:
            same = group.at[index, value_column] == first_value[k]
            reasons[index] = (f"{'duplicate' if same else 'conflicting duplicate'} of row {first_row[k]} "
                              f"(same person and local minute{'' if not allowed[k] else ', beyond the repeated DST hour'})")
    return reasons


def required_reasons(table: str, rows: pd.DataFrame) -> pd.Series:
    """Rows lacking a value the catalog declares required (``nullable: false``)."""
    from explorer.catalog import default_catalog

    reasons = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    entry = default_catalog().get(table)
    if entry is None:
        return reasons
    for column in entry.schema:
        if not column.nullable and column.name in rows and column.name != "source_file":
            empty = rows[column.name].isna().to_numpy() & reasons.isna().to_numpy()
            reasons[empty] = f"{column.name}: empty, but required in {table}"
    return reasons


def future_reasons(rows: pd.DataFrame, column: str, now: datetime) -> pd.Series:
    reasons = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    bad = (rows[column] > pd.Timestamp(now) + timedelta(days=1)).fillna(False).to_numpy()
    reasons[bad] = f"{column} in the future"
    return reasons
