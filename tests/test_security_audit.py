"""Issue 27, finding 6 and its two low items: the audit log resists someone who can write the lake.

Every tampering the finding reproduced (and a few more) makes ``verify`` fail with its own
reason: the last line deleted, the file cut short mid-entry, emptied or deleted, a middle line
deleted, an entry rewritten with its chain recomputed (unkeyed, or keyed with a key that is not
the lake's), two entries swapped, the head replaced by an older one or deleted. An append to a
log that disagrees with its head is refused, so the next query cannot bless a shortened log.

What no test here can show, because nothing in the lake and its head can: a log and its head
rolled back *together* to an older pair that was once genuine. Only a copy of the head kept in a
second location the lake's writers cannot write reveals that (``--head-file``; see
:mod:`explorer.privacy.audit`).

Low items: an erasure finds and redacts an audit entry that names the person by their pseudonym
in UPPER case (and the log still verifies), and ``explorer audit`` is refused to researchers
and the public.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import date

import pytest

from explorer.command import main as cli
from explorer.errors import ExplorerError
from explorer.privacy import AuditLog, PermissionDenied, entry_hash
from explorer.privacy.audit import AuditKey, AuditTampered, default_head_path, default_key_path


@pytest.fixture(autouse=True)
def no_configured_key(monkeypatch):
    """Each test finds the key and the head where a fresh lake puts them (beside it)."""
    for name in ("EXPLORER_AUDIT_KEY", "EXPLORER_AUDIT_KEY_FILE", "EXPLORER_AUDIT_HEAD_FILE", "EXPLORER_ROLE"):
        monkeypatch.delenv(name, raising=False)


def written(root, n=6) -> AuditLog:
    log = AuditLog(root)
    for k in range(n):
        log.record(user=f"user{k % 2}", role="researcher", action="query", dataset="measurement", version=k,
                   parameters={"sql": "SELECT * FROM person WHERE person_id = ?", "params": [f"p{k}"]}, rows=k)
    return log


def lines(log) -> list[str]:
    return log.path.read_text().splitlines()


def rewrite(log, content: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in content))


def dump(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def test_an_untouched_log_verifies_with_its_key_and_head(tmp_path):
    log = written(tmp_path / "lake")
    check = log.verify()
    assert check.ok and check.proven and check.entries == 6 and check.problem == ""
    assert "intact: 6 entries" in str(check) and "hash chain verified" in str(check)
    # key and head beside the lake, never inside it; the key readable by its owner only
    assert log.head_path == default_head_path(tmp_path / "lake") == tmp_path / "lake.audit-head.json"
    key_file = default_key_path(tmp_path / "lake")
    assert key_file == tmp_path / "lake.audit.key" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    head = json.loads(log.head_path.read_text())
    assert head["entries"] == 6 and head["last_hash"] == json.loads(lines(log)[-1])["hash"]
    assert not list((tmp_path / "lake").rglob("*.key")) and not list((tmp_path / "lake").rglob("*head*"))


# --------------------------------------------------------------------------- each tampering
def delete_last_line(log):
    rewrite(log, lines(log)[:-1])


def truncate_mid_file(log):
    data = log.path.read_bytes()
    fourth = sum(len(line) + 1 for line in lines(log)[:3])
    log.path.write_bytes(data[: fourth + 40])  # cuts the fourth entry in the middle


def empty_file(log):
    log.path.write_bytes(b"")


def delete_file(log):
    log.path.unlink()


def delete_middle_line(log):
    content = lines(log)
    del content[2]
    rewrite(log, content)


def swap_two_entries(log):
    content = lines(log)
    content[2], content[3] = content[3], content[2]
    rewrite(log, content)


def rewrite_and_recompute_unkeyed_chain(log):
    """What was enough before: edit entry 3 and recompute every SHA-256 after it."""
    content = [json.loads(line) for line in lines(log)]
    content[2]["rows"] = 999_999
    previous = content[1]["hash"]
    for entry in content[2:]:
        entry["prev_hash"] = previous
        entry["hash"] = previous = entry_hash({**entry, "format": 2})
    rewrite(log, [dump(e) for e in content])


def rewrite_and_recompute_keyed_chain_with_a_guessed_key(log):
    """The same with HMAC, under a key of the editor's own, head rewritten to match; the entries
    keep the lake's key id so that the reader is not warned of a different key."""
    guess = AuditKey(b"not-the-lakes-key-0123456789abcdef", "guess")
    content = [json.loads(line) for line in lines(log)]
    content[2]["rows"] = 999_999
    previous = content[1]["hash"]
    for entry in content[2:]:
        entry["prev_hash"] = previous
        entry["hash"] = previous = entry_hash(entry, guess)
    rewrite(log, [dump(e) for e in content])
    head = json.loads(log.head_path.read_text())
    head["last_hash"] = previous
    head["mac"] = guess.sign("explorer-audit-head-v3", {k: head[k] for k in ("format", "entries", "last_hash", "key_id")})
    log.head_path.write_text(json.dumps(head))


