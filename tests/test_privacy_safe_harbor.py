"""Safe Harbor exports (45 CFR 164.514(b)(2)): known answers for each rule, and the CLI."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.errors import ExplorerError
from explorer.privacy.safe_harbor import IDENTIFIER_PATTERN, safe_harbor, zip3_population

POPULATION = pd.DataFrame({"zip3": ["850", "036", "999"], "population": [2_500_000, 19_999, 20_000]})


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "person_id": ["p1", "p1", "p2", "p3"],
        "given_name": ["Ann", "Ann", "Bo", "Cy"], "latitude": [33.1, 33.1, 35.0, 36.0], "longitude": [-112.0] * 4,
        "tract_geoid": ["04013010100"] * 4, "source_file": ["a.json"] * 4, "phone": ["555"] * 4,
        "measurement_datetime": pd.to_datetime(["2020-03-04 08:00", "2021-05-06 09:30", "2019-12-31 23:59", "2022-01-01 00:00"]),
        "year_of_birth": [1930, 1930, 1936, 1937],
        "chronological_age": [89.99, 90.0, 45.2, np.nan],
        "zip3": ["850", "850", "036", "123"],
        "value_si": [1.0, 2.0, 3.0, 4.0],
    })


def test_identifiers_go_and_the_person_key_is_a_new_code():
    out = safe_harbor(frame(), population=POPULATION, reference_date=date(2026, 6, 1))
    assert list(out.columns) == ["person_id", "measurement_datetime", "year_of_birth", "chronological_age", "zip3", "value_si"]
    assert set(out.attrs["safe_harbor"]["removed"]) == {"given_name", "latitude", "longitude", "tract_geoid", "source_file", "phone"}
    assert not set(out["person_id"]) & {"p1", "p2", "p3"} and out["person_id"].str.fullmatch(r"X\d{7}").all()
    assert out["person_id"].iloc[0] == out["person_id"].iloc[1] != out["person_id"].iloc[2]
    again = safe_harbor(frame(), population=POPULATION)
    assert (again["value_si"] == out["value_si"]).all()


def test_dates_ages_and_zip3_follow_the_rule():
    out = safe_harbor(frame(), population=POPULATION, reference_date=date(2026, 6, 1))
    assert out["measurement_datetime"].tolist() == [2020, 2021, 2019, 2022]
    assert out["chronological_age"].tolist()[:3] == ["89", "90+", "45"] and out["chronological_age"].isna().iloc[3]
    # born 1936: 90 in 2026, so "90+"; 1937: 89
    assert out["year_of_birth"].tolist() == ["90+", "90+", "90+", "1937"]
    assert out["zip3"].tolist() == ["850", "850", "000", "000"]  # 036 is small, 123 is not in the table


def test_shifted_dates_keep_each_persons_intervals():
    source = frame()
    out = safe_harbor(source, dates="shift", shift_key=b"k" * 32, population=POPULATION)
    moved = out["measurement_datetime"] - source["measurement_datetime"]
    assert moved.iloc[0] == moved.iloc[1] and moved.abs().max() <= pd.Timedelta(days=180)
    assert out["measurement_datetime"].iloc[1] - out["measurement_datetime"].iloc[0] == \
        source["measurement_datetime"].iloc[1] - source["measurement_datetime"].iloc[0]
    with pytest.raises(ExplorerError, match="no person_id column"):
        safe_harbor(source.drop(columns="person_id"), dates="shift")
    with pytest.raises(ExplorerError, match="use 'year'"):
        safe_harbor(source, dates="month")


def test_birth_dates_text_dates_other_key_columns_and_derived_ages():
    source = pd.DataFrame({
        "person_id": ["p1", "p2"], "mother_person": ["p2", None], "Full Name": ["A B", "C D"], "e-mail": ["a@b", "c@d"],
        "birth_date": pd.to_datetime(["1931-04-02", "1980-07-01"]), "month_of_birth": [4, 7], "birth_year": [1931, 1980],
        "visit": ["2020-05-06", "2021-01-02T08:00:00"], "age": ["94", "40"], "phenoage_accel": [1.5, -2.0],
        "zip3_home": ["036", "850"], "record": ['{"person_id": "1000001"}', "{}"],
    })
    out = safe_harbor(source, population=POPULATION, reference_date=date(2025, 1, 1), person_keys={"p1", "p2"})
    assert {"Full Name", "e-mail", "month_of_birth", "record"} <= set(out.attrs["safe_harbor"]["removed"])
    assert out["birth_date"].tolist() == ["90+", "1980"] and out["birth_year"].tolist() == ["90+", "1980"]
    assert out["visit"].tolist() == [2020, 2021] and out["age"].tolist() == ["90+", "40"]
    assert out["phenoage_accel"].isna().iloc[0] and out["phenoage_accel"].iloc[1] == -2.0
    assert out["mother_person"].iloc[0] == out["person_id"].iloc[1] and out["mother_person"].iloc[0].startswith("X")
    assert out["zip3_home"].tolist() == ["000", "850"]


def test_the_shipped_population_table_masks_the_hhs_list():
    table = zip3_population()
    masked = safe_harbor(pd.DataFrame({"zip3": ["036", "893", "059"]}))["zip3"]
    assert (masked == "000").all() and table["zip3"].str.fullmatch(r"\d{3}").all()
    assert (table["population"].dropna() > 20_000).any() and (table["population"].dropna() <= 20_000).any()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(),
                                                                          max_value=pd.Timestamp("2030-01-01").to_pydatetime()),
                          st.floats(0, 120), st.integers(1900, 2020), st.sampled_from(["850", "036", "999", "777"])),
                min_size=1, max_size=30))
def test_no_export_keeps_what_safe_harbor_forbids(rows):
    source = pd.DataFrame(rows, columns=["person_id", "visit_datetime", "age", "year_of_birth", "zip3"]).assign(
        home_address="x", email="y@z")
    out = safe_harbor(source, population=POPULATION, reference_date=date(2026, 1, 1))
    assert not [c for c in out.columns if c != "person_id" and IDENTIFIER_PATTERN.search(c)]
    assert out["visit_datetime"].between(1990, 2030).all()  # a year, nothing finer
    ages = out["age"].dropna()
    assert ages.map(lambda a: a == "90+" or int(a) <= 89).all()
    assert out["year_of_birth"].map(lambda y: y == "90+" or 2026 - int(y) <= 89).all()
    assert set(out["zip3"]) <= {"850", "000"}


def test_export_command_writes_a_safe_harbor_file_and_records_it(lake, tmp_path):
    import json

    from explorer.privacy import AuditLog
    from explorer.testing.factories import make_persons
    from conftest import run_cli

    persons = make_persons(12)
    lake.write("person", persons)
    out = tmp_path / "person.csv"
    done = run_cli("export", "person", "--out", out, lake_root=lake.root)
    assert done.returncode == 0, done.stderr
    assert "removed: source_file" in done.stdout or "removed: nothing" in done.stdout
    exported = pd.read_csv(out, dtype=str)
    assert len(exported) == 12 and not set(exported["person_id"]) & set(persons["person_id"])
    entry = AuditLog(lake.root).entries().iloc[-1]
    assert entry["action"] == "export" and entry["role"] == "researcher" and entry["rows"] == 12
    assert json.loads(json.dumps(entry["parameters"]))["dates"] == "year"
    refused = run_cli("--role", "public", "export", "person", "--out", tmp_path / "x.csv", lake_root=lake.root)
    assert refused.returncode == 2 and "needs the researcher role" in refused.stderr and not (tmp_path / "x.csv").exists()
    wrong = run_cli("export", "person", "--out", tmp_path / "x.xlsx", lake_root=lake.root)
    assert wrong.returncode == 2 and "name a .csv or .parquet file" in wrong.stderr
    # a researcher reads only the tables of their catalog tier, and no file at all
    lake.write("quarantine_row", pd.DataFrame({"ingest_id": ["i"], "source_file": ["f"], "source_name": ["n"], "format": ["csv"],
                                               "target_table": ["person"], "row_number": [1], "reason": ["r"],
                                               "record": ['{"person_id": "1000001"}']}))
    for attempt in (["export", "quarantine_row", "--out", tmp_path / "q.csv"],
                    ["export", "--sql", "SELECT * FROM quarantine_row", "--out", tmp_path / "q.csv"],
                    ["sql", "SELECT * FROM quarantine_row"],
                    ["sql", f"SELECT * FROM read_text('{lake.root}/raw/*/*')"]):
        denied = run_cli(*attempt, lake_root=lake.root)
        assert denied.returncode == 2 and "error:" in denied.stderr, attempt
    assert run_cli("--role", "steward", "sql", "SELECT count(*) FROM quarantine_row", lake_root=lake.root).returncode == 0
