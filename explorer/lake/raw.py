"""The raw zone: every file received, kept byte for byte under its SHA-256, with a manifest.

The manifest is itself a Delta table, ``raw_manifest``, appended to (never rewritten) so its own
history says when each file arrived and every status it has had.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake.lake import Lake

MANIFEST = "raw_manifest"
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
CHUNK = 1 << 20


@dataclass(frozen=True)
class RawFile:
    """A file in the raw zone."""

    sha256: str
    size_bytes: int
    source_name: str
    path: Path

    @property
    def ref(self) -> str:
        """Lineage reference of this file, for ``lake.write(..., inputs=[...])``."""
        return f"raw:{self.sha256}"


def hash_key(storage, key: str) -> tuple[str, int]:
    """SHA-256 and size of a stored file, read in chunks (a data file may be large).
    FileNotFoundError when it is gone."""
    digest, size = hashlib.sha256(), 0
    for chunk in storage.chunks(key, CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with io.open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()





def local_copy(storage, sha256: str) -> Path:
    """A local copy of raw file ``sha256`` of a lake on object storage, for a reader that needs a
    path: fetched once per machine into the user's own cache, and checked against its name on
    every use (a copy that was changed is fetched again)."""
    cached = _cache_folder() / sha256
    if cached.exists() and sha256_file(cached) == sha256:
        return cached
    partial = cached.with_name(f".{sha256}.{os.getpid()}")
    data = storage.read_bytes(RawZone.key(sha256))
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ExplorerError(f"raw:{sha256} in {storage.uri(RawZone.key(sha256))} no longer matches its name: run "
                            "`explorer verify` and restore it from a backup")
    partial.write_bytes(data)
    os.replace(partial, cached)
    return cached


def _cache_folder() -> Path:
    """Local copies of an object-storage lake's raw files: ``$XDG_CACHE_HOME/explorer/raw`` (else
    ``~/.cache/explorer/raw``), the user's own, readable by nobody else: they hold health data."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "explorer" / "raw"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or folder.is_symlink():
        raise ExplorerError(f"{folder}: the cache of raw files must be a folder of this user's that nobody else can "
                            "read (chmod 700); it holds copies of received health data")
    return folder