def downgrade_to_an_unkeyed_chain(log):
    """Rewrite the whole log as format 2, which needs no key, with an edit in it."""
    content = [json.loads(line) for line in lines(log)]
    content[2]["rows"] = 999_999
    previous = "0" * 64
    for entry in content:
        entry.pop("key_id")
        entry["format"], entry["prev_hash"] = 2, previous
        entry["hash"] = previous = entry_hash(entry)
    rewrite(log, [dump(e) for e in content])


def unkeyed_entry_after_keyed_ones(log):
    content = [json.loads(line) for line in lines(log)]
    forged = {**content[-1], "seq": len(content) + 1, "prev_hash": content[-1]["hash"], "format": 2, "rows": 1}
    forged.pop("key_id")
    forged["hash"] = entry_hash(forged)
    rewrite(log, [dump(e) for e in content + [forged]])


def replace_head_with_an_older_one(log):
    """Rollback of the head alone: an older genuine head, the log left as it is."""
    older = written_elsewhere = log.head_path.with_name("older-head.json")
    written_elsewhere.write_text(log.head_path.read_text())
    log.record(user="ann", role="researcher", action="query")
    log.record(user="ann", role="researcher", action="query")
    older.replace(log.head_path)


def delete_head(log):
    log.head_path.unlink()


def edit_head_count(log):
    head = json.loads(log.head_path.read_text())
    head["entries"] -= 1
    log.head_path.write_text(json.dumps(head))


TAMPERING = {  # what is done: (problem, words the reason must hold, line named or None)
    delete_last_line: ("truncated", "the last entry was cut off (truncated)", None),
    truncate_mid_file: ("truncated", "cut off in the middle of an entry: the file was truncated", 4),
    empty_file: ("emptied", "is empty, but its head", None),
    delete_file: ("deleted", "is missing, but its head", None),
    delete_middle_line: ("removed", "entry 3 deleted from the middle of the log", 3),
    swap_two_entries: ("reordered", "swapped or moved", 3),
    rewrite_and_recompute_unkeyed_chain: ("edited", "does not match its MAC", 3),
    rewrite_and_recompute_keyed_chain_with_a_guessed_key: ("edited", "does not match its MAC", 3),
    downgrade_to_an_unkeyed_chain: ("downgraded", "only unkeyed entries", None),
    unkeyed_entry_after_keyed_ones: ("unkeyed_after_keyed", "without the audit key", 7),
    replace_head_with_an_older_one: ("rolled_back", "replaced by an older one (rolled back)", None),
    delete_head: ("head_missing", "head", None),
    edit_head_count: ("head_forged", "does not match its MAC", None),
}


@pytest.mark.parametrize("tamper", list(TAMPERING), ids=lambda f: f.__name__)
def test_each_tampering_is_named(tmp_path, tamper):
    log = written(tmp_path / "lake")
    assert log.verify().proven
    tamper(log)
    problem, words, line = TAMPERING[tamper]
    check = log.verify()
    assert not check.ok and not check.proven, check
    assert check.problem == problem and words in check.reason, check
    assert check.bad_line == line
    assert str(check).startswith("audit log BROKEN")


def test_a_deleted_log_with_a_garbled_head_is_no_fresh_start(tmp_path):
    log = written(tmp_path / "lake")
    delete_file(log)
    log.head_path.write_text("garbage")
    check = log.verify()
    assert check.problem == "deleted" and "unreadable or edited" in check.reason
    with pytest.raises(AuditTampered, match="nothing is recorded"):
        log.record(user="ann", role="researcher", action="query")


@pytest.mark.parametrize("tamper", [delete_last_line, truncate_mid_file, empty_file, delete_file, delete_head,
                                    replace_head_with_an_older_one], ids=lambda f: f.__name__)
def test_no_entry_is_appended_to_a_log_that_disagrees_with_its_head(tmp_path, tamper):
    """Else the next query would write a fresh head for the shortened log, and verify would pass."""
    log = written(tmp_path / "lake")
    tamper(log)
    with pytest.raises(AuditTampered, match="nothing is recorded"):
        log.record(user="ann", role="researcher", action="query")
    assert not log.verify().ok


def test_a_writer_that_stopped_before_its_head_is_reported_then_healed(tmp_path):
    """The head one entry behind, the entry chained to it and signed: a process that died between
    its two writes. Verify reports it (it cannot tell it from a rollback by one), the next append
    carries on, and then the log verifies."""
    log = written(tmp_path / "lake")
    older = log.head_path.read_text()
    log.record(user="ann", role="researcher", action="query")
    log.head_path.write_text(older)
    assert log.verify().problem == "rolled_back"
    log.record(user="ann", role="researcher", action="query")
    check = log.verify()
    assert check.ok and check.proven and check.entries == 8


