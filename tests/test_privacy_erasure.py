"""Erasure on a real synthetic lake (with its damaged files): afterwards no byte under the lake
root names the person (raw, tables, old versions, caches, audit), everyone else's aggregates
equal a fresh computation without them, and the audit chain holds the receipt."""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import explorer
from explorer.errors import ExplorerError, VersionNotFoundError
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.privacy import AuditLog, PermissionDenied
from explorer.privacy.erasure import erase
from explorer.synth import SynthConfig
from explorer.testing.cohorts import TEST_KEY, pseudonym_key, synthetic_lake

pytestmark = pytest.mark.slow

CONFIG = SynthConfig(participants=12, days=3, seed=11, start=date(2024, 6, 3), faults=True, workers=1)
PSEUDONYMS = Pseudonymizer(TEST_KEY.encode())
#: a person whose wearable data came as a Fitbit export (files of their own) and one from the
#: All of Us CSV (rows in files shared with others)
ERASED = ("1000001", "1000002")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """Lake ``a`` has the persons erased; lake ``b`` is the same lake with their rows deleted from
    the unified tables by plain SQL and the aggregates recomputed: the fresh computation."""
    root = tmp_path_factory.mktemp("erasure")
    lake = synthetic_lake(root / "a", CONFIG, steps=None)
    shutil.copytree(root / "a" / "lake", root / "b")
    ids = [PSEUDONYMS(s) for s in ERASED]
    lake.sql("SELECT 1")  # an audit entry that names a person, as `explorer sql -p` would leave
    AuditLog(lake.root).record(user="ann", role="researcher", action="query",
                               parameters={"sql": "SELECT * FROM person WHERE person_id = ?", "params": [ids[0]]})
    receipts = []
    with pseudonym_key():
        for source_id in ERASED:
            receipts.append(erase(lake, source_id, pseudonymizer=PSEUDONYMS, user="steward"))
        fresh = explorer.open(root / "b")
        aggregates = _aggregates()
        for name in fresh.tables():
            if name not in aggregates and "person_id" in fresh.sql(f'SELECT * FROM "{name}" LIMIT 0').columns:
                kept = fresh.sql(f'SELECT * FROM "{name}" WHERE person_id IS NULL OR person_id NOT IN (SELECT unnest(?))', [ids])
                fresh.write(name, kept, mode="overwrite", partition_by=fresh.delta(name).metadata().partition_columns or None)
        from explorer.jobs import refresh

        assert not refresh(fresh, full=True, workers=1).failed
    return lake, fresh, receipts, root


def _aggregates() -> set[str]:
    from explorer.jobs.steps import load_steps

    return {cls.output for cls in load_steps().values()}


def _names_person(path: Path, needles: list[bytes]) -> bool:
    data = path.read_bytes()
    if any(n in data for n in needles):
        return True
    if data[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        text = " ".join(str(v) for column in table.columns for v in column.to_pylist())
        return any(n.decode() in text for n in needles)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(n in archive.read(m) for m in archive.infolist() for n in needles)
    return False


def test_no_byte_under_the_lake_root_names_the_erased_persons(lakes):
    lake, _, receipts, _ = lakes
    needles = [s.encode() for s in ERASED] + [PSEUDONYMS(s).encode() for s in ERASED]
    hits = [str(p.relative_to(lake.root)) for p in lake.root.rglob("*") if p.is_file() and _names_person(p, needles)]
    assert hits == []
    assert all(r.scan_clean for r in receipts)
    assert receipts[0].raw_deleted and receipts[1].raw_rewritten  # own files went, shared ones were rewritten


def test_everyone_elses_aggregates_equal_a_fresh_computation(lakes):
    lake, fresh, _, _ = lakes
    assert lake.sql("SELECT count(*) AS n FROM person")["n"].item() == CONFIG.participants - len(ERASED)
    for name in sorted(_aggregates() & set(lake.tables())):
        ours, theirs = lake.sql(f'SELECT * FROM "{name}"'), fresh.sql(f'SELECT * FROM "{name}"')
        entry = lake.catalog.get(name)
        key = (list(entry.primary_key) if entry is not None and entry.primary_key else
               [c for c in ours.columns if ours[c].dtype == object][:3] or list(ours.columns[:1]))
        ours, theirs = (f.sort_values(key, ignore_index=True) for f in (ours, theirs))
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, rtol=1e-6, obj=name)


def test_everyone_elses_rows_are_unchanged(lakes):
    lake, fresh, _, _ = lakes
    for name in ("measurement", "heart_rate_minute", "steps_minute", "sleep_level", "residence"):
        ours = lake.sql(f'SELECT * EXCLUDE (source_file) FROM "{name}"')
        theirs = fresh.sql(f'SELECT * EXCLUDE (source_file) FROM "{name}"')
        key = list(ours.columns)
        pd.testing.assert_frame_equal(ours.sort_values(key, ignore_index=True), theirs.sort_values(key, ignore_index=True),
                                      check_dtype=False, obj=name)


def test_history_is_purged_and_the_lake_still_verifies(lakes):
    lake, _, _, _ = lakes
    assert lake.verify(all_versions=True).ok
    current = lake.version("person")
    assert len(lake.versions("person")) == 1
    with pytest.raises(VersionNotFoundError, match="purged by an erasure"):
        lake.table("person", version=current - 1).df()


def test_the_audit_chain_holds_the_receipts_and_the_redaction(lakes):
    lake, _, receipts, _ = lakes
    log = AuditLog(lake.root)
    assert log.verify().ok
    entries = log.entries()
    erasures = entries[entries["action"] == "erase"]
    assert len(erasures) == 2 and erasures.iloc[0]["parameters"]["person_digest"] == receipts[0].person_digest
    query = entries[(entries["action"] == "query") & (entries["user"] == "ann")].iloc[0]
    assert query["parameters"] == {"redacted": "erasure"} and query["seq"] in receipts[0].audit_entries_redacted
    # a redaction no receipt lists is caught, even when made with the audit key (a steward by
    # hand); without the key the digest it must keep cannot be computed, and the MAC fails
    lines = log.path.read_text().splitlines()
    import json

    from explorer.privacy.audit import parameters_digest

    for key, reason in ((log.key(), "no erasure receipt lists it"), (None, "MAC")):
        last = json.loads(lines[-1])
        digest = parameters_digest(last, key) if key else parameters_digest({**last, "format": 2})
        last["parameters_sha256"], last["parameters"] = digest, {"redacted": "by hand"}
        tampered = lake.root.parent / "tampered"
        tampered.mkdir(exist_ok=True)
        (tampered / "audit").mkdir(exist_ok=True)
        (tampered / "audit" / "audit.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n")
        check = AuditLog(tampered, key=log.key(), head_file=log.head_path).verify()
        assert not check.ok and reason in check.reason, check


def test_erasure_needs_a_steward_and_a_known_person(lakes):
    lake, _, _, _ = lakes
    with pytest.raises(PermissionDenied, match="needs the steward role"):
        erase(lake, "1000003", pseudonymizer=PSEUDONYMS, user="r", role="researcher")
    with pytest.raises(ExplorerError, match="no person with source identifier '9999999'"):
        erase(lake, "9999999", pseudonymizer=PSEUDONYMS, user="s")
    assert np.isin(PSEUDONYMS("1000003"), lake.sql("SELECT person_id FROM person")["person_id"])
