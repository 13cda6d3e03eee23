"""Security issue 27, finding 5, "Safe Harbor by alias": an export judges each column by the lake
columns its values come from, never by the name a query gives it.

The attack, as reported: ``SELECT upper(person_id) AS k, zip3 AS area, source_file AS src,
strftime(measurement_datetime, '%d/%m/%Y %H:%M') AS d FROM ...`` wrote pseudonyms, unmasked
ZIP3s, file hashes and full dates and times under a Safe Harbor label that said "removed:
nothing". Every test here looks at the bytes written, not only at the report.
"""

from __future__ import annotations

import hashlib
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explorer
from explorer.errors import ExplorerError
from explorer.privacy.safe_harbor import UntraceableQuery, export, safe_harbor
from explorer.testing.factories import make_measurements, make_persons

#: the lab rows with each person's ZIP3 (person's own source_file left out, so the name is not ambiguous)
FROM = "FROM measurement JOIN (SELECT person_id, zip3 FROM person) AS person USING (person_id)"
ATTACK = ("SELECT upper(person_id) AS k, zip3 AS area, source_file AS src, "
          f"strftime(measurement_datetime, '%d/%m/%Y %H:%M') AS d {FROM}")
#: '036' has 20,000 people or fewer in the shipped population table, '850' more
SMALL_ZIP3, LARGE_ZIP3 = "036", "850"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Ten persons, half in a small ZIP3 area; lab rows at exact times, each from a hashed raw file."""
    lake = explorer.open(tmp_path_factory.mktemp("export-lake") / "lake")
    persons = make_persons(10).assign(zip3=[SMALL_ZIP3] * 5 + [LARGE_ZIP3] * 5)
    measurements = make_measurements(10, visits=2)
    measurements["source_file"] = [hashlib.sha256(f"raw file {i}".encode()).hexdigest() for i in range(len(measurements))]
    lake.write("person", persons)
    lake.write("measurement", measurements)
    lake.persons, lake.measurements = persons, measurements
    return lake


def written(lake, tmp_path, query, name="out.csv", **kwargs):
    """Export ``query``; return the rows and the text of the file written (Parquet read back)."""
    path = tmp_path / name
    rows = export(lake, path, query=query, **kwargs)
    text = path.read_text() if path.suffix == ".csv" else pd.read_parquet(path).to_csv(index=False)
    return rows, text


def leaks(lake, text: str) -> list[str]:
    """Everything in an exported file that Safe Harbor forbids, or that points back into the lake."""
    found = []
    lowered = text.lower()
    for pid in lake.persons["person_id"]:
        if pid.lower() in lowered or hashlib.md5(pid.encode()).hexdigest() in lowered:
            found.append(f"pseudonym {pid}")
    for sha in lake.measurements["source_file"]:
        if sha[:16] in lowered:
            found.append(f"file hash {sha[:16]}")
    cells = {cell.strip('"') for line in text.splitlines() for cell in line.split(",")}
    if SMALL_ZIP3 in cells or SMALL_ZIP3[:2] in cells:
        found.append(f"small-area ZIP3 {SMALL_ZIP3}")
    for pattern in (r"\d{4}-\d{2}-\d{2}", r"\d{1,2}/\d{1,2}/\d{4}", r"\d{1,2}:\d{2}", r"\b1[45]\d{8}\b"):
        if re.search(pattern, text):
            found.append(f"date or time matching {pattern}")
    return found


def actions(rows) -> dict:
    return {c["column"]: c["action"] for c in rows.attrs["safe_harbor"]["columns"]}


def test_the_reported_attack_writes_nothing_forbidden_and_says_what_it_removed(lake, tmp_path):
    rows, text = written(lake, tmp_path, ATTACK)
    assert leaks(lake, text) == []
    report = rows.attrs["safe_harbor"]
    assert sorted(report["removed"]) == ["d", "k", "src"] and list(rows.columns) == ["area"]
    assert set(rows["area"]) == {"000", LARGE_ZIP3}
    sources = {c["column"]: c["from"] for c in report["columns"]}
    assert sources == {"k": ["measurement.person_id", "person.person_id"], "area": ["person.zip3"],
                       "src": ["measurement.source_file"], "d": ["measurement.measurement_datetime"]}
    assert any(change.startswith("area (from person.zip3): '000'") for change in report["changed"])
    parquet_rows, parquet_text = written(lake, tmp_path, ATTACK, "out.parquet")
    assert leaks(lake, parquet_text) == [] and list(parquet_rows.columns) == ["area"]


def test_the_reported_attack_through_the_command_line(lake, tmp_path):
    from conftest import run_cli

    out = tmp_path / "attack.csv"
    done = run_cli("export", "--sql", ATTACK, "--out", out, lake_root=lake.root)
    assert done.returncode == 0, done.stderr
    assert "removed: nothing" not in done.stdout and "removed: k, src, d" in done.stdout
    assert "k (from measurement.person_id, person.person_id): computed from a person key by upper(person_id)" in done.stdout
    assert "area (from person.zip3): '000'" in done.stdout
    assert leaks(lake, out.read_text()) == []
    from explorer.privacy import AuditLog

    entry = AuditLog(lake.root).entries().iloc[-1]
    assert entry["action"] == "export" and sorted(entry["parameters"]["removed"]) == ["d", "k", "src"]


#: (query, what happens to each output column); every one is also checked byte by byte
ALIAS_FORMS = {
    "rename": ("SELECT person_id AS k, value_si FROM measurement", {"k": "replaced", "value_si": "kept"}),
    "upper": ("SELECT upper(person_id) AS k, value_si FROM measurement", {"k": "removed", "value_si": "kept"}),
    "lower": ("SELECT lower(person_id) AS k, value_si FROM measurement", {"k": "removed", "value_si": "kept"}),
    "concat": ("SELECT concat('id-', person_id) AS k, person_id || '' AS j, value_si FROM measurement",
               {"k": "removed", "j": "removed", "value_si": "kept"}),
    "md5": ("SELECT md5(person_id) AS k, hash(person_id) AS h, value_si FROM measurement",
            {"k": "removed", "h": "removed", "value_si": "kept"}),
    "cast to varchar": ("SELECT CAST(person_id AS VARCHAR) AS k, person_id::TEXT AS j, value_si FROM measurement",
                        {"k": "replaced", "j": "replaced", "value_si": "kept"}),
    "subquery alias": ("SELECT s.who AS k, s.place AS area, s.shout FROM (SELECT person_id AS who, zip3 AS place, "
                       "upper(person_id) AS shout FROM person) AS s",
                       {"k": "replaced", "area": "masked", "shout": "removed"}),
    "cte alias": ("WITH c(who, place, shout) AS (SELECT person_id, zip3, lower(person_id) FROM person) "
                  "SELECT who AS k, place AS area, shout FROM c", {"k": "replaced", "area": "masked", "shout": "removed"}),
    "join alias": ("SELECT x.k, p.zip3 AS area, x.f AS src FROM (SELECT person_id AS k, source_file AS f FROM measurement) x "
                   "JOIN person AS p ON x.k = p.person_id", {"k": "replaced", "area": "masked", "src": "removed"}),
    "select star": ("SELECT * FROM measurement JOIN person USING (person_id)",
                    {"person_id": "replaced", "measurement_datetime": "generalised", "source_file": "removed",
                     "zip3": "masked", "year_of_birth": "generalised", "value_si": "kept"}),
    "star with replace": ("SELECT * REPLACE (upper(person_id) AS person_id) FROM person",
                          {"person_id": "removed", "zip3": "masked"}),
    "strftime": ("SELECT strftime(measurement_datetime, '%d/%m/%Y %H:%M') AS d, value_si FROM measurement",
                 {"d": "removed", "value_si": "kept"}),
    "format": ("SELECT format('{}', measurement_datetime) AS d, printf('%s', measurement_datetime) AS e, value_si "
               "FROM measurement", {"d": "removed", "e": "removed", "value_si": "kept"}),
    "day of the month": ("SELECT date_part('day', measurement_datetime) AS d, dayofmonth(measurement_datetime) AS e, "
                         "extract(hour FROM measurement_datetime) AS h, value_si FROM measurement",
                         {"d": "removed", "e": "removed", "h": "removed", "value_si": "kept"}),
    "epoch": ("SELECT epoch(measurement_datetime) AS d, measurement_datetime - TIMESTAMP '2000-01-01' AS e, value_si "
              "FROM measurement", {"d": "removed", "e": "removed", "value_si": "kept"}),
    "date to text": ("SELECT CAST(measurement_datetime AS VARCHAR) AS d, date_trunc('day', measurement_datetime) AS e, "
                     "measurement_datetime::DATE AS f FROM measurement",
                     {"d": "removed", "e": "removed", "f": "generalised"}),
    "zip3 renamed": ("SELECT zip3 AS area, zip3 AS region FROM person", {"area": "masked", "region": "masked"}),
    "zip3 substring": ("SELECT substr(zip3, 1, 2) AS area, zip3[1:2] AS region, CAST(zip3 AS INTEGER) AS z, sex_at_birth "
                       "FROM person", {"area": "removed", "region": "removed", "z": "removed", "sex_at_birth": "kept"}),
    "source_file renamed": ("SELECT source_file AS src, left(source_file, 16) AS s16, value_si FROM measurement",
                            {"src": "removed", "s16": "removed", "value_si": "kept"}),
    "aggregates and windows": ("SELECT max(person_id) AS k, string_agg(person_id, ';') AS ks, min(measurement_datetime) AS d "
                               "FROM measurement GROUP BY loinc_code", {"k": "replaced", "ks": "removed", "d": "generalised"}),
    "window lag": ("SELECT lag(person_id) OVER (ORDER BY value_si) AS k, value_si FROM measurement",
                   {"k": "replaced", "value_si": "kept"}),
    "scalar subquery": ("SELECT (SELECT max(zip3) FROM person) AS area, (SELECT upper(min(person_id)) FROM person) AS k",
                        {"area": "masked", "k": "removed"}),
    "union": ("SELECT person_id AS k, 1 AS n FROM person UNION ALL SELECT upper(person_id), 2 FROM measurement",
              {"k": "removed", "n": "kept"}),
    "case": ("SELECT CASE WHEN value_si > 5 THEN person_id ELSE 'none' END AS k, value_si FROM measurement",
             {"k": "removed", "value_si": "kept"}),
    "lateral alias": ("SELECT upper(person_id) AS zip3, zip3 AS area FROM person", {"zip3": "removed", "area": "masked"}),
}


@pytest.mark.parametrize("form", list(ALIAS_FORMS))
def test_each_alias_form_gets_the_rule_of_where_it_comes_from(lake, tmp_path, form):
    query, expected = ALIAS_FORMS[form]
    rows, text = written(lake, tmp_path, query)
    assert leaks(lake, text) == []
    decided = actions(rows)
    assert {c: decided[c] for c in expected} == expected
    removed = [c for c, a in expected.items() if a == "removed"]
    assert set(removed) <= set(rows.attrs["safe_harbor"]["removed"]) and not set(removed) & set(rows.columns)
    for column in [c for c, a in expected.items() if a == "replaced"]:
        assert rows[column].dropna().str.fullmatch(r"X\d{7}").all()


def test_the_year_of_a_date_and_expressions_over_safe_columns_are_kept(lake, tmp_path):
    query = ("SELECT loinc_code, avg(value_si) AS mean, count(DISTINCT person_id) AS persons, "
             "year(measurement_datetime) AS y, date_part('year', measurement_datetime) AS y2 "
             "FROM measurement GROUP BY ALL ORDER BY ALL")
    rows, text = written(lake, tmp_path, query)
    assert leaks(lake, text) == [] and rows.attrs["safe_harbor"]["removed"] == []
    assert set(actions(rows).values()) == {"kept"}
    expected = lake.sql("SELECT DISTINCT year(measurement_datetime) AS y FROM measurement")["y"]
    assert set(rows["y"]) == set(rows["y2"]) == set(expected)


def test_shifted_dates_follow_a_renamed_person_key(lake, tmp_path):
    query = "SELECT person_id AS who, measurement_datetime AS taken FROM measurement ORDER BY person_id, measurement_datetime"
    rows = export(lake, tmp_path / "shift.parquet", query=query, dates="shift")
    source = lake.sql(query)
    moved = (rows["taken"] - source["taken"]).groupby(rows["who"]).nunique()
    assert (moved == 1).all() and rows["who"].nunique() == 10  # one shift per person, as in a table export
    assert actions(rows) == {"who": "replaced", "taken": "shifted"}
    with pytest.raises(ExplorerError, match="no person_id column"):
        export(lake, tmp_path / "x.csv", query="SELECT measurement_datetime AS taken FROM measurement", dates="shift")


UNTRACEABLE = {
    "SELECT * FROM read_csv('/etc/hostname')": "read_csv",
    "SELECT range AS k FROM range(3)": "range",
    "SELECT COLUMNS('person.*') FROM person": "COLUMNS",
    "WITH RECURSIVE r(k) AS (SELECT person_id FROM person UNION ALL SELECT k FROM r) SELECT k FROM r": "recursive",
    "SELECT list_transform([person_id], x -> upper(x)) AS k FROM person": "column 'k': a lambda",
    "SELECT #1 FROM person": "positional",
    "SELECT person_id FROM person UNION BY NAME SELECT zip3 AS person_id FROM person": "BY NAME",
    "SELECT k FROM elsewhere": "'elsewhere', which is not a lake table",
    "DELETE FROM person": "one SELECT",
}


@pytest.mark.parametrize("query", list(UNTRACEABLE))
def test_a_query_that_cannot_be_traced_is_refused_before_it_runs(lake, tmp_path, query):
    from explorer.privacy import AuditLog

    before = len(AuditLog(lake.root).entries())
    with pytest.raises(UntraceableQuery, match=re.escape(UNTRACEABLE[query])) as refused:
        export(lake, tmp_path / "x.csv", query=query)
    assert "cannot" in str(refused.value) and not (tmp_path / "x.csv").exists()
    assert len(AuditLog(lake.root).entries()) == before


def test_nothing_left_is_an_error_not_an_empty_file(lake, tmp_path):
    with pytest.raises(ExplorerError, match="every column was removed.*k: computed from a person key"):
        export(lake, tmp_path / "x.csv", query="SELECT upper(person_id) AS k FROM person")
    assert not (tmp_path / "x.csv").exists()


def test_a_column_that_holds_person_keys_against_its_trace_is_refused():
    # the last line of defence: the keys in another case, where no rule says they are keys
    frame = pd.DataFrame({"person_id": ["ab12", "cd34"], "note_free": ["x", "y"], "shout": ["AB12", "CD34"]})
    with pytest.raises(UntraceableQuery, match="'shout': it holds person keys"):
        safe_harbor(frame)


def test_a_table_export_reports_each_column_with_its_source(lake, tmp_path):
    rows = export(lake, tmp_path / "m.csv", table="measurement")
    assert leaks(lake, (tmp_path / "m.csv").read_text()) == []
    decided = {c["column"]: (c["action"], c["from"]) for c in rows.attrs["safe_harbor"]["columns"]}
    assert decided["source_file"] == ("removed", ["measurement.source_file"])
    assert decided["person_id"] == ("replaced", ["measurement.person_id"])
    assert decided["measurement_datetime"][0] == "generalised" and decided["value_si"][0] == "kept"
    assert "measurement_datetime: year only" in rows.attrs["safe_harbor"]["changed"]


ALIAS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_ZIP3 -"), min_size=1, max_size=12).filter(
    lambda name: name.strip() == name and not re.fullmatch(r"_\d+|.*_\d+", name))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ALIAS, min_size=5, max_size=5, unique_by=str.lower))
def test_alias_names_never_change_what_is_exported(lake, tmp_path, names):
    columns = ["person_id", "upper(person_id)", "zip3", "source_file", "strftime(measurement_datetime, '%d %H:%M')"]
    select = ", ".join(f'{expression} AS "{name}"' for expression, name in zip(columns, names))
    rows, text = written(lake, tmp_path, f"SELECT {select} {FROM}")
    assert leaks(lake, text) == []
    assert [actions(rows)[name] for name in names] == ["replaced", "removed", "masked", "removed", "removed"]
    assert list(rows.columns) == [names[0], names[2]]


def test_no_file_leaves_without_its_audit_entry(tmp_path):
    """A log that disagrees with its head takes no entry (finding 6), so the export that would be
    recorded there writes no file either."""
    from explorer.privacy.audit import AuditLog, AuditTampered

    lake = explorer.open(tmp_path / "lake")
    lake.write("person", make_persons(4))
    export(lake, tmp_path / "first.csv", table="person")  # one entry, and its signed head
    log = AuditLog(lake.root)
    log.path.write_text("")  # the log emptied behind the head's back
    with pytest.raises(AuditTampered):
        export(lake, tmp_path / "second.csv", table="person")
    assert not (tmp_path / "second.csv").exists()