def test_without_the_key_or_with_another_verify_says_so(tmp_path, monkeypatch):
    log = written(tmp_path / "lake")
    default_key_path(tmp_path / "lake").rename(tmp_path / "elsewhere.key")
    check = AuditLog(tmp_path / "lake").verify()
    assert check.problem == "no_key" and "no audit key was found" in check.reason
    monkeypatch.setenv("EXPLORER_AUDIT_KEY_FILE", str(tmp_path / "elsewhere.key"))
    assert AuditLog(tmp_path / "lake").verify().proven
    monkeypatch.setenv("EXPLORER_AUDIT_KEY", "another-key-of-enough-length-0123456789")
    check = AuditLog(tmp_path / "lake").verify()
    assert check.problem == "wrong_key" and "not with the key found" in check.reason
    with pytest.raises(AuditTampered, match="holds another"):
        log.record(user="ann", role="researcher", action="query")


def test_key_and_head_are_found_where_the_steward_names_them_and_never_inside_the_lake(tmp_path, monkeypatch):
    secure = tmp_path / "secure"
    secure.mkdir()
    (secure / "audit.key").write_text("a-steward-made-key-0123456789abcdef\n")
    monkeypatch.setenv("EXPLORER_AUDIT_KEY_FILE", str(secure / "audit.key"))
    monkeypatch.setenv("EXPLORER_AUDIT_HEAD_FILE", str(secure / "lake.head.json"))
    log = written(tmp_path / "lake", n=2)
    assert (secure / "lake.head.json").is_file() and not default_key_path(tmp_path / "lake").exists()
    assert log.verify().proven
    # a rollback of the log and its head together, to a pair that was once genuine, verifies
    # against that head; only a copy of the newer head kept in a second location shows it
    older_log, older_head = log.path.read_bytes(), (secure / "lake.head.json").read_bytes()
    log.record(user="ann", role="researcher", action="query")
    second_location = tmp_path / "copy-of-head.json"
    second_location.write_bytes((secure / "lake.head.json").read_bytes())
    log.path.write_bytes(older_log)
    (secure / "lake.head.json").write_bytes(older_head)
    assert log.verify().proven
    check = AuditLog(tmp_path / "lake", head_file=second_location).verify()
    assert check.problem == "truncated" and "its head says 3" in check.reason
    monkeypatch.setenv("EXPLORER_AUDIT_HEAD_FILE", str(tmp_path / "lake" / "audit" / "head.json"))
    with pytest.raises(ExplorerError, match="inside the lake"):
        AuditLog(tmp_path / "lake")
    monkeypatch.delenv("EXPLORER_AUDIT_HEAD_FILE")
    monkeypatch.setenv("EXPLORER_AUDIT_KEY_FILE", str(tmp_path / "lake" / "audit.key"))
    with pytest.raises(ExplorerError, match="inside the lake"):
        AuditLog(tmp_path / "lake").verify()
    monkeypatch.setenv("EXPLORER_AUDIT_KEY_FILE", str(secure / "absent.key"))
    with pytest.raises(ExplorerError, match="does not exist"):
        AuditLog(tmp_path / "lake").record(user="ann", role="researcher", action="query")


def test_an_older_unkeyed_log_is_read_not_proven_and_anchored_once_continued(tmp_path):
    log = AuditLog(tmp_path / "lake")
    log.path.parent.mkdir(parents=True)
    previous, old = "0" * 64, []
    for seq in (1, 2, 3):
        entry = {"seq": seq, "time": "2025-01-01T00:00:00+00:00", "user": "ann", "role": "steward", "action": "ingest",
                 "dataset": None, "version": None, "parameters": {"path": f"/in/{seq}"}, "rows": seq,
                 "prev_hash": previous, "format": 2}
        entry["hash"] = previous = entry_hash(entry)
        old.append(entry)
    rewrite(log, [dump(e) for e in old])
    check = log.verify()
    assert check.ok and not check.proven and check.entries == 3
    assert "unkeyed, written before format 3; cannot prove integrity" in str(check)

    log.record(user="ann", role="steward", action="query")  # continues the chain, keyed, with a head
    check = log.verify()
    assert check.proven and check.entries == 4 and check.unkeyed == 3 and "anchored" in str(check)

    # the unkeyed part is now covered: rewrite it with its chain recomputed, and the first keyed
    # entry, whose MAC covers the old last hash, no longer links
    content = [json.loads(line) for line in lines(log)]
    content[0]["rows"], previous = 1000, "0" * 64
    for entry in content[:3]:
        entry["prev_hash"] = previous
        entry["hash"] = previous = entry_hash(entry)
    rewrite(log, [dump(e) for e in content])
    check = log.verify()
    assert check.problem == "edited" and check.bad_line == 4 and "prev_hash" in check.reason


