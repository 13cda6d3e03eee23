"""DuckDB connections and the user name: the one place the lake's engine is configured.

Every package that needs a DuckDB connection of its own (quality checks, cohort materialisation,
refresh workers) takes it from here, so an engine setting is changed once.
"""
from __future__ import annotations

import getpass
import json
import threading

import duckdb
from deltalake import DeltaTable

__all__ = ["arrow_relation", "current_user", "delta_dataset", "new_connection", "referenced_tables"]


def arrow_relation(con: duckdb.DuckDBPyConnection, dt: DeltaTable):
    """A DuckDB relation over one Delta version through deltalake's Arrow dataset: DuckDB
    itself touches no file, so it works on a connection with all file access disabled."""
    return con.from_arrow(delta_dataset(dt))


def delta_dataset(dt: DeltaTable):
    """deltalake's Arrow dataset of one version, its text columns declared ``string_view``.

    A MERGE (an upsert, a superseding delivery) writes text as Arrow ``string_view`` in the
    file's own schema while the table's schema says ``string``; DuckDB then pushes a filter
    (``loinc_code IN (...)``, ``person_id = ?``) the scan cannot evaluate, "no kernel matching
    (string, string_view)". Declared as views, every file's text is read as views (a plain
    string file is cast), and each filter compares like with like; DuckDB sees VARCHAR either way.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    dataset = dt.to_pyarrow_dataset()
    text = (pa.string(), pa.large_string())
    if not any(field.type in text for field in dataset.schema):
        return dataset
    schema = pa.schema([field.with_type(pa.string_view()) if field.type in text else field for field in dataset.schema])
    return pads.FileSystemDataset(list(dataset.get_fragments()), schema, dataset.format, dataset.filesystem)


def new_connection(**config) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with ``config``, that installs and loads no extension by
    itself and draws no progress bar (long queries would draw it on the caller's terminal, in
    logs and in tests)."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, **config})
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        # In a Jupyter kernel without ipywidgets DuckDB refuses to touch the setting at all, and
        # the bar is off there already (it could not be drawn).
        pass
    return con


_PARSER = threading.local()


def referenced_tables(query: str) -> set[str] | None:
    """Base-table names a SELECT reads, from DuckDB's parser (no binding, so ``?`` is fine).

    Returns None for a statement the parser cannot serialise (DESCRIBE, COPY, a syntax error):
    callers then register every table and let DuckDB report any error itself.
    """
    con = getattr(_PARSER, "con", None)
    if con is None:
        con = _PARSER.con = duckdb.connect()
    document = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    if document.get("error"):
        return None
    names: set[str] = set()
    common: set[str] = set()  # WITH names: they read like tables but are the query's own
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and not node.get("schema_name"):
                names.add(node["table_name"].lower())  # DuckDB resolves names case-insensitively
            if isinstance(node.get("cte_map"), dict):
                common.update(str(item.get("key", "")).lower() for item in node["cte_map"].get("map", []))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names - common



def current_user() -> str:
    """The operating-system user running this process, recorded with commits, saves and audit
    entries; ``"unknown"`` in a container without a user name rather than a failed write."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
