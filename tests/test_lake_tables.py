"""Write, append, overwrite, and read every earlier version unchanged."""

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import WriterProperties

import explorer
from explorer.errors import SchemaError, TableNotFoundError, VersionNotFoundError
from explorer.testing import make_measurements, make_persons


def snapshot(lake, name, version=None):
    return lake.table(name, version).order("person_id").df()


def test_write_append_overwrite_and_every_version_reads_back_unchanged(lake):
    first, second, third = make_persons(5, seed=1), make_persons(4, seed=2), make_persons(3, seed=3)
    assert lake.write("person", first, mode="overwrite") == 0
    v0 = snapshot(lake, "person")
    assert lake.write("person", second) == 1
    v1 = snapshot(lake, "person")
    assert lake.write("person", third, mode="overwrite") == 2

    assert len(v0) == 5 and len(v1) == 9
    pd.testing.assert_frame_equal(snapshot(lake, "person", 0), v0)
    pd.testing.assert_frame_equal(snapshot(lake, "person", 1), v1)
    assert sorted(snapshot(lake, "person")["person_id"]) == sorted(third["person_id"])
    assert lake.row_count("person") == 3 and lake.row_count("person", 1) == 9

    history = lake.versions("person")
    assert history["version"].tolist() == [0, 1, 2]
    assert history["mode"].tolist() == ["overwrite", "append", "overwrite"]
    assert history["rows_added"].tolist() == [5, 4, 3]


def test_sql_binds_parameters_and_pins_versions(lake):
    people = make_persons(6)
    lake.write("person", people.iloc[:3], mode="overwrite")
    lake.write("person", people.iloc[3:])
    pid = people["person_id"].iloc[4]
    assert lake.sql("SELECT count(*) AS n FROM person WHERE person_id = ?", [pid])["n"].item() == 1
    assert lake.sql("SELECT count(*) AS n FROM person WHERE person_id = ?", [pid], versions={"person": 0})["n"].item() == 0
    assert lake.sql("SELECT count(*) AS n FROM person")["n"].item() == 6  # the pin does not stick
    named = lake.sql("SELECT year_of_birth FROM person WHERE person_id = $pid", {"pid": pid})
    assert named["year_of_birth"].item() == people["year_of_birth"].iloc[4]


def test_catalog_types_are_enforced_and_extra_columns_kept(lake):
    frame = make_measurements(2, 1)
    frame["value_si"] = frame["value_si"].astype(str)  # castable text
    frame["lab_comment"] = "fasting"
    lake.write("measurement", frame, mode="overwrite")
    schema = lake.table("measurement").types
    columns = lake.table("measurement").columns
    assert str(schema[columns.index("value_si")]) == "DOUBLE"
    assert "lab_comment" in columns  # not in the catalog, not dropped
    assert "source_file" in columns  # declared, nullable, absent from the data: kept as nulls


def test_missing_required_column_names_it_and_the_catalog_file(lake):
    frame = make_measurements(2, 1).drop(columns=["loinc_code"]).rename(columns={"unit": "units"})
    with pytest.raises(SchemaError, match=r"loinc_code.*data_catalog/measurement.yaml"):
        lake.write("measurement", frame)
    assert not lake.has_table("measurement")  # nothing half-written


def test_uncastable_value_names_column_row_and_value(lake):
    frame = make_persons(4)
    frame["year_of_birth"] = ["1950", "1961", "nineteen", "1970"]
    with pytest.raises(SchemaError, match=r"person.year_of_birth.*row 2: 'nineteen'"):
        lake.write("person", frame)


def test_unknown_table_and_version_errors_say_what_exists(lake):
    lake.write("person", make_persons(2))
    with pytest.raises(TableNotFoundError, match=r"did you mean 'person'"):
        lake.table("persn")
    with pytest.raises(VersionNotFoundError, match=r"versions are 0..0"):
        lake.table("person", version=7)
    with pytest.raises(explorer.ExplorerError, match="lower_snake_case"):
        lake.write("Person; drop", make_persons(1))


def test_schema_evolution_on_append_reads_old_files_with_nulls(lake):
    lake.write("notes", [{"person_id": "a", "x": 1}], mode="overwrite")
    with pytest.raises(SchemaError, match="schema_mode='merge'"):
        lake.write("notes", [{"person_id": "b", "x": 2, "y": "new"}])
    lake.write("notes", [{"person_id": "b", "x": 2, "y": "new"}], schema_mode="merge")
    rows = lake.sql("SELECT person_id, x, y FROM notes ORDER BY person_id")
    assert rows["y"].tolist()[1] == "new" and pd.isna(rows["y"].tolist()[0])


def test_partitioned_table_keeps_partition_column_and_type(lake):
    data = pa.table({"bucket": pa.array([0, 1, 1, 2], pa.int32()), "person_id": list("abcd"), "v": [1.0, 2.0, 3.0, 4.0]})
    lake.write("bucketed", data, mode="overwrite", partition_by=["bucket"])
    rel = lake.table("bucketed")
    assert rel.columns == ["bucket", "person_id", "v"]
    assert str(rel.types[0]) == "INTEGER"
    assert lake.sql("SELECT sum(v) AS s FROM bucketed WHERE bucket = ?", [1])["s"].item() == 5.0


