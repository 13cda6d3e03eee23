"""The fast paths of reading (issue 24, throughput) give what the careful paths give.

- Fitbit export times read as digits in one array operation equal pandas' ``strptime`` reading
  of the same text, for any text;
- a day's export records read column by column equal the record-by-record reading;
- the files of a batch checked together give each file exactly what checking it alone gives
  (outcomes, accepted rows, quarantined rows and reasons): a minute in two files is no
  duplicate, a minute twice in one file is;
- repeated keys found by packing them into one integer equal pandas' ``duplicated``;
- JSON decoded by orjson equals :mod:`json`, and what orjson refuses is refused with json's
  message (line and column);
- a CSV header is not looked for in a one-line JSON document.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.ingest.checks import _repeated
from explorer.ingest.context import Context
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.read import ReadJob, check_batch
from explorer.ingest.readers import READERS
from explorer.ingest.readers import fitbit_json
from explorer.ingest.readers.base import load_json
from explorer.ingest.readers.csv_tables import _header
from explorer.ingest.readers.fitbit_json import TIME_FORMAT, FitbitExportReader, parse_local_times
from explorer.ingest.reference import Reference
from explorer.lake import RawFile

KEY = b"batch-test-key-0123456789abcdef0123"


# -- times ------------------------------------------------------------------------------------------


@st.composite
def stamps(draw):
    """Texts near the export's ``MM/DD/YY HH:MM:SS``: valid ones, one-digit fields, days a month
    lacks, hour 24, second 60, other separators, other text."""
    kind = draw(st.sampled_from(["valid"] * 6 + ["fields", "other"]))
    if kind == "other":
        return draw(st.text(max_size=20))
    if kind == "fields":
        parts = [draw(st.integers(0, 13)), draw(st.integers(0, 32)), draw(st.integers(0, 99)),
                 draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))]
        widths = [draw(st.sampled_from([1, 2])) for _ in parts]
        text = [str(p).zfill(w) for p, w in zip(parts, widths)]
        separator = draw(st.sampled_from([" ", "T", "  "]))
        return f"{text[0]}/{text[1]}/{text[2]}{separator}{text[3]}:{text[4]}:{text[5]}"
    moment = draw(st.datetimes(min_value=datetime(1969, 1, 1), max_value=datetime(2068, 12, 31)))
    return moment.strftime(TIME_FORMAT)


@settings(max_examples=150, deadline=None)
@given(st.lists(stamps(), max_size=30))
def test_export_times_read_as_pandas_reads_them(texts):
    expected = pd.to_datetime(pd.Series(texts, dtype=object), format=TIME_FORMAT, errors="coerce")
    pd.testing.assert_series_equal(parse_local_times(texts), expected)


def test_two_digit_years_follow_strptime():
    got = parse_local_times(["12/31/68 23:59:59", "01/01/69 00:00:00", "02/29/24 12:00:00", "02/29/23 12:00:00"])
    assert list(got[:3]) == [pd.Timestamp("2068-12-31 23:59:59"), pd.Timestamp("1969-01-01"), pd.Timestamp("2024-02-29 12:00")]
    assert pd.isna(got[3])  # 2023 has no 29 February


# -- a day's records, column by column ----------------------------------------------------------------


@st.composite
def day_records(draw):
    """Well-formed records of one stream, seconds apart, the clock sometimes going back (an
    autumn change) or standing still (a record written twice)."""
    stream = draw(st.sampled_from(["heart_rate", "steps"]))
    moment = pd.Timestamp(draw(st.sampled_from(["2024-11-03 00:58:00", "2024-06-03 10:00:00", "1969-12-31 23:59:00"])))
    records = []
    for _ in range(draw(st.integers(0, 60))):
        moment += pd.Timedelta(seconds=draw(st.sampled_from([5, 10, 15, 0, -3600])))
        stamp = moment.strftime(TIME_FORMAT)
        if stream == "heart_rate":
            value = {"bpm": draw(st.one_of(st.integers(0, 300), st.floats(20, 260, allow_nan=False)))}
            if draw(st.booleans()):
                value["confidence"] = draw(st.integers(0, 3))
            records.append({"dateTime": stamp, "value": value})
        else:
            # the account export writes steps as text ("12"); anything float() reads goes the fast way
            value = draw(st.one_of(st.integers(0, 250), st.floats(0, 250), st.integers(0, 250).map(str),
                                   st.sampled_from([" 7 ", "1e2", "12.5", "1_0"])))
            records.append({"dateTime": stamp, "value": value})
    return stream, records


@settings(max_examples=100, deadline=None)
@given(day_records())
def test_column_by_column_reading_equals_record_by_record(day):
    stream, records = day
    fast = FitbitExportReader._per_minute(records, stream, "pid", "P1")
    original = fitbit_json._well_formed_columns
    fitbit_json._well_formed_columns = lambda *args: None  # every record through the careful loop
    try:
        careful = FitbitExportReader._per_minute(records, stream, "pid", "P1")
    finally:
        fitbit_json._well_formed_columns = original
    table = fitbit_json.STREAMS[stream]
    assert fast.rows_read == careful.rows_read
    pd.testing.assert_frame_equal(fast.tables[table], careful.tables[table])
    pd.testing.assert_frame_equal(fast.quarantined, careful.quarantined)


def test_a_record_of_another_shape_sends_the_day_to_the_careful_reading():
    records = [{"dateTime": "06/03/24 10:00:00", "value": {"bpm": 70, "confidence": 2}},
               {"dateTime": "06/03/24 10:00:05", "value": {"bpm": True}},  # a bool is no bpm
               {"dateTime": "06/03/24 10:00:10", "value": {"bpm": "71"}}]
    assert fitbit_json._well_formed_columns(records, "heart_rate") is None
    result = FitbitExportReader._per_minute(records, "heart_rate", "pid", "P1")
    assert int(result.tables["heart_rate_minute"]["_records"].sum()) == 2  # 70 and "71"
    assert result.quarantined["_row"].tolist() == [2]  # True reads as 1 bpm, which no sensor reports


# -- several files checked together --------------------------------------------------------------------


def _read(tmp_path, name: str, text: str, context_of) -> tuple[ReadJob, str, object]:
    path = tmp_path / name
    path.write_text(text)
    raw = RawFile(f"{name:0>64}"[-64:], path.stat().st_size, name, path)
    reader = READERS["fitbit_aou_heart_rate_minute"]
    return ReadJob(1, name, raw, ()), reader.format, reader.read(path, context_of(name, raw.sha256))


FILES = {
    # person 1: 10:00-10:02; 10:01 twice with different values (a conflicting duplicate in this file)
    "a.csv": "person_id,datetime,heart_rate_value\n1,2024-06-03 10:00:00,70\n1,2024-06-03 10:01:00,71\n"
             "1,2024-06-03 10:01:00,90\n1,2024-06-03 10:02:00,300\n",
    # the same minute of person 1 again (no duplicate of a.csv's: each file is judged alone, though
    # the two, of one layout, are checked as one frame) and person 2 with an exact duplicate
    "b.csv": "person_id,datetime,heart_rate_value\n1,2024-06-03 10:00:00,70\n2,2024-06-03 10:00:00,65\n"
             "2,2024-06-03 10:01:00,64\n2,2024-06-03 10:01:00,64\n",
    # another layout (a missing value makes the column nullable); a day in the future; a time the
    # spring clock change skips; no residence: the default zone applies, or none
    "c.csv": "person_id,datetime,heart_rate_value\n3,2031-01-01 00:00:00,70\n3,2024-03-10 02:30:00,70\n"
             "3,2024-03-10 03:30:00,70\n3,2024-03-11 03:30:00,\n",
}


def _outcome(outcome) -> tuple:
    return (outcome.source_name, outcome.status, outcome.reason, outcome.rows_read, outcome.rows_accepted,
            outcome.rows_quarantined, dict(outcome.row_reasons), outcome.unzoned_persons)


def _rows(batch, table: str, sha: str) -> pd.DataFrame:
    frames = [f[f["source_file"].astype(str) == sha] for f in batch.tables.get(table, [])]
    frames = [f for f in frames if len(f)]  # a frame of other files may hold the column in another type
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows.drop(columns=["source_file"], errors="ignore").astype({"person_id": str}, errors="ignore").reset_index(drop=True)


@pytest.mark.parametrize("zone", ["America/New_York", None])
def test_files_checked_together_are_judged_as_each_alone(tmp_path, zone):
    pseudonymizer = Pseudonymizer(KEY)
    reference = Reference({}, zone)

    def context_of(name, sha):
        return Context(pseudonymizer=pseudonymizer, now=datetime(2025, 1, 1), source_name=name, source_sha256=sha,
                       arrays_root=tmp_path / "arrays", reference=reference)

    items = [_read(tmp_path, name, text, context_of) for name, text in FILES.items()]
    together = check_batch(items, context_of("x", "0"))
    alone = [check_batch([item], context_of("x", "0")) for item in items]
    assert [_outcome(o) for o in together.outcomes] == [_outcome(a.outcomes[0]) for a in alone]
    for k, (job, _, _) in enumerate(items):
        assert together.file_tables[k] == alone[k].file_tables[0]
        for table in together.file_tables[k]:
            # the same values; a time column's unit may differ where files of two layouts met, as
            # it does between files of one table in any batch: the commit casts them to the table's
            pd.testing.assert_frame_equal(_rows(together, table, job.raw.sha256), _rows(alone[k], table, job.raw.sha256),
                                          check_dtype=False)
        mine = together.quarantined[together.quarantined["source_file"] == job.raw.sha256].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone[k].quarantined.reset_index(drop=True), check_dtype=False)
    reasons = dict(together.outcomes[0].row_reasons)
    assert any(r.startswith("conflicting duplicate of row 2") for r in reasons)  # 10:01 twice in a.csv
    assert together.outcomes[1].rows_accepted == 3  # b.csv: 10:00 of person 1 again is no duplicate; 2's 10:01 once
    assert any(r.startswith("duplicate of row 3") for r in together.outcomes[1].row_reasons)
    if zone is None:
        assert together.outcomes[0].unzoned_persons  # no zone known: the persons are named for the warning
    else:
        # 02:30 on 10 March 2024 does not exist in New York (the clocks skip from 2 to 3)
        assert any("does not exist in America/New_York" in r for r in together.outcomes[2].row_reasons)
        assert "wearable_day_zone" in together.file_tables[0]


# -- keys, JSON, headers ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_packed_keys_find_the_repeats_pandas_finds(data):
    n = data.draw(st.integers(0, 60))
    unit = data.draw(st.sampled_from(["s", "us", "ns"]))
    codes = [np.array(data.draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n)), dtype="int64")
             for _ in range(data.draw(st.integers(1, 2)))]
    minutes = np.array(data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), dtype="int64")
    times = (np.datetime64("2024-01-01T00:00") + minutes.astype("timedelta64[m]")).astype(f"datetime64[{unit}]")
    if n and data.draw(st.booleans()):
        times[0] += np.timedelta64(1, "s")  # not a whole minute: the unpacked path
    columns = codes + [times.astype("int64")]
    expected = pd.DataFrame(dict(enumerate(columns))).duplicated(keep=False).to_numpy()
    per_minute = int(np.timedelta64(1, "m") / np.timedelta64(1, unit))
    assert (_repeated(columns, per_minute) == expected).all()


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20))
def test_json_decoded_as_json_decodes_it(document):
    text = json.dumps(document).encode()
    assert load_json(text) == json.loads(text)


def test_what_orjson_refuses_json_decides_with_its_own_message():
    assert load_json(b"[1, NaN]")[0] == 1  # json takes NaN; orjson does not
    assert load_json('[1, 2]'.encode("utf-16")) == [1, 2]  # json detects UTF-16
    with pytest.raises(json.JSONDecodeError) as caught:
        load_json(b'[{"a": 1},\n {"b": }]')
    assert (caught.value.lineno, caught.value.colno) == (2, 8)
    with pytest.raises(UnicodeDecodeError):
        load_json(b'["\xff"]')


def test_no_csv_header_is_sought_in_a_json_document():
    bundle = json.dumps({"resourceType": "Bundle", "entry": [{"a": k} for k in range(3000)]}).encode()
    assert _header(bundle[:65536]) == "a JSON document, not a CSV header"
    assert _header(b"person_id, datetime ,\"steps\"\n1,2,3\n") == ("person_id", "datetime", "steps")
    reason = READERS["fitbit_aou_steps_intraday"].sniff(None, bundle[:65536])
    assert reason == "a JSON document, not a CSV header"
