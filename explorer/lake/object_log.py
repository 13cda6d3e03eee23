"""An append-only log on S3-compatible object storage, safe with concurrent writers.

A local lake keeps its audit log and privacy-budget ledger in files appended under ``flock``;
object storage has no lock and no append. It has a conditional put: an object written with
``If-None-Match: *`` is created only if no object has its key (S3 since 2024, SeaweedFS,
MinIO, GCS and Azure alike; delta-rs commits the same way). So entry *n* of a log is the
object ``PREFIX/000000000042.json``, created only if absent: of two writers racing for the same
*n*, exactly one wins, and the other re-reads the winner's entry, rebuilds its own on top of it
(a hash chain links each entry to the one before; a ledger re-checks the budget against the
new balance) and tries *n + 1*. Nothing is overwritten, so nothing is lost, and a reader sees
entries 0..n whole or not at all.

This module is the primitive; the audit log and the budget ledger of a lake on object storage
are built on it (issue 24).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from explorer.errors import ExplorerError

#: digits of an entry's number in its key: keys sort as numbers, up to 10^12 entries
DIGITS = 12


@dataclass(frozen=True)
class LogEntry:
    """Entry ``number`` of a log: its record and the digest of its stored bytes."""

    number: int
    record: dict
    digest: str


def _request(what: str, function, *args, **kwargs):
    """One request to the store; one that fails for want of an answer (not a missing or taken
    key) becomes :class:`~explorer.lake.storage.StorageUnavailable`, which says what to do."""
    from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

    from explorer.lake.storage import StorageUnavailable

    try:
        return function(*args, **kwargs)
    except (FileNotFoundError, AlreadyExistsError, PreconditionError):
        raise
    except BaseError as exc:
        raise StorageUnavailable(f"{what} failed: {str(exc).splitlines()[0]}. Check that the store answers "
                                 "(AWS_ENDPOINT_URL) and the credentials; nothing half-written is visible, and "
                                 "the operation can be retried") from exc


class Behind(Exception):
    """Raised by a record builder that finds it was given an entry older than the log's end
    (another writer's entry landed after the tail was read): the tail is read again."""


class LogConflict(ExplorerError):
    """Other writers kept taking the next entry: the append gave up after ``attempts`` tries."""


class ObjectLog:
    """An append-only log of JSON records under ``prefix`` of an obstore ``store``.

    Parameters
    ----------
    store : obstore store
        ``obstore.store.S3Store`` (or any obstore store that honours ``mode="create"``; the
        local and in-memory stores do too, which the unit tests use).
    prefix : str
        The log's folder in the store (``audit``, ``privacy/budget``).

    Examples
    --------
    >>> from obstore.store import MemoryStore
    >>> log = ObjectLog(MemoryStore(), "audit")
    >>> log.append(lambda previous: {"event": "ingest"}).number
    0
    >>> entry = log.append(lambda previous: {"event": "query", "after": previous.digest[:8]})
    >>> [e.record["event"] for e in log.entries()]
    ['ingest', 'query']
    """

    def __init__(self, store, prefix: str):
        self.store = store
        self.prefix = prefix.strip("/")
        self._next = None  # the first number not known to be taken (a guess: others may have written)

    def key(self, number: int) -> str:
        return f"{self.prefix}/{number:0{DIGITS}d}.json"

    def append(self, build: Callable[[LogEntry | None], dict], attempts: int = 1000) -> LogEntry:
        """Write the record ``build(previous)`` as the next entry and return it.

        ``build`` is called with the last entry (None for the first) and may raise to refuse the
        append (a spend over the budget); after a lost race it is called again with the entry
        that won, so a record that depends on the one before (a hash chain, a balance) is
        always built on the entry it will follow."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        number = self._tail() if self._next is None else self._next
        try:
            previous = self.entry(number - 1) if number else None
        except FileNotFoundError:  # our guess of the end is gone (a log cut short): list it again
            number = self._tail()
            previous = self.entry(number - 1) if number else None
        for _ in range(attempts):
            try:
                record = build(previous)
            except Behind:
                number = self._tail()
                previous = self.entry(number - 1) if number else None
                continue
            body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            try:
                _request(f"writing {self.key(number)}", obstore.put, self.store, self.key(number), body, mode="create")
            except AlreadyExistsError:  # another writer took this number: follow its entry
                try:
                    previous = self.entry(number)
                    number += 1
                except FileNotFoundError:  # (a conflict answered, yet no entry there: look at the end again)
                    number = self._tail()
                    previous = self.entry(number - 1) if number else None
                continue
            self._next = number + 1
            return LogEntry(number, record, hashlib.sha256(body).hexdigest())
        raise LogConflict(f"{self.prefix}: {attempts} appends lost to other writers in a row; try again")

    def entry(self, number: int) -> LogEntry:
        """Entry ``number`` as stored."""
        import obstore

        body = bytes(_request(f"reading {self.key(number)}", lambda: obstore.get(self.store, self.key(number)).bytes()))
        return LogEntry(number, json.loads(body), hashlib.sha256(body).hexdigest())

    def entries(self) -> Iterator[LogEntry]:
        """Every entry, in order."""
        for number in range(self._tail()):
            yield self.entry(number)

    def keys(self) -> list[str]:
        """The keys of the entries present, in order (a deleted entry leaves a gap a reader sees)."""
        import obstore

        def listing():
            return [meta["path"] for batch in obstore.list(self.store, prefix=self.prefix + "/", chunk_size=1000)
                    for meta in batch]

        found = []
        for path in _request(f"listing {self.prefix}/", listing):
            stem = path.rsplit("/", 1)[-1].removesuffix(".json")
            if path.endswith(".json") and stem.isdigit() and len(stem) == DIGITS:
                found.append(path)
        return sorted(found)

    def read_key(self, key: str) -> bytes:
        """The stored bytes of one entry, by key."""
        import obstore

        return bytes(_request(f"reading {key}", lambda: obstore.get(self.store, key).bytes()))

    def rewrite(self, key: str, body: bytes) -> None:
        """Replace one entry's bytes (an audit redaction, which keeps the entry's keyed digest)."""
        import obstore

        _request(f"writing {key}", obstore.put, self.store, key, body)

    def last(self) -> LogEntry | None:
        """The last entry, or None for an empty log."""
        tail = self._tail()
        return self.entry(tail - 1) if tail else None

    def _tail(self) -> int:
        """The number after the last entry written (0 for an empty log), from a listing."""
        keys = self.keys()
        return int(keys[-1].rsplit("/", 1)[-1].removesuffix(".json")) + 1 if keys else 0
