"""Where each person lived on each day, from residence periods.

A period runs from ``start_date`` to ``end_date`` inclusive (an empty end: still there). A person
who moves mid-period has one period ending the day before the move and the next starting on it,
so each day takes the address of the period that holds it. Days no period holds are gaps, and
days two periods at different places (coordinates, ZIP3 or tract) hold are overlaps: both are
flagged (``residence_status`` "gap" or "overlap") with no location, never guessed from a
neighbouring period. Two periods holding the same place on a day (a repeated row) are not a
conflict. A period without coordinates gives "no_location" days: no grid value, though its
ZIP3 and tract still link area-level exposures.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

#: residence_status values
OK, GAP, OVERLAP, NO_LOCATION = "ok", "gap", "overlap", "no_location"
PLACE_COLUMNS = ("latitude", "longitude", "zip3", "tract_geoid", "block_group_geoid")
_REQUIRED = ("person_id", "start_date", "end_date", "latitude", "longitude")


def residence_days(residence: pd.DataFrame, first_day: date, last_day: date,
                   persons=None) -> pd.DataFrame:
    """Where each person lived on each day, from residence periods.

    Parameters
    ----------
    residence : pandas.DataFrame
        The ``residence`` table: person_id, start_date, end_date (inclusive; empty: still
        there), latitude, longitude (degrees) and optionally zip3, tract_geoid, block_group_geoid.
    first_day, last_day : datetime.date
        The days to cover (inclusive).
    persons : iterable of str, optional
        The persons to cover (default: everyone in ``residence``); one without any period gets
        gaps for every day.

    Returns
    -------
    pandas.DataFrame
        One row per person and day: person_id, date, latitude, longitude, zip3, tract_geoid,
        block_group_geoid and
        residence_status: "ok", "gap" (no period holds the day), "overlap" (periods at
        different places hold it) or "no_location" (a period without coordinates, whose ZIP3
        and tract still link area-level exposures). Gap and overlap days have no place: it is
        never guessed from a neighbouring period.

    Notes
    -----
    Vectorised: periods are expanded to days with ``np.repeat``, conflicts found by counting
    distinct places per person-day; two periods at the same place on a day are not a conflict.

    Examples
    --------
    A move on 3 January; the day before the first period is a gap:

    >>> from datetime import date
    >>> import pandas as pd
    >>> from explorer.exposure import residence_days
    >>> residence = pd.DataFrame({"person_id": ["p1", "p1"], "start_date": [date(2024, 1, 1), date(2024, 1, 3)],
    ...                           "end_date": [date(2024, 1, 2), None], "latitude": [40.1, 40.9],
    ...                           "longitude": [-74.9, -74.1], "zip3": ["191", "100"]})
    >>> residence_days(residence, date(2023, 12, 31), date(2024, 1, 4))[["date", "latitude", "zip3", "residence_status"]]
             date  latitude zip3 residence_status
    0  2023-12-31       NaN  NaN              gap
    1  2024-01-01      40.1  191               ok
    2  2024-01-02      40.1  191               ok
    3  2024-01-03      40.9  100               ok
    4  2024-01-04      40.9  100               ok
    """
    missing = [c for c in _REQUIRED if c not in residence.columns]
    if missing:
        raise ExplorerError(f"residence: column(s) {', '.join(missing)} missing; expected {', '.join(_REQUIRED)}")
    first, last = pd.Timestamp(first_day), pd.Timestamp(last_day)
    if last < first:
        raise ExplorerError(f"residence_days: last day {last.date()} is before first day {first.date()}")
    periods = residence.reset_index(drop=True)
    for column in PLACE_COLUMNS:
        if column not in periods:
            periods[column] = None
    start = pd.to_datetime(periods["start_date"])
    stated_end = pd.to_datetime(periods["end_date"])
    bad = periods.index[start.isna() | (stated_end.notna() & (stated_end < start))]
    if len(bad):
        row = periods.loc[bad[0]]
        raise ExplorerError(f"residence row for person {row['person_id']}: start_date {row['start_date']} and "
                            f"end_date {row['end_date']} do not make a period (start missing or after the end)")
    end = stated_end.fillna(last)  # an open period runs to the last day asked, whenever it started
    start, end = start.clip(lower=first), end.clip(upper=last)
    kept = (start <= end).to_numpy()
    periods, start, end = periods[kept], start[kept], end[kept]
    lengths = ((end - start).dt.days + 1).to_numpy()
    expanded = periods[["person_id", *PLACE_COLUMNS]].iloc[np.repeat(np.arange(len(periods)), lengths)].reset_index(drop=True)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    expanded["date"] = np.repeat(start.to_numpy(), lengths) + offsets.astype("timedelta64[D]")
    expanded = expanded.drop_duplicates(["person_id", "date", *PLACE_COLUMNS])
    places = expanded.groupby(["person_id", "date"], sort=False)["person_id"].transform("size")
    located = expanded["latitude"].notna() & expanded["longitude"].notna()
    expanded["residence_status"] = np.where(places.to_numpy() > 1, OVERLAP, np.where(located, OK, NO_LOCATION))
    conflicted = expanded["residence_status"] == OVERLAP
    expanded.loc[conflicted, list(PLACE_COLUMNS)] = None
    expanded = expanded.drop_duplicates(["person_id", "date"])

    everyone = sorted(set(residence["person_id"]) if persons is None else set(persons))
    days = pd.date_range(first, last, freq="D")
    grid = pd.DataFrame({"person_id": np.repeat(np.asarray(everyone, dtype=object), len(days)),
                         "date": np.tile(days.to_numpy(), len(everyone))})
    out = grid.merge(expanded, on=["person_id", "date"], how="left")
    out["residence_status"] = out["residence_status"].fillna(GAP)
    out["date"] = out["date"].dt.date
    return out[["person_id", "date", *PLACE_COLUMNS, "residence_status"]]
