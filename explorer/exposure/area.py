"""Area-level exposure: a person's tract or ZIP3 joined to ``area_exposure`` by year.

A person-year takes the area of the address held longest that year (ties: the later one), and
the area's value for that year; if the area has no value for that year, the latest earlier year
(an index published every few years holds until the next), and the year used is reported. For
example the tract lead-exposure risk decile of Marshall et al. 2020 (Nat Med 26:91) or a
deprivation index.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError

AREA_COLUMNS = {"tract": "tract_geoid", "block_group": "block_group_geoid", "county": "county_geoid", "zip3": "zip3"}


def area_linkage(person_days: pd.DataFrame, area_exposure: pd.DataFrame, *, area_type: str = "tract",
                 variable: str | None = None) -> pd.DataFrame:
    """Area-level exposure per person and year: the area held longest that year, and its value.

    Parameters
    ----------
    person_days : pandas.DataFrame
        One row per person and day with the area columns, as
        :func:`explorer.exposure.residence_days` returns (person_id, date, zip3, tract_geoid,
        block_group_geoid).
    area_exposure : pandas.DataFrame
        The ``area_exposure`` table: area_type, area_id, year, variable, value, unit.
    area_type : {"tract", "block_group", "county", "zip3"}, default "tract"
        Which area a person is linked by; a county is the first 5 digits of the tract GEOID
        (state and county FIPS) where ``person_days`` has no county_geoid.
    variable : str, optional
        One variable of ``area_exposure``; default every variable of that area type.

    Returns
    -------
    pandas.DataFrame
        One row per person, year (with a known area) and variable: person_id, year, area_type,
        area_id, variable, value (in ``unit``, as the table gives it), unit, value_year (the year
        of the value used; empty for a value without a year) and days_at_area (days of the year
        at that area), sorted by person, year and variable.

    Notes
    -----
    A person-year takes the area of the address held most days that year (ties: the one held
    later), and that area's value for the latest year at or before it (an as-of join): an index
    published every few years holds until the next.

    References
    ----------
    Marshall AT, Betts S, Kan EC, et al. Association of lead-exposure risk and family income
    with childhood brain outcomes. Nat Med. 2020;26:91-97 (a tract-level index linked this way).

    Examples
    --------
    A person in ZIP3 191 until March 2024, then 100; an index published for 2022 and 2024:

    >>> from datetime import date
    >>> import pandas as pd
    >>> from explorer.exposure import area_linkage, residence_days
    >>> residence = pd.DataFrame({"person_id": ["p1", "p1"], "start_date": [date(2023, 1, 1), date(2024, 4, 1)],
    ...                           "end_date": [date(2024, 3, 31), None], "latitude": [40.1, 40.9],
    ...                           "longitude": [-74.9, -74.1], "zip3": ["191", "100"]})
    >>> days = residence_days(residence, date(2023, 1, 1), date(2024, 12, 31))
    >>> index = pd.DataFrame({"area_type": "zip3", "area_id": ["191", "100"], "year": [2022, 2024],
    ...                       "variable": "adi_rank", "value": [80.0, 30.0], "unit": "1"})
    >>> area_linkage(days, index, area_type="zip3")[["year", "area_id", "value", "value_year", "days_at_area"]]
       year area_id  value  value_year  days_at_area
    0  2023     191   80.0        2022           365
    1  2024     100   30.0        2024           275
    """
    if area_type not in AREA_COLUMNS:
        raise ExplorerError(f"area_type {area_type!r} is not one of {', '.join(AREA_COLUMNS)}")
    column = AREA_COLUMNS[area_type]
    if area_type == "county" and column not in person_days and "tract_geoid" in person_days:
        person_days = person_days.assign(county_geoid=person_days["tract_geoid"].str[:5])
    if column not in person_days:
        raise ExplorerError(f"person_days has no {column} column to link {area_type} values by; residence histories "
                            f"give it in a {column} column")
    known = person_days[person_days[column].notna()].copy()
    known["year"] = pd.to_datetime(known["date"]).dt.year
    held = known.groupby(["person_id", "year", column], as_index=False).agg(days_at_area=("date", "size"),
                                                                           last_day=("date", "max"))
    held = held.sort_values(["person_id", "year", "days_at_area", "last_day"]).drop_duplicates(
        ["person_id", "year"], keep="last").rename(columns={column: "area_id"})
    areas = area_exposure[area_exposure["area_type"] == area_type]
    if variable is not None:
        areas = areas[areas["variable"] == variable]
        if areas.empty:
            raise ExplorerError(f"area_exposure has no variable {variable!r} for area type {area_type!r}; "
                                f"it has {', '.join(sorted(set(area_exposure['variable']))) or 'none'}")
    areas = areas.rename(columns={"year": "value_year"}).sort_values("value_year")
    rows = []
    for name, values in areas.groupby("variable"):
        wanted = held.assign(variable=name).sort_values("year")
        wanted["year_key"] = wanted["year"].astype(np.int64)
        # a value without a year holds for every year
        values = values.assign(year_key=values["value_year"].fillna(-1).astype(np.int64)).sort_values("year_key")
        # latest value at or before the year, per area: an as-of join
        joined = pd.merge_asof(wanted, values[["area_id", "year_key", "value_year", "value", "unit"]],
                               on="year_key", by="area_id", direction="backward")
        rows.append(joined.drop(columns="year_key"))
    if not rows:
        return pd.DataFrame(columns=["person_id", "year", "area_type", "area_id", "variable", "value", "unit",
                                     "value_year", "days_at_area"])
    out = pd.concat(rows, ignore_index=True)
    out["area_type"] = area_type
    return out[["person_id", "year", "area_type", "area_id", "variable", "value", "unit", "value_year",
                "days_at_area"]].sort_values(["person_id", "year", "variable"], ignore_index=True)
