"""The audit log: an append-only, tamper-evident record of who did what to which data.

Each entry is one line of JSON in ``<lake>/audit/audit.jsonl``: ``seq`` (1, 2, ...), ``time``
(UTC), ``user``, ``role``, ``action``, ``dataset``, ``version``, ``parameters``, ``rows``,
``prev_hash`` and ``hash``. ``hash`` is the SHA-256 of the entry's canonical JSON (sorted keys,
no spaces, ``hash`` left out, and ``parameters`` replaced by their own SHA-256), which includes
``prev_hash``, the hash of the entry before (64 zeros for the first). Editing, deleting, inserting
or reordering any entry breaks the chain at that entry, and :meth:`AuditLog.verify` names it.
Appends hold an exclusive lock on the file, so entries written by concurrent processes still form
one chain.

One change is allowed, and only one: an erasure *redacts* the parameters of entries that name the
person (:meth:`AuditLog.redact`). The entry keeps the digest of what it said
(``parameters_sha256``), so its hash and the chain still verify, and the erasure's receipt, a later
entry, lists every entry it redacted; a redaction no receipt lists fails verification.

The log lives outside the Delta tables on purpose: erasing a person purges table history, and
the receipt of that erasure must outlive it. It records no direct identifier beyond what the
caller passes; callers pass pseudonyms, never source identifiers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError

GENESIS = "0" * 64
FIELDS = ("seq", "time", "user", "role", "action", "dataset", "version", "parameters", "rows", "prev_hash", "hash")


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def parameters_digest(entry: dict) -> str:
    """SHA-256 of an entry's parameters (kept in ``parameters_sha256`` once they are redacted)."""
    return entry.get("parameters_sha256") or hashlib.sha256(_canonical(entry.get("parameters") or {})).hexdigest()


