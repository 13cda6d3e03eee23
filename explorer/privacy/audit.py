"""The audit log: an append-only, tamper-evident record of who did what to which data.

Each entry is one line of JSON in ``<lake>/audit/audit.jsonl``: ``seq`` (1, 2, ...), ``time``
(UTC), ``user``, ``role``, ``action``, ``dataset``, ``version``, ``parameters``, ``rows``,
``prev_hash``, ``format``, ``key_id`` and ``hash``.

**A keyed chain (format 3).** ``hash`` is an HMAC-SHA256, under the *audit key*, of the entry's
canonical JSON (sorted keys, no spaces, ``hash`` left out, ``parameters`` replaced by their own
keyed digest), which includes ``prev_hash``, the ``hash`` of the entry before (64 zeros for the
first). An unkeyed hash chain proves nothing against someone who can write the file: they edit
an entry and recompute every hash after it. Without the key nobody can recompute an HMAC, so an
edited entry fails at that entry, however the chain after it was rewritten. ``key_id`` is a
public fingerprint of the key (an HMAC of a fixed label), so a log verified with the wrong key
says so instead of calling every entry forged.

**A signed head, kept outside the log.** A chain shows what was changed, not what was cut off
its end: a log with its last entries deleted, truncated, emptied or deleted altogether is a
shorter chain that verifies. On every append, under the same lock, the log writes its *head*
(the number of entries, the last entry's ``hash``, the key id, and an HMAC over them) to a file
outside the lake. :meth:`AuditLog.verify` reads it and names what happened: a file deleted, a
file emptied, entries cut off its end (truncated), a head older than the log (rolled back).
An append refuses to continue a log that disagrees with its head, so the next query cannot
bless a shortened log with a fresh head. What the head cannot show is a log and its head
rolled back *together* to an older pair: against that, keep a copy of the head somewhere the
lake's writers cannot write (``explorer audit --verify --head-file COPY`` compares with it).

**Where the key and the head are.** The key comes from ``$EXPLORER_AUDIT_KEY`` (at least 16
bytes of text), else from the file named by ``$EXPLORER_AUDIT_KEY_FILE``, else from
``<lake>.audit.key`` beside the lake directory (never inside it), created with mode 0600 on the
first append to a log that has no keyed entry yet. The head is ``$EXPLORER_AUDIT_HEAD_FILE``,
else ``<lake>.audit-head.json`` beside the lake directory. Neither may be inside the lake: whoever
can write the lake could then rewrite them too. The key is not derived from the pseudonym key,
on purpose: every process that records an entry needs the audit key (a researcher's query is
recorded too), and the pseudonym key must stay with the steward; two key sources would also
split one log into two chains. Whoever holds the audit key can rewrite the log undetected, so it
belongs to the service account that runs the lake, readable by no one else.

**Older logs.** Entries of format 1 and 2 carry an unkeyed SHA-256 chain. They are read and
checked as before, and the next append continues the chain with keyed entries; the first keyed
entry covers the hash of the last unkeyed one, so from then on the unkeyed part is anchored too.
A log with no keyed entry at all verifies as "unkeyed, written before format 3; cannot prove
integrity" (``AuditCheck.proven`` false), never as intact.

**Redaction.** One change is allowed, and only one: an erasure *redacts* the parameters of
entries that name the person (:meth:`AuditLog.redact`). The entry keeps the keyed digest of what
it said (``parameters_sha256``), which its HMAC covers, so the chain and the head still verify
without re-signing, and only the key holder can compute the digest a redaction must keep: a
redaction by anyone else fails at that entry. The erasure's receipt, a later entry, lists every
entry it redacted; a redaction no receipt lists fails verification too.

The log lives outside the Delta tables on purpose: erasing a person purges table history, and
the receipt of that erasure must outlive it. It records no direct identifier beyond what the
caller passes; callers pass pseudonyms, never source identifiers.

References
----------
Schneier B, Kelsey J. Secure audit logs to support computer forensics. ACM Transactions on
Information and System Security 2(2):159-176, 1999 (keyed hash chains; truncation needs a
commitment kept elsewhere).
Krawczyk H, Bellare M, Canetti R. HMAC: Keyed-Hashing for Message Authentication. RFC 2104, 1997.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError
from explorer.lake.object_log import Behind, ObjectLog
from explorer.lake.storage import open_storage, sidecar_lock

GENESIS = "0" * 64
FIELDS = ("seq", "time", "user", "role", "action", "dataset", "version", "parameters", "rows", "prev_hash", "hash")
#: the first format whose entries are signed with the audit key
KEYED_FORMAT = 3
KEY_ENV, KEY_FILE_ENV, HEAD_FILE_ENV = "EXPLORER_AUDIT_KEY", "EXPLORER_AUDIT_KEY_FILE", "EXPLORER_AUDIT_HEAD_FILE"
MIN_KEY_BYTES = 16
#: entries a head may lag behind the log on object storage, where writers do not take turns
HEAD_LAG = 64
#: and how recent those entries must be (seconds): only writers still at work explain them
HEAD_LAG_SECONDS = 600
#: what a steward does when the log and its head disagree (the same advice wherever it is refused)
RECOVERY = ("Run `explorer audit --verify` as steward, keep the log and its head as evidence, then move both out "
            "of the way: the next entry starts a new log and a new head.")


class AuditTampered(ExplorerError):
    """The audit log disagrees with its head or key, so nothing more is appended to it."""


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class AuditKey:
    """The secret that signs the audit log, and where it was found (for messages only)."""

    secret: bytes = field(repr=False)
    source: str = ""

    def __post_init__(self):
        if len(self.secret) < MIN_KEY_BYTES:
            raise ExplorerError(f"the audit key from {self.source or 'the caller'} has {len(self.secret)} bytes; use at "
                                f"least {MIN_KEY_BYTES} random bytes (e.g. `python -c \"import secrets; "
                                "print(secrets.token_hex(32))\"`)")

    @property
    def key_id(self) -> str:
        """A public fingerprint: names the key in entries and messages, reveals nothing of it."""
        return hmac.new(self.secret, b"explorer-audit-key-id", hashlib.sha256).hexdigest()[:16]

    def sign(self, label: str, value) -> str:
        """HMAC-SHA256 of ``value``'s canonical JSON; ``label`` keeps the MACs of entries,
        parameters and heads apart, so one can never stand in for another."""
        return hmac.new(self.secret, label.encode() + b"\0" + _canonical(value), hashlib.sha256).hexdigest()


def parameters_digest(entry: dict, key: AuditKey | None = None) -> str:
    """Digest of an entry's parameters (kept in ``parameters_sha256`` once they are redacted):
    keyed for format 3, so that it cannot be recomputed, or matched against a guess, without
    the key; SHA-256 for format 2."""
    if entry.get("parameters_sha256"):
        return entry["parameters_sha256"]
    parameters = entry.get("parameters") or {}
    if entry.get("format", 1) >= KEYED_FORMAT:
        return _need_key(key, entry).sign("explorer-audit-parameters-v3", parameters)
    return hashlib.sha256(_canonical(parameters)).hexdigest()


def entry_hash(entry: dict, key: AuditKey | None = None) -> str:
    """The ``hash`` an entry must carry: the HMAC under ``key`` of its canonical JSON without
    its ``hash`` and with its parameters by digest (format 3); the same unkeyed (format 2); or
    the SHA-256 of everything but the hash (format 1, written before redaction existed, whose
    parameters therefore cannot be redacted)."""
    version = entry.get("format", 1)
    if version < 2:
        return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()
    body = {k: v for k, v in entry.items() if k not in ("hash", "parameters", "parameters_sha256")}
    body["parameters_sha256"] = parameters_digest(entry, key)
    if version >= KEYED_FORMAT:
        return _need_key(key, entry).sign("explorer-audit-entry-v3", body)
    return hashlib.sha256(_canonical(body)).hexdigest()


def _need_key(key: AuditKey | None, entry: dict) -> AuditKey:
    if key is None:
        raise ExplorerError(f"audit entry {entry.get('seq')} is signed (format {entry.get('format')}, key id "
                            f"{entry.get('key_id')}); its MAC needs the audit key: set ${KEY_FILE_ENV}")
    return key


def default_key_path(lake_root) -> Path:
    """``<lake>.audit.key`` beside the lake directory: outside it, so a copy of the lake (or
    write access to it alone) does not carry the key."""
    root = Path(lake_root).resolve()
    return root.parent / f"{root.name}.audit.key"


def default_head_path(lake_root) -> Path:
    """``<lake>.audit-head.json`` beside the lake directory, for the same reason."""
    root = Path(lake_root).resolve()
    return root.parent / f"{root.name}.audit-head.json"


@dataclass(frozen=True)
class AuditCheck:
    """Result of :meth:`AuditLog.verify`.

    ``ok`` is false when something was found wrong: ``problem`` names the kind (``deleted``,
    ``emptied``, ``truncated``, ``removed``, ``reordered``, ``inserted``, ``edited``,
    ``unkeyed_after_keyed``, ``downgraded``, ``redacted_without_receipt``, ``rolled_back``,
    ``head_missing``, ``head_forged``, ``no_key``, ``wrong_key``), ``reason`` says it in words,
    ``bad_seq`` and ``bad_line`` say where. ``proven`` is true only when the whole log is
    covered by the key and agrees with its head; an intact log of format 1 or 2 alone is
    ``ok`` but not ``proven``."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str = ""
    head: str = GENESIS  # hash of the last entry
    proven: bool = False
    problem: str = ""
    unkeyed: int = 0  # entries of format 1 or 2 at the start of the log
    head_path: str = ""

    def __str__(self) -> str:
        plural = f"{self.entries} entr{'y' if self.entries == 1 else 'ies'}"
        if not self.ok:
            where = (f" at line {self.bad_line}" + (f" (entry seq {self.bad_seq})" if self.bad_seq is not None else "")
                     if self.bad_line else "")
            return f"audit log BROKEN{where}: {self.reason}"
        if not self.proven:
            return (f"audit log NOT PROVEN: {plural}, unkeyed, written before format {KEYED_FORMAT}; cannot prove "
                    "integrity (an unkeyed hash chain verified, but anyone who can write the file could have "
                    "recomputed it). The next entry recorded starts the keyed chain and its head.")
        if self.entries == 0:
            return (f"audit log empty, and no head says otherwise ({self.head_path}); a log deleted together with "
                    "its head looks the same: compare with a copy of the head kept elsewhere")
        older = (f"; the first {self.unkeyed} (unkeyed, format < {KEYED_FORMAT}) are anchored by the keyed entry "
                 "after them") if self.unkeyed else ""
        return (f"audit log intact: {plural}, hash chain verified with the audit key{older}; the head "
                f"({self.head_path}) agrees: {plural} ending in {self.head[:16]}. A log rolled back "
                "together with its head verifies too: compare with a copy of the head kept elsewhere")


