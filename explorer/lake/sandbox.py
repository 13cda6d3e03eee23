"""A DuckDB connection that is safe to hand to a served dashboard.

Three layers, each enough on its own for what it guards:

1. Only plain ``SELECT`` statements are accepted (not ``EXPLAIN ANALYZE``, which runs the
   statement it explains), and only over the tables the connection was given.
2. DuckDB touches no file at all: granted tables are handed over as Arrow datasets read by
   deltalake, ``allowed_directories`` stays empty, spilling to disk is off (a temp directory
   would otherwise be allowed implicitly), external access is disabled and the configuration
   locked, so no statement can read another table's files, the raw zone, or write anything.
3. A query pinned to earlier versions runs on a throwaway connection built the same way, so
   one user's pin is never served to the next.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

import duckdb
import pandas as pd

from explorer.errors import SandboxViolation
from explorer.lake.engine import arrow_relation, new_connection, referenced_tables
from explorer.lake.query_errors import explain

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake.lake import Lake


def public_tables(lake: Lake) -> list[str]:
    """Tables whose catalog entry puts them in the ``public`` sensitivity tier."""
    catalog = lake.catalog
    return [name for name in lake.tables() if (entry := catalog.get(name)) is not None and entry.sensitivity == "public"]


def _locked_connection(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    con = new_connection(memory_limit=memory_limit, threads=int(threads), temp_directory="")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


class SandboxedConnection:
    """Read-only, resource-limited SQL over selected lake tables.

    Parameters
    ----------
    lake : Lake
    tables : iterable of str, optional
        Tables the connection may see. Default: the tables in the ``public`` tier of the
        catalog (aggregates meant for dashboards), never person-level or steward tables.
    memory_limit : str
        DuckDB ``memory_limit``, e.g. ``"1GB"``. With spilling off, a query that needs more fails.
    threads : int
        DuckDB worker threads for this connection.

    Examples
    --------
    >>> con = lake.sandbox(tables=["wearable_daily"], memory_limit="512MB", threads=1)  # doctest: +SKIP
    >>> con.sql("SELECT count(*) FROM wearable_daily")                                    # doctest: +SKIP
    """

    def __init__(self, lake: Lake, *, tables: Iterable[str] | None = None, memory_limit: str = "1GB",
                 threads: int = 2):
        self.lake = lake
        self.tables = sorted(tables) if tables is not None else public_tables(lake)
        for name in self.tables:
            lake.delta(name)  # fail now, with a did-you-mean, on an unknown table
        self.memory_limit, self.threads = memory_limit, threads
        self._lock = threading.Lock()
        self._registered: dict = {}
        self._con = _locked_connection(memory_limit, threads)

    def _check(self, query: str) -> list[str]:
        statements = duckdb.extract_statements(query)
        if len(statements) != 1:
            raise SandboxViolation(f"expected exactly one SQL statement, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise SandboxViolation(f"only SELECT statements run on a dashboard connection, "
                                   f"got {statements[0].type.name}")
        referenced = referenced_tables(query)
        if referenced is None:
            return list(self.tables)
        hidden = sorted(n for n in referenced if n in set(self.lake.tables()) - set(self.tables))
        if hidden:
            raise SandboxViolation(f"table(s) {', '.join(hidden)} are not available on this connection")
        return [n for n in referenced if n in self.tables]

    def sql(self, query: str, params: Sequence | Mapping | None = None, *,
            versions: Mapping[str, int] | None = None) -> pd.DataFrame:
        """Run one SELECT with bound parameters; return a pandas DataFrame."""
        try:
            names = self._check(query)
        except duckdb.Error as exc:  # a statement DuckDB cannot even split
            raise explain(exc, query, params, self.tables) from exc
        if versions:
            outside = sorted(set(versions) - set(self.tables))
            if outside:
                raise SandboxViolation(f"table(s) {', '.join(outside)} are not available on this connection")
        try:
            if versions:
                con = _locked_connection(self.memory_limit, self.threads)
                try:
                    self.lake.pinned_views(con, names, versions, reader=arrow_relation)
                    return con.execute(query, params).df()
                finally:
                    con.close()
            with self._lock:
                self.lake.sync_views(self._con, names, self._registered, reader=arrow_relation)
                return self._con.execute(query, params).df()
        except duckdb.Error as exc:
            raise explain(exc, query, params, self.tables) from exc

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
