"""`Lake`: Delta Lake tables read through DuckDB, with lineage recorded in every commit."""

from __future__ import annotations

import builtins
import json
import os
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.exceptions import SchemaMismatchError as DeltaSchemaMismatch
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from explorer.catalog import Catalog, default_catalog
from explorer.errors import (
    ConcurrentWriteError,
    ExplorerError,
    LineageError,
    SchemaError,
    TableNotFoundError,
    VersionNotFoundError,
    did_you_mean,
)
from explorer.lake import integrity
from explorer.lake.delta_files import data_files, data_keys
from explorer.lake.engine import current_user, delta_dataset, new_connection, referenced_tables
from explorer.lake.lineage import Lineage, LineageGraph, parse_ref
from explorer.lake.query_errors import explain
from explorer.lake.raw import RawZone
from explorer.lake.storage import LocalStorage, Storage, StorageUnavailable, is_object_url, open_storage

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Keep every version readable: an analysis must be re-runnable on exactly the data it first saw.
#: Old versions go only through an explicit erasure or vacuum, never by age.
TABLE_CONFIGURATION = {
    "delta.logRetentionDuration": "interval 36500 days",
    "delta.deletedFileRetentionDuration": "interval 36500 days",
}

# Reader features DuckDB's Parquet reader cannot honour from a file list; such tables are
# read through deltalake's Arrow dataset instead (slower, always correct).
_NEEDS_DELTA_READER = {"deletionVectors", "columnMapping", "v2Checkpoint", "typeWidening"}

META_PREFIX = "explorer."


def default_root() -> Path | str:
    """The lake folder when none is named: ``$EXPLORER_HOME``; else ``./explorer-data`` if it
    exists; else the nearest ``explorer-data`` lake in a folder above (so that a notebook run in
    ``notebooks/``, or by ``jupyter nbconvert`` there, opens the demo lake of the checkout rather
    than making an empty one beside itself); else ``./explorer-data`` (a new lake there)."""
    home = os.environ.get("EXPLORER_HOME")
    if home:
        return home if is_object_url(home) else Path(home)  # (a Path would fold s3:// into s3:/)
    here = Path("explorer-data")
    if here.exists():
        return here
    for folder in Path.cwd().parents:
        if is_lake(folder / "explorer-data"):
            return folder / "explorer-data"
    return here


#: the ingest's entry point: storage imports no layer above it, so explorer.ingest registers
#: itself here when imported (``import explorer`` does)
_INGEST: dict[str, object] = {"function": None}


def register_ingest(function) -> None:
    """Make ``Lake.ingest(path, **options)`` call ``function(lake, path, **options)``."""
    _INGEST["function"] = function


def is_lake(root: str | os.PathLike, storage_options: Mapping[str, str] | None = None) -> bool:
    """Whether ``root`` is a lake already: a folder :func:`open` made (it has ``tables/``), or
    an ``s3://`` prefix holding at least one table."""
    if is_object_url(root):
        return open_storage(root, storage_options).has_prefix("tables")
    return (Path(os.fspath(root)).expanduser() / "tables").is_dir()


def open(root: str | os.PathLike | None = None, *, catalog: Catalog | None = None,  # noqa: A001
         create: bool = True, storage_options: Mapping[str, str] | None = None) -> Lake:
    """Open the lake at ``root``, creating it if needed (unless ``create`` is false).

    Parameters
    ----------
    root : path or str, optional
        Lake folder, or ``s3://bucket/prefix`` for a lake on S3-compatible object storage
        (endpoint and credentials from the AWS environment variables or ``storage_options``).
        Default :func:`default_root`: ``$EXPLORER_HOME``, else ``./explorer-data`` if it exists,
        else the nearest ``explorer-data`` lake in a folder above, else a new ``./explorer-data``.
    catalog : Catalog, optional
        Catalog whose entries validate writes. Default :func:`explorer.catalog.default_catalog`.
    create : bool, default True
        Make a new lake when ``root`` holds none. False for a reader: a mistyped path then fails
        with a message instead of reading a new, empty lake (and leaving it behind).
    storage_options : mapping of str to str, optional
        For ``s3://``: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_REGION``... over the
        environment's (the command line's ``--storage-option KEY=VALUE``).

    Raises
    ------
    ExplorerError
        With ``create=False``, when ``root`` is not a lake.

    Examples
    --------
    >>> import explorer, tempfile
    >>> lake = explorer.open(tempfile.mkdtemp())
    >>> lake.write("person", [{"person_id": "p1", "year_of_birth": 1950}], mode="overwrite")
    0
    >>> lake.sql("SELECT year_of_birth FROM person WHERE person_id = ?", ["p1"]).iloc[0, 0]
    np.int32(1950)
    """
    root = root if root is not None else default_root()
    if not create and not is_lake(root, storage_options):
        raise ExplorerError(f"no lake at {os.fspath(root)}; run `explorer demo` or set EXPLORER_HOME "
                            "(or pass --lake PATH) to the folder (or s3://bucket/prefix) of an existing lake")
    return Lake(root, catalog=catalog, storage_options=storage_options)