# --------------------------------------------------------------------------- the command
def test_the_command_is_for_stewards_only(tmp_path, capsys):
    written(tmp_path / "lake")
    for role in ("researcher", "public"):
        assert cli(["--lake", str(tmp_path / "lake"), "--role", role, "audit"]) == 2
        err = capsys.readouterr()
        assert "needs the steward role" in err.err and "query" not in err.out and "p0" not in err.out + err.err
    with pytest.raises(PermissionDenied):
        from explorer.privacy import require

        require("researcher", "audit", "the audit log")
    assert cli(["--lake", str(tmp_path / "lake"), "--role", "steward", "audit"]) == 0
    assert "hash chain verified" in capsys.readouterr().out


def test_the_command_names_the_tampering_and_its_exit_status(tmp_path, capsys):
    log = written(tmp_path / "lake")
    lake = ["--lake", str(tmp_path / "lake"), "--role", "steward"]
    delete_last_line(log)
    assert cli([*lake, "audit", "--verify"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "truncated" in out and str(log.head_path) in out
    delete_file(log)
    assert cli([*lake, "audit", "--verify"]) == 1 and "was deleted" in capsys.readouterr().out
    # an older log with no keyed entry: exit 3, not 0
    old = tmp_path / "old" / "audit" / "audit.jsonl"
    old.parent.mkdir(parents=True)
    entry = {"seq": 1, "time": "t", "user": "u", "role": "steward", "action": "ingest", "dataset": None, "version": None,
             "parameters": {}, "rows": None, "prev_hash": "0" * 64, "format": 2}
    entry["hash"] = entry_hash(entry)
    old.write_text(dump(entry) + "\n")
    assert cli(["--lake", str(tmp_path / "old"), "--role", "steward", "audit", "--verify"]) == 3
    assert "cannot prove integrity" in capsys.readouterr().out


# --------------------------------------------------------------------------- erasure
def test_redaction_finds_a_pseudonym_in_any_case_and_spelling_and_keeps_the_log_verified(tmp_path):
    from explorer.privacy.erasure import _Marks, scan

    pseudonym, source = "0205b2e6dff8782d00b62e5980d4a975", "Müller-100007"
    marks = _Marks(source, pseudonym, [])
    log = AuditLog(tmp_path / "lake")
    log.record(user="ann", role="researcher", action="query", parameters={"params": [pseudonym.upper()]})
    log.record(user="bob", role="researcher", action="query", parameters={"params": ["someone else"]})
    log.record(user="cy", role="steward", action="ingest", parameters={"path": f"/in/{source}.csv"})  # \u00fc on disk
    assert "\\u00fc" in log.path.read_text() and pseudonym.upper() in log.path.read_text()
    assert scan(tmp_path / "lake", marks) == ["audit/audit.jsonl"]
    redacted = log.redact(marks.in_text, note="erasure")
    assert redacted == [1, 3]
    log.record(user="steward", role="steward", action="erase", parameters={"audit_entries_redacted": redacted})
    assert scan(tmp_path / "lake", marks) == [] and log.verify().proven


@pytest.mark.slow
def test_an_erasure_redacts_an_upper_case_pseudonym_and_the_log_still_verifies(tmp_path):
    from explorer.ingest.pseudonym import Pseudonymizer
    from explorer.privacy.erasure import erase
    from explorer.synth import SynthConfig
    from explorer.testing.cohorts import TEST_KEY, pseudonym_key, synthetic_lake

    lake = synthetic_lake(tmp_path, SynthConfig(participants=3, days=1, seed=5, start=date(2024, 6, 3), faults=False,
                                                workers=1), steps=[])
    pseudonyms = Pseudonymizer(TEST_KEY.encode())
    upper = pseudonyms("1000001").upper()
    log = AuditLog(lake.root)
    log.record(user="ann", role="researcher", action="query",
               parameters={"sql": "SELECT * FROM person WHERE upper(person_id) = ?", "params": [upper]})
    with pseudonym_key():
        receipt = erase(lake, "1000001", pseudonymizer=pseudonyms, user="steward")
    assert receipt.scan_clean and receipt.audit_entries_redacted == [1]
    text = log.path.read_text()
    assert upper not in text and upper.lower() not in text
    check = log.verify()
    assert check.ok and check.proven and check.entries == 2, check
    assert log.entries().iloc[-1]["action"] == "erase" and os.path.exists(log.head_path)