class RawZone:
    """Content-addressed store of received files. Obtain it as ``lake.raw``."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.storage = lake.storage
        self.location = self.storage.uri("raw")

    @property
    def root(self) -> Path:
        """The raw zone's folder of a local lake."""
        return self.lake.root / "raw"

    @staticmethod
    def key(sha256: str) -> str:
        """The storage key of a raw file: ``raw/<sha256[:2]>/<sha256>``."""
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ExplorerError(f"{sha256!r}: expected a SHA-256 as 64 lower-case hex characters")
        return f"raw/{sha256[:2]}/{sha256}"

    def path(self, sha256: str) -> Path:
        """The raw file's path in a local lake; on object storage, a local copy (fetched once)."""
        if self.storage.is_local:
            return self.storage.path(self.key(sha256))
        return local_copy(self.storage, sha256)

    def exists(self, sha256: str) -> bool:
        return self.storage.exists(self.key(sha256))

    def put(self, source, *, source_name: str | None = None, detected_format: str | None = None,
            status: str = "received", reason: str | None = None) -> RawFile:
        """Keep one file (a path or bytes); see :meth:`put_many`."""
        return self.put_many([source], source_names=[source_name], detected_formats=[detected_format],
                             statuses=[status], reasons=[reason])[0]

    def put_many(self, sources, *, source_names=None, detected_formats=None, statuses=None,
                 reasons=None) -> list[RawFile]:
        """Copy files into the raw zone and record them in the manifest in one commit.

        A file already present (same SHA-256) is not copied again but gets a manifest row, so
        every receipt is on record.
        """
        sources = list(sources)
        count = len(sources)
        source_names = list(source_names or [None] * count)
        detected_formats = list(detected_formats or [None] * count)
        statuses = list(statuses or ["received"] * count)
        reasons = list(reasons or [None] * count)
        for given, label in ((source_names, "source_names"), (detected_formats, "detected_formats"),
                             (statuses, "statuses"), (reasons, "reasons")):
            if len(given) != count:
                raise ExplorerError(f"put_many: {label} has {len(given)} entries for {count} sources; give one per source")
        stored = [self.store(source, name) for source, name in zip(sources, source_names, strict=True)]
        self.record(stored, detected_formats, statuses, reasons)
        return stored

    def store(self, source, source_name: str | None = None, *, durable: bool = True) -> RawFile:
        """Keep the bytes of one file (a path or bytes) under their SHA-256, without a manifest row.

        Ingest stores first and records each file's final status once it is known; a file
        stored but never recorded shows up in ``verify`` as an orphan. With ``durable=False``
        the bytes are not forced to disk here: the caller calls :meth:`make_durable` before
        anything names the file (ingest does, before its commit, by when the kernel has written
        most of them back while the files were read).
        """
        return self._store(source, source_name, durable)

    def make_durable(self, files: list[RawFile]) -> None:
        """Force the bytes of files stored with ``durable=False`` to disk (a no-op on object
        storage, whose puts are durable when they return)."""
        if not self.storage.is_local:
            return
        for raw in files:
            handle = os.open(self.path(raw.sha256), os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)

    def record(self, files: list[RawFile], detected_formats, statuses, reasons, *, received_at=None) -> None:
        """Append one manifest row per file, in one commit."""
        now = datetime.now(timezone.utc)
        rows = [{"sha256": raw.sha256, "source_name": raw.source_name, "size_bytes": raw.size_bytes,
                 "received_at": received_at or now, "detected_format": fmt, "status": status, "reason": reason}
                for raw, fmt, status, reason in zip(files, detected_formats, statuses, reasons, strict=True)]
        if rows:
            self.lake.write(MANIFEST, pd.DataFrame(rows), mode="append", operation="receive",
                            inputs=[raw.ref for raw in files])

    def _store(self, source, name: str | None, durable: bool = True) -> RawFile:
        if not self.storage.is_local:
            return self._upload(source, name)
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        handle, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    data = bytes(source)
                    digest.update(data)
                    out.write(data)
                    size = len(data)
                    name = name or "<bytes>"
                else:
                    path = Path(source)
                    if not path.is_file():
                        raise ExplorerError(f"{path}: not a file; pass a file path or bytes")
                    name = name or str(path)
                    with io.open(path, "rb") as src:
                        while chunk := src.read(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(exist_ok=True)
            if final.exists() and sha256_file(final) == sha:
                os.unlink(tmp)
            else:  # new, or a stored copy that was damaged: the received bytes repair it
                os.replace(tmp, final)
                os.chmod(final, 0o444)  # received bytes are never edited in place
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return RawFile(sha, size, name, final)

    def _upload(self, source, name: str | None) -> RawFile:
        """Object storage: hash the source where it is, then upload it unless the store already
        holds those bytes (a put is whole or absent: no temporary object is needed). The
        returned file's ``path`` is a local copy for the readers: the source itself, or for
        bytes a file in the local cache."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            sha = hashlib.sha256(data).hexdigest()
            local = _cache_folder() / sha
            if not local.exists():
                partial = local.with_name(f".{sha}.{os.getpid()}")
                partial.write_bytes(data)
                os.replace(partial, local)
            name = name or "<bytes>"
        else:
            local = Path(source)
            if not local.is_file():
                raise ExplorerError(f"{local}: not a file; pass a file path or bytes")
            sha, name = sha256_file(local), name or str(local)
        size = local.stat().st_size
        key = self.key(sha)
        if not self.storage.exists(key) or self.storage.size(key) != size:
            self.storage.put_file(key, local)
        return RawFile(sha, size, name, local)

    def open(self, sha256: str):
        """Open a raw file for reading, by its SHA-256."""
        if not self.exists(sha256):
            raise ExplorerError(f"raw:{sha256}: no such file in {self.location}")
        return self.storage.open(self.key(sha256))

    def shas(self) -> list[str]:
        """The SHA-256 of every stored file (not the manifest)."""
        return sorted(key.rsplit("/", 1)[-1] for key in self.storage.keys("raw")
                      if _SHA256.match(key.rsplit("/", 1)[-1]) and key.count("/") == 2)

    def files(self) -> list[Path]:
        """Every stored file of a local lake (not the manifest)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("??/*") if p.is_file() and not p.name.startswith("."))

    def manifest(self) -> pd.DataFrame:
        """Every receipt: sha256, source_name, size_bytes, received_at, detected_format, status, reason."""
        if not self.lake.has_table(MANIFEST):
            return pd.DataFrame(columns=["sha256", "source_name", "size_bytes", "received_at",
                                         "detected_format", "status", "reason"])
        return self.lake.sql(f"SELECT * FROM {MANIFEST} ORDER BY received_at")
