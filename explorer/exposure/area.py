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

AREA_COLUMNS = {"tract": "tract_geoid", "zip3": "zip3"}


def area_linkage(person_days: pd.DataFrame, area_exposure: pd.DataFrame, *, area_type: str = "tract",
                 variable: str | None = None) -> pd.DataFrame:
    """Per person, year and variable: area_type, area_id, value, unit, value_year (the year of
    the value used), days_at_area (days of the year at that area).

    ``person_days`` is :func:`explorer.exposure.residence_days` output; ``area_exposure`` the
    table of that name (area_type, area_id, year, variable, value, unit).
    """
    if area_type not in AREA_COLUMNS:
        raise ExplorerError(f"area_type {area_type!r} is not one of {', '.join(AREA_COLUMNS)}")
    column = AREA_COLUMNS[area_type]
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
