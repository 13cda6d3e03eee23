"""Saved cohorts: definitions in ``cohort_definition``, members in ``cohort_member``.

Saving a definition upserts its row in ``cohort_definition`` (earlier revisions stay readable as
earlier versions of that table) and materialises every saved cohort into ``cohort_member`` in
one commit, computed from the tables pinned at the versions that commit records as its inputs.
``explorer refresh`` recomputes them (step ``cohort_member``) whenever one of those tables has a
new version, and ``members_of(lake, name, version=v)`` reads exactly the people an analysis saw.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from explorer.cohorts.compile import compile_definition
from explorer.cohorts.definition import Definition, from_dict
from explorer.cohorts.run import as_definition, members
from explorer.errors import ExplorerError, did_you_mean
from explorer.lake.engine import current_user, new_connection

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: what cohorts are computed from; ``cohort_definition`` and ``person`` must be there, the rest
#: only when a saved definition reads them
COHORT_INPUTS = ("cohort_definition", "person", "condition_occurrence", "measurement", "wearable_daily",
                 "wearable_circadian", "exposure_daily")
MEMBER_COLUMNS = ["cohort", "definition_sha256", "person_id", "index_date"]


def save(lake: Lake, definition, *, materialise: bool = True) -> int:
    """Save a cohort definition under its name and materialise its members.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    definition : Definition, dict, str or pathlib.Path
        Anything :func:`explorer.cohorts.as_definition` takes; it must run on this lake.
    materialise : bool, default True
        Bring ``cohort_member`` up to date (:func:`materialise_all`).

    Returns
    -------
    int
        The ``cohort_member`` version holding its members (the ``cohort_definition`` version
        when not materialised). An earlier revision of the same name is replaced, and stays
        readable as an earlier version of ``cohort_definition``.

    Examples
    --------
    >>> version = cohorts.save(lake, "t2d.yaml")  # doctest: +SKIP
    """
    definition = as_definition(definition)
    members(lake, definition)  # it must run on this lake before it is saved, or every later refresh would fail
    row = {
        "cohort": definition.name, "revision": definition.version, "definition_sha256": definition.sha256,
        "author": definition.author, "description": definition.description,
        "document": json.dumps(definition.to_dict(), sort_keys=True),
        "saved_at": pd.Timestamp(datetime.now(timezone.utc)), "saved_by": current_user(),
    }
    version = lake.write("cohort_definition", pd.DataFrame([row]), mode="upsert", operation=f"cohort:save:{definition.name}")
    return materialise_all(lake) if materialise else version


def delete(lake: Lake, name: str) -> int:
    """Remove a saved cohort and its members.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    name : str
        The saved cohort.

    Returns
    -------
    int
        The new ``cohort_member`` version (earlier versions of both tables keep the cohort).

    Examples
    --------
    >>> cohorts.delete(lake, "t2d")  # doctest: +SKIP
    """
    _require_saved(lake, name)
    remaining = lake.sql("SELECT * FROM cohort_definition WHERE cohort <> ?", [name])
    lake.write("cohort_definition", remaining, mode="overwrite", operation=f"cohort:delete:{name}")
    return materialise_all(lake)


def saved(lake: Lake, version: int | None = None) -> pd.DataFrame:
    """The saved definitions.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    version : int, optional
        A ``cohort_definition`` version (default: the latest).

    Returns
    -------
    pandas.DataFrame
        cohort, revision, definition_sha256, author, description, saved_at, saved_by (empty
        when nothing was ever saved).

    Examples
    --------
    >>> cohorts.saved(lake)  # doctest: +SKIP
    """
    if not lake.has_table("cohort_definition"):
        return pd.DataFrame(columns=["cohort", "revision", "definition_sha256", "author", "description", "saved_at",
                                     "saved_by"])
    versions = {"cohort_definition": version} if version is not None else None
    return lake.sql("SELECT * EXCLUDE (document) FROM cohort_definition ORDER BY cohort", versions=versions)


def get(lake: Lake, name: str, version: int | None = None) -> Definition:
    """The saved definition called ``name``.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    name : str
        The saved cohort.
    version : int, optional
        A ``cohort_definition`` version (default: the latest).

    Returns
    -------
    Definition

    Examples
    --------
    >>> print(cohorts.get(lake, "t2d").to_yaml())  # doctest: +SKIP
    """
    _require_saved(lake, name, version)
    versions = {"cohort_definition": version} if version is not None else None
    document = lake.sql("SELECT document FROM cohort_definition WHERE cohort = ?", [name], versions=versions)["document"].iloc[0]
    return from_dict(json.loads(document), f"saved cohort {name!r}")


def members_of(lake: Lake, name: str, version: int | None = None) -> pd.DataFrame:
    """The members of a saved cohort, as a version of ``cohort_member`` held them.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.
    name : str
        The saved cohort.
    version : int, optional
        A ``cohort_member`` version (default: the latest): the same people an analysis saw.

    Returns
    -------
    pandas.DataFrame
        person_id and index_date, ordered by person_id; ``attrs`` has the cohort, the version
        and the input tables (``table@version``) it was made from.

    Examples
    --------
    >>> cohorts.members_of(lake, "t2d", version=3)  # doctest: +SKIP
    """
    if not lake.has_table("cohort_member"):
        raise ExplorerError("no cohort has been materialised in this lake yet: save one first "
                            "(`explorer cohort save FILE` or explorer.cohorts.save(lake, definition))")
    version = lake.version("cohort_member") if version is None else version
    history = lake.versions("cohort_member")
    if not (history["version"] == version).any():
        raise ExplorerError(f"cohort_member has no version {version}; it has {', '.join(map(str, history['version']))}")
    inputs = history.loc[history["version"] == version, "inputs"].iloc[0]
    # the definitions that version was computed from: a name missing there was not materialised
    made_from = next((int(ref.rpartition("@")[2]) for ref in inputs if ref.startswith("cohort_definition@")), None)
    names = saved(lake, made_from)["cohort"].tolist() if made_from is not None else []
    if name not in names:
        raise ExplorerError(f"cohort {name!r} is not in cohort_member@{version}{did_you_mean(name, names)}; "
                            f"it holds {', '.join(names) or 'no cohort'}")
    frame = lake.sql("SELECT person_id, index_date FROM cohort_member WHERE cohort = ? ORDER BY person_id", [name],
                     versions={"cohort_member": version})
    frame.attrs.update(cohort=name, version=version, inputs=inputs)
    return frame


def materialise_all(lake: Lake) -> int:
    """Recompute every saved cohort from the current versions of its inputs.

    Parameters
    ----------
    lake : explorer.lake.Lake
        The lake.

    Returns
    -------
    int
        The new ``cohort_member`` version: one commit, recording the versions of
        :data:`COHORT_INPUTS` it was computed from.
    """
    present = [t for t in COHORT_INPUTS if lake.has_table(t)]
    versions = {t: lake.version(t) for t in present}
    con = new_connection()
    try:
        lake.pinned_views(con, present, versions)
        rows = compute_members(con)
    finally:
        con.close()
    return lake.write("cohort_member", rows, mode="overwrite", inputs=[f"{t}@{v}" for t, v in sorted(versions.items())],
                      operation="cohort:materialise")


def compute_members(con) -> pd.DataFrame:
    """Members of every saved definition (the ``cohort_member`` refresh step's compute).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection whose views are the lake tables pinned at the versions being read,
        ``cohort_definition`` among them.

    Returns
    -------
    pandas.DataFrame
        cohort, definition_sha256, person_id, index_date (:data:`MEMBER_COLUMNS`).

    Raises
    ------
    explorer.errors.ExplorerError
        A saved definition reads a table that is not there.
    """
    present = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if "cohort_definition" not in present:
        return _empty()
    frames = []
    for name, document in con.execute("SELECT cohort, document FROM cohort_definition ORDER BY cohort").fetchall():
        definition = from_dict(json.loads(document), f"saved cohort {name!r}")
        missing = sorted(definition.tables() - present)
        if missing:
            raise ExplorerError(f"saved cohort {name!r} reads {', '.join(missing)}, not in the lake; ingest and refresh "
                                f"it, or `explorer cohort delete {name}`")
        compiled = compile_definition(definition)
        found = con.execute(compiled.members_sql(), compiled.params).df()
        found.insert(0, "cohort", name)
        found.insert(1, "definition_sha256", definition.sha256)
        frames.append(found)
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty()
    out = pd.concat(frames, ignore_index=True)
    out["index_date"] = pd.to_datetime(out["index_date"]).dt.date
    return out[MEMBER_COLUMNS]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"cohort": pd.Series([], dtype=str), "definition_sha256": pd.Series([], dtype=str),
                         "person_id": pd.Series([], dtype=str), "index_date": pd.Series([], dtype="datetime64[s]").dt.date})


def _require_saved(lake: Lake, name: str, version: int | None = None) -> None:
    names = saved(lake, version)["cohort"].tolist()
    if name not in names:
        raise ExplorerError(f"no saved cohort {name!r}{did_you_mean(name, names)}; saved cohorts: {', '.join(names) or 'none'} "
                            "(`explorer cohort list`)")
