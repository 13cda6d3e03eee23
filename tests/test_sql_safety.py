"""Bound parameters are data, never SQL; a sandboxed connection cannot leave the lake."""

import pytest

from explorer.errors import SandboxViolation, TableNotFoundError
from explorer.testing import make_persons

HOSTILE = "1 OR 1=1; DROP TABLE person"


@pytest.fixture
def filled(lake):
    lake.write("person", make_persons(5), mode="overwrite")
    lake.write("wearable_daily", [{"person_id": "a", "date": __import__("datetime").date(2024, 1, 1), "steps": 10}])
    return lake


@pytest.mark.parametrize("value", [HOSTILE, "' OR '1'='1", "x'); COPY person TO '/tmp/leak.csv'; --"])
def test_bound_parameter_is_data_not_sql(filled, value, tmp_path):
    assert filled.sql("SELECT * FROM person WHERE person_id = ?", [value]).empty
    assert filled.sql("SELECT count(*) AS n FROM person")["n"].item() == 5
    assert not (tmp_path / "leak.csv").exists()
    assert filled.sandbox().sql("SELECT * FROM person WHERE person_id = ?", [value]).empty


def test_sandbox_reads_lake_tables(filled):
    con = filled.sandbox(tables=["wearable_daily"], memory_limit="256MB", threads=1)
    assert con.sql("SELECT sum(steps) AS s FROM wearable_daily")["s"].item() == 10


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{raw}/*/*')",
    "SELECT * FROM glob('/*')",
])
def test_sandbox_cannot_read_outside_the_tables(filled, statement):
    filled.raw.put(b"identifiable source file")
    con = filled.sandbox()
    with pytest.raises(Exception, match="Permission Error|disabled by configuration"):
        con.sql(statement.format(raw=filled.raw.root))


@pytest.mark.parametrize("statement, refused_by", [
    ("COPY (SELECT 1) TO '/tmp/explorer-sandbox-escape.csv'", "only SELECT"),
    ("COPY person TO '{tables}/person/leak.csv'", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("ATTACH '/tmp/explorer-sandbox.db'", "only SELECT"),
    ("SELECT 1; DROP VIEW person", "exactly one"),
])
def test_sandbox_refuses_writes_installs_and_settings(filled, statement, refused_by):
    con = filled.sandbox()
    with pytest.raises(SandboxViolation, match=refused_by):
        con.sql(statement.format(tables=filled.tables_dir))
    assert not (filled.tables_dir / "person" / "leak.csv").exists()


def test_duckdb_itself_enforces_the_lock_below_the_statement_guard(filled):
    """Even a statement that slipped past the guard meets DuckDB's own locked configuration."""
    con = filled.sandbox()
    raw = con._con
    for statement, message in [
        ("COPY (SELECT 1) TO '/tmp/explorer-sandbox-escape.csv'", "disabled by configuration"),
        ("INSTALL httpfs", "disabled by configuration"),
        ("LOAD httpfs", "disabled through configuration"),
        ("SET enable_external_access = true", "configuration has been locked"),
        ("SET allowed_directories = ['/']", "configuration has been locked"),
        ("ATTACH '/tmp/explorer-sandbox.db'", "disabled by configuration"),
    ]:
        with pytest.raises(Exception, match=message):
            raw.execute(statement)


def test_sandbox_hides_tables_it_was_not_given(filled):
    con = filled.sandbox(tables=["wearable_daily"])
    with pytest.raises(SandboxViolation, match="person"):
        con.sql("SELECT * FROM person")
    with pytest.raises(TableNotFoundError, match="did you mean 'wearable_daily'"):
        filled.sandbox(tables=["wearable_dialy"])


def test_sandbox_sees_new_versions_after_the_lock(filled):
    con = filled.sandbox(tables=["person"])
    assert con.sql("SELECT count(*) AS n FROM person")["n"].item() == 5
    filled.write("person", make_persons(2, seed=9))
    assert con.sql("SELECT count(*) AS n FROM person")["n"].item() == 7
    assert con.sql("SELECT count(*) AS n FROM person", versions={"person": 0})["n"].item() == 5
