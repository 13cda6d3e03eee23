"""Bound parameters are data, never SQL; a sandboxed connection cannot leave the lake."""

import pytest

from explorer.errors import SandboxViolation, TableNotFoundError
from explorer.testing import make_persons

HOSTILE = "1 OR 1=1; DROP TABLE person"


@pytest.fixture
def filled(lake):
    lake.write("person", make_persons(5), mode="overwrite")
    lake.write("wearable_daily", [{"person_id": "a", "date": __import__("datetime").date(2024, 1, 1), "steps": 10,
                                   "person_bucket": 0}])
    return lake


@pytest.mark.parametrize("value", [HOSTILE, "' OR '1'='1", "x'); COPY person TO '/tmp/leak.csv'; --"])
def test_bound_parameter_is_data_not_sql(filled, value, tmp_path):
    assert filled.sql("SELECT * FROM person WHERE person_id = ?", [value]).empty
    assert filled.sql("SELECT count(*) AS n FROM person")["n"].item() == 5
    assert not (tmp_path / "leak.csv").exists()
    assert filled.sandbox(tables=["person"]).sql("SELECT * FROM person WHERE person_id = ?", [value]).empty


def test_sandbox_reads_lake_tables(filled):
    con = filled.sandbox(tables=["wearable_daily"], memory_limit="256MB", threads=1)
    assert con.sql("SELECT sum(steps) AS s FROM wearable_daily")["s"].item() == 10


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{raw}/*/*')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_parquet('{tables}/person/*.parquet')",  # a table not granted, read as files
    "SELECT * FROM read_text('{tables}/person/_delta_log/*.json')",
    "SELECT * FROM glob('.tmp/*')",  # DuckDB's implicit temp directory
])
def test_sandbox_reads_no_file_at_all(filled, statement):
    filled.raw.put(b"identifiable source file")
    con = filled.sandbox(tables=["wearable_daily"])
    with pytest.raises(Exception, match="Permission Error|disabled by configuration"):
        con.sql(statement.format(raw=filled.raw.root, tables=filled.tables_dir))


@pytest.mark.parametrize("statement, refused_by", [
    ("COPY (SELECT 1) TO '/tmp/explorer-sandbox-escape.csv'", "only SELECT"),
    ("COPY person TO '{tables}/person/leak.csv'", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("ATTACH '/tmp/explorer-sandbox.db'", "only SELECT"),
    ("SELECT 1; DROP VIEW person", "exactly one"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{tables}/person/_delta_log/00000000000000000009.json'", "only SELECT"),
    ("EXPLAIN SELECT * FROM person", "only SELECT"),
    ("CREATE OR REPLACE VIEW wearable_daily AS SELECT 999999 AS steps", "only SELECT"),
    ("DROP VIEW wearable_daily", "only SELECT"),
])
def test_sandbox_refuses_writes_installs_and_settings(filled, statement, refused_by):
    con = filled.sandbox(tables=["person", "wearable_daily"])
    with pytest.raises(SandboxViolation, match=refused_by):
        con.sql(statement.format(tables=filled.tables_dir))
    assert not (filled.tables_dir / "person" / "leak.csv").exists()
    assert filled.version("person") == 0
    assert con.sql("SELECT sum(steps) AS s FROM wearable_daily")["s"].item() == 10


def test_duckdb_itself_enforces_the_lock_below_the_statement_guard(filled):
    """Even a statement that slipped past the guard meets DuckDB's own locked configuration."""
    con = filled.sandbox(tables=["person"])
    raw = con._con
    for statement, message in [
        ("COPY (SELECT 1) TO '/tmp/explorer-sandbox-escape.csv'", "disabled by configuration"),
        ("INSTALL httpfs", "disabled by configuration"),
        ("LOAD httpfs", "disabled through configuration"),
        ("SET enable_external_access = true", "configuration has been locked"),
        ("SET allowed_directories = ['/']", "configuration has been locked"),
        ("ATTACH '/tmp/explorer-sandbox.db'", "disabled by configuration"),
        (f"SELECT * FROM read_parquet('{filled.tables_dir}/person/*.parquet')", "disabled by configuration"),
    ]:
        with pytest.raises(Exception, match=message):
            raw.execute(statement)


def test_sandbox_hides_tables_it_was_not_given(filled):
    con = filled.sandbox(tables=["wearable_daily"])
    with pytest.raises(SandboxViolation, match="person"):
        con.sql("SELECT * FROM person")
    with pytest.raises(TableNotFoundError, match="did you mean 'wearable_daily'"):
        filled.sandbox(tables=["wearable_dialy"])


def test_sandbox_sees_new_versions_after_the_lock_and_pins_never_leak(filled):
    con = filled.sandbox(tables=["person"])
    assert con.sql("SELECT count(*) AS n FROM person")["n"].item() == 5
    filled.write("person", make_persons(2, seed=9))
    assert con.sql("SELECT count(*) AS n FROM person")["n"].item() == 7
    assert con.sql("SELECT count(*) AS n FROM person", versions={"person": 0})["n"].item() == 5
    assert con.sql("SELECT count(*) AS n FROM PERSON")["n"].item() == 7
    assert con.sql('SELECT count(*) AS n FROM "Person"')["n"].item() == 7


def test_pinned_queries_never_leak_into_later_calls(filled):
    filled.write("person", make_persons(3, seed=7))
    assert filled.sql("SELECT count(*) AS n FROM person", versions={"person": 0})["n"].item() == 5
    for query in ("SELECT count(*) AS n FROM PERSON", 'SELECT count(*) AS n FROM "Person"',
                  "SELECT count(*) AS n FROM query_table('person')"):
        assert filled.sql(query)["n"].item() == 8, query


def test_views_follow_writes_from_another_process(filled):
    from conftest import run_python

    assert filled.sql("SELECT count(*) AS n FROM PERSON")["n"].item() == 5
    result = run_python("""
        import sys, explorer
        from explorer.testing import make_persons
        explorer.open(sys.argv[1]).write("person", make_persons(4, seed=11))
    """, filled.root)
    assert result.returncode == 0, result.stderr
    assert filled.sql("SELECT count(*) AS n FROM PERSON")["n"].item() == 9
    assert filled.sql("SELECT count(*) AS n FROM query_table('person')")["n"].item() == 9


def test_default_sandbox_shows_only_public_tables(filled):
    filled.write("marker_ageing", [{"marker": "2345-7", "n_persons": 40, "slope": 0.02}])
    con = filled.sandbox()
    assert con.tables == ["marker_ageing"]
    with pytest.raises(SandboxViolation, match="person"):
        con.sql("SELECT * FROM person")
