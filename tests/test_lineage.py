"""Lineage both ways: any output traced to its inputs, any input forward to what was made from it."""

import pytest

from explorer.errors import LineageError
from explorer.testing import make_persons, make_steps_minutes


def test_raw_to_table_to_aggregate_both_ways(lake):
    a = lake.raw.put(b"steps file A", source_name="a.csv")
    b = lake.raw.put(b"steps file B", source_name="b.csv")
    steps = make_steps_minutes(2, 1)
    v0 = lake.write("steps_minute", steps.iloc[:100], mode="overwrite", inputs=[a.ref])
    v1 = lake.write("steps_minute", steps.iloc[100:], inputs=[b.ref])
    daily = lake.sql("SELECT person_id, sum(steps) AS steps FROM steps_minute GROUP BY ALL")
    d0 = lake.write("daily_steps", daily, mode="overwrite", inputs=[f"steps_minute@{v1}"])

    up = lake.lineage("daily_steps", d0)
    assert up.inputs == (f"steps_minute@{v1}",)
    assert set(up.upstream) == {f"steps_minute@{v1}", a.ref, b.ref}  # appends accumulate inputs
    assert lake.lineage("steps_minute", v0).upstream == (a.ref,)

    down_a = lake.lineage(a.ref).downstream
    assert {f"steps_minute@{v0}", f"steps_minute@{v1}", f"daily_steps@{d0}"} <= set(down_a)
    assert f"steps_minute@{v0}" not in lake.lineage(b.ref).downstream  # b arrived later
    assert f"daily_steps@{d0}" in lake.lineage(f"steps_minute@{v0}").downstream  # its rows live on in v1


def test_overwrite_ends_what_a_version_contains(lake):
    a = lake.raw.put(b"first delivery")
    b = lake.raw.put(b"replacement delivery")
    lake.write("person", make_persons(3), mode="overwrite", inputs=[a.ref])
    lake.write("person", make_persons(3, seed=1), mode="overwrite", inputs=[b.ref])
    assert lake.lineage("person").upstream == (b.ref,)
    assert "person@1" not in lake.lineage(a.ref).downstream
    edges = lake.lineage(a.ref).to_frame()
    assert list(edges.columns) == ["source", "target"]
    assert (a.ref, "person@0") in set(edges.itertuples(index=False, name=None))
    assert "person@1" not in set(edges["target"])


def test_inputs_must_exist(lake):
    with pytest.raises(LineageError, match="no raw file"):
        lake.write("person", make_persons(1), inputs=["raw:" + "0" * 64])
    with pytest.raises(LineageError, match="expected 'raw:<64 hex sha256>' or '<table>@<version>'"):
        lake.write("person", make_persons(1), inputs=["measurement version 3"])
    lake.write("person", make_persons(1))
    with pytest.raises(LineageError, match="person has versions 0..0"):
        lake.write("derived", make_persons(1), inputs=["person@5"])
    with pytest.raises(LineageError, match="not in the lake"):
        lake.write("derived", make_persons(1), inputs=["nosuch@0"])
    assert lake.tables() == ["person"]
