"""Counts of persons by their attributes, for the public tier: the one query a public user can
ask by name, with every table and column checked against the catalog before any SQL is built;
and the lake's total, the one count every public page shows.

Values never reach this SQL at all, and names reach it only after they are found in the
catalog entry of a table the lake holds, quoted as identifiers.
"""

from __future__ import annotations

import threading

import pandas as pd

from explorer.errors import ExplorerError, did_you_mean
from explorer.privacy.safe_harbor import IDENTIFIER_PATTERN

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

UNKNOWN = "unknown"


def person_counts(lake: Lake, table: str, by: list[str]) -> pd.DataFrame:
    """Number of persons per combination of attributes, for the public tier.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    table : str
        A table of one row per person (its catalog primary key is ``person_id``), such as
        ``person`` or ``ageotype``.
    by : list of str
        Columns of that table's catalog entry to group by (never one that identifies or
        locates a person).

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns (as text; a missing value is the group "unknown", counted and
        protected like any other) and ``n``, distinct persons. Unprotected: pass it through
        :meth:`explorer.privacy.DisclosureControl.counts` with ``weight="n"`` before it leaves
        the researcher tier.

    Raises
    ------
    explorer.errors.ExplorerError
        An unknown table or column, a table of several rows per person, or an identifying
        column.

    Examples
    --------
    >>> person_counts(lake, "person", ["sex_at_birth"])  # doctest: +SKIP
    """
    entry = lake.catalog.get(table)
    if entry is None or not lake.has_table(table):
        per_person = [e.name for e in lake.catalog if tuple(e.primary_key) == ("person_id",) and lake.has_table(e.name)]
        raise ExplorerError(f"cannot count persons in {table!r}: it is not a table of this lake; tables of one row per "
                            f"person are {', '.join(per_person) or 'none yet'}{did_you_mean(table, per_person)}")
    if tuple(entry.primary_key) != ("person_id",):
        raise ExplorerError(f"cannot count persons by the rows of {table}: a person has several rows there "
                            f"(its key is {', '.join(entry.primary_key) or 'none'}); count a table of one row per person, "
                            "such as person or ageotype")
    by = list(dict.fromkeys(by))
    for column in by:
        if column not in entry.column_names:
            raise ExplorerError(f"{table} has no column {column!r}{did_you_mean(column, entry.column_names)}; "
                                f"its columns are {', '.join(entry.column_names)}")
        if column == "person_id" or IDENTIFIER_PATTERN.search(column):
            raise ExplorerError(f"cannot count by {column}: it identifies or locates a person; group by an attribute "
                                "such as sex_at_birth, race or zip3")
    names = ", ".join(f'"{c}"' for c in by)
    query = (f"SELECT {names}, count(DISTINCT person_id) AS n FROM \"{table}\" GROUP BY ALL" if by
             else f"SELECT count(DISTINCT person_id) AS n FROM \"{table}\"")
    frame = lake.sql(query)
    for column in by:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), UNKNOWN).astype(str)
    return frame


def lake_persons(lake: Lake) -> int | None:
    """Persons in the lake: distinct ``person_id`` of ``person``.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.

    Returns
    -------
    int or None
        The true count (unprotected; :func:`published_total` is the public one); None without
        a person table.
    """
    if not lake.has_table("person"):
        return None
    return int(lake.sql("SELECT count(DISTINCT person_id) AS n FROM person")["n"].iloc[0])


def published_total(lake: Lake, disclosure):
    """The lake's total of persons as every public page publishes it: one protected count (shown
    when clear of the profile's hidden range, rounded as the profile rounds, else its label),
    returned as a :class:`~explorer.privacy.disclosure.Fact` (None without a person table).

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    disclosure : explorer.privacy.DisclosureControl
        The public pages' disclosure control (its profile decides).

    Returns
    -------
    explorer.privacy.disclosure.Fact or None
        The published total; computed once per lake, ``person`` version and profile.

    Notes
    -----
    The overview's total, the first row of every attrition table (everyone in the lake), the
    whole lake's size beside a cohort and the data-quality report's count of persons are one
    count. Were each protected on its own page, one page could show it while another hides it
    as a complement of a small cell, and the first page would give the second's hidden cell away.
    So it is published once, on its own, and every page that shows it takes this :class:`Fact`:
    the same text everywhere, never hidden anew, and audited as known (Hundepool et al. 2012,
    sec. 4.6, linked tables: a count common to several tables gets one suppression decision).

    References
    ----------
    Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
    2012.

    Examples
    --------
    >>> published_total(lake, DisclosureControl(profile="aou")).shown  # doctest: +SKIP
    '1000'
    """
    if not lake.has_table("person"):
        return None
    key = (lake.location, lake.version("person"), disclosure.profile)
    with _LOCK:
        if key in _TOTALS:
            return _TOTALS[key]
    fact = disclosure.lone(lake_persons(lake))
    with _LOCK:
        _TOTALS[key] = fact
        while len(_TOTALS) > 64:
            _TOTALS.pop(next(iter(_TOTALS)))
    return fact


_TOTALS: dict = {}  # (lake, person version, profile) -> Fact: one decision, computed once
_LOCK = threading.Lock()