def _failed(problem: str, reason: str, count: int = 0, seq=None, line=None, **extra) -> AuditCheck:
    return AuditCheck(False, count, seq, line, reason, problem=problem, **extra)


class AuditLog:
    """The lake's audit log (see the module notes).

    ``key`` (an :class:`AuditKey` or its bytes), ``key_file`` and ``head_file`` override
    ``$EXPLORER_AUDIT_KEY[_FILE]`` and ``$EXPLORER_AUDIT_HEAD_FILE`` for this object (e.g. to
    verify against a copy of the head kept elsewhere)."""

    def __init__(self, lake_root, *, key: AuditKey | bytes | None = None, key_file=None, head_file=None):
        storage = open_storage(getattr(lake_root, "storage", lake_root))
        #: on object storage each entry is an object created only if absent (ObjectLog): no
        #: flock, no append; the bytes read back are the same lines a local log holds
        self.on_objects = not storage.is_local
        self._given_key = AuditKey(key, "the caller") if isinstance(key, bytes) else key
        self._key_file = key_file
        if self.on_objects:
            self.root = None
            self.path = storage.uri("audit/entries")
            self._entries_log = ObjectLog(storage.store, storage.full_key("audit/entries"))
            self._default_key = storage.beside(".audit.key")
        else:
            self.root = Path(lake_root) if isinstance(lake_root, (str, os.PathLike)) else storage.root
            self.path = self.root / "audit" / "audit.jsonl"
            self._default_key = None
        head = head_file or os.environ.get(HEAD_FILE_ENV)
        if head:
            self.head_path = self._outside_lake(Path(head).expanduser(), "head file")
        else:
            self.head_path = storage.beside(".audit-head.json") if self.on_objects else default_head_path(self.root)

    def _default_key_path(self):
        return self._default_key if self.on_objects else default_key_path(self.root)

    # ------------------------------------------------------------------------------ keys and head
    def _outside_lake(self, path: Path, what: str) -> Path:
        path = path.resolve()
        if self.root is not None and self.root.resolve() in path.parents:
            raise ExplorerError(f"the audit {what} {path} is inside the lake {self.root}: whoever can write the lake "
                                "could rewrite it along with the log. Keep it outside the lake.")
        return path

    def key(self, *, create: bool = False) -> AuditKey | None:
        """The audit key: given, ``$EXPLORER_AUDIT_KEY``, the file ``$EXPLORER_AUDIT_KEY_FILE``
        names, else ``<lake>.audit.key`` (made when ``create``); None when there is none."""
        if self._given_key is not None:
            return self._given_key
        if self._key_file is None and os.environ.get(KEY_ENV):
            return AuditKey(os.environ[KEY_ENV].encode(), f"${KEY_ENV}")
        named = self._key_file or os.environ.get(KEY_FILE_ENV)
        if named:
            path = self._outside_lake(Path(named).expanduser(), "key file")
            if not path.is_file():  # never made up here: a key on an unmounted disk would split the chain
                raise ExplorerError(f"audit key file {path} (from {'--audit-key-file' if self._key_file else '$' + KEY_FILE_ENV}) "
                                    "does not exist")
            return AuditKey(path.read_bytes().strip(), str(path))
        path = self._default_key_path()
        if path.is_file():
            return AuditKey(path.read_bytes().strip(), str(path))
        if not create:
            return None
        if self.on_objects:
            path.create((secrets.token_hex(32) + "\n").encode())  # two first writers: one key wins
        else:
            _create_exclusively(path, (secrets.token_hex(32) + "\n").encode())
        return AuditKey(path.read_bytes().strip(), str(path))

    def read_head(self) -> dict | None:
        """The head as written (None when there is no head file); not yet checked."""
        try:
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            return {"unreadable": str(exc)}
        return head if isinstance(head, dict) else {"unreadable": "not a JSON object"}

    def _head_problem(self, head: dict, key: AuditKey | None) -> tuple[str, str] | None:
        """Why ``head`` cannot be trusted, as (problem, reason), or None."""
        if "unreadable" in head or not isinstance(head.get("entries"), int):
            return "head_forged", f"the head {self.head_path} is not a head the log wrote (unreadable or edited)"
        if key is None:
            return "no_key", (f"the head {self.head_path} is signed with audit key {head.get('key_id')}, but no audit "
                              f"key was found: set ${KEY_ENV} or ${KEY_FILE_ENV}, or put it at "
                              f"{self._default_key_path()}")
        if head.get("key_id") != key.key_id:
            return "wrong_key", (f"the head {self.head_path} is signed with audit key {head.get('key_id')}, not with "
                                 f"the key found ({key.key_id}, from {key.source}): the wrong key is configured, or "
                                 "the head was replaced")
        if not hmac.compare_digest(str(head.get("mac")), key.sign("explorer-audit-head-v3", _head_body(head))):
            return "head_forged", (f"the head {self.head_path} does not match its MAC: it was edited by someone "
                                   "without the audit key")
        return None

    def _signed_head(self, key: AuditKey, entries: int, last_hash: str) -> bytes:
        body = {"format": KEYED_FORMAT, "entries": int(entries), "last_hash": last_hash, "key_id": key.key_id}
        return (json.dumps({**body, "mac": key.sign("explorer-audit-head-v3", body)}, sort_keys=True) + "\n").encode()

    def _write_head(self, key: AuditKey, entries: int, last_hash: str) -> None:
        head = json.loads(self._signed_head(key, entries, last_hash))
        if self.on_objects:  # writers race on object storage: the head only ever moves forward
            def forward(old: bytes | None):
                try:
                    current = json.loads(old) if old else {}
                except ValueError:
                    current = {}
                if isinstance(current.get("entries"), int) and current["entries"] >= int(entries):
                    return None
                return self._signed_head(key, entries, last_hash)
            if isinstance(self.head_path, Path):  # a head kept in a local file ($EXPLORER_AUDIT_HEAD_FILE)
                with sidecar_lock(self.head_path):
                    old = self.head_path.read_bytes() if self.head_path.exists() else None
                    new = forward(old)
                    if new is not None:
                        temporary = self.head_path.with_name(self.head_path.name + ".tmp")
                        temporary.write_bytes(new)
                        os.replace(temporary, self.head_path)
                return
            self.head_path.update(forward)
            return
        self.head_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.head_path.with_name(self.head_path.name + ".tmp")
        temporary.write_text(json.dumps(head, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, self.head_path)  # a reader sees the old head or the new one, never half of one

    def _check_before_append(self, previous: dict | None, key: AuditKey, earlier=None) -> None:
        """Refuse to append to a log that disagrees with its head: the new head would bless it."""
        head = self.read_head()
        if previous is None:
            if earlier is not None and head is not None and head.get("entries") == 0 and not self._head_problem(head, key):
                return  # on object storage a log starts with a signed head of no entries
            if earlier is not None and isinstance((head or {}).get("entries"), int) and _exists(earlier, head["entries"]):
                raise Behind()  # a first entry landed after we found the log empty
            if head is not None:  # written only after an entry: the log held some
                raise AuditTampered(f"the audit log {self.path} is empty or missing, but it has a head "
                                    f"({self.head_path}, {head.get('entries')} entries); nothing is recorded. {RECOVERY}")
            return
        if previous.get("format", 1) < KEYED_FORMAT:
            if head is not None:
                raise AuditTampered(f"the audit log ends in an unkeyed entry, but a head ({self.head_path}) says keyed "
                                    f"entries were written; nothing is recorded. {RECOVERY}")
            return  # an older log: its first keyed entry starts here
        if previous.get("key_id") != key.key_id:
            raise AuditTampered(f"the audit log is signed with audit key {previous.get('key_id')}, and this process "
                                f"holds another ({key.key_id}, from {key.source}); nothing is recorded. Set "
                                f"${KEY_FILE_ENV} to the lake's audit key.")
        if head is None:
            raise AuditTampered(f"the audit log has keyed entries but its head {self.head_path} is missing; nothing is "
                                f"recorded (set ${HEAD_FILE_ENV} if it was moved). {RECOVERY}")
        trouble = self._head_problem(head, key)
        if trouble:
            raise AuditTampered(f"{trouble[1]}; nothing is recorded. {RECOVERY}")
        if head["entries"] == previous.get("seq") and head.get("last_hash") == previous.get("hash"):
            return
        if earlier is not None and head["entries"] > (previous.get("seq") or 0) and _exists(earlier, head["entries"]):
            raise Behind()  # another writer's entries landed after our look at the end: look again
        # a writer that stopped between appending its entry and writing the head leaves the head
        # one entry behind; the entry is genuine when it chains to the head and carries a valid MAC
        if (head["entries"] == (previous.get("seq") or 0) - 1 and previous.get("prev_hash") == head.get("last_hash")
                and hmac.compare_digest(str(previous.get("hash")), entry_hash(previous, key))):
            return
        # on object storage several writers may have appended before any of their heads landed:
        # the entries between the head and the end are genuine when they chain to the head, each
        # with a valid MAC
        if earlier is not None and 0 < (previous.get("seq") or 0) - head["entries"] <= HEAD_LAG \
                and self._chains(head, previous, key, earlier):
            return
        raise AuditTampered(f"the audit log ends at entry {previous.get('seq')}, but its head {self.head_path} says "
                            f"{head['entries']} entries ending in {str(head.get('last_hash'))[:16]}; nothing is "
                            f"recorded. {RECOVERY}")

    # ------------------------------------------------------------------------------ writing
    def record(self, *, user: str, role: str, action: str, dataset: str | None = None, version: int | None = None,
               parameters: dict | None = None, rows: int | None = None) -> dict:
        """Append one signed entry, write the head, and return the entry."""
        if not user or not role or not action:
            raise ExplorerError("an audit entry needs a user, a role and an action")
        if self.on_objects:
            return self._record_object(user=user, role=role, action=action, dataset=dataset, version=version,
                                       parameters=parameters, rows=rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(), open(self.path, "a+b") as handle:
            previous, key = self._ready_to_append(handle)
            entry = self._new_entry(previous, key, user=user, role=role, action=action, dataset=dataset,
                                    version=version, parameters=parameters, rows=rows)
            handle.seek(0, 2)
            handle.write((json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())  # the entry is on disk before the head that counts it
            self._write_head(key, entry["seq"], entry["hash"])
        return entry

    @staticmethod
    def _chains(head: dict | None, previous: dict, key: AuditKey, earlier) -> bool:
        """Whether the entries after ``head`` (None: from the first) up to ``previous`` chain to
        it, each with a valid MAC: genuine entries whose head a concurrent writer has yet to write."""
        start, after = (head["entries"], head.get("last_hash")) if head is not None else (0, GENESIS)
        now = datetime.now(timezone.utc)
        for entry in [earlier(seq) for seq in range(start + 1, previous["seq"])] + [previous]:
            if entry.get("prev_hash") != after or not hmac.compare_digest(str(entry.get("hash")), entry_hash(entry, key)):
                return False
            # only writers still at work explain entries beyond the head: old ones beyond it mean
            # the head was put back (an old head kept aside, the log cut to just past it)
            try:
                age = (now - datetime.fromisoformat(str(entry.get("time")))).total_seconds()
            except ValueError:
                return False
            if age > HEAD_LAG_SECONDS:
                return False
            after = entry["hash"]
        return True

    def _record_object(self, **fields) -> dict:
        """:meth:`record` on object storage: the entry is object ``seq - 1`` of the log, created
        only if absent; a writer that loses the race rebuilds its entry on the winner's."""
        signed = []

        def build(last):
            previous = last.record if last is not None else None
            key = self._key_for(previous)
            if previous is None and self.read_head() is None:
                self._start_head(key)
            self._check_before_append(previous, key, self._object_entry)
            entry = self._new_entry(previous, key, **fields)
            signed[:] = [key]
            return entry

        appended = self._entries_log.append(build)
        self._write_head(signed[0], appended.record["seq"], appended.record["hash"])
        return appended.record

    def _start_head(self, key: AuditKey) -> None:
        """A new log on object storage first gets a signed head of no entries (created only if
        absent): from then on a missing head is never a log's normal state, so one deleted with
        the log's last entries is caught, however few entries there were."""
        zero = self._signed_head(key, 0, GENESIS)
        if isinstance(self.head_path, Path):
            _create_exclusively(self.head_path, zero)
        else:
            self.head_path.create(zero)

    def _object_entry(self, seq: int) -> dict:
        return self._entries_log.entry(seq - 1).record

    def _new_entry(self, previous: dict | None, key: AuditKey, *, user, role, action, dataset, version, parameters,
                   rows) -> dict:
        entry = {"seq": (previous["seq"] + 1) if previous else 1,
                 "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                 "user": str(user), "role": str(role), "action": str(action), "dataset": dataset,
                 "version": None if version is None else int(version),
                 # as JSON will give it back, so the MAC covers what a reader re-hashes
                 "parameters": json.loads(json.dumps(parameters or {}, default=str)),
                 "rows": None if rows is None else int(rows),
                 "prev_hash": previous["hash"] if previous else GENESIS, "format": KEYED_FORMAT,
                 "key_id": key.key_id}
        entry["hash"] = entry_hash(entry, key)
        return entry

    def _key_for(self, previous: dict | None) -> AuditKey:
        key = self.key(create=previous is None or previous.get("format", 1) < KEYED_FORMAT)
        if key is None:
            raise AuditTampered(f"the audit log is signed with audit key {previous.get('key_id')}, but this process "
                                f"has no audit key: set ${KEY_ENV} or ${KEY_FILE_ENV} (see `explorer audit "
                                "--help`); nothing is recorded.")
        return key

    def _read_bytes(self, last: int | None = None) -> bytes | None:
        """The log as JSON lines (None when there is none): the file, or the entry objects in order
        (only the ``last`` ones, when given: each is a request)."""
        if not self.on_objects:
            return self.path.read_bytes() if self.path.exists() else None
        keys = sorted(self._entries_log.keys())[-int(last):] if last else sorted(self._entries_log.keys())
        if not keys:
            return None
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(self._entries_log.read_key, keys))
        return b"".join(body + b"\n" for body in bodies)

    def check_appendable(self) -> None:
        """Raise :class:`AuditTampered` where :meth:`record` would refuse, so that a caller who
        changes data before recording it (an erasure) can stop before changing anything."""
        if self.on_objects:
            for _ in range(100):
                last = self._entries_log.last()
                previous = last.record if last is not None else None
                try:
                    self._check_before_append(previous, self._key_for(previous), self._object_entry)
                    return
                except Behind:
                    continue  # appended to meanwhile: look at the new end
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(), open(self.path, "a+b") as handle:
            self._ready_to_append(handle)

    def _ready_to_append(self, handle) -> tuple[dict | None, AuditKey]:
        """The last entry and the key to sign the next with, once the log agrees with its head."""
        last = _last_line(handle)
        try:
            previous = json.loads(last) if last else None
        except json.JSONDecodeError:
            raise AuditTampered(f"the last line of the audit log {self.path} is not a whole entry (cut short or "
                                f"edited); nothing is recorded. {RECOVERY}") from None
        key = self._key_for(previous)
        self._check_before_append(previous, key)
        return previous, key

    def redact(self, names_person, *, note: str) -> list[int]:
        """Replace the parameters of every entry where ``names_person(text)`` is true by a note,
        keeping their digest; returns the redacted entries' seq. Only an erasure does this, and
        its receipt must list them (see the module notes). ``text`` is the parameters' JSON as
        written (non-ASCII escaped) and unescaped, so a name is found in either spelling."""
        if self.on_objects:
            return self._redact_objects(names_person, note)
        if not self.path.exists():
            return []
        redacted = []
        with self._lock(), open(self.path, "rb") as handle:
            lines = handle.read().decode("utf-8").splitlines()
            key = None
            out = []
            for line in lines:
                entry = json.loads(line)
                redactable = entry.get("format", 1) >= 2 and "parameters_sha256" not in entry
                if redactable and _names(names_person, entry.get("parameters")):
                    if entry.get("format", 1) >= KEYED_FORMAT and key is None:
                        key = self.key()
                        if key is None:
                            raise ExplorerError(f"redacting audit entry {entry['seq']} needs the audit key (its "
                                                f"digest is keyed): set ${KEY_ENV} or ${KEY_FILE_ENV}")
                    entry["parameters_sha256"] = parameters_digest(entry, key)
                    entry["parameters"] = {"redacted": note}
                    redacted.append(entry["seq"])
                    line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
                out.append(line)
            if redacted:
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text("\n".join(out) + "\n", encoding="utf-8")
                temporary.replace(self.path)
        return redacted

    def _redact_objects(self, names_person, note: str) -> list[int]:
        redacted, key = [], None
        for name in sorted(self._entries_log.keys()):
            entry = json.loads(self._entries_log.read_key(name))
            if entry.get("format", 1) >= 2 and "parameters_sha256" not in entry and _names(names_person, entry.get("parameters")):
                key = key or self.key()
                if key is None:
                    raise ExplorerError(f"redacting audit entry {entry['seq']} needs the audit key (its digest is "
                                        f"keyed): set ${KEY_ENV} or ${KEY_FILE_ENV}")
                entry["parameters_sha256"] = parameters_digest(entry, key)
                entry["parameters"] = {"redacted": note}
                self._entries_log.rewrite(name, json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode())
                redacted.append(entry["seq"])
        return redacted

    def _lock(self):
        return sidecar_lock(self.path)

    def unredactable(self, names_person) -> list[int]:
        """Seq of the entries that name someone (``names_person(text)``) but cannot be redacted:
        format 1, whose hash covers the parameters themselves."""
        raw = self._read_bytes()
        if raw is None:
            return []
        out = []
        for line in raw.decode("utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("format", 1) < 2 and _names(names_person, entry.get("parameters")):
                out.append(entry["seq"])
        return out

    # ------------------------------------------------------------------------------ reading
    def entries(self, limit: int | None = None) -> pd.DataFrame:
        """The entries, oldest first (the last ``limit`` if given)."""
        raw = self._read_bytes(last=limit)
        if raw is None:
            return pd.DataFrame(columns=list(FIELDS))
        lines = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
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
        """Walk the chain from the first entry (each line must parse, number itself one more
        than the line before, carry the previous entry's hash and, when keyed, a MAC that only
        the key makes), then compare its end with the signed head (see the module notes)."""
        key = self.key()
        head = self.read_head()
        where = {"head_path": str(self.head_path)}
        # a head is written only after an entry, so any head at all (even a damaged one) says
        # that the log once held entries
        said = "" if head is None else (
            f"its head {self.head_path} says it held {head['entries']} entries" if isinstance(head.get("entries"), int)
            else f"a head exists ({self.head_path}, unreadable or edited)")
        raw = self._read_bytes()
        if raw is None:
            if head is not None and not (self.on_objects and head.get("entries") == 0):
                return _failed("deleted", f"the audit log file {self.path} is missing, but {said} (the file was "
                                          "deleted)", **where)
            return AuditCheck(True, 0, proven=True, **where)
        if not raw.strip():
            if head is not None:
                return _failed("emptied", f"the audit log {self.path} is empty, but {said} (it was emptied)", **where)
            return AuditCheck(True, 0, proven=True, **where)
        cut_short = not raw.endswith(b"\n")
        lines = raw.decode("utf-8", "replace").split("\n")
        if not cut_short:
            lines = lines[:-1]
        seqs = [_seq_of(line) for line in lines]
        previous_hash, expected_seq, count, unkeyed, keyed_seen = GENESIS, 1, 0, 0, False
        redacted, receipted, hashes = {}, set(), []
        for number, line in enumerate(lines, start=1):
            at = {"count": count, "line": number, **where}
            if not line.strip():
                return _failed("removed", "an empty line (an entry was removed)", **at)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines) and cut_short:
                    return _failed("truncated", "the last line is cut off in the middle of an entry: the file was "
                                                f"truncated{' (' + said + ')' if said else ''}", **at)
                return _failed("edited", f"not JSON ({exc.msg})", **at)
            if not isinstance(entry, dict):
                return _failed("edited", "JSON, but not an entry (edited)", **at)
            seq = entry.get("seq")
            at["seq"] = seq
            if seq != expected_seq:
                return _failed(*_out_of_place(seq, expected_seq, seqs[number:], seqs[:number - 1]), **at)
            version = entry.get("format", 1)
            if version >= KEYED_FORMAT:
                keyed_seen = True
                if key is None:
                    return _failed("no_key", f"the entry is signed with audit key {entry.get('key_id')}, but no audit "
                                             f"key was found: set ${KEY_ENV} or ${KEY_FILE_ENV}, or put it at "
                                             f"{self._default_key_path()}", **at)
                if entry.get("key_id") != key.key_id:
                    return _failed("wrong_key", f"the entry is signed with audit key {entry.get('key_id')}, not with "
                                                f"the key found ({key.key_id}, from {key.source}): the wrong key is "
                                                "configured, or the entry was forged", **at)
            elif keyed_seen:
                return _failed("unkeyed_after_keyed", f"an unkeyed entry (format {version}) after keyed ones: it was "
                                                      "written or rewritten by someone without the audit key", **at)
            else:
                unkeyed += 1
            if entry.get("prev_hash") != previous_hash:
                return _failed("edited", "prev_hash is not the hash of the entry before (entries were edited or "
                                         "replaced)", **at)
            if not hmac.compare_digest(str(entry.get("hash")), entry_hash(entry, key)):
                return _failed("edited", "its content does not match its "
                               + ("MAC: it was edited (and a chain recomputed without the audit key fails here)"
                                  if version >= KEYED_FORMAT else "hash (it was edited)"), **at)
            if "parameters_sha256" in entry:
                if set(entry.get("parameters") or {}) != {"redacted"}:
                    return _failed("edited", "a redacted entry carries parameters again (edited)", **at)
                redacted[seq] = number
            if entry.get("action") == "erase":
                receipted.update((entry.get("parameters") or {}).get("audit_entries_redacted", []))
            previous_hash, expected_seq, count = entry["hash"], expected_seq + 1, count + 1
            hashes.append(previous_hash)
        for seq, number in redacted.items():
            if seq not in receipted:
                return _failed("redacted_without_receipt", "its parameters were redacted, but no erasure receipt lists "
                                                           "it (a redaction outside an erasure)",
                               count, seq, number, **where)
        done = {"head": previous_hash, "unkeyed": unkeyed, **where}
        if not keyed_seen:
            if head is not None:
                return _failed("downgraded", f"the log holds only unkeyed entries, but {said}, signed: it was "
                                             "rewritten without the audit key", count, **where)
            return AuditCheck(True, count, proven=False, **done)
        if head is None:
            return _failed("head_missing", f"the log has keyed entries but its head {self.head_path} is missing "
                                           f"(deleted; or moved: set ${HEAD_FILE_ENV})", count, **where)
        trouble = self._head_problem(head, key)
        if trouble:
            return _failed(*trouble, count, **where)
        promised = head["entries"]
        if promised > count:
            lost = promised - count
            return _failed("truncated", f"the log holds {count} entries but its head says {promised}: the last "
                                        f"{'entry was' if lost == 1 else f'{lost} entries were'} cut off (truncated)",
                           count, **where)
        if promised < count:
            if promised >= 1 and hashes[promised - 1] == head.get("last_hash"):
                return _failed("rolled_back", f"the head says {promised} entries but the log holds {count}, and entry "
                                              f"{promised} matches the head: the head was replaced by an older one "
                                              "(rolled back), or a writer stopped between appending and updating it",
                               count, **where)
            return _failed("edited", f"the head says {promised} entries, and entry {promised} does not match it: the "
                                     "log was rewritten", count, **where)
        if head.get("last_hash") != previous_hash:
            return _failed("edited", "the last entry does not match the head: the log was rewritten", count, **where)
        return AuditCheck(True, count, proven=True, **done)


def _exists(earlier, seq: int) -> bool:
    try:
        earlier(seq)
        return True
    except FileNotFoundError:
        return False


def _head_body(head: dict) -> dict:
    return {k: head.get(k) for k in ("format", "entries", "last_hash", "key_id")}


def _names(names_person, parameters) -> bool:
    """Whether ``names_person`` finds someone in the parameters, as written (JSON escapes
    non-ASCII characters) or as read (a name with an accent is found in either spelling)."""
    parameters = parameters or {}
    return bool(names_person(json.dumps(parameters, default=str))
                or names_person(json.dumps(parameters, ensure_ascii=False, default=str)))


def _seq_of(line: str):
    try:
        return json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None


def _out_of_place(seq, expected: int, later: list, earlier: list) -> tuple[str, str]:
    """Why entry ``seq`` stands where ``expected`` should: (problem, reason)."""
    if isinstance(seq, int) and seq < expected and seq in earlier:
        return "inserted", f"seq {seq} where {expected} was expected: entry {seq} appears twice (a copy was inserted)"
    if expected in later:
        return "reordered", (f"seq {seq} where {expected} was expected: entry {expected} comes later (entries were "
                             "swapped or moved)")
    if isinstance(seq, int) and seq > expected:
        return "removed", (f"seq {seq} where {expected} was expected: entr{'y' if seq - expected == 1 else 'ies'} "
                           f"{expected}{'' if seq - expected == 1 else f'-{seq - 1}'} deleted from the middle of the log")
    return "reordered", f"seq {seq} where {expected} was expected (an entry was removed, inserted or moved)"


def _create_exclusively(path: Path, content: bytes) -> None:
    """Write ``path`` with mode 0600 unless it exists; never replace one, and never show a
    reader half a key (two first writers of a new lake race here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # fails if another process made it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


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
