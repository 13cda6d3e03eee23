"""DuckDB's errors told in the suite's words: a missing table named against the lake's own tables
(DuckDB suggests its system views, such as ``pg_prepared_statements``, because only the tables a
query names are registered), the number of parameters against the values given, and a short
message with the query position instead of DuckDB's banner."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import duckdb

from explorer.errors import QueryError, did_you_mean

__all__ = ["explain"]

_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')
_CANDIDATES = re.compile(r'Candidate bindings: (.+)')
_PARAMETERS = ("Parameter argument/count mismatch", "Values were not provided for the following parameters")


def explain(error: duckdb.Error, query: str, params: Sequence | Mapping | None,
            tables: Iterable[str]) -> QueryError:
    """The :class:`QueryError` to raise (``from error``) for ``error``, which DuckDB raised on
    ``query`` with ``params`` over a lake holding ``tables``."""
    text = str(error)
    first = text.split("\n", 1)[0]
    detail = first.split(": ", 1)[1] if ": " in first else first  # without "Binder Error: " and the like
    where = _position(text)
    if isinstance(error, duckdb.CatalogException) and (missing := _MISSING_TABLE.search(text)):
        name = missing.group(1).strip('"')
        hint = did_you_mean(name, tables).strip(" ()")
        return QueryError(f"the query failed: no table '{name}' in the lake; "
                          + (hint if hint else "`explorer catalog` lists its tables") + where)
    if isinstance(error, duckdb.InvalidInputException) and any(p in text for p in _PARAMETERS):
        return QueryError(_parameter_message(query, params))
    if isinstance(error, duckdb.BinderException) and (missing := _MISSING_COLUMN.search(text)):
        bindings = _CANDIDATES.search(text)
        candidates = re.findall(r'"([^"]+)"', bindings.group(1)) if bindings else []
        hint = f" (did you mean '{candidates[0].split('.')[-1]}'?)" if candidates else ""
        return QueryError(f"the query failed: no column '{missing.group(1)}' in the tables it reads{hint}{where}; "
                          "`explorer catalog TABLE` lists a table's columns")
    if isinstance(error, duckdb.PermissionException):
        return QueryError(f"the query failed: {detail} (this connection reads the lake's tables only: no files, "
                          "no settings, no extensions)")
    return QueryError(f"the query failed: {detail}{where}")


def _position(text: str) -> str:
    """``" at line L, column C: <that line>"`` from DuckDB's ``LINE L: ...`` and caret lines."""
    lines = text.split("\n")
    for k, line in enumerate(lines[:-1]):
        found = re.match(r"LINE (\d+): ", line)
        caret = lines[k + 1].find("^")
        if found and caret >= found.end():
            return (f" at line {found.group(1)}, column {caret - found.end() + 1}: "
                    f"{line[found.end():].strip()!r}")
    return ""


def _parameter_message(query: str, params) -> str:
    try:
        statements = duckdb.extract_statements(query)
        names = sorted(statements[0].named_parameters, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    except (duckdb.Error, IndexError):
        names = []
    given = 0 if params is None else len(params)
    marks = "?" if "?" in query and not any("$" + n in query for n in names) else "/".join(f"${n}" for n in names)
    return (f"the query failed: the query has {len(names)} parameter{'s' if len(names) != 1 else ''} ({marks}), "
            f"{given} value{'s were' if given != 1 else ' was'} given; give one value per parameter "
            "(on the command line, one -p VALUE each, in order)")
