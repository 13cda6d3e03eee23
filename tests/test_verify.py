"""`verify` catches what every engine would read back silently wrong."""

import os
import struct

import numpy as np
import pyarrow as pa
from deltalake import WriterProperties

from conftest import run_cli


def _make_writable(path):
    os.chmod(path, 0o644)


def test_clean_lake_verifies(lake):
    raw = lake.raw.put(b"a,b\n1,2\n")
    lake.write("t", pa.table({"x": [1.0, 2.0]}), inputs=[raw.ref])
    report = lake.verify()
    assert report.ok and not report.problems
    assert report.raw_files == 1 and report.data_files >= 3  # data file + two commit files (manifest, t)


def test_modified_raw_file_is_caught(lake):
    raw = lake.raw.put(b"person_id,value\n1,5.0\n")
    _make_writable(raw.path)
    raw.path.write_bytes(b"person_id,value\n1,9.0\n")
    report = lake.verify()
    assert not report.ok
    [problem] = [p for p in report.problems if p.kind == "modified"]
    assert raw.sha256 in problem.path and "no longer matches its name" in problem.detail


def test_flipped_byte_in_uncompressed_parquet_reads_silently_wrong_but_verify_catches_it(lake):
    values = np.arange(1000, dtype="float64") + 0.5
    lake.write("lab", pa.table({"value": values}), writer_properties=WriterProperties(compression="UNCOMPRESSED"))
    [uri] = lake.delta("lab").file_uris()
    data = bytearray(open(uri, "rb").read())
    needle = struct.pack("<d", 500.5)
    at = data.index(needle)
    data[at + 6] ^= 0x01  # one bit in the exponent-adjacent byte of one value
    with open(uri, "wb") as out:
        out.write(data)

    read_back = lake.sql("SELECT value FROM lab")["value"].to_numpy()  # no error from any reader...
    assert (read_back != values).sum() == 1  # ...just one wrong number
    report = lake.verify()
    assert not report.ok
    assert any(p.kind == "modified" and p.path.endswith(os.path.basename(uri)) for p in report.problems)


def test_removed_data_file_and_edited_commit_log_are_caught(lake):
    lake.write("t", pa.table({"x": [1, 2, 3]}))
    lake.write("t", pa.table({"x": [4]}))
    dt = lake.delta("t")
    os.remove(dt.file_uris()[0])
    log = lake.table_path("t") / "_delta_log" / f"{0:020d}.json"
    log.write_text(log.read_text().replace("numRecords", "numRecordz", 1))
    kinds = {(p.kind, os.path.basename(p.path)) for p in lake.verify().problems}
    assert ("missing", os.path.basename(dt.file_uris()[0])) in kinds
    assert ("modified", log.name) in kinds


def test_verify_command_exit_status_and_report(lake):
    raw = lake.raw.put(b"x")
    ok = run_cli("verify", lake_root=lake.root)
    assert ok.returncode == 0, ok.stderr
    assert "all match" in ok.stdout
    _make_writable(raw.path)
    raw.path.write_bytes(b"y")
    bad = run_cli("verify", lake_root=lake.root)
    assert bad.returncode == 1
    assert "MODIFIED" in bad.stdout and raw.sha256 in bad.stdout and "Restore" in bad.stdout


def test_deleted_newest_commit_is_a_silent_rollback_that_verify_reports(lake):
    lake.write("t", pa.table({"x": [1]}))
    lake.write("t", pa.table({"x": [2]}))
    (lake.table_path("t") / "_delta_log" / f"{1:020d}.json").unlink()
    assert lake.sql("SELECT count(*) AS n FROM t")["n"].item() == 1  # reads fine, one write gone
    problems = lake.verify().problems
    assert any(p.kind == "missing" and "rolled back" in p.detail for p in problems)


def test_deleted_table_is_reported(lake):
    import shutil

    lake.write("t", pa.table({"x": [1]}))
    shutil.rmtree(lake.table_path("t"))
    report = lake.verify()
    assert not report.ok and any(p.kind == "missing" and p.path == "tables/t" for p in report.problems)


def test_write_behind_the_lakes_back_is_foreign(lake):
    from deltalake import write_deltalake

    lake.write("t", pa.table({"x": [1]}))
    write_deltalake(str(lake.table_path("t")), pa.table({"x": [2]}), mode="append")
    lake.write("t", pa.table({"x": [3]}))  # a later, proper commit does not launder the earlier one
    report = lake.verify()
    assert not report.ok
    assert {p.kind for p in report.problems} == {"foreign"}


def test_writer_stopped_before_recording_is_only_a_warning(lake):
    lake.write("t", pa.table({"x": [1]}))
    lake.write("t", pa.table({"x": [2]}))
    (lake.root / "_integrity" / "t" / f"{1:020d}.json").unlink()
    report = lake.verify()
    assert report.ok and {p.kind for p in report.problems} == {"unrecorded"}


def test_damaged_manifest_is_a_finding_not_a_crash(lake):
    lake.raw.put(b"a")
    [uri] = lake.delta("raw_manifest").file_uris()
    with open(uri, "r+b") as handle:  # break the footer: no reader can open it any more
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\xff\xff\xff\x7fXXXX")
    report = lake.verify()
    kinds = {p.kind for p in report.problems}
    assert not report.ok and "unreadable" in kinds and "modified" in kinds


def test_partition_values_and_lake_paths_that_need_encoding(tmp_path):
    import explorer

    lake = explorer.open(tmp_path / "lake with space%")
    version = lake.write("p", [{"k": "with space/and:colon", "n": 1}, {"k": "plain", "n": 2}], partition_by=["k"])
    assert version == 0
    lake.write("q", [{"n": 1}])
    assert lake.sql("SELECT sum(n) AS s FROM p")["s"].item() == 3
    assert lake.sql("SELECT sum(n) AS s FROM q")["s"].item() == 1
    report = lake.verify()
    assert report.ok and not report.problems and report.data_files >= 5
