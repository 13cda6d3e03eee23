"""Erasure: a person who withdraws disappears from everything derived from them.

``erase(lake, source_id)`` (``explorer erase --person SOURCE_ID``, steward only) works in this order,
planning everything before it changes anything, so a file it cannot rewrite stops it untouched:

1. **Raw files.** Every kept file that holds the person (found through the ``source_file`` of
   their rows, and by searching every file, inside zip archives and Parquet too, for their
   source identifier, their pseudonym and their FHIR patient references) is deleted when it
   holds no one else, or rewritten without them (CSV and NDJSON lines, FHIR Bundle entries,
   Parquet rows, zip members) and kept under its new SHA-256.
2. **Tables.** Every table loses the rows of the person (``person_id``), of the files deleted,
   and any row whose text names them (quarantined records, manifest and ingest rows of their
   files); rows of rewritten files point to the new SHA-256. Each changed table is one commit.
3. **Aggregates.** Every aggregate is recomputed by a full refresh, so cohort-wide results
   (mixed models, clusters, counts) equal a fresh computation without the person.
4. **History and caches.** Every table that held the person, and every aggregate, keeps only its
   current version (:meth:`explorer.lake.Lake.purge_history`); the minute cube and staging
   files, caches rebuilt on demand, are deleted.
5. **Audit.** Entries whose parameters name the person, in any spelling the lake writes (the
   pseudonym and FHIR references in upper or lower case, JSON-escaped or not), are redacted by
   the holder of the audit key: an entry's MAC covers the keyed digest of its parameters, which
   the redaction keeps, so the chain and its head still verify and no one without the key could
   have done it. A receipt is appended (signed, and so recorded in the chain): a keyed digest of
   the source identifier (neither the identifier nor the pseudonym), what was removed,
   rewritten, recomputed, purged and redacted, and a final scan of every byte under the lake
   root, which matches the same spellings.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from explorer.errors import ExplorerError
from explorer.lake.storage import Storage
from explorer.privacy.safe_harbor import column_key

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake


@dataclass
class ErasureReceipt:
    """What an erasure did (the audit log keeps it; nothing in it identifies the person)."""

    person_digest: str
    raw_deleted: list[str] = field(default_factory=list)
    raw_rewritten: dict[str, str] = field(default_factory=dict)
    rows_removed: dict[str, int] = field(default_factory=dict)
    aggregates_recomputed: list[str] = field(default_factory=list)
    history_purged: list[str] = field(default_factory=list)
    caches_removed: list[str] = field(default_factory=list)
    audit_entries_redacted: list[int] = field(default_factory=list)
    scan_clean: bool = False
    seconds: float = 0.0

    def __str__(self) -> str:
        rows = sum(self.rows_removed.values())
        return "\n".join([
            f"erased person {self.person_digest[:16]}… in {self.seconds:.1f} s",
            f"  raw files: {len(self.raw_deleted)} deleted, {len(self.raw_rewritten)} rewritten without them",
            f"  rows removed: {rows:,} in {len(self.rows_removed)} table(s): "
            + ", ".join(f"{t} {n:,}" for t, n in sorted(self.rows_removed.items())),
            f"  aggregates recomputed: {', '.join(self.aggregates_recomputed) or 'none'}",
            f"  history purged: {len(self.history_purged)} table(s) keep only their current version",
            f"  caches removed: {', '.join(self.caches_removed) or 'none'}",
            f"  audit entries redacted: {len(self.audit_entries_redacted)}",
            "  scan of every byte under the lake root: " + ("neither identifier found" if self.scan_clean else "FOUND (see above)"),
        ])


#: column and key names that hold a person's identifier in the files people send
ID_NAME = re.compile(r"^(person|participant|patient|subject|member)(_?(id|identifier|source_value))?$|^(source_)?id$")
#: a source identifier this long is unlikely to occur by chance as a whole token elsewhere
LONG_ID = 6


class _Marks:
    """What names the person, matched where it can only mean them.

    The pseudonym (hex digits) and FHIR patient references (UUIDs) are unique: matched as whole
    tokens anywhere, in upper or lower case (hex means the same in either, and a query or a
    hand-written note may use either). The source identifier can be short ('4711') and occur in
    others' data as a value or inside a code ('4711-1'), so it is matched only where it is an
    identifier: a CSV field under a person column, a FHIR resource's identifier, a path component
    or file stem, a JSON record's person key; and, when at least :data:`LONG_ID` characters, as a
    whole token anywhere, in its own case (two sources may tell 'ab1234' from 'AB1234'). Every
    token is matched as written and as JSON writes it inside a string (non-ASCII as ``\\uXXXX``,
    a slash perhaps as ``\\/``), so the audit log and JSON files cannot hide it."""

    def __init__(self, source_id: str, pseudonym: str, refs: list[str]):
        self.source_id = source_id
        self.tokens = [source_id, pseudonym, *refs]
        any_case = _spellings([pseudonym, *refs])
        own_case = _spellings([source_id] if len(source_id) >= LONG_ID else [])
        words = [rb"(?i:" + b"|".join(re.escape(t) for t in any_case) + rb")"]
        if own_case:
            words.append(b"|".join(re.escape(t) for t in own_case))
        self.pattern = re.compile(rb"(?<![0-9A-Za-z])(?:" + b"|".join(words) + rb")(?![0-9A-Za-z])")
        self.token = re.compile(rb"(?<![0-9A-Za-z])" + re.escape(source_id.encode()) + rb"(?![0-9A-Za-z])")

    def in_bytes(self, data: bytes) -> bool:
        return self.pattern.search(data) is not None

    def in_entry(self, entry: dict) -> bool:
        """A FHIR Bundle entry about them: it names their references, or is a resource whose
        identifier is their source identifier."""
        resource = entry.get("resource") or {}
        identifiers = resource.get("identifier") or []
        return self.in_text(json.dumps(entry)) or any(
            isinstance(i, dict) and str(i.get("value")) == self.source_id for i in identifiers)

    def in_text(self, text: str) -> bool:
        return self.in_bytes(text.encode("utf-8", "surrogateescape"))

    def in_record(self, text: str) -> bool:
        """A quarantined record (JSON of the row as received) or a path that names them."""
        if self.in_text(text):
            return True
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            return any(ID_NAME.match(column_key(k)) and str(v) == self.source_id for k, v in record.items())
        parts = re.split(r"[/\\!]", text)
        return any(part == self.source_id or part.rsplit(".", 1)[0] == self.source_id for part in parts)

    def csv_rows(self, data: bytes) -> bytes | None:
        """``data`` as CSV without the person's rows (a person column equal to their id), or None
        when it has no person column in its header."""
        import csv

        lines = data.splitlines(keepends=True)
        if not lines:
            return None
        try:
            header = next(csv.reader([lines[0].decode("utf-8-sig")]))
        except (UnicodeDecodeError, csv.Error):
            return None
        columns = [k for k, name in enumerate(header) if ID_NAME.match(column_key(name))]
        if not columns:
            return None
        kept = [lines[0]]
        for line in lines[1:]:
            if self.token.search(line) or self.pattern.search(line):  # cheap test first: most lines are others'
                try:
                    fields = next(csv.reader([line.decode("utf-8", "replace")]), [])
                except csv.Error:
                    fields = []
                if self.pattern.search(line) or any(k < len(fields) and fields[k].strip() == self.source_id for k in columns):
                    continue
            kept.append(line)
        return b"".join(kept)


def _spellings(tokens: list[str]) -> list[bytes]:
    """Each token's bytes as written and as a JSON string holds it (``json.dumps`` escapes
    non-ASCII characters by default; some writers escape ``/`` too), longest first so that the
    alternation prefers the whole of a reference."""
    out = set()
    for token in tokens:
        escaped = json.dumps(token)[1:-1]
        out.update(t.encode("utf-8", "surrogateescape") for t in (token, escaped, escaped.replace("/", "\\/")))
    return sorted(out, key=len, reverse=True)


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array is a value
        return False


def person_digest(key: bytes, source_id: str) -> str:
    """A keyed digest that lets a steward show, with the key, that this person was erased,
    while naming them to no one else (and differing from their pseudonym)."""
    return hmac.new(key, b"erasure-receipt:" + str(source_id).encode(), hashlib.sha256).hexdigest()


def erase(lake: Lake, source_id: str, *, pseudonymizer, user: str, role: str = "steward", workers: int = 1,
          progress=None) -> ErasureReceipt:
    """Remove the person with ``source_id`` from ``lake`` everywhere (see the module notes)."""
    from explorer.privacy.audit import AuditLog
    from explorer.privacy.roles import require

    require(role, "erase", "erasing a person")
    started = time.perf_counter()
    source_id = str(source_id).strip()
    if not source_id:
        raise ExplorerError("give the person's source identifier: explorer erase --person SOURCE_ID")
    pseudonym = pseudonymizer(source_id)
    refs = _patient_refs(lake, pseudonym)
    marks = _Marks(source_id, pseudonym, refs)
    receipt = ErasureReceipt(person_digest(pseudonymizer.key, source_id))
    step = _stepper(progress, 6)

    step("finding the person's files")
    log = AuditLog(lake)
    log.check_appendable()  # the receipt must be writable before anything is erased
    old_entries = log.unredactable(marks.in_text)
    if old_entries:
        raise ExplorerError(f"audit entries {', '.join(map(str, old_entries[:10]))} name the person but were written "
                            "before entries could be redacted (format 1); nothing was changed. Archive the audit log "
                            "outside the lake, start a new one, and erase again.")
    own, shared = _files_with_rows(lake, pseudonym, marks)
    plan = {}
    for sha in lake.raw.shas():
        path = lake.raw.path(sha)  # on object storage, a local copy
        if sha not in own and not _mentions(path, marks):
            continue
        plan[sha] = _plan_file(path, marks, own=sha in own, shared=sha in shared)
    persons_found = bool(own) or bool(plan) or _has_rows(lake, pseudonym)
    if not persons_found:
        raise ExplorerError(f"no person with source identifier {source_id!r} in {lake.location}: check the identifier "
                            "(the one in the files received, not the pseudonym) and the pseudonym key")

    step("rewriting raw files")
    for sha, new_bytes in plan.items():
        old = lake.raw.path(sha)
        if new_bytes is None:
            receipt.raw_deleted.append(sha)
        else:
            receipt.raw_rewritten[sha] = lake.raw.store(new_bytes, source_name=f"rewritten by erasure of {sha[:12]}").sha256
        lake.storage.delete(lake.raw.key(sha))
        old.unlink(missing_ok=True)  # (the local copy, when the lake is on object storage)

    step("removing rows from tables")
    derived = _aggregate_tables(lake)
    touched = []
    for name in lake.tables():
        if name in derived:
            continue
        removed = _rewrite_table(lake, name, pseudonym, marks, receipt)
        if removed is not None:
            touched.append(name)
            if removed:
                receipt.rows_removed[name] = removed

    step("recomputing aggregates")
    from explorer.jobs import refresh
    from explorer.jobs.refresh import step_output

    from explorer.jobs.steps import load_steps

    # the aggregates this lake has: a step whose table was never written holds nobody to remove
    # (and an erasure creates no table), whatever else is registered in this process
    existing = sorted(name for name in load_steps() if lake.has_table(step_output(name)))
    report = refresh(lake, full=True, workers=workers, wait=True, steps=existing) if existing else None
    if report is not None and report.failed:
        receipt.seconds = time.perf_counter() - started
        log.record(user=user, role=role, action="erase_incomplete", rows=sum(receipt.rows_removed.values()),
                   parameters={k: v for k, v in asdict(receipt).items() if k != "seconds"})
        raise ExplorerError(f"the person's rows are gone, but recomputing the aggregates failed:\n{report}\n"
                            "Fix the failing step and run `explorer refresh --full`, then `explorer erase` again to purge.")
    written = {step_output(s.step) for s in (report.steps if report is not None else [])
               if s.status in ("succeeded", "up_to_date")}
    for name in sorted(derived & set(lake.tables())):  # an aggregate no step wrote keeps stale rows: drop them
        if name not in written:
            removed = _rewrite_table(lake, name, pseudonym, marks, receipt)
            if removed:
                receipt.rows_removed[name] = removed
    receipt.aggregates_recomputed = sorted(written)

    step("purging history and caches")
    for name in lake.tables():
        if name in touched or name in derived or "person_id" in _columns(lake, name):
            lake.purge_history(name)
            receipt.history_purged.append(name)
    for cache in ("arrays/wearable_minute_cube", "_staging"):
        if lake.storage.has_prefix(cache):
            lake.storage.delete_prefix(cache)
            receipt.caches_removed.append(cache)

    step("recording the receipt")
    receipt.audit_entries_redacted = log.redact(marks.in_text, note="erasure")
    found = scan(lake.root if lake.is_local else lake.storage, marks)
    receipt.scan_clean = not found
    receipt.seconds = time.perf_counter() - started
    log.record(user=user, role=role, action="erase", dataset=None, rows=sum(receipt.rows_removed.values()),
               parameters={k: v for k, v in asdict(receipt).items() if k != "seconds"})
    if found:
        raise ExplorerError("erasure finished, but the person is still named in: " + ", ".join(found[:10])
                            + ". Remove or rewrite these files by hand; this is a bug, please report it.")
    return receipt


def scan(root, marks: _Marks) -> list[str]:
    """Files under ``root`` (a folder, or a lake's object storage) that name the person: in their
    bytes, inside zip members, or in a Parquet file's values (compression would hide a name from
    a byte search)."""
    found = []
    if isinstance(root, Storage):
        return [key for key in root.keys("") if _mentions_bytes(root.read_bytes(key), marks)]
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and _mentions(path, marks):
            found.append(str(path.relative_to(root)))
    return found


# --------------------------------------------------------------------------- internals
def _stepper(progress, total):
    count = [0]

    def step(label):
        count[0] += 1
        if progress:
            progress(count[0], total, label)
    return step


def _columns(lake: Lake, name: str) -> list[str]:
    return [f.name for f in lake.delta(name).schema().fields]


def _patient_refs(lake: Lake, pseudonym: str) -> list[str]:
    if not lake.has_table("fhir_patient_link"):
        return []
    found = lake.sql("SELECT DISTINCT patient_ref FROM fhir_patient_link WHERE person_id = ?", [pseudonym])
    refs = set()
    for ref in found["patient_ref"].dropna():
        refs.add(str(ref))
        refs.add(str(ref).rsplit("/", 1)[-1])  # "Patient/abc" is referred to as abc too
    return sorted(r for r in refs if len(r) >= 6)  # a short ref would match by chance


def _files_with_rows(lake: Lake, pseudonym: str, marks) -> tuple[set[str], set[str]]:
    """Raw files with rows of the person, and raw files with rows of anyone (or anything) else:
    a quarantined row or a reference row (a lab's column map) of a file counts as someone else's
    unless it names the person, so that deleting the file never loses it."""
    own, shared = set(), set()
    for name in lake.tables():
        columns = _columns(lake, name)
        if "source_file" not in columns or name in ("raw_manifest", "ingest_file"):
            continue
        if "person_id" in columns:
            rows = lake.sql(f'SELECT DISTINCT source_file, person_id = ? AS own FROM "{name}" '
                            "WHERE source_file IS NOT NULL", [pseudonym])
            own.update(rows.loc[rows["own"] == True, "source_file"])  # noqa: E712 (NULL person_id is not own)
            shared.update(rows.loc[rows["own"] != True, "source_file"])  # noqa: E712
        else:
            frame = lake.sql(f'SELECT * FROM "{name}" WHERE source_file IS NOT NULL')
            values = frame.drop(columns="source_file")
            names_them = pd.Series([any(not _missing(v) and marks.in_record(str(v)) for v in row)
                                    for row in values.itertuples(index=False)], index=frame.index, dtype=bool)
            own.update(frame.loc[names_them, "source_file"])
            shared.update(frame.loc[~names_them, "source_file"])
    return own, shared


def _has_rows(lake: Lake, pseudonym: str) -> bool:
    for name in lake.tables():
        if "person_id" in _columns(lake, name):
            if len(lake.sql(f'SELECT 1 FROM "{name}" WHERE person_id = ? LIMIT 1', [pseudonym])):
                return True
    return False


def _aggregate_tables(lake: Lake) -> set[str]:
    """Tables written by refresh steps (recomputed, not edited)."""
    from explorer.jobs.steps import load_steps

    return {cls.output for cls in load_steps().values()}


def _mentions(path: Path, marks: _Marks) -> bool:
    return _mentions_bytes(path.read_bytes(), marks)


def _mentions_bytes(data: bytes, marks: _Marks) -> bool:
    """Whether a file's bytes name the person: their unique tokens anywhere; inside a zip's
    members or a Parquet file's values; or their source identifier where it is an identifier
    (a CSV person column, a FHIR resource identifier)."""
    if marks.in_bytes(data):
        return True
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return any(marks.in_record(m.filename) or _mentions_bytes(archive.read(m), marks)
                           for m in archive.infolist() if not m.is_dir())
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError):
            return False
    if data[:4] == b"PAR1":
        return _parquet_mentions(data, marks)
    if not marks.token.search(data):
        return False
    rows = marks.csv_rows(data)
    if rows is not None:
        return rows != data
    try:
        document = json.loads(data)
    except ValueError:
        return any(marks.in_record(line.decode("utf-8", "replace")) for line in data.splitlines())
    entries = document.get("entry") if isinstance(document, dict) else None
    if isinstance(entries, list):
        return any(isinstance(e, dict) and marks.in_entry(e) for e in entries)
    return marks.in_record(json.dumps(document)) if isinstance(document, dict) else False


def _parquet_mentions(data: bytes, marks: _Marks) -> bool:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception:  # not Parquet after all, or damaged: the byte search has spoken
        return False
    return any(marks.in_text(str(v)) or (ID_NAME.match(column_key(name)) and str(v) == marks.source_id)
               for name, column in zip(table.column_names, table.columns)
               for v in column.to_pylist() if v is not None)


def _plan_file(path: Path, marks: _Marks, *, own: bool, shared: bool) -> bytes | None:
    """What becomes of a raw file that holds the person: None (deleted) or its new bytes.

    A file whose accepted rows were all theirs goes. A file with others' rows too is rewritten
    without them, and must change (else the person's part cannot be told apart: an error naming
    the file, before anything changed). A file that only names them (quarantined rows, a
    damaged file) is rewritten when it can be, so others' rows in it stay, else it goes; a
    rewrite that leaves nothing but a header goes too."""
    data = path.read_bytes()
    if own and not shared:
        return None
    try:
        rewritten = _without(data, marks, path.name)
    except ValueError as exc:
        if shared:
            raise ExplorerError(f"raw file {path.name} holds the person and others, and {exc}; nothing was changed. "
                                "Split the file by hand, re-ingest it, and erase again.") from None
        return None
    if shared and (rewritten == data or _mentions_bytes(rewritten, marks)):
        raise ExplorerError(f"raw file {path.name} holds rows of the person and of others, but the person's rows "
                            "cannot be found in it by their identifiers; nothing was changed. Split the file by hand, "
                            "re-ingest it, and erase again.")
    return None if _is_empty(rewritten) else rewritten


def _is_empty(data: bytes) -> bool:
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return not [m for m in archive.infolist() if not m.is_dir()]
    if data[:4] == b"PAR1":
        return pq.read_metadata(io.BytesIO(data)).num_rows == 0
    try:
        document = json.loads(data)
        if isinstance(document, dict) and isinstance(document.get("entry"), list):
            return not document["entry"]
    except ValueError:
        pass
    return len([line for line in data.splitlines() if line.strip()]) <= 1  # nothing, or a header alone


def _without(data: bytes, marks: _Marks, name: str) -> bytes:
    if data[:4] == b"PK\x03\x04":
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as archive, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as rebuilt:
            for member in archive.infolist():
                content = archive.read(member)
                if member.is_dir() or not _mentions_bytes(content, marks):
                    rebuilt.writestr(member, content)
                elif not marks.in_record(member.filename):
                    kept = _without(content, marks, member.filename)
                    if kept.strip():
                        rebuilt.writestr(member, kept)
        return out.getvalue()
    if data[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        keep = [not any(marks.in_text(str(v)) or (ID_NAME.match(column_key(k)) and str(v) == marks.source_id)
                        for k, v in row.items() if v is not None) for row in table.to_pylist()]
        out = io.BytesIO()
        pq.write_table(table.filter(pa.array(keep)), out)
        return out.getvalue()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("entry"), list):  # a FHIR Bundle
            document["entry"] = [e for e in document["entry"] if not (isinstance(e, dict) and marks.in_entry(e))]
            return json.dumps(document, indent=1).encode()
        if document is not None:
            raise ValueError("it is one JSON document that is not a FHIR Bundle, so there are no rows to drop")
    rows = marks.csv_rows(data)  # a CSV with a person column: their rows go, by that column
    if rows is not None:
        return rows
    # other line-oriented text (NDJSON, a log): every line that names the person goes
    lines = data.splitlines(keepends=True)
    return b"".join(line for line in lines if not marks.in_bytes(line))


def _rewrite_table(lake: Lake, name: str, pseudonym: str, marks: _Marks, receipt: ErasureReceipt) -> int | None:
    """Drop the person's rows from one table (one commit), remap rewritten files; the number of
    rows dropped, or None when the table did not change."""
    table = lake.delta(name).to_pyarrow_table()
    frame = table.to_pandas()
    if frame.empty:
        return None
    drop = pd.Series(False, index=frame.index)
    if "person_id" in frame:
        drop |= frame["person_id"].astype(object) == pseudonym
    gone = set(receipt.raw_deleted)
    for column in ("source_file", "sha256"):
        if column in frame:
            drop |= frame[column].astype(object).isin(gone)
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or isinstance(values.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            text = values.astype(object).where(values.notna(), None)
            drop |= text.map(lambda v: v is not None and marks.in_record(str(v)))
    changed = bool(drop.any())
    kept = frame[~drop].copy()
    for column in ("source_file", "sha256"):
        if column in kept and receipt.raw_rewritten:
            before = kept[column].astype(object)
            after = before.map(lambda v: receipt.raw_rewritten.get(v, v))
            if (after != before).any():
                kept[column] = after
                changed = True
                if name == "raw_manifest" and "size_bytes" in kept:
                    moved = after != before
                    kept.loc[moved, "size_bytes"] = [lake.raw.path(s).stat().st_size for s in after[moved]]
    if not changed:
        return None
    partitions = lake.delta(name).metadata().partition_columns
    lake.write(name, pa.Table.from_pandas(kept, schema=table.schema, preserve_index=False), mode="overwrite",
               operation="erasure", partition_by=partitions or None)
    return int(drop.sum())
