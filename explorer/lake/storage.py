"""Where a lake keeps its files: a local folder, or a prefix of an S3-compatible bucket.

Everything the lake keeps besides its Delta tables (raw files, integrity records, arrays, the
audit log, the privacy-budget ledger, markers) goes through one small interface of keys
(``raw/ab/ab12...``, ``_integrity/person/00000000000000000003.json``), so the same lake code runs
on both. The two differ where object storage has no equivalent of a file-system call:

- no rename and no append: a write is a whole object, visible whole or not at all (so an atomic
  write needs no temporary file), and read-modify-write is a compare-and-swap on the object's
  ETag (:meth:`Storage.update`) where a local folder takes an ``flock``;
- no folders: a "folder" is a key prefix, present while any key is under it.

Delta tables are handed to delta-rs by URI with :attr:`Storage.storage_options`; delta-rs
commits with its own conditional put, so concurrent writers stay safe there too. Zarr arrays
open through :meth:`Storage.zarr_store` (zarr 3's ``ObjectStore`` over obstore).

Credentials and endpoint come from the standard AWS environment variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``...) or from
``storage_options`` (``--storage-option KEY=VALUE``), which take precedence.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

from explorer.errors import ExplorerError

#: schemes taken as object storage (S3 and S3-compatible: SeaweedFS, MinIO, Ceph, R2...)
OBJECT_SCHEMES = ("s3://", "s3a://")

#: options the S3 client takes as client settings rather than store settings
_CLIENT_OPTIONS = {"AWS_ALLOW_HTTP": "allow_http", "AWS_ALLOW_INVALID_CERTIFICATES": "allow_invalid_certificates"}
_STORE_OPTIONS = {"AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "AWS_SKIP_SIGNATURE",
                  "AWS_REQUEST_PAYER", "AWS_UNSIGNED_PAYLOAD", "AWS_CHECKSUM_ALGORITHM", "AWS_S3_EXPRESS",
                  "AWS_SERVER_SIDE_ENCRYPTION", "AWS_SSE_KMS_KEY_ID", "AWS_BUCKET", "AWS_BUCKET_NAME"}


def is_object_url(root) -> bool:
    """Whether ``root`` names object storage (``s3://bucket/prefix``) rather than a folder."""
    return isinstance(root, str) and root.lower().startswith(OBJECT_SCHEMES)


def parse_storage_options(pairs) -> dict[str, str]:
    """``["AWS_REGION=eu-west-1", ...]`` (the command line's ``--storage-option``) as a dict.

    >>> parse_storage_options(["aws_region=eu-west-1", "AWS_ALLOW_HTTP=true"])
    {'AWS_REGION': 'eu-west-1', 'AWS_ALLOW_HTTP': 'true'}
    """
    options = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ExplorerError(f"--storage-option {pair!r}: expected KEY=VALUE, e.g. AWS_ENDPOINT_URL=http://host:8333")
        options[key.strip().upper()] = value.strip()
    return options


def open_storage(root, options: Mapping[str, str] | None = None) -> Storage:
    """The storage of a lake root: :class:`ObjectStorage` for ``s3://``, else :class:`LocalStorage`."""
    if isinstance(root, Storage):
        return root
    text = os.fspath(root)
    if is_object_url(text):
        return ObjectStorage(text, options)
    if "://" in text and not text.startswith("file://"):
        raise ExplorerError(f"lake root {text!r}: expected a folder or s3://bucket/prefix (S3 or an S3-compatible "
                            "store such as SeaweedFS or MinIO, with AWS_ENDPOINT_URL for the latter)")
    return LocalStorage(Path(text.removeprefix("file://")).expanduser().resolve())


class Conflict(ExplorerError):
    """Other writers kept changing an object between our read and our write."""


class Storage:
    """Keys under one root. Subclasses: :class:`LocalStorage`, :class:`ObjectStorage`."""

    is_local: bool = True
    #: what users see: a folder path or ``s3://bucket/prefix``
    location: str = ""
    #: for delta-rs (``storage_options=``); None for a local folder
    storage_options: dict | None = None

    def uri(self, key: str = "") -> str:
        """The location of ``key``, for messages, delta-rs and Zarr."""
        return f"{self.location.rstrip('/')}/{key}" if key else self.location

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def __reduce__(self):  # sent to Dask workers and process pools: rebuilt from its root
        return open_storage, (self.location, self._given_options())

    def _given_options(self):
        return None

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def beside(self, suffix: str) -> Storage | Path:
        raise NotImplementedError


class LocalStorage(Storage):
    """A lake folder on a local (or mounted POSIX) file system."""

    is_local = True

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def uri(self, key: str = "") -> str:
        return str(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically: a reader sees the old bytes or the new, never half."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)

    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if absent; False when it exists (another writer's is kept)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        temporary.write_bytes(data)
        try:
            os.link(temporary, path)
            return True
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def has_prefix(self, prefix: str) -> bool:
        return self.path(prefix).is_dir()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def keys(self, prefix: str) -> list[str]:
        """Every file under ``prefix`` (recursively), as keys, sorted; hidden temporaries left out."""
        base = self.path(prefix)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (files and folders)."""
        base = self.path(prefix)
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() else []

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def put_file(self, key: str, source: Path) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Copy a local folder (a Zarr store) under ``prefix``, whole or not at all."""
        target = self.path(prefix)
        if target.exists():
            return
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(folder, partial)
        partial.rename(target)

    def open(self, key: str):
        return open(self.path(key), "rb")

    def chunks(self, key: str, size: int):
        with open(self.path(key), "rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def zarr_store(self, key: str, *, read_only: bool = False):
        return str(self.path(key))

    def update(self, key: str, change: Callable[[bytes | None], bytes | None]):
        """Read ``key`` (None if absent), write ``change(old)`` back unless it is None, under an
        exclusive lock; returns what was written (or None)."""
        with sidecar_lock(self.path(key)):
            path = self.path(key)
            new = change(path.read_bytes() if path.exists() else None)
            if new is not None:
                self.write_bytes(key, new)
            return new

    def beside(self, suffix: str) -> Path:
        """``<lake folder><suffix>`` next to the lake: outside it (keys, heads)."""
        return self.root.parent / f"{self.root.name}{suffix}"


class ObjectStorage(Storage):
    """A lake under ``s3://bucket/prefix`` of S3 or an S3-compatible store."""

    is_local = False

    def __init__(self, url: str, options: Mapping[str, str] | None = None):
        from obstore.store import from_url

        scheme, _, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ExplorerError(f"lake root {url!r}: expected s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._options = {str(k).upper(): str(v) for k, v in (options or {}).items()}
        unknown = sorted(set(self._options) - _STORE_OPTIONS - set(_CLIENT_OPTIONS))
        if unknown:
            raise ExplorerError(f"storage option {unknown[0]}: not an S3 setting this suite passes on; known: "
                                f"{', '.join(sorted(_STORE_OPTIONS | set(_CLIENT_OPTIONS)))}")
        config = {k: v for k, v in self._options.items() if k in _STORE_OPTIONS}
        client = {_CLIENT_OPTIONS[k]: v.lower() in ("1", "true", "yes") for k, v in self._options.items()
                  if k in _CLIENT_OPTIONS}
        if "allow_http" not in client and os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
            client["allow_http"] = True
        self._config, self._client = config, client or None
        self.store = from_url(f"s3://{bucket}", config=config, client_options=self._client)
        # delta-rs reads the same environment; explicit options win, as for the store above
        environment = {k: v for k, v in os.environ.items() if k in _STORE_OPTIONS or k in _CLIENT_OPTIONS}
        self.storage_options = {**environment, **self._options}
        if self.storage_options.get("AWS_ENDPOINT_URL") and "AWS_ALLOW_HTTP" not in self.storage_options \
                and self.storage_options["AWS_ENDPOINT_URL"].startswith("http://"):
            self.storage_options["AWS_ALLOW_HTTP"] = "true"

    def _given_options(self):
        return self._options

    def _key(self, key: str) -> str:
        key = key.strip("/")
        return "/".join(part for part in (self.prefix, key) if part)

    def _listing_prefix(self, prefix: str) -> str | None:
        """What to list for the keys under ``prefix`` (None: the whole bucket)."""
        full = self._key(prefix)
        return f"{full}/" if full else None

    def full_key(self, key: str) -> str:
        """``key`` as the bucket names it (with the lake's prefix), for :attr:`store`."""
        return self._key(key)

    def _relative(self, path: str) -> str:
        return path[len(self.prefix) + 1:] if self.prefix else path

    def _call(self, what: str, key: str, function, *args, **kwargs):
        """Run one request, turning a store that does not answer into an error that says what to do."""
        from obstore.exceptions import BaseError

        try:
            return function(*args, **kwargs)
        except FileNotFoundError:
            raise
        except BaseError as exc:
            if type(exc).__name__ in ("AlreadyExistsError", "PreconditionError"):
                raise
            raise StorageUnavailable(f"{what} {self.uri(key)} failed: {str(exc).splitlines()[0]}. Check that the store "
                                     "answers (AWS_ENDPOINT_URL) and the credentials; the operation can be retried: "
                                     "nothing half-written is visible") from exc

    def read_bytes(self, key: str) -> bytes:
        import obstore

        return bytes(self._call("reading", key, lambda: obstore.get(self.store, self._key(key)).bytes()))

    def write_bytes(self, key: str, data: bytes) -> None:
        import obstore

        self._call("writing", key, obstore.put, self.store, self._key(key), bytes(data))

    def create(self, key: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            self._call("creating", key, obstore.put, self.store, self._key(key), bytes(data), mode="create")
            return True
        except (AlreadyExistsError, PreconditionError):
            return False

    def exists(self, key: str) -> bool:
        import obstore

        try:
            self._call("looking for", key, obstore.head, self.store, self._key(key))
            return True
        except FileNotFoundError:
            return False

    def has_prefix(self, prefix: str) -> bool:
        """Whether any key is under ``prefix`` (object storage's "folder exists")."""
        return bool(self.keys(prefix, limit=1))

    def size(self, key: str) -> int:
        import obstore

        return int(self._call("looking for", key, obstore.head, self.store, self._key(key))["size"])

    def keys(self, prefix: str, limit: int | None = None) -> list[str]:
        import obstore

        def pages():
            found = []
            for batch in obstore.list(self.store, prefix=self._listing_prefix(prefix), chunk_size=1000):
                for meta in batch:
                    key = self._relative(meta["path"])
                    if not key.rsplit("/", 1)[-1].startswith("."):
                        found.append(key)
                if limit and len(found) >= limit:
                    break  # the rest of the listing is never asked for
            return found

        return sorted(self._call("listing", prefix, pages))

    def children(self, prefix: str) -> list[str]:
        import obstore

        listing = self._call("listing", prefix, obstore.list_with_delimiter, self.store, self._listing_prefix(prefix))
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in listing["common_prefixes"]]
        names += [o["path"].rsplit("/", 1)[-1] for o in listing["objects"]]
        return sorted(n for n in names if not n.startswith("."))

    def delete(self, key: str) -> None:
        import obstore

        try:
            self._call("deleting", key, obstore.delete, self.store, self._key(key))
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str) -> None:
        import obstore

        keys = [self._key(k) for k in self.keys(prefix)]
        for start in range(0, len(keys), 1000):
            self._call("deleting", prefix, obstore.delete, self.store, keys[start:start + 1000])

    def put_file(self, key: str, source: Path) -> None:
        import obstore

        with open(source, "rb") as handle:  # obstore uploads a file object in parts
            self._call("writing", key, obstore.put, self.store, self._key(key), handle)

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Upload a local folder (a Zarr store) under ``prefix``; its root ``zarr.json`` last, so
        a reader that finds it finds every chunk (a store is whole once its root metadata is)."""
        if self.exists(f"{prefix}/zarr.json"):
            return
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        root_meta = [p for p in files if p.relative_to(folder).as_posix() == "zarr.json"]
        for path in [p for p in files if p not in root_meta] + root_meta:
            self.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path)

    def chunks(self, key: str, size: int):
        import obstore

        result = self._call("reading", key, obstore.get, self.store, self._key(key))
        for chunk in result.stream(min_chunk_size=size):
            yield bytes(chunk)

    def open(self, key: str):
        import io

        return io.BytesIO(self.read_bytes(key))

    def zarr_store(self, key: str, *, read_only: bool = False):
        from obstore.store import from_url
        from zarr.storage import ObjectStore

        scoped = from_url(f"s3://{self.bucket}/{self._key(key)}", config=self._config, client_options=self._client)
        return ObjectStore(scoped, read_only=read_only)

    def update(self, key: str, change: Callable[[bytes | None], bytes | None], attempts: int = 200):
        """Compare-and-swap: read ``key`` and its ETag, write ``change(old)`` only if the object
        is still that one (``If-Match``; ``If-None-Match: *`` when absent), else read again and
        call ``change`` again. ``change`` must be a pure function of what it is given."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        for _ in range(attempts):
            try:
                got = self._call("reading", key, obstore.get, self.store, self._key(key))
                old, mode = bytes(got.bytes()), {"e_tag": got.meta["e_tag"]}
            except FileNotFoundError:
                old, mode = None, "create"
            new = change(old)
            if new is None:
                return None
            try:
                self._call("writing", key, obstore.put, self.store, self._key(key), bytes(new), mode=mode)
                return new
            except (AlreadyExistsError, PreconditionError):
                continue  # another writer changed it between our read and write: start again from theirs
        raise Conflict(f"{self.uri(key)}: {attempts} updates in a row lost to other writers; try again")

    def beside(self, suffix: str) -> _Beside:
        """``s3://bucket/<prefix><suffix>`` next to the lake's prefix: outside it (keys, heads)."""
        return _Beside(self, suffix)


class _Beside:
    """One object next to a lake's prefix (``s3://bucket/lake.audit-head.json``), read and written
    like a local path's ``read_bytes``/``write_bytes``."""

    def __init__(self, storage: ObjectStorage, suffix: str):
        self.storage = ObjectStorage(f"s3://{storage.bucket}", storage._options)
        self.key = f"{storage.prefix}{suffix}"
        self.name = self.key.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.storage.uri(self.key)

    def __fspath__(self) -> str:
        return str(self)

    def exists(self) -> bool:
        return self.storage.exists(self.key)

    def is_file(self) -> bool:
        return self.exists()

    def read_bytes(self) -> bytes:
        return self.storage.read_bytes(self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        self.storage.write_bytes(self.key, data)

    def create(self, data: bytes) -> bool:
        return self.storage.create(self.key, data)

    def update(self, change):
        return self.storage.update(self.key, change)


class StorageUnavailable(ExplorerError):
    """The object store did not answer or refused a request; retrying is safe."""


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


class LeaseLost(RuntimeWarning):
    """A lease's holder could not renew it for its whole time to live, or found it taken."""


class LeaseHeld(ExplorerError):
    """Another process holds the lease; ``holder`` says who and since when."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


@contextmanager
def lease(storage: Storage, key: str, *, wait: bool = False, ttl: float = 120.0, poll: float = 2.0):
    """Hold an exclusive lease on ``key`` of object storage, where there is no ``flock``.

    The lease is an object created only if absent (``If-None-Match: *``), naming its holder and
    an expiry that a thread renews every ``ttl / 4`` seconds. A holder that dies stops renewing;
    its lease is taken over, by compare-and-swap on its ETag (so of two takers exactly one wins),
    once either a waiter has seen it unchanged for ``ttl`` seconds on its own clock, or its expiry
    is ``ttl`` seconds past by this machine's clock (so a clock up to ``ttl`` ahead of the holder's
    takes nothing live). Raises :class:`LeaseHeld` (unless ``wait``) when a live holder has it.
    A holder whose renewals fail for longer than ``ttl`` (the store unreachable, the process
    suspended) may have lost it: it is told so with a :class:`LeaseLost` warning when it lets go.
    """
    import json
    import socket
    import threading
    import time
    import warnings
    from datetime import datetime, timezone

    token = secrets.token_hex(8)
    who = f"pid {os.getpid()} on {socket.gethostname()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    seen = {"body": None, "since": time.monotonic()}

    def parsed(old: bytes | None) -> dict:
        try:
            current = json.loads(old) if old else {}
        except ValueError:  # a damaged lease object holds nobody
            return {}
        return current if isinstance(current, dict) else {}

    def body() -> bytes:
        return json.dumps({"token": token, "holder": who, "expires": time.time() + ttl}).encode()

    def take(old: bytes | None):
        current = parsed(old)
        if current.get("token") not in (None, token):
            if old != seen["body"]:  # renewed (or new) since we last looked: its holder is alive
                seen.update(body=old, since=time.monotonic())
            unchanged_for = time.monotonic() - seen["since"]
            expired = current.get("expires", 0) + ttl < time.time() or unchanged_for >= ttl
            if not expired:
                raise LeaseHeld(current.get("holder", "another process"), current.get("holder", ""))
        return body()

    def renewal(old: bytes | None):
        if parsed(old).get("token") != token:
            raise LeaseLost(f"the lease {storage.uri(key)} was taken over by {parsed(old).get('holder', 'another process')}")
        return body()

    while True:
        try:
            storage.update(key, take)
            break
        except LeaseHeld:
            if not wait:
                raise
            time.sleep(poll)
    stop, lost = threading.Event(), []
    renewed = [time.monotonic()]

    def renew():
        while not stop.wait(ttl / 4):
            try:
                storage.update(key, renewal)
                renewed[0] = time.monotonic()
            except LeaseLost as exc:
                lost.append(str(exc))
                return
            except Exception:  # noqa: BLE001 (unreachable for now: the next renewal may get through)
                if time.monotonic() - renewed[0] > ttl:
                    lost.append(f"the lease {storage.uri(key)} could not be renewed for {ttl:.0f} s")

    renewer = threading.Thread(target=renew, daemon=True, name=f"lease {key}")
    renewer.start()
    try:
        yield who
    finally:
        stop.set()
        renewer.join(timeout=ttl / 4)

        def release(old: bytes | None):
            if parsed(old).get("token") != token:
                return None  # taken over after our expiry: theirs now
            return b"{}"

        try:
            storage.update(key, release)
        except Exception:  # noqa: BLE001 (it expires by itself)
            pass
        if lost:
            warnings.warn(f"{lost[0]} while held: another process may have run beside this one; run "
                          "`explorer verify` and check the last commits", LeaseLost, stacklevel=3)


@contextmanager
def exclusive(storage: Storage, key: str):
    """Take turns with other processes (on any machine) over ``key``: an ``flock`` in a local
    lake, a :func:`lease` on object storage; waits for the holder."""
    if isinstance(storage, LocalStorage):
        with sidecar_lock(storage.path(key)):  # released when the process dies, too
            yield
        return
    with lease(storage, key, wait=True, poll=0.5):
        yield
