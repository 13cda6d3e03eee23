"""Readers see whole commits only; a killed writer leaves the last version intact; two writers
both land or one fails with a clear, retryable error. All with real separate processes."""

import json
import signal
import time

import pytest

import explorer
from conftest import spawn_python

pytestmark = pytest.mark.slow

BATCH = 20_000

APPENDER = """
    import sys, numpy as np, pyarrow as pa, explorer
    lake = explorer.open(sys.argv[1])
    batches, rows = int(sys.argv[2]), int(sys.argv[3])
    for b in range(batches):
        table = pa.table({"batch": np.full(rows, b, "int64"), "x": np.arange(rows, dtype="int64")})
        version = lake.write("events", table, mode="overwrite" if b == 0 else "append")
        print(version, flush=True)
"""

READER = """
    import os, sys, json, explorer
    lake = explorer.open(sys.argv[1])
    rows, seen, bad, reads = int(sys.argv[2]), set(), [], 0
    print("ready", flush=True)
    while not os.path.exists(sys.argv[3]) or reads == 0:
        if not lake.has_table("events"):
            continue
        reads += 1
        counts = lake.sql("SELECT batch, count(*) AS n, sum(x) AS s FROM events GROUP BY batch")
        total = int(counts["n"].sum())
        seen.add(total)
        whole = (counts["n"] == rows).all() and (counts["s"] == rows * (rows - 1) // 2).all()
        if not whole or sorted(counts["batch"]) != list(range(len(counts))):
            bad.append(counts.to_dict("list"))
    print(json.dumps({"seen": sorted(seen), "bad": bad[:3], "reads": reads}))
"""


def test_reader_in_a_loop_sees_only_whole_commits(tmp_path):
    root = tmp_path / "lake"
    explorer.open(root)
    stop = tmp_path / "stop"
    reader = spawn_python(READER, root, BATCH, stop)
    assert reader.stdout.readline().strip() == "ready"
    writer = spawn_python(APPENDER, root, 40, BATCH)
    writer.wait(timeout=300)
    stop.touch()
    out, err = reader.communicate(timeout=120)
    assert writer.returncode == 0, writer.stderr.read()
    assert reader.returncode == 0, err
    outcome = json.loads(out)
    assert outcome["bad"] == []
    assert len(outcome["seen"]) >= 2, "the reader never overlapped the writer; the test proved nothing"
    assert all(total % BATCH == 0 for total in outcome["seen"])


def test_writer_killed_mid_write_leaves_last_version_readable(tmp_path):
    root = tmp_path / "lake"
    writer = spawn_python(APPENDER, root, 1000, 400_000)
    committed = []
    for line in writer.stdout:  # wait for two whole commits, then kill inside a later one
        committed.append(int(line))
        if len(committed) == 2:
            break
    time.sleep(0.15)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    lake = explorer.open(root)
    version = lake.version("events")
    assert version >= committed[-1]
    counts = lake.sql("SELECT batch, count(*) AS n FROM events GROUP BY batch ORDER BY batch")
    assert counts["n"].tolist() == [400_000] * (version + 1)  # no partial batch visible
    assert lake.row_count("events") == 400_000 * (version + 1)
    assert lake.verify().ok  # leftovers of the killed write are not part of any version


CONCURRENT = """
    import sys, time, pyarrow as pa, explorer
    from explorer.errors import ConcurrentWriteError
    lake = explorer.open(sys.argv[1])
    start, tag, mode = float(sys.argv[2]), sys.argv[3], sys.argv[4]
    while time.time() < start:
        pass
    try:
        version = lake.write("shared", pa.table({"writer": [tag] * 1000}), mode=mode)
        print("landed", version)
    except ConcurrentWriteError as exc:
        print("retryable" if exc.retryable else "fatal", str(exc).replace(chr(10), " "))
"""


@pytest.mark.parametrize("first_write", [True, False], ids=["create", "existing"])
@pytest.mark.parametrize("modes", [("append", "append"), ("overwrite", "append"), ("overwrite", "overwrite")])
def test_two_writers_at_once_both_land_or_one_fails_retryably(tmp_path, modes, first_write):
    root = tmp_path / "lake"
    lake = explorer.open(root)
    if not first_write:
        import pyarrow as pa

        lake.write("shared", pa.table({"writer": ["seed"]}))
    start = time.time() + 2.0
    procs = [spawn_python(CONCURRENT, root, start, tag, mode) for tag, mode in zip("ab", modes)]
    outcomes = {}
    for tag, proc in zip("ab", procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes[tag] = out.strip()
    landed = [t for t, o in outcomes.items() if o.startswith("landed")]
    assert landed, outcomes
    for tag, outcome in outcomes.items():
        assert outcome.startswith(("landed", "retryable")), outcome
        if outcome.startswith("retryable"):
            assert "Retry the write" in outcome
    expected = set() if first_write else {"seed"}
    for tag in sorted(landed, key=lambda t: int(outcomes[t].split()[1])):  # replay in commit order
        expected = {tag} if modes["ab".index(tag)] == "overwrite" else expected | {tag}
    assert set(lake.sql("SELECT DISTINCT writer FROM shared")["writer"]) == expected, (outcomes, lake.versions("shared").to_dict("list"))
    assert lake.verify().ok


def test_conflict_surfaces_as_retryable_error_and_leaves_table_unchanged(lake, monkeypatch):
    """delta-rs rebases non-conflicting commits itself (above, every race landed); a true conflict
    it reports as CommitFailedError, which the lake must turn into a clear retryable error."""
    import pyarrow as pa
    from deltalake.exceptions import CommitFailedError

    from explorer.errors import ConcurrentWriteError
    from explorer.lake import lake as lake_module

    lake.write("shared", pa.table({"writer": ["seed"]}))

    def conflicting(*args, **kwargs):
        raise CommitFailedError("Transaction failed: version already exists")

    monkeypatch.setattr(lake_module, "write_deltalake", conflicting)
    with pytest.raises(ConcurrentWriteError, match="Retry the write") as info:
        lake.write("shared", pa.table({"writer": ["late"]}))
    assert info.value.retryable
    assert lake.version("shared") == 0
