"""The append-only log on object storage (issue 24): on a real S3 server (SeaweedFS), concurrent
writers lose nothing, every entry follows the one before it, and a refusal writes nothing."""

from __future__ import annotations

import hashlib
import json
import textwrap
import threading

import pytest
from hypothesis import given, settings, strategies as st

from explorer.lake.object_log import LogEntry, ObjectLog


@pytest.fixture(scope="module")
def object_store(tmp_path_factory):
    from explorer.testing.seaweed import start_object_store

    server = start_object_store(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


def chained(writer: str, n: int):
    """A record that names the digest of the entry it follows (an audit log's hash chain)."""
    return lambda previous: {"writer": writer, "n": n, "after": previous.digest if previous else None}


def assert_chain(entries: list[LogEntry]) -> None:
    for before, entry in zip(entries, entries[1:]):
        assert entry.record["after"] == before.digest, entry.number
    assert entries[0].record["after"] is None


def test_threads_appending_at_once_lose_nothing_and_keep_the_chain(object_store):
    log = ObjectLog(object_store.store(), "threads")
    writers = [threading.Thread(target=lambda w=w: [ObjectLog(object_store.store(), "threads").append(chained(w, i))
                                                    for i in range(15)]) for w in "abcd"]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    entries = list(log.entries())
    assert len(entries) == 60 and [e.number for e in entries] == list(range(60))
    assert sorted((e.record["writer"], e.record["n"]) for e in entries) == sorted((w, i) for w in "abcd" for i in range(15))
    assert_chain(entries)


def test_processes_appending_at_once_lose_nothing(object_store, tmp_path):
    """Separate interpreters, as two `explorer` commands on two machines would be."""
    import subprocess
    import sys

    code = textwrap.dedent(f"""
        import sys
        from obstore.store import S3Store
        from explorer.lake.object_log import ObjectLog
        store = S3Store({object_store.bucket!r}, endpoint={object_store.endpoint!r}, access_key_id="explorer-test",
                        secret_access_key="explorer-test-secret", region="us-east-1", client_options={{"allow_http": True}})
        log = ObjectLog(store, "processes")
        for i in range(20):
            log.append(lambda previous, i=i: {{"writer": sys.argv[1], "n": i, "after": previous.digest if previous else None}})
        """)
    runs = [subprocess.Popen([sys.executable, "-c", code, w]) for w in ("p", "q", "r")]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
    entries = list(ObjectLog(object_store.store(), "processes").entries())
    assert len(entries) == 60 and len({(e.record["writer"], e.record["n"]) for e in entries}) == 60
    assert_chain(entries)


def test_a_refused_append_writes_nothing_and_is_asked_again_after_a_lost_race(object_store):
    """A budget ledger: each spend is checked against the balance of the entry it follows; a
    spend over the budget raises before anything is written."""
    budget = 1.0

    def spend(amount):
        def build(previous):
            spent = previous.record["spent"] if previous else 0.0
            if spent + amount > budget + 1e-12:
                raise ValueError(f"over budget: {spent} spent, {amount} asked")
            return {"spent": spent + amount, "after": previous.digest if previous else None}
        return build

    log = ObjectLog(object_store.store(), "ledger")
    results = []

    def client():
        for _ in range(5):
            try:
                ObjectLog(object_store.store(), "ledger").append(spend(0.1))
                results.append("ok")
            except ValueError:
                results.append("refused")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = list(log.entries())
    assert results.count("ok") == len(entries) == 10 and results.count("refused") == 10  # never over 1.0
    assert entries[-1].record["spent"] == pytest.approx(1.0)
    assert_chain(entries)


def test_an_entry_is_stored_as_written():
    from obstore.store import MemoryStore

    log = ObjectLog(MemoryStore(), "audit")
    entry = log.append(lambda previous: {"b": 2, "a": [1, "x"]})
    stored = log.entry(0)
    assert stored == entry and entry.digest == hashlib.sha256(json.dumps({"a": [1, "x"], "b": 2}, separators=(",", ":"),
                                                                          sort_keys=True).encode()).hexdigest()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["w1", "w2", "w3"]), min_size=1, max_size=30))
def test_interleaved_writers_with_stale_views_build_one_chain(order):
    """Writers that each remember where the log ended (stale after another wrote) still append
    at the end, in any interleaving."""
    from obstore.store import MemoryStore

    store = MemoryStore()
    writers = {name: ObjectLog(store, "log") for name in ("w1", "w2", "w3")}
    for k, name in enumerate(order):
        writers[name].append(chained(name, k))
    entries = list(ObjectLog(store, "log").entries())
    assert [e.record["n"] for e in entries] == list(range(len(order)))
    assert_chain(entries)