class Lake:
    """A folder (or object-storage prefix) of versioned tables and raw files.

    Layout: ``tables/<name>/`` (Delta Lake), ``raw/<sha256[:2]>/<sha256>`` (files as received),
    ``_integrity/<table>/<version>.json`` (checksums of the files each commit added), through
    :attr:`storage` (:mod:`explorer.lake.storage`).
    """

    def __init__(self, root: str | os.PathLike | Storage, *, catalog: Catalog | None = None,
                 storage_options: Mapping[str, str] | None = None):
        self.storage = open_storage(root, storage_options)
        if not self.storage.is_local and not self.storage.prefix:
            raise ExplorerError(f"lake root {self.storage.location!r}: give the lake a prefix in the bucket "
                                f"({self.storage.location}/NAME): its audit key and head are kept beside it, "
                                "outside the lake")
        if isinstance(self.storage, LocalStorage):
            self.storage.root.mkdir(parents=True, exist_ok=True)
            (self.storage.root / "tables").mkdir(exist_ok=True)
        self._known_tables: set[str] = set()  # a table once committed stays: listed once
        self._catalog = catalog
        self.raw = RawZone(self)
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._registered: dict[str, int] = {}
        self._delta: dict[str, DeltaTable] = {}
        self._pinned: dict[tuple[str, int], DeltaTable] = {}  # snapshots of fixed versions, loaded once

    def __repr__(self) -> str:
        return f"Lake({self.location!r}, tables={self.tables()})"

    @property
    def location(self) -> str:
        """Where the lake is, as users name it: a folder path or ``s3://bucket/prefix``."""
        return self.storage.location

    @property
    def is_local(self) -> bool:
        return self.storage.is_local

    @property
    def root(self) -> Path:
        """The lake folder; an ExplorerError for a lake on object storage (use :attr:`storage`)."""
        if not isinstance(self.storage, LocalStorage):
            raise ExplorerError(f"the lake at {self.location} is on object storage, and this operation needs a "
                                "local lake folder; run it on a local lake")
        return self.storage.root

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    # ------------------------------------------------------------------ catalog
    @property
    def catalog(self) -> Catalog:
        return self._catalog if self._catalog is not None else default_catalog()

    # ------------------------------------------------------------------ tables
    def table_key(self, name: str) -> str:
        """The table's folder as a storage key: ``tables/<name>``."""
        if not isinstance(name, str) or not TABLE_NAME.match(name):
            raise ExplorerError(f"table name {name!r}: expected lower_snake_case letters, digits and _")
        return f"tables/{name}"

    def table_path(self, name: str) -> Path:
        """The table's folder of a local lake."""
        return self.root / self.table_key(name)

    def table_uri(self, name: str) -> str:
        """The table's location for delta-rs: a folder path or ``s3://bucket/prefix/tables/<name>``."""
        return self.storage.uri(self.table_key(name))

    def tables(self) -> list[str]:
        """Names of the tables that have at least one commit."""
        if isinstance(self.storage, LocalStorage):
            tables_dir = self.storage.root / "tables"
            return sorted(p.name for p in tables_dir.iterdir() if (p / "_delta_log").is_dir()
                          and any((p / "_delta_log").glob("*.json")))
        # one listing of the names; a name not seen before is checked for a commit once
        for name in self.storage.children("tables"):
            if name not in self._known_tables and TABLE_NAME.match(name) and self._has_log(name):
                self._known_tables.add(name)
        return sorted(self._known_tables)

    def _has_log(self, name: str) -> bool:
        """Whether table ``name`` has a Delta log (at least one commit)."""
        if isinstance(self.storage, LocalStorage):
            return (self.table_path(name) / "_delta_log").is_dir()
        if name in self._known_tables:
            return True
        found = any(key.endswith(".json") for key in self.storage.keys(f"{self.table_key(name)}/_delta_log", limit=50))
        if found:
            self._known_tables.add(name)
        return found

    def _log_key(self, name: str, version: int) -> str:
        return f"{self.table_key(name)}/_delta_log/{version:020d}.json"

    def _open_delta(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.table_uri(name), version=version, storage_options=self.storage.storage_options)
        except OSError as exc:
            raise self._unreachable(name, exc) or exc

    def _unreachable(self, name: str, exc: BaseException):
        """For a lake on object storage, a delta-rs error that is the store not answering, as
        :class:`StorageUnavailable` (what happened, and that a retry is safe); else None."""
        text = str(exc)
        if self.storage.is_local or not any(sign in text for sign in ("S3 error", "error sending request", "Connect",
                                                                       "timed out", "Connection refused")):
            return None
        plain = re.sub(r"\x1b\[[0-9;]*m|↳", "", text)  # delta-rs colours its error chain
        first = next((line.strip() for line in plain.splitlines() if "Error performing" in line), plain.splitlines()[0])
        return StorageUnavailable(f"{name}: the object store did not answer ({first[:200]}). Check that it runs and that "
                                  "AWS_ENDPOINT_URL and the credentials are right; nothing half-written is visible, so "
                                  "the command can be retried")

    def has_table(self, name: str) -> bool:
        """Whether table ``name`` has at least one commit, as :meth:`tables` lists them."""
        if not isinstance(name, str) or not TABLE_NAME.match(name):
            return False
        if isinstance(self.storage, LocalStorage):
            # one table's log looked at, not every table's: a refresh asks this some 70 times a run
            log = self.table_path(name) / "_delta_log"
            return log.is_dir() and any(log.glob("*.json"))
        return name in self.tables()

    def require(self, *names: str) -> None:
        """Raise :class:`TableNotFoundError` naming every table of ``names`` this lake has not got,
        and how to make them: a notebook's first cell says so instead of failing halfway down.

        >>> import explorer, tempfile
        >>> explorer.open(tempfile.mkdtemp()).require("person")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        explorer.errors.TableNotFoundError: the lake at ... has not got person: ...
        """
        present = set(self.tables())
        missing = [name for name in names if name not in present]
        if missing:
            raise TableNotFoundError(
                f"the lake at {self.root} has not got {', '.join(missing)}: build the demo lake with `explorer demo "
                "--no-serve`, or ingest raw files (`explorer ingest PATH`) and run `explorer refresh`; "
                "`explorer --lake PATH lab` opens notebooks on another lake")

    def _missing(self, name: str) -> TableNotFoundError:
        known = self.tables()
        hint = did_you_mean(name, known + self.catalog.names())
        listing = ", ".join(known) if known else "none yet"
        return TableNotFoundError(f"table '{name}' is not in the lake at {self.root}{hint}; "
                                  f"tables present: {listing}")

    def delta(self, name: str, version: int | None = None) -> DeltaTable:
        """The ``deltalake.DeltaTable`` for ``name`` at ``version`` (default: latest)."""
        self.table_key(name)
        if not self._has_log(name):
            raise self._missing(name)
        try:
            if version is None:
                cached = self._delta.get(name)
                if cached is None:
                    cached = self._delta[name] = self._open_delta(name)
                else:
                    try:
                        cached.update_incremental()
                    except OSError as exc:
                        raise self._unreachable(name, exc) or exc
                return cached
            key = (name, int(version))
            purged = integrity.purged_before(self, name)
            if int(version) < purged:  # delta-rs would rebuild it from the checkpoint, over files now gone
                raise VersionNotFoundError(f"{name}@{version} was purged by an erasure (`explorer erase`): versions before "
                                           f"{purged} no longer exist; read {name}@{purged} or later")
            pinned = self._pinned.get(key)
            if pinned is None:  # a version never changes: its snapshot is loaded once per Lake
                pinned = self._open_delta(name, int(version))
                if len(self._pinned) >= 64:
                    self._pinned.pop(next(iter(self._pinned)))
                self._pinned[key] = pinned
            return pinned
        except DeltaTableNotFound:
            raise self._missing(name) from None
        except (VersionNotFoundError, StorageUnavailable):
            raise
        except Exception as exc:  # deltalake raises generic errors for an unknown version
            if version is None:
                raise
            latest = self.delta(name).version()
            raise VersionNotFoundError(
                f"{name}@{version} does not exist: versions are 0..{latest}; "
                f"see lake.versions('{name}') or `explorer catalog {name}`") from exc

    def version(self, name: str) -> int:
        """Latest version number of ``name``."""
        return self.delta(name).version()

    def write(
        self,
        name: str,
        data,
        *,
        mode: str = "append",
        inputs: Iterable[str] = (),
        operation: str = "write",
        partition_by: Sequence[str] | None = None,
        schema_mode: str | None = None,
        writer_properties=None,
        supersede: Sequence[str] = (),
        replace_where: str | None = None,
    ) -> int:
        """Commit ``data`` to table ``name`` as one atomic version and return that version.

        Parameters
        ----------
        data : pandas.DataFrame, pyarrow.Table, or list of dict
        mode : {"append", "overwrite", "upsert"}
            ``upsert`` merges on the catalog entry's ``primary_key``: matching rows are replaced.
        inputs : iterable of str
            What the data was made from: ``"raw:<sha256>"`` for a raw file, ``"<table>@<version>"``
            for a table version. Each is checked to exist, then recorded in the commit itself.
        operation : str
            Short name of what produced the data (``ingest``, ``refresh:wearable_daily``, ...).
        schema_mode : {None, "merge", "overwrite"}
            Passed to deltalake: ``merge`` adds new columns on append.
        writer_properties : deltalake.WriterProperties, optional
            Parquet settings (compression, row-group size) for the files of this commit.
        supersede : sequence of str
            SHA-256 of raw files whose rows this write replaces (a corrected delivery): in the
            same commit, rows whose ``source_file`` is one of them are removed, so the new version
            holds the correction only and the version before still reads as it was.
        replace_where : str, optional
            With ``mode="overwrite"``: replace only the rows matching this SQL predicate (every row
            of ``data`` must match it), in one commit; how a refresh swaps the partitions it
            recomputed while the rest of the table stays as it was.

        Raises
        ------
        SchemaError
            Data lacking a column of the table's catalog entry, or a value not castable to its type.
        ConcurrentWriteError
            Another writer committed a conflicting change first; retrying is safe.
        """
        if mode not in ("append", "overwrite", "upsert"):
            raise ExplorerError(f"mode {mode!r}: expected 'append', 'overwrite' or 'upsert'")
        self.table_key(name)
        failure: list = []
        # a schema overwrite replaces the table's types with the catalog's; otherwise new rows take
        # the types the table already has
        existing = None if schema_mode == "overwrite" else True
        if isinstance(data, pa.RecordBatchReader):
            table = self._conform_stream(name, data, failure, existing)
        else:
            table = self._conform(name, _to_arrow(data, name), existing)
        inputs = list(dict.fromkeys(_normalise_ref(ref) for ref in inputs))
        self._check_inputs(inputs)
        commit_id = uuid.uuid4().hex
        metadata = {
            f"{META_PREFIX}commit_id": commit_id,
            f"{META_PREFIX}operation": operation,
            f"{META_PREFIX}mode": mode,
            f"{META_PREFIX}inputs": json.dumps(inputs),
            f"{META_PREFIX}user": current_user(),
        }
        first = not self._has_log(name)
        if mode == "upsert" and first:
            mode = metadata[f"{META_PREFIX}mode"] = "append"  # nothing to merge into yet
        if replace_where is not None and mode != "overwrite":
            raise ExplorerError(f"{name}: replace_where needs mode='overwrite'")
        supersede = sorted(set(supersede))
        if supersede and not first:
            return self._merge(name, table, metadata, supersede=supersede, upsert=mode == "upsert",
                               merge_schema=schema_mode == "merge", writer_properties=writer_properties)
        if mode == "upsert":
            return self._merge(name, table, metadata, supersede=[], upsert=True,
                               merge_schema=schema_mode == "merge", writer_properties=writer_properties)
        # delta-rs rebases a losing commit onto the winner. That is safe for an append to an
        # existing table, but an overwrite (or a table creation) prepared against an older
        # snapshot would then keep the winner's rows, silently breaking "overwrite": such
        # commits must fail instead, and the caller retries against the new snapshot.
        retries = 0 if first or mode == "overwrite" else None
        try:
            write_deltalake(
                self.table_uri(name), table, mode=mode, storage_options=self.storage.storage_options, partition_by=list(partition_by) if partition_by else None,
                predicate=replace_where if not first else None,
                schema_mode=schema_mode, configuration=TABLE_CONFIGURATION if first else None,
                writer_properties=writer_properties,
                commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=retries),
            )
        except Exception as exc:
            if failure:  # a batch of a stream failed its checks: that error, not deltalake's wrapper
                raise failure[0] from None
            if (unreachable := self._unreachable(name, exc)) is not None:
                raise unreachable from exc
            if isinstance(exc, CommitFailedError):
                raise ConcurrentWriteError(
                    f"{name}: another writer committed a conflicting change first ({exc}); nothing of "
                    "this write is visible. Retry the write.") from exc
            if isinstance(exc, DeltaSchemaMismatch):
                current = pa.schema(self.delta(name).schema().to_arrow())
                raise SchemaError(
                    f"{name}: the data's columns do not match the table ({exc}); table has "
                    f"{', '.join(f'{f.name}:{f.type}' for f in current)}, data has "
                    f"{', '.join(f'{f.name}:{f.type}' for f in table.schema)}. Pass schema_mode='merge' to "
                    "add columns, or mode='overwrite' to replace the table.") from exc
            raise
        return self._landed(name, commit_id)

    def purge_history(self, name: str) -> int:
        """Keep only the current version of table ``name``: every data file that only earlier
        versions used, and their commit files, are deleted from disk, and a checkpoint of the
        current version stands in for the log. What an erasure does to each table that held the
        person, so that no old version can be read back with them in it. Returns the version kept.

        Earlier versions can no longer be read (``version=`` raises); lineage that names them
        stays recorded in later commits."""
        dt = self.delta(name)
        latest = dt.version()
        dt.create_checkpoint()
        table = self.table_key(name)
        live = {f"{table}/{relative}" for relative in data_keys(dt)}
        for key in self.storage.keys(table):
            parts = key[len(table) + 1:].split("/")
            if parts[0] == "_delta_log":
                head = parts[-1].split(".")[0]
                if len(parts) == 2 and head.isdigit() and int(head) < latest:
                    self.storage.delete(key)
            elif key not in live:
                self.storage.delete(key)
        if isinstance(self.storage, LocalStorage):
            root = self.table_path(name)
            for folder in sorted((p for p in root.rglob("*") if p.is_dir() and "_delta_log" not in p.parts),
                                 key=lambda p: len(p.parts), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()  # an emptied partition folder still names its value
        integrity.forget_before(self, name, latest)
        self._pinned = {key: table for key, table in self._pinned.items() if key[0] != name}
        return latest

    def _landed(self, name: str, commit_id: str) -> int:
        """The version a commit landed as, with its files' checksums recorded."""
        version = self._find_commit(name, commit_id)
        try:
            integrity.record(self, name, version)
        except OSError as exc:  # the commit has landed: raising now would invite a duplicating retry
            warnings.warn(f"{name}@{version} committed, but its checksums could not be recorded ({exc}); "
                          "`explorer verify` will list its files as unrecorded", RuntimeWarning, stacklevel=3)
        return version

    def _merge(self, name: str, table, metadata: dict, *, supersede: list[str], upsert: bool,
               merge_schema: bool = False, writer_properties=None) -> int:
        """One MERGE commit: upsert on the catalog's primary key (a row whose key exists replaces
        it, keys duplicated within ``table`` keep their last row) or plain insert, and in the same
        commit delete the rows of the ``supersede``d source files."""
        keys = []
        if upsert:
            entry = self.catalog.get(name)
            keys = list(entry.primary_key) if entry is not None else []
            if not keys:
                raise ExplorerError(f"{name}: upsert needs a primary_key in its catalog entry; "
                                    "use mode='append' or declare one in data_catalog/")
            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
            frame = table.to_pandas().drop_duplicates(keys, keep="last")
            table = pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)
        for sha in supersede:
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise ExplorerError(f"{name}: supersede expects SHA-256 hex digests of raw files, got {sha!r}")
        metadata[f"{META_PREFIX}mode"] = "upsert" if upsert else "append"
        if supersede:
            metadata[f"{META_PREFIX}supersedes"] = json.dumps(supersede)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys) or "false"
        try:
            merge = self.delta(name).merge(table, predicate, source_alias="s", target_alias="t", merge_schema=merge_schema,
                                           writer_properties=writer_properties,
                                           commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0))
            if upsert:
                merge = merge.when_matched_update_all()
            merge = merge.when_not_matched_insert_all()
            if supersede:
                merge = merge.when_not_matched_by_source_delete(
                    "t.source_file IN (" + ", ".join(f"'{sha}'" for sha in supersede) + ")")
            merge.execute()
        except CommitFailedError as exc:
            raise ConcurrentWriteError(f"{name}: another writer committed first ({exc}); nothing of this write "
                                       "is visible. Retry the write.") from exc
        except Exception as exc:
            if (unreachable := self._unreachable(name, exc)) is not None:
                raise unreachable from exc
            raise
        return self._landed(name, metadata[f"{META_PREFIX}commit_id"])

    def _find_commit(self, name: str, commit_id: str) -> int:
        """The version our commit landed as, read from the log file names themselves.

        (``DeltaTable.history()`` numbers entries relative to the snapshot it loaded, which can
        lag behind a commit made by another process a moment earlier.)
        """
        log_dir = f"{self.table_key(name)}/_delta_log"
        marker = json.dumps(commit_id)
        if isinstance(self.storage, LocalStorage):
            for log in sorted(self.storage.path(log_dir).glob("[0-9]*.json"), reverse=True):
                with builtins.open(log, encoding="utf-8") as handle:
                    first = handle.readline()
                if marker in first or marker in log.read_text(encoding="utf-8"):
                    return int(log.stem)
        else:
            commits = [key for key in self.storage.keys(log_dir)
                       if key.endswith(".json") and key.rsplit("/", 1)[-1][:-5].isdigit()]
            for key in sorted(commits, reverse=True):
                if marker in self.storage.read_text(key):
                    return int(key.rsplit("/", 1)[-1][:-5])
        raise ExplorerError(f"{name}: commit {commit_id} is not in {self.storage.uri(log_dir)} after writing")

    def _conform(self, name: str, table: pa.Table, existing: pa.Schema | None | bool = True) -> pa.Table:
        """Check ``table`` against the catalog entry of ``name`` and cast to the declared types,
        then cast any other column to the type it already has in the table, safely (a cast that
        would lose information, such as 1.5 into an integer column, is an error, not a rounding)."""
        table = self._conform_to_catalog(name, table)
        if existing is True:
            existing = self._existing_schema(name)
        if existing is None:
            return table
        arrays = []
        for field in table.schema:
            array = table[field.name]
            if field.name in existing.names:
                target = existing.field(field.name).type
                if array.type != target and not _same_storage(array.type, target):
                    array = _cast(array, target, name, field.name)
            arrays.append(array)
        return pa.table(arrays, names=table.column_names)

    def _existing_schema(self, name: str) -> pa.Schema | None:
        if not self._has_log(name):
            return None
        return pa.schema(self.delta(name).schema().to_arrow())

    def _conform_stream(self, name: str, reader: pa.RecordBatchReader, failure: list,
                        existing: bool | None = True) -> pa.RecordBatchReader:
        """Conform a stream batch by batch, so a write of any size needs one batch of memory.

        The batches are pulled by deltalake's own runtime, which must not be re-entered, so the
        table's schema is read once up front; an error is kept in ``failure`` to be raised as
        itself (deltalake would wrap it).
        """
        existing = self._existing_schema(name) if existing is True else None
        schema = self._conform(name, reader.schema.empty_table(), existing).schema

        def batches():
            try:
                for batch in reader:
                    yield from self._conform(name, pa.Table.from_batches([batch]), existing).cast(schema).to_batches()
            except Exception as exc:
                failure.append(exc)
                raise

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _conform_to_catalog(self, name: str, table: pa.Table) -> pa.Table:
        entry = self.catalog.get(name)
        if entry is None or entry.kind != "table":
            return table
        present = set(table.column_names)
        missing = [c for c in entry.column_names if c not in present and not entry.column(c).nullable]
        for column in entry.schema:
            if column.name in present and not column.nullable and table[column.name].null_count:
                row = table[column.name].is_null().to_pylist().index(True)
                raise SchemaError(f"{name}.{column.name}: empty at row {row}, but {entry.source_file} declares it "
                                  "required (nullable: false); fill it or quarantine the row")
        if missing:
            raise SchemaError(
                f"{name}: data lacks column(s) {', '.join(missing)} declared in {entry.source_file}"
                + "".join(did_you_mean(m, present - set(entry.column_names)) for m in missing[:1]))
        arrays, fields = [], []
        for column in entry.schema:
            if column.name in present:
                array = table[column.name]
                if array.type != column.arrow_type:
                    array = _cast(array, column.arrow_type, name, column.name)
            else:  # nullable column the source does not have: keep the declared shape
                array = pa.nulls(table.num_rows, column.arrow_type)
            arrays.append(array)
            fields.append(pa.field(column.name, column.arrow_type))
        for extra in table.column_names:  # extra columns are kept, never dropped
            if extra not in entry.column_names:
                arrays.append(table[extra])
                fields.append(table.schema.field(extra))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _check_inputs(self, inputs: list[str]) -> None:
        for ref in inputs:
            kind, name, version = parse_ref(ref)
            if kind == "raw":
                if not self.raw.exists(name):
                    raise LineageError(f"input {ref!r}: no raw file with that SHA-256 in {self.raw.location}")
            else:
                try:
                    latest = self.version(name)
                except TableNotFoundError as exc:
                    raise LineageError(f"input {ref!r}: {exc}") from None
                if version > latest:
                    raise LineageError(f"input {ref!r}: {name} has versions 0..{latest}")

    # ------------------------------------------------------------------ reading
    def table(self, name: str, version: int | None = None, *, con: duckdb.DuckDBPyConnection | None = None):
        """A DuckDB relation over ``name`` at ``version`` (default: latest).

        Filters and projections are pushed down to the Parquet files of that version only.
        """
        con = con if con is not None else self.connection()
        return _relation(con, self.delta(name, version))

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The lake's shared in-process DuckDB connection (researcher tier).

        Its views always show the latest version of each table; pinned queries run on a
        throwaway connection so a pin can never leak into a later call.
        """
        with self._lock:
            if self._con is None:
                self._con = new_connection()
            return self._con

    def is_current(self, name: str, version: int) -> bool:
        """Whether ``version`` is still the latest of ``name``: two ``stat`` calls, no log read.

        Delta versions are contiguous, so the next commit file existing means a newer version.
        """
        return self.storage.exists(self._log_key(name, version)) and not self.storage.exists(self._log_key(name, version + 1))

    def sync_views(self, con: duckdb.DuckDBPyConnection, names: Iterable[str], registered: dict,
                   reader=None) -> None:
        """Bring views for ``names`` and every view already on ``con`` to the latest versions."""
        reader = reader or _relation
        for name in sorted(set(names) | set(registered)):
            version = registered.get(name)
            if version is not None and self.is_current(name, version):
                continue
            dt = self.delta(name)
            reader(con, dt).create_view(name, replace=True)
            registered[name] = dt.version()

    def pinned_views(self, con: duckdb.DuckDBPyConnection, names: Iterable[str],
                     versions: Mapping[str, int], reader=None) -> None:
        """Create views on a fresh ``con``: pinned tables at their version, others at latest."""
        reader = reader or _relation
        for name in sorted(set(names) | set(versions)):
            reader(con, self.delta(name, versions.get(name))).create_view(name, replace=True)

    def sql(self, query: str, params: Sequence | Mapping | None = None, *,
            versions: Mapping[str, int] | None = None) -> pd.DataFrame:
        """Run ``query`` with DuckDB over the lake's tables and return a pandas DataFrame.

        Parameters
        ----------
        query : str
            SQL with ``?`` or ``$name`` placeholders. Table names are the lake's table names.
        params : sequence or mapping, optional
            Bound by DuckDB, never formatted into the SQL text.
        versions : mapping of str to int, optional
            Pin tables to earlier versions, e.g. ``{"measurement": 3}``, to re-run an analysis on
            exactly the data it first saw.

        Raises
        ------
        QueryError
            When DuckDB refuses or fails the query: told in the suite's words (a missing table
            with a did-you-mean over the lake's tables, parameters against values given, the
            position of a syntax error), the DuckDB error as its cause.

        Examples
        --------
        >>> lake.sql("SELECT count(*) FROM measurement WHERE loinc_code = ?", ["2345-7"])  # doctest: +SKIP
        """
        names = self._referenced(query, versions)
        try:
            if versions:
                con = new_connection()
                try:
                    self.pinned_views(con, names, versions)
                    return con.execute(query, params).df()
                finally:
                    con.close()
            with self._lock:
                con = self.connection()
                self.sync_views(con, names, self._registered)
                return con.execute(query, params).df()
        except duckdb.Error as exc:
            raise explain(exc, query, params, self.tables()) from exc

    def _referenced(self, query: str, versions: Mapping[str, int] | None) -> list[str]:
        present = set(self.tables())
        unknown = set(versions or {}) - present
        if unknown:
            raise self._missing(sorted(unknown)[0])
        names = referenced_tables(query)
        return sorted(present if names is None else names & present)

    def versions(self, name: str, limit: int | None = None) -> pd.DataFrame:
        """History of ``name``: one row per version, oldest first (only the newest ``limit``).

        Columns: version, timestamp (UTC), operation, mode, rows_added, files_added, inputs, user.
        """
        rows = []
        for entry in self.delta(name).history(limit):
            metrics = entry.get("operationMetrics") or {}
            rows.append({
                "version": int(entry["version"]),
                "timestamp": pd.Timestamp(entry["timestamp"], unit="ms", tz="UTC"),
                "operation": entry.get(f"{META_PREFIX}operation", entry.get("operation", "")),
                "mode": entry.get(f"{META_PREFIX}mode", (entry.get("operationParameters") or {}).get("mode", "")).lower(),
                "rows_added": metrics.get("num_added_rows"),
                "files_added": metrics.get("num_added_files"),
                "inputs": json.loads(entry.get(f"{META_PREFIX}inputs", "[]")),
                "user": entry.get(f"{META_PREFIX}user", ""),
            })
        return pd.DataFrame(rows).sort_values("version", ignore_index=True)

    def row_count(self, name: str, version: int | None = None) -> int:
        """Rows in ``name`` at ``version``, from the commit statistics (no data read)."""
        actions = pa.table(self.delta(name, version).get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return 0
        return int(pa.compute.sum(actions["num_records"]).as_py() or 0)

    # ------------------------------------------------------------------ lineage, integrity
    def lineage(self, name: str, version: int | None = None) -> Lineage:
        """What ``name@version`` was made from (upstream) and what was made from it (downstream).

        ``name`` may also be a raw reference ``"raw:<sha256>"``, or ``"table@version"``.
        """
        if name.startswith("raw:"):
            _, sha, _ = parse_ref(name)
            if not self.raw.exists(sha):
                raise LineageError(f"{name}: no such file in the raw zone {self.raw.location}")
        return LineageGraph.build(self).lineage(name, version)

    def ingest(self, path, **kwargs):
        """Ingest a file, folder or .zip: see :func:`explorer.ingest.ingest` (registered by
        :func:`register_ingest` when ``explorer`` is imported)."""
        if _INGEST["function"] is None:
            raise ExplorerError("Lake.ingest needs the ingest layer: `import explorer` (or explorer.ingest) first")
        return _INGEST["function"](self, path, **kwargs)

    def verify(self, *, all_versions: bool = False, progress=None) -> integrity.VerifyReport:
        """Re-hash raw files and table data files against what was recorded when written."""
        return integrity.verify(self, all_versions=all_versions, progress=progress)

    def sandbox(self, **kwargs):
        """A locked-down connection for dashboards; see :class:`explorer.lake.SandboxedConnection`."""
        from explorer.lake.sandbox import SandboxedConnection

        return SandboxedConnection(self, **kwargs)


def _relation(con: duckdb.DuckDBPyConnection, dt: DeltaTable):
    """A DuckDB relation over exactly the files of one Delta version.

    DuckDB's own Parquet reader over the version's file list is ~1.7x faster than scanning the
    Arrow dataset (measured in benchmarks/), so it is used whenever the table has no partition
    columns and uses no Delta reader feature that a plain file list would ignore.
    """
    protocol = dt.protocol()
    features = set(protocol.reader_features or ())
    schema = pa.schema(dt.schema().to_arrow())
    # Partitioned tables keep partition values in the log, not the files: deltalake's reader
    # restores them with their declared types (and nulls), which a file list cannot.
    if features & _NEEDS_DELTA_READER or dt.metadata().partition_columns or "://" in dt.table_uri \
            and not dt.table_uri.startswith("file://"):
        # (a table on object storage: DuckDB reads it only through deltalake's dataset, as its
        # own S3 reader, the httpfs extension, is not installed)
        return con.from_arrow(delta_dataset(dt))
    files = [str(path) for path in data_files(dt)]
    if not files:
        return con.from_arrow(schema.empty_table())
    if any(ch in uri for uri in files for ch in _GLOB_CHARACTERS):
        return con.from_arrow(delta_dataset(dt))  # DuckDB would read such a path as a pattern
    relation = con.read_parquet(files, union_by_name=True)
    # Columns in table order: an appended file written before a column was added lacks it.
    return relation.select(*[duckdb.ColumnExpression(n) for n in schema.names])


_GLOB_CHARACTERS = "*?[{"



def _to_arrow(data, name: str) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, builtins.list):
        return pa.Table.from_pylist(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise ExplorerError(f"{name}: cannot write a {type(data).__name__}; pass a pandas DataFrame, "
                        "a pyarrow Table or a list of dicts")


def _cast(array, target: pa.DataType, table: str, column: str):
    try:
        if pa.types.is_timestamp(target) and pa.types.is_timestamp(array.type) and (array.type.tz is None) != (target.tz is None):
            raise pa.ArrowInvalid("time zone presence differs")
        return array.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        first_bad = _first_uncastable(array, target)
        where = f" (first at row {first_bad[0]}: {first_bad[1]!r})" if first_bad else ""
        raise SchemaError(f"{table}.{column}: cannot store {array.type} as {target}{where}: {exc}") from None


def _same_storage(source: pa.DataType, target: pa.DataType) -> bool:
    """Types deltalake stores identically (string vs large_string, and the like)."""
    plain = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}
    return plain.get(source, source) == plain.get(target, target)


def _first_uncastable(array, target):
    for i, value in enumerate(array.to_pylist()):
        try:
            pa.array([value], type=array.type).cast(target, safe=True)
        except Exception:
            return i, value
    return None


def _normalise_ref(ref: str) -> str:
    kind, name, version = parse_ref(ref)
    return f"raw:{name}" if kind == "raw" else f"{name}@{version}"