def entry_hash(entry: dict) -> str:
    """SHA-256 of the entry's canonical JSON without its ``hash``, its parameters by digest
    (``format`` 2; entries of format 1, written before redaction existed, hash their parameters
    in full and cannot be redacted)."""
    if entry.get("format", 1) < 2:
        return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()
    body = {k: v for k, v in entry.items() if k not in ("hash", "parameters", "parameters_sha256")}
    body["parameters_sha256"] = parameters_digest(entry)
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass(frozen=True)
class AuditCheck:
    """Result of :meth:`AuditLog.verify`: ``ok``, the entries checked, and where the chain
    breaks (``bad_seq``, the line number, and why)."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str = ""
    head: str = GENESIS  # hash of the last entry: kept elsewhere, it shows a log cut short

    def __str__(self) -> str:
        if self.ok:
            return (f"audit log intact: {self.entries} entr{'y' if self.entries == 1 else 'ies'}, hash chain verified; "
                    f"head {self.head[:16]} (a chain cut short still verifies: compare the head with a copy kept "
                    "outside the lake)")
        return f"audit log BROKEN at line {self.bad_line} (entry seq {self.bad_seq}): {self.reason}"


class AuditLog:
    """The lake's audit log (see the module notes)."""

    def __init__(self, lake_root):
        self.path = Path(lake_root) / "audit" / "audit.jsonl"

    def record(self, *, user: str, role: str, action: str, dataset: str | None = None, version: int | None = None,
               parameters: dict | None = None, rows: int | None = None) -> dict:
        """Append one entry and return it."""
        if not user or not role or not action:
            raise ExplorerError("an audit entry needs a user, a role and an action")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(), open(self.path, "a+b") as handle:
            last = _last_line(handle)
            previous = json.loads(last) if last else None
            entry = {"seq": (previous["seq"] + 1) if previous else 1,
                     "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                     "user": str(user), "role": str(role), "action": str(action), "dataset": dataset,
                     "version": None if version is None else int(version), "parameters": parameters or {},
                     "rows": None if rows is None else int(rows),
                     "prev_hash": previous["hash"] if previous else GENESIS, "format": 2}
            entry["hash"] = entry_hash(entry)
            handle.seek(0, 2)
            handle.write((json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode("utf-8"))
            handle.flush()
        return entry

    def redact(self, names_person, *, note: str) -> list[int]:
        """Replace the parameters of every entry where ``names_person(text)`` is true by a note,
        keeping their digest; returns the redacted entries' seq. Only an erasure does this, and
        its receipt must list them (see the module notes)."""
        if not self.path.exists():
            return []
        redacted = []
        with self._lock(), open(self.path, "rb") as handle:
            lines = handle.read().decode("utf-8").splitlines()
            out = []
            for line in lines:
                entry = json.loads(line)
                redactable = entry.get("format", 1) >= 2 and "parameters_sha256" not in entry
                text = json.dumps(entry.get("parameters") or {}) if redactable else ""
                if text and names_person(text):
                    entry["parameters_sha256"] = parameters_digest(entry)
                    entry["parameters"] = {"redacted": note}
                    redacted.append(entry["seq"])
                    line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
                out.append(line)
            if redacted:
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text("\n".join(out) + "\n", encoding="utf-8")
                temporary.replace(self.path)
        return redacted

    def _lock(self):
        return sidecar_lock(self.path)

    def unredactable(self, names_person) -> list[int]:
        """Seq of the entries that name someone (``names_person(text)``) but cannot be redacted:
        format 1, whose hash covers the parameters themselves."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("format", 1) < 2 and names_person(json.dumps(entry.get("parameters") or {})):
                out.append(entry["seq"])
        return out

    def entries(self, limit: int | None = None) -> pd.DataFrame:
        """The entries, oldest first (the last ``limit`` if given)."""
        if not self.path.exists():
            return pd.DataFrame(columns=list(FIELDS))
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if limit:
            lines = lines[-int(limit):]
        rows = []
        for number, line in enumerate(lines, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append({"seq": None, "action": f"<unreadable line {number}>"})
        return pd.DataFrame(rows).reindex(columns=list(FIELDS))

    def verify(self) -> AuditCheck:
        """Walk the chain from the first entry: each line must parse, number itself one more
        than the line before, carry the previous entry's hash and hash to what it says."""
        if not self.path.exists():
            return AuditCheck(True, 0)
        previous_hash, expected_seq, count = GENESIS, 1, 0
        redacted, receipted = {}, set()
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                return AuditCheck(False, count, None, number, "an empty line (an entry was removed)")
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                return AuditCheck(False, count, None, number, f"not JSON ({exc.msg})")
            seq = entry.get("seq")
            if seq != expected_seq:
                return AuditCheck(False, count, seq, number, f"seq {seq} where {expected_seq} was expected "
                                                             "(an entry was removed, inserted or moved)")
            if entry.get("prev_hash") != previous_hash:
                return AuditCheck(False, count, seq, number, "prev_hash is not the hash of the entry before")
            if entry_hash(entry) != entry.get("hash"):
                return AuditCheck(False, count, seq, number, "its content does not match its hash (it was edited)")
            if "parameters_sha256" in entry:
                if set(entry.get("parameters") or {}) != {"redacted"}:
                    return AuditCheck(False, count, seq, number, "a redacted entry carries parameters again (edited)")
                redacted[seq] = number
            if entry.get("action") == "erase":
                receipted.update((entry.get("parameters") or {}).get("audit_entries_redacted", []))
            previous_hash, expected_seq, count = entry["hash"], expected_seq + 1, count + 1
        for seq, number in redacted.items():
            if seq not in receipted:
                return AuditCheck(False, count, seq, number, "its parameters were redacted, but no erasure receipt "
                                                             "lists it (a redaction outside an erasure)")
        return AuditCheck(True, count, head=previous_hash)


@contextmanager
def sidecar_lock(path: Path):
    """Hold an exclusive lock on ``<path>.lock``, a file that is never replaced. A file that is
    rewritten by an atomic replace (the audit log on redaction, the budget ledger on every
    charge) cannot carry its own lock: a waiter would hold it on the old inode and get in beside
    a newcomer locking the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _last_line(handle) -> str:
    """The file's last non-empty line, read from the end (the log only grows)."""
    handle.seek(0, 2)
    size = handle.tell()
    block, data = 4096, b""
    position = size
    while position > 0:
        step = min(block, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1].decode("utf-8")
    return data.rstrip(b"\n").decode("utf-8")
