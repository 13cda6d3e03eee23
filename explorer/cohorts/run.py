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
    """A :class:`Definition` from a Definition, a parsed document, a file path or YAML/JSON text."""
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
    """Fail with what to do when the lake lacks a table the definition reads."""
    present = set(present if present is not None else lake.tables())
    missing = sorted(definition.tables() - present)
    if missing:
        raise ExplorerError(f"cohort {definition.name!r} reads {', '.join(missing)}, which the lake does not hold yet: "
                            "ingest the data it comes from and run `explorer refresh`, or drop the criteria that use it")


def count(lake: Lake, definition, *, versions=None, disclosure=None) -> pd.DataFrame:
    """Attrition of ``definition`` over ``lake``: how many persons remain after each step.

    One DuckDB query computes every count. Rows: persons in the lake, persons with an index date,
    then one per inclusion and exclusion criterion in the document's order; columns ``step``,
    ``label``, ``persons`` (remaining) and ``removed`` (by that step).

    Parameters
    ----------
    versions : mapping of str to int, optional
        Read tables at these versions (``{"measurement": 3}``), as :meth:`Lake.sql` does.
    disclosure : explorer.privacy.DisclosureControl, optional
        For a page that leaves the researcher tier: the counts pass it (``persons`` and
        ``removed`` are then the values shown, NaN where hidden; ``persons_shown`` and
        ``removed_shown`` hold the text, ``*_status`` why).

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
    frame = pd.DataFrame({"step": range(len(remaining)), "label": compiled.labels, "persons": remaining})
    frame["removed"] = (frame["persons"].shift() - frame["persons"]).astype("Int64")
    if disclosure is not None:
        protected = disclosure.attrition(remaining)
        frame = pd.concat([frame[["step", "label"]], protected], axis=1)
    frame.attrs.update(cohort=compiled.definition.name, definition_sha256=compiled.definition.sha256,
                       seconds=seconds, protected=disclosure is not None)
    return frame


def members(lake: Lake, definition, *, versions=None) -> pd.DataFrame:
    """``person_id`` and ``index_date`` of everyone in the cohort, ordered by person_id."""
    definition = as_definition(definition)
    check_tables(lake, definition)
    compiled = compile_definition(definition)
    return lake.sql(compiled.members_sql(), compiled.params, versions=versions)


def flags(lake: Lake, definition, *, versions=None) -> pd.DataFrame:
    """Everyone with an index date, with one boolean column per attrition step (s1, s2, ...):
    what each criterion decided for each person, to see why someone is in or out."""
    definition = as_definition(definition)
    check_tables(lake, definition)
    compiled = compile_definition(definition)
    frame = lake.sql(compiled.flags_sql(), compiled.params, versions=versions)
    frame.attrs["labels"] = compiled.labels[2:]
    return frame
