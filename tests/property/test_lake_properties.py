"""Invariants of the lake, for arbitrary data (hypothesis)."""

import tempfile

import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explorer

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

rows = st.lists(
    st.fixed_dictionaries({
        "person_id": st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
        "value": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)),
        "count": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "when": st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                             max_value=pd.Timestamp("2200-01-01").to_pydatetime()),
    }),
    min_size=1, max_size=40,
)

SCHEMA = pa.schema([("person_id", pa.string()), ("value", pa.float64()), ("count", pa.int64()),
                    ("when", pa.timestamp("us"))])


def _table(batch):
    return pa.Table.from_pylist(batch, schema=SCHEMA)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names])


@SETTINGS
@given(rows)
def test_round_trip_through_the_lake_changes_nothing(batch):
    with tempfile.TemporaryDirectory() as root:
        lake = explorer.open(root)
        lake.write("things", _table(batch), mode="overwrite")
        back = lake.table("things").to_arrow_table()
        assert _sorted(back.cast(SCHEMA)).equals(_sorted(_table(batch)))


@SETTINGS
@given(st.lists(rows, min_size=1, max_size=4))
def test_every_version_is_the_concatenation_of_its_appends_and_stays_so(batches):
    with tempfile.TemporaryDirectory() as root:
        lake = explorer.open(root)
        for batch in batches:
            lake.write("things", _table(batch))
        for version in range(len(batches)):
            expected = pa.concat_tables([_table(b) for b in batches[: version + 1]])
            got = lake.table("things", version).to_arrow_table().cast(SCHEMA)
            assert _sorted(got).equals(_sorted(expected))
            assert lake.row_count("things", version) == expected.num_rows
        assert lake.verify().ok


@SETTINGS
@given(st.binary(min_size=0, max_size=2048), st.binary(min_size=0, max_size=2048))
def test_raw_zone_is_content_addressed(first, second):
    with tempfile.TemporaryDirectory() as root:
        lake = explorer.open(root)
        a, b = lake.raw.put(first), lake.raw.put(second)
        assert (a.sha256 == b.sha256) == (first == second)
        assert a.path.read_bytes() == first and b.path.read_bytes() == second
        assert len(lake.raw.manifest()) == 2
