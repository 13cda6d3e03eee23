"""A DuckDB connection that is safe to hand to a served dashboard.

Order matters: limits first, then the only directory DuckDB may touch (the lake's tables, not
the raw zone), then external access off, then the configuration locked so no statement can
undo any of it. On top of DuckDB's own checks, only read statements are accepted: even inside
the allowed directory a dashboard must not write (``COPY ... TO``) or attach anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

import duckdb
import pandas as pd

from explorer.errors import SandboxViolation
from explorer.lake.lake import referenced_tables

_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class SandboxedConnection:
    """Read-only, resource-limited SQL over selected lake tables.

    Parameters
    ----------
    lake : Lake
    tables : iterable of str, optional
        Tables the connection may see (default: all). Public dashboards pass aggregates only.
    memory_limit : str
        DuckDB ``memory_limit``, e.g. ``"1GB"``.
    threads : int
        DuckDB worker threads for this connection.

    Examples
    --------
    >>> con = lake.sandbox(tables=["wearable_daily"], memory_limit="512MB", threads=1)  # doctest: +SKIP
    >>> con.sql("SELECT count(*) FROM wearable_daily")                                    # doctest: +SKIP
    """

    def __init__(self, lake, *, tables: Iterable[str] | None = None, memory_limit: str = "1GB",
                 threads: int = 2):
        self.lake = lake
        self.tables = sorted(tables) if tables is not None else lake.tables()
        for name in self.tables:
            lake.delta(name)  # fail now, with a did-you-mean, on an unknown table
        self._lock = threading.Lock()
        self._registered: dict = {}
        self._con = duckdb.connect(config={
            "memory_limit": memory_limit,
            "threads": int(threads),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        })
        allowed = str(lake.tables_dir) + "/"
        self._con.execute("SET allowed_directories = ?", [[allowed]])
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")

    def sql(self, query: str, params: Sequence | Mapping | None = None, *,
            versions: Mapping[str, int] | None = None) -> pd.DataFrame:
        """Run one read-only statement with bound parameters; return a pandas DataFrame."""
        statements = duckdb.extract_statements(query)
        if len(statements) != 1:
            raise SandboxViolation(f"expected exactly one SQL statement, got {len(statements)}")
        if statements[0].type not in _READ_ONLY:
            raise SandboxViolation(f"only SELECT statements run on a dashboard connection, "
                                   f"got {statements[0].type.name}")
        referenced = referenced_tables(query)
        referenced = set(self.tables) if referenced is None else referenced
        hidden = sorted(n for n in referenced if n in set(self.lake.tables()) - set(self.tables))
        if hidden:
            raise SandboxViolation(f"table(s) {', '.join(hidden)} are not available on this connection")
        with self._lock:
            self.lake.register(self._con, [n for n in referenced if n in self.tables], versions, self._registered)
            return self._con.execute(query, params).df()

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
