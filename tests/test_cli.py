"""The `explorer` command end to end, in real subprocesses."""

import json

import pytest

from conftest import run_cli

COMMANDS = ["catalog", "verify", "versions", "lineage", "sql", "synth", "ingest", "demo", "analysis"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "usage: explorer " + command in result.stdout
    assert len(result.stdout.splitlines()) >= 4


def test_top_level_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and all(c in result.stdout for c in COMMANDS)


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "lake"
    result = run_cli("demo", "--participants", 4, "--days", 2, "--no-serve", lake_root=root)
    assert result.returncode == 0, result.stderr
    return root, result.stdout


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    """Tables written in-process from the seeded factories: known counts for the CLI to query."""
    import explorer
    from explorer.testing import make_measurements, make_persons

    lake = explorer.open(tmp_path_factory.mktemp("small") / "lake")
    lake.write("person", make_persons(4), mode="overwrite")
    lake.write("measurement", make_measurements(4, 3), mode="overwrite")
    lake.write("steward_notes", [{"note": "no catalog entry, so steward only"}], mode="overwrite")
    return lake.root


def test_demo_runs_synth_ingest_refresh_query_lineage_verify(demo_lake):
    root, out = demo_lake
    assert "[1/7] synth" in out and "[2/7] ingest" in out and "quarantined" in out
    assert "[3/7] refresh" in out and "[5/7] a cohort" in out and "data_availability" in out and "modality_coverage" in out
    assert "lineage of heart_rate_minute@0: made from" in out and "all match what was recorded" in out
    key = root.parent / f"{root.name}.pseudonym.key"
    assert key.exists() and root not in key.parents  # the demo's key lives beside the lake, not in it


def test_the_demos_person_days_are_what_the_table_holds(demo_lake):
    """The figures the demo prints for one person equal wearable_daily's, which the pages read
    (they once summed steps over heart-rate minutes only: 16,209 printed for 16,300 held)."""
    import explorer

    root, out = demo_lake
    block = out.split("[4/7] person-days of pseudonym ", 1)[1].split("\n\n", 1)[0].splitlines()
    person = block[0].split()[0]
    header = block[1].split()
    printed = [dict(zip(header, line.split())) for line in block[2:]]
    held = explorer.open(root).sql("SELECT * FROM wearable_daily WHERE person_id = ? ORDER BY date", [person])
    assert printed and len(printed) == min(7, len(held))
    for row, (_, day) in zip(printed, held.iterrows()):
        assert row["date"] == day["date"].strftime("%Y-%m-%d")
        assert int(row["steps"]) == day["steps"] and int(row["wear_minutes"]) == day["wear_minutes"]
        for column, source in (("mean_hr_bpm", "mean_hr"), ("resting_hr_bpm", "resting_hr")):
            assert row[column] == "—" if day[source] != day[source] else abs(float(row[column]) - day[source]) <= 0.05


def test_sql_command_binds_parameters_and_pins_versions(small_lake):
    root = small_lake
    everyone = json.loads(run_cli("sql", "SELECT person_id FROM person", "--format", "json", lake_root=root).stdout)
    pid = everyone[0]["person_id"]
    one = run_cli("sql", "SELECT count(*) AS n FROM measurement WHERE person_id = ? AND value_si > ?",
                  "-p", pid, "-p", "0", "--format", "csv", lake_root=root)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == ["n", "9"]  # 3 visits x 3 markers
    hostile = run_cli("sql", "SELECT count(*) AS n FROM person WHERE person_id = ?", "-p",
                      "1 OR 1=1; DROP TABLE person", "--format", "csv", lake_root=root)
    assert hostile.stdout.splitlines() == ["n", "0"]
    leading_zero = run_cli("sql", "SELECT ? AS v, typeof(?) AS t", "-p", "007", "-p", "007", "--format", "csv", lake_root=root)
    assert leading_zero.stdout.splitlines() == ["v,t", "007,VARCHAR"]  # text stays text
    pinned = run_cli("sql", "SELECT count(*) AS n FROM person", "--version", "person=0", "--format", "csv", lake_root=root)
    assert pinned.stdout.splitlines() == ["n", "4"]


def test_errors_say_what_to_do(small_lake):
    root = small_lake
    bad_sql = run_cli("sql", "SELEC 1", lake_root=root)
    assert bad_sql.returncode == 2 and "the query failed" in bad_sql.stderr and "Traceback" not in bad_sql.stderr
    bad_pin = run_cli("sql", "SELECT 1", "--version", "person=latest", lake_root=root)
    assert bad_pin.returncode == 2 and "expected TABLE=NUMBER" in bad_pin.stderr
    unknown = run_cli("versions", "persons", lake_root=root)
    assert unknown.returncode == 2 and "did you mean 'person'" in unknown.stderr
    missing_version = run_cli("lineage", "person@9", lake_root=root)
    assert missing_version.returncode == 2 and "versions are 0..0" in missing_version.stderr


def test_versions_and_lineage_commands(demo_lake):
    root, _ = demo_lake
    history = run_cli("versions", "raw_manifest", lake_root=root)
    assert history.returncode == 0 and "receive" in history.stdout
    edges = run_cli("lineage", "heart_rate_minute", "--edges", lake_root=root)
    lines = edges.stdout.splitlines()
    assert lines[0] == "source,target"
    assert any(line.startswith("raw:") and line.endswith(",heart_rate_minute@0") for line in lines[1:])  # upstream
    assert "heart_rate_minute@0,dq_result@0" in lines  # downstream: the ingest's quality report read it


@pytest.mark.parametrize("command", [["catalog"], ["sql", "SELECT 1"], ["versions", "person"], ["lineage", "person"],
                                     ["verify"], ["refresh"], ["budget", "show"]])
def test_reading_commands_refuse_a_folder_without_a_lake(tmp_path, command):
    missing = tmp_path / "no-such-lake"
    result = run_cli(*command, lake_root=missing)
    assert result.returncode == 2, result.stderr
    assert f"no lake at {missing}; run `explorer demo` or set EXPLORER_HOME" in result.stderr
    assert "Traceback" not in result.stderr and not missing.exists()  # nothing made, no audit log left behind


def test_without_lake_or_home_a_reading_command_makes_no_explorer_data(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_HOME"}
    result = subprocess.run([sys.executable, "-m", "explorer.command", "catalog"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no lake at explorer-data" in result.stderr
    assert not (tmp_path / "explorer-data").exists()


def test_open_for_reading_refuses_a_folder_without_a_lake(tmp_path):
    import explorer
    from explorer.errors import ExplorerError

    with pytest.raises(ExplorerError, match="no lake at"):
        explorer.open(tmp_path / "empty", create=False)
    assert not (tmp_path / "empty").exists()
    explorer.open(tmp_path / "new")  # a writer still creates
    assert explorer.open(tmp_path / "new", create=False).tables() == []


@pytest.mark.parametrize("role, query, params, message", [
    # catalog: a table the lake has not got, named against the lake's tables (not DuckDB's system views)
    ("steward", "SELECT * FROM persn", [], "no table 'persn' in the lake; did you mean 'person'?"),
    ("researcher", "SELECT * FROM measurment", [], "no table 'measurment' in the lake; did you mean 'measurement'?"),
    # parameters against values
    ("steward", "SELECT * FROM person WHERE person_id = ? AND year_of_birth > ?", ["p1"],
     "the query has 2 parameters (?), 1 value was given"),
    ("researcher", "SELECT * FROM person WHERE person_id = $1", ["p1", "p2"],
     "the query has 1 parameter ($1), 2 values were given"),
    # permission: the role the table needs
    ("researcher", "SELECT * FROM steward_notes", [], "steward_notes (needs the steward role), which the researcher role may not read"),
    # binder: a column, with its position
    ("steward", "SELECT persn_id FROM person", [], "no column 'persn_id' in the tables it reads (did you mean 'person_id'?) at line 1, column 8"),
    ("researcher", "SELECT year_of_birht FROM person", [], "no column 'year_of_birht'"),
    # parser: the position of the syntax error
    ("steward", "SELECT * FROM person WHERE", [], 'syntax error at or near "WHERE" at line 1, column 22'),
    ("researcher", "SELEC 1", [], "syntax error at or near \"SELEC\" at line 1, column 1"),
    # the sandbox refuses files
    ("researcher", "SELECT * FROM read_csv('/etc/passwd')", [], "disabled by configuration"),
])
def test_sql_errors_are_told_in_the_suites_words(small_lake, role, query, params, message):
    params = [a for p in params for a in ("-p", p)]
    result = run_cli("--role", role, "sql", query, *params, lake_root=small_lake)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and "pg_prepared_statements" not in result.stderr
    assert "Did you mean" not in result.stderr  # DuckDB's own suggestion, over its system views


def test_lake_sql_raises_query_errors(small_lake):
    import explorer
    from explorer.errors import QueryError

    lake = explorer.open(small_lake, create=False)
    with pytest.raises(QueryError, match="no table 'persons' in the lake; did you mean 'person'"):
        lake.sql("SELECT * FROM persons")
    with pytest.raises(QueryError, match=r"has 1 parameter \(\?\), 0 values were given"):
        lake.sql("SELECT * FROM person WHERE person_id = ?")
    with pytest.raises(QueryError, match="no table 'nothing_like_it' in the lake; `explorer catalog` lists"):
        lake.sql("SELECT * FROM nothing_like_it", versions={"person": 0})