def test_uncompressed_files_round_trip(lake):
    people = make_persons(5)
    lake.write("person", people, writer_properties=WriterProperties(compression="UNCOMPRESSED"))
    assert sorted(lake.sql("SELECT person_id FROM person")["person_id"]) == sorted(people["person_id"])


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOME", str(tmp_path / "home"))
    assert explorer.open().root == (tmp_path / "home").resolve()
    monkeypatch.delenv("EXPLORER_HOME")
    monkeypatch.chdir(tmp_path)
    assert explorer.open().root == (tmp_path / "explorer-data").resolve()


def test_raw_zone_keeps_bytes_under_their_hash_with_a_manifest(lake, tmp_path):
    source = tmp_path / "labs.csv"
    source.write_bytes(b"person,loinc,value\n1,2345-7,5.1\n")
    first = lake.raw.put(source, detected_format="lab_csv")
    again = lake.raw.put(source, detected_format="lab_csv")
    assert first.sha256 == again.sha256 == __import__("hashlib").sha256(source.read_bytes()).hexdigest()
    assert first.path.read_bytes() == source.read_bytes()
    manifest = lake.raw.manifest()
    assert len(manifest) == 2 and set(manifest["source_name"]) == {str(source)}
    assert manifest["size_bytes"].tolist() == [source.stat().st_size] * 2
    with pytest.raises(explorer.ExplorerError, match="not a file"):
        lake.raw.put(tmp_path / "missing.csv")


def test_lossy_casts_into_an_existing_table_are_refused(lake):
    lake.write("t", [{"x": 1}])
    with pytest.raises(SchemaError, match=r"t\.x: cannot store double as int64 \(first at row 0: 1.5\)"):
        lake.write("t", [{"x": 1.5}])
    with pytest.raises(SchemaError, match=r"t\.x: cannot store string as int64"):
        lake.write("t", [{"x": "a"}])
    lake.write("t", [{"x": 2.0}])  # exact: fine
    assert lake.sql("SELECT sum(x) AS s FROM t")["s"].item() == 3


def test_required_columns_must_be_filled(lake):
    people = make_persons(3)
    people.loc[1, "person_id"] = None
    with pytest.raises(SchemaError, match=r"person.person_id: empty at row 1.*nullable: false"):
        lake.write("person", people)


def test_lineage_references_are_normalised(lake):
    lake.write("a", [{"x": 1}])
    lake.write("a", [{"x": 2}])
    lake.write("b", [{"x": 3}], inputs=["a@01"])
    assert lake.versions("b")["inputs"].iloc[0] == ["a@1"]
    assert "b@0" in lake.lineage("a@1").downstream


def test_raw_zone_guards_its_paths_and_repairs_damaged_copies(lake, tmp_path):
    with pytest.raises(explorer.ExplorerError, match="64 lower-case hex"):
        lake.raw.open("../../../../etc/passwd")
    with pytest.raises(explorer.ExplorerError, match="source_names has 1 entries for 3 sources"):
        lake.raw.put_many([b"a", b"b", b"c"], source_names=["a.csv"])
    stored = lake.raw.put(b"original bytes")
    import os

    os.chmod(stored.path, 0o644)
    stored.path.write_bytes(b"damaged")
    again = lake.raw.put(b"original bytes")
    assert again.path.read_bytes() == b"original bytes" and lake.verify().ok


def test_a_notebook_run_in_notebooks_finds_the_demo_lake_above(tmp_path):
    import os
    import subprocess
    import sys

    demo = explorer.open(tmp_path / "explorer-data")
    demo.write("person", [{"person_id": "p1", "year_of_birth": 1950}], mode="overwrite")
    (tmp_path / "notebooks").mkdir()
    script = "import explorer; lake = explorer.open(); print(lake.root); print(lake.tables())"
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_HOME"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "notebooks", env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(demo.root), "['person']"]
    assert not (tmp_path / "notebooks" / "explorer-data").exists()  # no empty lake made beside the notebooks


def test_a_merged_table_read_through_arrow_takes_every_filter(lake):
    """A MERGE writes text as string_view in its files while the table says string; DuckDB's
    filters pushed into the Arrow scan (a long IN list becomes a range, an equality) must still
    run: the sandboxed dashboards and lakes on object storage read every table this way."""
    from explorer.lake.engine import arrow_relation, new_connection

    lake.write("person", [{"person_id": f"p{i}", "year_of_birth": 1950 + i} for i in range(5)], mode="overwrite")
    lake.write("person", [{"person_id": "p2", "year_of_birth": 1990}], mode="upsert")
    con = new_connection()
    arrow_relation(con, lake.delta("person")).create_view("person")
    wanted = ", ".join(f"'p{i}'" for i in range(1, 10))
    assert con.execute(f"SELECT count(*) FROM person WHERE person_id IN ({wanted})").fetchone()[0] == 4
    assert con.execute("SELECT year_of_birth FROM person WHERE person_id = 'p2'").fetchone()[0] == 1990
    assert con.execute("SELECT typeof(person_id) FROM person LIMIT 1").fetchone()[0] == "VARCHAR"


def test_has_table_agrees_with_the_tables_listed(lake):
    """``has_table`` looks at one table's log instead of listing every table: it must say what
    ``tables()`` says, for tables with commits, a folder without a log, and names no table can have."""
    lake.write("person", make_persons(3))
    (lake.root / "tables" / "half_made").mkdir(parents=True)  # a folder a failed first commit left
    (lake.root / "tables" / "no_commit" / "_delta_log").mkdir(parents=True)
    for name in ["person", "measurement", "half_made", "no_commit", "Person", "../tables", "", 3]:
        assert lake.has_table(name) == (name in lake.tables()), name
    assert lake.has_table("person") and not lake.has_table("no_commit")
