"""The audit log is append-only and tamper-evident: the chain verifies as written, by one process
or several at once, and an edited, removed, inserted or reordered entry is named."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli, spawn_python
from explorer.errors import ExplorerError
from explorer.privacy import AuditLog, entry_hash


def written(tmp_path, n=5):
    log = AuditLog(tmp_path)
    for k in range(n):
        log.record(user=f"user{k % 2}", role="researcher", action="query", dataset="measurement", version=k,
                   parameters={"sql": "SELECT count(*) FROM measurement WHERE loinc_code = ?", "params": ["2345-7"]},
                   rows=k * 10)
    return log


def lines(log):
    return log.path.read_text().splitlines()


def test_entries_chain_and_verify(tmp_path):
    log = written(tmp_path)
    entries = log.entries()
    assert list(entries["seq"]) == [1, 2, 3, 4, 5] and entries["prev_hash"].iloc[0] == "0" * 64
    assert (entries["prev_hash"].iloc[1:].to_numpy() == entries["hash"].iloc[:-1].to_numpy()).all()
    assert entries["parameters"].iloc[0]["params"] == ["2345-7"] and entries["rows"].iloc[4] == 40
    check = log.verify()
    assert check.ok and check.entries == 5 and "intact: 5 entries" in str(check)
    assert list(log.entries(limit=2)["seq"]) == [4, 5]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 4), st.sampled_from(["user", "role", "action", "dataset", "version", "rows", "time"]),
       st.text(min_size=1, max_size=8))
def test_an_edited_entry_is_named(tmp_path_factory, position, field, value):
    log = written(tmp_path_factory.mktemp("audit"))
    content = lines(log)
    entry = json.loads(content[position])
    if str(entry[field]) == value:
        return
    entry[field] = value
    content[position] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(content) + "\n")
    check = log.verify()
    assert not check.ok and check.bad_line == position + 1 and "edited" in check.reason


def test_an_edit_that_recomputes_its_own_hash_without_the_key_fails_at_that_entry(tmp_path):
    # the chain is keyed (format 3): the unkeyed SHA-256 an editor can compute is not the MAC,
    # so the edit is named at its own line, not only at the link after it
    log = written(tmp_path)
    content = lines(log)
    entry = json.loads(content[1])
    entry["rows"] = 999_999
    entry["hash"] = entry_hash({**entry, "format": 2})
    content[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(content) + "\n")
    check = log.verify()
    assert not check.ok and check.bad_line == 2 and "edited" in check.reason and check.problem == "edited"


@pytest.mark.parametrize("change", ["remove", "swap", "insert"])
def test_removed_moved_or_inserted_entries_are_found(tmp_path, change):
    log = written(tmp_path)
    content = lines(log)
    if change == "remove":
        del content[2]
    elif change == "swap":
        content[1], content[2] = content[2], content[1]
    else:
        content.insert(2, content[2])
    log.path.write_text("\n".join(content) + "\n")
    check = log.verify()
    assert not check.ok and check.bad_line == {"remove": 3, "swap": 2, "insert": 4}[change]  # the copy of 3 reads as 3


def test_concurrent_writers_keep_one_chain(tmp_path):
    code = """
        import sys
        from explorer.privacy import AuditLog
        log = AuditLog(sys.argv[1])
        for k in range(40):
            log.record(user=sys.argv[2], role="steward", action="ingest", rows=k)
    """
    writers = [spawn_python(code, tmp_path, f"writer{k}") for k in range(4)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    log = AuditLog(tmp_path)
    check = log.verify()
    assert check.ok and check.entries == 160, check
    assert log.entries()["user"].value_counts().to_dict() == {f"writer{k}": 40 for k in range(4)}


def test_an_entry_needs_who_and_what(tmp_path):
    with pytest.raises(ExplorerError, match="needs a user, a role and an action"):
        AuditLog(tmp_path).record(user="", role="public", action="view")


def test_the_command_shows_and_verifies(tmp_path):
    written(tmp_path / "lake")
    shown = run_cli("audit", lake_root=tmp_path / "lake")
    assert shown.returncode == 0 and "query" in shown.stdout and "hash chain verified" in shown.stdout
    log = AuditLog(tmp_path / "lake")
    content = lines(log)
    content[0] = content[0].replace('"rows":0', '"rows":1')
    log.path.write_text("\n".join(content) + "\n")
    broken = run_cli("audit", "--verify", lake_root=tmp_path / "lake")
    assert broken.returncode == 1 and "BROKEN at line 1" in broken.stdout and "edited" in broken.stdout


def test_command_line_queries_are_recorded(tmp_path):
    import explorer

    lake = explorer.open(tmp_path / "lake")
    lake.write("person", __import__("explorer.testing.factories", fromlist=["make_persons"]).make_persons(5))
    done = run_cli("sql", "SELECT count(*) AS n FROM person WHERE sex_at_birth = ?", "-p", "female",
                   lake_root=tmp_path / "lake")
    assert done.returncode == 0, done.stderr
    last = AuditLog(tmp_path / "lake").entries().iloc[-1]
    assert last["action"] == "query" and last["role"] == "researcher" and last["rows"] == 1
    assert last["parameters"]["params"] == ["female"] and AuditLog(tmp_path / "lake").verify().ok
