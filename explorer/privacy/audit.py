"""The audit log: an append-only, tamper-evident record of who did what to which data.

Each entry is one line of JSON in ``<lake>/audit/audit.jsonl``: ``seq`` (1, 2, ...), ``time``
(UTC), ``user``, ``role``, ``action``, ``dataset``, ``version``, ``parameters``, ``rows``,
``prev_hash`` and ``hash``. ``hash`` is the SHA-256 of the entry's canonical JSON (sorted keys,
no spaces, ``hash`` left out), which includes ``prev_hash``, the hash of the entry before
(64 zeros for the first). Editing, deleting, inserting or reordering any entry breaks the chain
at that entry, and :meth:`AuditLog.verify` names it. Appends hold an exclusive lock on the file,
so entries written by concurrent processes still form one chain.

The log lives outside the Delta tables on purpose: erasing a person purges table history, and
the receipt of that erasure must outlive it. It records no direct identifier beyond what the
caller passes; callers pass pseudonyms, never source identifiers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError

GENESIS = "0" * 64
FIELDS = ("seq", "time", "user", "role", "action", "dataset", "version", "parameters", "rows", "prev_hash", "hash")


def entry_hash(entry: dict) -> str:
    """SHA-256 of the entry's canonical JSON without its ``hash``."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass(frozen=True)
class AuditCheck:
    """Result of :meth:`AuditLog.verify`: ``ok``, the entries checked, and where the chain
    breaks (``bad_seq``, the line number, and why)."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries} entr{'y' if self.entries == 1 else 'ies'}, hash chain verified"
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
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            last = _last_line(handle)
            previous = json.loads(last) if last else None
            entry = {"seq": (previous["seq"] + 1) if previous else 1,
                     "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                     "user": str(user), "role": str(role), "action": str(action), "dataset": dataset,
                     "version": None if version is None else int(version), "parameters": parameters or {},
                     "rows": None if rows is None else int(rows),
                     "prev_hash": previous["hash"] if previous else GENESIS}
            entry["hash"] = entry_hash(entry)
            handle.seek(0, 2)
            handle.write((json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode("utf-8"))
            handle.flush()
        return entry

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
            previous_hash, expected_seq, count = entry["hash"], expected_seq + 1, count + 1
        return AuditCheck(True, count)


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
