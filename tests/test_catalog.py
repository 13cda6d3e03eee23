"""Catalog entries validate, and a wrong entry names the file, the key and what was expected."""

import textwrap

import pytest

from conftest import run_cli
from explorer.catalog import Catalog, default_catalog, load_entry
from explorer.errors import CatalogError

DESIGN_TABLES = ["person", "measurement", "condition_occurrence", "residence", "heart_rate_minute",
                 "steps_minute", "sleep_level", "area_exposure", "wearable_daily", "wearable_circadian",
                 "exposure_daily", "event_exposure", "marker_ageing", "person_ageing_rate", "ageotype",
                 "biological_age"]

GOOD = """\
name: thing
description: A small test dataset with one column.
kind: table
owner: tests
sensitivity: public
entity: person_id
schema:
  - name: person_id
    type: string
  - name: hr
    type: float64
    unit: /min
"""


def write(tmp_path, text, name="thing"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_repository_catalog_is_valid_and_covers_the_data_contract():
    catalog = default_catalog()
    assert set(DESIGN_TABLES) <= set(catalog.names())
    assert catalog["wearable_daily"].column("resting_hr").unit == "/min"
    assert all(catalog[name].column("person_id").nullable is False
               for name in DESIGN_TABLES if "person_id" in catalog[name].column_names)


def test_good_entry_loads(tmp_path):
    entry = load_entry(write(tmp_path, GOOD))
    assert entry.column_names == ["person_id", "hr"] and entry.sensitivity == "public"


@pytest.mark.parametrize("change, message", [
    (("sensitivity: public", "sensitivity: pubic"), r"sensitivity: got 'pubic', expected one of public, researcher, steward \(did you mean 'public'\?\)"),
    (("    type: float64", "    type: flaot64"), r"schema\[1\]\.type: got 'flaot64'.*did you mean 'float64'"),
    (("kind: table", "kind: table\nownr: x"), r"unknown key 'ownr' \(did you mean 'owner'\?\)"),
    (("owner: tests\n", ""), r"'owner' is a required property"),
    (("entity: person_id", "entity: person"), r"entity: column 'person' is not in schema \(did you mean 'person_id'\?\)"),
    (("name: thing", "name: other"), r"name: got 'other', expected 'thing'"),
    (("  - name: hr", "  - name: HR"), r"schema\[1\]\.name: got 'HR', expected lower_snake_case"),
    (("kind: table", "kind: [table"), r"not valid YAML"),
])
def test_wrong_entry_names_file_key_and_expectation(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(CatalogError, match=message) as info:
        load_entry(path)
    assert str(path) in str(info.value)


def test_directory_reports_every_bad_file(tmp_path):
    write(tmp_path, GOOD.replace("kind: table", "kind: tabel"))
    write(tmp_path, GOOD.replace("name: thing", "name: two"), name="two")
    write(tmp_path, GOOD.replace("name: thing", "name: three").replace("owner: tests", "owner: ''"), name="three")
    with pytest.raises(CatalogError) as info:
        Catalog.from_directory(tmp_path)
    assert "thing.yaml" in str(info.value) and "three.yaml" in str(info.value) and "two.yaml" not in str(info.value)


def test_catalog_command_lists_versions_rows_and_lineage(lake):
    raw = lake.raw.put(b"demo")
    from explorer.testing import make_persons

    lake.write("person", make_persons(7), inputs=[raw.ref], operation="ingest")
    listing = run_cli("catalog", lake_root=lake.root)
    assert listing.returncode == 0, listing.stderr
    [line] = [l for l in listing.stdout.splitlines() if l.strip().startswith("person ")]
    assert " 0 " in line and " 7 " in line and "ingest" in line and "1 raw file" in line
    assert "(not written yet)" in listing.stdout  # catalog entries without data are listed too

    one = run_cli("catalog", "person", lake_root=lake.root)
    assert one.returncode == 0, one.stderr
    assert "year_of_birth" in one.stdout and raw.ref in one.stdout and "tier: researcher" in one.stdout

    wrong = run_cli("catalog", "persn", lake_root=lake.root)
    assert wrong.returncode == 2 and "did you mean 'person'" in wrong.stderr


def test_catalog_command_fails_on_an_invalid_catalog(tmp_path):
    write(tmp_path, GOOD.replace("kind: table", "kind: tabel"))
    (tmp_path / "lake" / "tables").mkdir(parents=True)  # a lake, so that the catalog is what fails
    result = run_cli("catalog", lake_root=tmp_path / "lake", env={"EXPLORER_CATALOG": str(tmp_path)})
    assert result.returncode == 2
    assert "thing.yaml" in result.stderr and "kind: got 'tabel'" in result.stderr


def test_odd_yaml_keys_and_names_get_messages_not_tracebacks(tmp_path):
    text = GOOD.replace("    unit: /min", "    unit: /min\n    on: x\n    2: y")
    with pytest.raises(CatalogError, match=r"schema\[1\]: unknown key '2'.*unknown key 'True'"):
        load_entry(write(tmp_path, text))
    text = GOOD.replace("  - name: hr", '  - name: "hr\\n"')
    with pytest.raises(CatalogError, match=r"expected lower_snake_case"):
        load_entry(write(tmp_path, text))


def test_structural_and_consistency_problems_are_reported_together(tmp_path):
    text = GOOD.replace("kind: table", "kind: tabel").replace("entity: person_id", "entity: personid")
    with pytest.raises(CatalogError) as info:
        load_entry(write(tmp_path, text))
    assert "kind: got 'tabel'" in str(info.value) and "entity: column 'personid'" in str(info.value)
