"""Running a definition over the lake: attrition counts, members, per-step flags."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from explorer.cohorts.compile import Compiled, compile_definition
from explorer.cohorts.definition import Definition, from_dict, load, loads
from explorer.errors import ExplorerError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake


def as_definition(definition) -> Definition:
    """A :class:`Definition` from whatever names one.

    Parameters
    ----------
    definition : Definition, dict, str or pathlib.Path
        A Definition (returned as it is), a parsed document, a path to a ``.yaml``/``.yml``/
        ``.json`` file, or YAML/JSON text.

    Returns
    -------
    Definition

    Raises
    ------
    explorer.cohorts.DefinitionError
        The document is not a valid definition (every problem listed).

    Examples
    --------
    >>> from explorer import cohorts
    >>> definition = cohorts.as_definition('''
    ... name: t2d-over-50
    ... index_date: {rule: first_condition, codes: [E11]}
    ... inclusion: [{kind: demographics, age: {gte: 50}}]
    ... exclusion: [{kind: condition, codes: [E10], label: type 1 diabetes}]
    ... ''')
    >>> definition.name, sorted(definition.tables())
    ('t2d-over-50', ['condition_occurrence', 'person'])
    """
    if isinstance(definition, Definition):
        return definition
    if isinstance(definition, dict):
        return from_dict(definition)
    if isinstance(definition, Path) or (isinstance(definition, str) and "\n" not in definition
                                        and definition.lower().endswith((".yaml", ".yml", ".json"))):
        return load(definition)
    if isinstance(definition, str):
        return loads(definition)
    raise ExplorerError(f"expected a cohort definition (Definition, dict, file path or YAML text), got {type(definition).__name__}")


def check_tables(lake: Lake, definition: Definition, present=None) -> None:
    """Fail with what to do when the lake lacks a table the definition reads.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    definition : Definition
        The definition.
    present : iterable of str, optional
        The tables present (default: the lake's).

    Raises
    ------
    explorer.errors.ExplorerError
        Naming the missing tables and how to fill them.
    """
    present = set(present if present is not None else lake.tables())
    missing = sorted(definition.tables() - present)
    if missing:
        raise ExplorerError(f"cohort {definition.name!r} reads {', '.join(missing)}, which the lake does not hold yet: "
                            "ingest the data it comes from and run `explorer refresh`, or drop the criteria that use it")


def count(lake: Lake, definition, *, versions=None, disclosure=None) -> pd.DataFrame:
    """Attrition of ``definition`` over ``lake``: how many persons remain after each step.

    One DuckDB query computes every count.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    definition : Definition, dict, str or pathlib.Path
        Anything :func:`as_definition` takes.
    versions : mapping of str to int, optional
        Read tables at these versions (``{"measurement": 3}``), as :meth:`Lake.sql` does.
    disclosure : explorer.privacy.DisclosureControl, optional
        For a page that leaves the researcher tier: the counts pass it (``persons`` and
        ``removed`` are then the values shown, NaN where hidden; ``persons_shown`` and
        ``removed_shown`` hold the text, ``*_status`` why).

    Returns
    -------
    pandas.DataFrame
        Rows: persons in the lake, persons with an index date, then one per inclusion and
        exclusion criterion in the document's order; columns ``step``, ``label``, ``persons``
        (remaining) and ``removed`` (by that step), as :func:`attrition_frame` builds them.
        ``attrs``: cohort, definition_sha256, seconds (the query's time), protected.

    Examples
    --------
    >>> cohorts.count(lake, "t2d.yaml")  # doctest: +SKIP
    """
    definition = as_definition(definition)
    check_tables(lake, definition)
    compiled = compile_definition(definition)
    started = time.perf_counter()
    row = lake.sql(compiled.counts_sql(), compiled.params, versions=versions).iloc[0]
    seconds = time.perf_counter() - started
    return attrition_frame(compiled, [int(v) for v in row.to_numpy()], disclosure, seconds=seconds)


def attrition_frame(compiled: Compiled, remaining: list[int], disclosure=None, seconds: float | None = None) -> pd.DataFrame:
    """The attrition table of a compiled definition from its remaining counts.

    Parameters
    ----------
    compiled : Compiled
        :func:`explorer.cohorts.compile_definition`'s result (its labels name the steps).
    remaining : list of int
        Persons remaining after each step (``counts_sql``'s row).
    disclosure : explorer.privacy.DisclosureControl, optional
        Protect the counts (:meth:`~explorer.privacy.DisclosureControl.attrition`).
    seconds : float, optional
        Recorded in ``attrs``.

    Returns
    -------
    pandas.DataFrame
        ``step``, ``label``, ``persons``, ``removed`` (persons; ``removed`` empty at step 0); with
        ``disclosure``, the protected columns instead (``*_shown`` text, ``*_status``).

    Examples
    --------
    >>> from explorer import cohorts
    >>> definition = cohorts.as_definition('''
    ... name: t2d-over-50
    ... index_date: {rule: first_condition, codes: [E11]}
    ... inclusion: [{kind: demographics, age: {gte: 50}}]
    ... exclusion: [{kind: condition, codes: [E10], label: type 1 diabetes}]
    ... ''')
    >>> compiled = cohorts.compile_definition(definition)
    >>> cohorts.run.attrition_frame(compiled, [1000, 120, 90, 85])
       step                                    label  persons  removed
    0     0                      persons in the lake     1000     <NA>
    1     1  with an index date (first ICD10CM E11*)      120      880
    2     2                       include: age >= 50       90       30
    3     3                 exclude: type 1 diabetes       85        5

    Under All of Us rules the 5 removed are hidden, and so is what would give them away:

    >>> from explorer.privacy import DisclosureControl
    >>> protected = cohorts.run.attrition_frame(compiled, [1000, 120, 90, 85], DisclosureControl(profile="aou"))
    >>> protected["removed_shown"].tolist()
    ['', '880', '30', '<=20']
    """
    frame = pd.DataFrame({"step": range(len(remaining)), "label": compiled.labels, "persons": remaining})
    frame["removed"] = (frame["persons"].shift() - frame["persons"]).astype("Int64")
    if disclosure is not None:
        protected = disclosure.attrition(remaining)
        frame = pd.concat([frame[["step", "label"]], protected], axis=1)
    frame.attrs.update(cohort=compiled.definition.name, definition_sha256=compiled.definition.sha256,
                       seconds=seconds, protected=disclosure is not None)
    return frame


def members(lake: Lake, definition, *, versions=None) -> pd.DataFrame:
    """The members of a cohort.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    definition : Definition, dict, str or pathlib.Path
        Anything :func:`as_definition` takes.
    versions : mapping of str to int, optional
        Read tables at these versions.

    Returns
    -------
    pandas.DataFrame
        ``person_id`` and ``index_date`` of everyone in the cohort, ordered by person_id.

    Examples
    --------
    >>> cohorts.members(lake, "t2d.yaml")  # doctest: +SKIP
    """
    definition = as_definition(definition)
    check_tables(lake, definition)
    compiled = compile_definition(definition)
    return lake.sql(compiled.members_sql(), compiled.params, versions=versions)


def flags(lake: Lake, definition, *, versions=None) -> pd.DataFrame:
    """What each criterion decided for each person, to see why someone is in or out.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    definition : Definition, dict, str or pathlib.Path
        Anything :func:`as_definition` takes.
    versions : mapping of str to int, optional
        Read tables at these versions.

    Returns
    -------
    pandas.DataFrame
        Everyone with an index date: person_id, index_date and one boolean column per
        attrition step after the index date (s1, s2, ...); ``attrs["labels"]`` names the steps.

    Examples
    --------
    >>> cohorts.flags(lake, "t2d.yaml")  # doctest: +SKIP
    """
    definition = as_definition(definition)
    check_tables(lake, definition)
    compiled = compile_definition(definition)
    frame = lake.sql(compiled.flags_sql(), compiled.params, versions=versions)
    frame.attrs["labels"] = compiled.labels[2:]
    return frame
