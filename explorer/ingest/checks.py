"""Row-level checks applied to unified rows after parsing: declared ranges, required values,
times in the future, duplicated and non-existent local minutes.

Each check returns, per row, None (fine) or the reason the row goes to quarantine. Which checks
a table gets is declared with the dataset in its catalog entry (``data_catalog/<table>.yaml``),
not here: a column's ``checks: {range: [min, max], not_in_future: true}``, its
``nullable: false`` (a required value), and the entry's ``checks: {unique_local_minute: ...}``.
For example heart rate is declared 25-250 bpm (below and above what a wrist sensor can
physiologically report) and steps 0-300 per minute (faster than a sprinter's cadence is a
device error).

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

from explorer.catalog import Entry


def no_reasons(rows: pd.DataFrame) -> pd.Series:
    """A reason per row, all None: the start every check fills in."""
    return pd.Series([None] * len(rows), index=rows.index, dtype=object)


def range_reasons(entry: Entry, rows: pd.DataFrame) -> pd.Series:
    """Rows with a value outside the range its column declares (``checks: range: [min, max]``,
    inclusive); the first such column of a row gives its reason.

    Parameters
    ----------
    entry : Entry
        The table's catalog entry.
    rows : pandas.DataFrame
        Rows of that table.

    Returns
    -------
    pandas.Series
        Per row, None or e.g. ``"heart_rate_value 300 bpm outside 25-250"``.
    """
    reasons = no_reasons(rows)
    for column in entry.schema:
        if column.checks.range is None or column.name not in rows:
            continue
        low, high = column.checks.range
        unit = column.checks.range_unit or column.unit
        values = rows[column.name]
        bad = ((values < low) | (values > high)).fillna(False).to_numpy() & reasons.isna().to_numpy()
        reasons[bad] = [f"{column.name} {v}{f' {unit}' if unit else ''} outside {low}-{high}" for v in values[bad]]
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


def clock_change(zone: str, day) -> tuple[int, int, datetime | None, int | None]:
    """UTC offsets (minutes) at the start and end of local ``day`` in ``zone`` and, where the
    clocks change that day, the local wall time of the change (read on the clock before it) and
    the shift in minutes (+60 in spring, -60 in autumn).

    In spring the local times ``[change, change + shift)`` do not exist; in autumn
    ``[change + shift, change)`` happen twice. Searched in 15-minute UTC steps, which finds every
    transition in the tz database (all fall on a quarter hour).
    """
    info = ZoneInfo(zone)
    midnight = datetime(day.year, day.month, day.day)
    start = midnight.replace(tzinfo=info).astimezone(timezone.utc)
    end = (midnight + timedelta(days=1)).replace(tzinfo=info).astimezone(timezone.utc)
    # the offsets in force just before the day's first and last instants: where the clocks
    # change at midnight (Santiago, Havana, Beirut), midnight itself is already on the new clock
    second = timedelta(seconds=1)
    before = (start - second).astimezone(info).utcoffset()
    after = (end - second).astimezone(info).utcoffset()
    minutes = lambda offset: int(offset.total_seconds() // 60)  # noqa: E731
    if before == after:
        return minutes(before), minutes(after), None, None
    instant = start
    while instant < end and instant.astimezone(info).utcoffset() == before:
        instant += timedelta(minutes=15)
    local = (instant + before).replace(tzinfo=None)  # the change's moment on the old clock
    return minutes(before), minutes(after), local, minutes(after - before)


def skipped_hour_reasons(when: pd.Series, days: pd.DataFrame, codes: np.ndarray) -> pd.Series:
    """Rows whose local time does not exist: inside the hour skipped when the clocks go forward
    (a device or export artefact; a real clock never shows it)."""
    reasons = no_reasons(when)
    spring = (days["clock_shift_minutes"].fillna(0) > 0).to_numpy()
    if not spring.any():
        return reasons
    on_spring_day = spring[codes]
    change = pd.to_datetime(days["clock_change_local"]).to_numpy()[codes[on_spring_day]]
    shift = days["clock_shift_minutes"].to_numpy(dtype="float64", na_value=0)[codes[on_spring_day]].astype("timedelta64[m]")
    stamps = when.to_numpy()[on_spring_day]
    skipped = (stamps >= change) & (stamps < change + shift)
    rows = np.flatnonzero(on_spring_day)[skipped]
    zones = days["time_zone"].to_numpy()[codes[rows]]
    reasons.iloc[rows] = [f"local time {pd.Timestamp(t)} does not exist in {z} (the hour skipped when the clocks go forward)"
                          for t, z in zip(stamps[skipped], zones)]
    return reasons


def duplicate_reasons(rows: pd.DataFrame, value_column: str, zones: pd.Series, *,
                      person: str = "person_id", time: str = "datetime", within: str | None = None) -> pd.Series:
    """Reasons for repeated (person, local minute) rows; see the module notes for the DST rule.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows with ``_row``, ``person``, ``time`` (local wall-clock minutes) and ``value_column``.
    value_column : str
        Compared to tell an exact duplicate from a conflicting one.
    zones : pandas.Series
        Per row, the IANA time zone where the person lived that day.
    person, time : str
        The columns naming the person and the local minute.
    within : str, optional
        A column (the file of each row, where rows of several files are checked together): a
        minute repeats only among rows with the same value there.
    """
    reasons = no_reasons(rows)
    key = ([within] if within else []) + [person, time]
    person_codes, _ = pd.factorize(rows[person], use_na_sentinel=True)  # integers hash far faster than strings
    stamps = rows[time].to_numpy()
    columns = ([rows[within].to_numpy().astype("int64")] if within else []) + [person_codes.astype("int64"),
                                                                            stamps.astype("int64")]
    in_order, same_as_next = _key_order(columns)
    if in_order:  # a file sorted by person and time: a repeated key sits next to its copy
        repeated = np.zeros(len(rows), dtype=bool)
        repeated[1:] |= same_as_next
        repeated[:-1] |= same_as_next
    else:
        unit = np.datetime_data(stamps.dtype)[0] if stamps.dtype.kind == "M" else None
        repeated = _repeated(columns, int(np.timedelta64(1, "m") / np.timedelta64(1, unit)) if unit else None)
    if not repeated.any():
        return reasons
    group = rows.loc[repeated]
    allowed = ambiguous_local(group[time], zones.loc[repeated])
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


def _key_order(columns: list[np.ndarray]) -> tuple[bool, np.ndarray]:
    """Whether the rows' keys (``columns``, compared in order) never decrease from row to row,
    and, per row but the last, whether the next row's key is the same: for rows in key order
    that finds every repeated key without hashing them."""
    n = len(columns[0])
    greater = np.zeros(max(n - 1, 0), dtype=bool)
    equal = np.ones(max(n - 1, 0), dtype=bool)
    for column in columns:
        greater |= equal & (column[1:] > column[:-1])
        equal &= column[1:] == column[:-1]
    return bool((greater | equal).all()), equal


def _repeated(columns: list[np.ndarray], per_minute: int | None) -> np.ndarray:
    """Per row, whether its key (``columns``: small codes, then times counting ``per_minute``
    to the minute) appears more than once. Where the codes and whole minutes fit, the key is
    packed into one integer, which hashes several times faster than a frame of columns."""
    *codes, times = columns
    if per_minute is None or not len(times):
        return pd.DataFrame(dict(enumerate(columns))).duplicated(keep=False).to_numpy()
    minutes, remainder = np.divmod(times - times.min(), per_minute)
    widths = [int(c.max(initial=0)).bit_length() + 1 for c in codes]  # +1: a missing code is -1
    if not remainder.any() and sum(widths) + int(minutes.max(initial=0)).bit_length() <= 62:
        packed = minutes.astype("int64")
        shift = int(minutes.max(initial=0)).bit_length()
        for code, width in zip(codes, widths):
            packed |= (code.astype("int64") + 1) << shift
            shift += width
        return pd.Series(packed).duplicated(keep=False).to_numpy()
    return pd.DataFrame(dict(enumerate(columns))).duplicated(keep=False).to_numpy()


def required_reasons(entry: Entry, rows: pd.DataFrame) -> pd.Series:
    """Rows lacking a value the catalog declares required (``nullable: false``)."""
    reasons = no_reasons(rows)
    for column in entry.schema:
        if not column.nullable and column.name in rows and column.name != "source_file":
            empty = rows[column.name].isna().to_numpy() & reasons.isna().to_numpy()
            reasons[empty] = f"{column.name}: empty, but required in {entry.name}"
    return reasons


def future_reasons(rows: pd.DataFrame, column: str, now: datetime) -> pd.Series:
    """Rows whose ``column`` lies more than a day after ``now`` (a day's grace: a source's local
    time may run ahead of UTC)."""
    reasons = no_reasons(rows)
    bad = (rows[column] > pd.Timestamp(now) + timedelta(days=1)).fillna(False).to_numpy()
    reasons[bad] = f"{column} in the future"
    return reasons
