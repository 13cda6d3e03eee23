"""Reading: each planned file through its readers, its rows through the catalog's checks, staged.

Reference files (residence history, lab column maps, FHIR Patients) are read first, here, one
after the other, because later files look things up in them. The rest are read in batches, on
worker processes when the delivery is large enough to repay starting them. Every row a reader
returns is checked against what its table's catalog entry declares (:mod:`explorer.ingest.checks`);
rows that fail go to quarantine with their reason and original values, records of kinds the
suite does not store are counted by kind, and for every file
``rows_read == rows_accepted + rows_quarantined + rows_ignored``.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from explorer.catalog import default_catalog
from explorer.errors import shorten
from explorer.ingest import checks
from explorer.ingest.context import Context
from explorer.ingest.plan import PlannedFile
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.readers import READERS, ReaderError, ReadResult
from explorer.ingest.reference import REFERENCE_COLUMNS, REFERENCE_ORDER, Reference
from explorer.ingest.report import FileOutcome
from explorer.ingest.staging import StagedFile, stage_rows
from explorer.lake import RawFile

PARALLEL_BYTES = 64 << 20  # below this, worker start-up costs more than it saves
BATCH_BYTES = 32 << 20  # small files travel to workers in batches of about this size: per-task overhead stays small

#: where the time zone of every local day with wearable rows is recorded
DAY_ZONE_TABLE = "wearable_day_zone"


@dataclass(frozen=True)
class ReadSettings:
    """What every reading process needs (sent to the workers, so plain values only).

    Attributes
    ----------
    pseudonym_key : bytes
        The key of the pseudonyms.
    now : datetime
        When the ingest started.
    staging : Path
        The ingest's staging folder.
    arrays_root : Path
        The lake's folder of Zarr stores.
    participant : str or None
        Whose data the delivery is, where its layout names nobody (see :class:`Context`).
    storage : explorer.lake.storage.Storage or None
        The lake's storage: where a Dask worker on another machine finds the raw files, and puts
        what it staged and the grids it wrote (under ``_staging/<ingest_id>/`` and ``arrays/``).
    ingest_id : str
        The ingest's id (names its staging prefix in the store).
    """

    pseudonym_key: bytes
    now: datetime
    staging: Path
    arrays_root: Path
    participant: str | None = None
    storage: object | None = None
    ingest_id: str = ""


@dataclass(frozen=True)
class ReadJob:
    """One file to read.

    Attributes
    ----------
    number : int
        Its place in the reading order, from 1; the first of a batch names the batch's parts.
    source_name : str
        Its name as received.
    raw : RawFile
        Its bytes in the raw zone.
    sniffs : tuple of (str, str or None)
        Every reader's format in detection order, with None if its sniff accepted the file,
        else why not (readers travel to workers by name, and are found there in the registry).
    """

    number: int
    source_name: str
    raw: RawFile
    sniffs: tuple[tuple[str, str | None], ...]


def read_planned(planned: list[PlannedFile], settings: ReadSettings, reference: Reference,
                 supersedes: dict[str, list[str]], *, workers: int, say, n_files: int,
                 scheduler: str | None = None) -> list[StagedFile]:
    """Read, check and stage every planned file: reference files first, in this process.

    Parameters
    ----------
    planned : list of PlannedFile
        Files in reading order.
    settings : ReadSettings
    reference : Reference
        Reference rows from the lake; the reference files read here are added to it.
    supersedes : dict
        Content hash of a correction -> the earlier deliveries it replaces; an accepted
        correction's predecessors are dropped from ``reference``.
    workers : int
        Processes to read with, when the delivery is large enough.
    say : callable
        ``say(done, total, label)``, progress; steps ``n_files + 1 .. 2 * n_files`` are reading.
    n_files : int
        Files received (the first half of the progress steps was keeping them).
    scheduler : str, optional
        A Dask scheduler's address (or ``"local"`` for a LocalCluster of ``workers``): the files
        after the reference files are read there, as tasks, whatever the delivery's size.

    Returns
    -------
    list of StagedFile
        In reading order.
    """
    jobs = [ReadJob(k, file.source_name, file.raw, tuple((reader.format, why) for reader, why in file.candidates))
            for k, file in enumerate(planned, 1)]
    n_reference = sum(file.order <= REFERENCE_ORDER for file in planned)

    def tick(done: int, name: str) -> None:
        say(n_files + done, n_files * 2, f"read {name}")

    read = []
    for job in jobs[:n_reference]:  # later files take time zones, lab codes and patients from these
        file = read_batch([job], settings, reference)[0]
        reference.add(file.reference_rows)
        if file.outcome.status == "accepted":
            reference.exclude(supersedes.get(file.outcome.sha256, ()))
        read.append(file)
    rest = jobs[n_reference:]
    if scheduler and rest:
        read += read_on_dask(rest, settings, reference, scheduler, workers, tick, done=n_reference)
    elif workers > 1 and len(rest) > 1 and sum(job.raw.size_bytes for job in rest) > PARALLEL_BYTES:
        read += read_in_workers(rest, settings, reference, workers, tick, done=n_reference)
    else:
        done = n_reference
        for batch in _batches(rest, BATCH_BYTES):
            for file in read_batch(batch, settings, reference):
                read.append(file)
                done += 1
                tick(done, file.outcome.source_name)
    return read


def _batches(jobs: list[ReadJob], limit: int) -> list[list[ReadJob]]:
    """``jobs`` in order, cut into batches of about ``limit`` bytes."""
    batches, current, size = [], [], 0
    for job in jobs:
        current.append(job)
        size += job.raw.size_bytes
        if size >= limit:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def read_on_dask(jobs: list[ReadJob], settings: ReadSettings, reference: Reference, scheduler: str, workers: int,
                 tick: Callable[[int, str], None], done: int) -> list[StagedFile]:
    """Read ``jobs`` as Dask tasks, one per batch, on the cluster at ``scheduler`` (``"local"``:
    a LocalCluster of ``workers``). A worker keeps its imports and readers between tasks. On a
    lake on object storage the workers need share nothing with this machine but the store: each
    task reads its raw files from the store and puts its parts there (:func:`read_batch_anywhere`),
    and they are fetched here for the commit."""
    from distributed import as_completed

    from explorer.lake.cluster import dask_client

    batches = _batches(jobs, BATCH_BYTES if workers > 1 else BATCH_BYTES * 4)
    out: dict[int, list[StagedFile]] = {}
    with dask_client(scheduler, workers) as (client, _):
        futures = {client.submit(read_batch_anywhere, batch, settings, reference, pure=False,
                                 key=f"ingest-{settings.ingest_id}-read-{k}"): k for k, batch in enumerate(batches)}
        for future in as_completed(futures):
            files = future.result()
            out[futures[future]] = files
            for file in files:
                done += 1
                tick(done, file.outcome.source_name)
    read = [file for k in sorted(out) for file in out[k]]
    return fetch_staged(read, settings)


def read_batch_anywhere(jobs: list[ReadJob], settings: ReadSettings, reference: Reference) -> list[StagedFile]:
    """:func:`read_batch` on a Dask worker. Where the ingesting machine's folders are at hand (a
    local lake) it is just that; for a lake on object storage, raw files missing here are fetched
    from the store, and the parts staged and grids written go into the store, the parts' keys in
    place of their paths."""
    import dask

    # a reader's lazy arrays (a grid written to Zarr) are computed here, by this task: on a
    # worker Dask would otherwise send their chunks to the cluster, where another worker would
    # write them into a folder this one cannot see
    with dask.config.set(scheduler="synchronous"):
        return _read_batch_anywhere(jobs, settings, reference)


def _read_batch_anywhere(jobs: list[ReadJob], settings: ReadSettings, reference: Reference) -> list[StagedFile]:
    import dataclasses

    storage = settings.storage
    if storage is None or storage.is_local:
        return read_batch(jobs, settings, reference)
    from explorer.lake.raw import local_copy

    fetched = {job.raw.sha256: local_copy(storage, job.raw.sha256) for job in jobs if not job.raw.path.exists()}
    jobs = [dataclasses.replace(job, raw=dataclasses.replace(job.raw, path=fetched[job.raw.sha256]))
            if job.raw.sha256 in fetched else job for job in jobs]
    try:
        return _read_and_put(jobs, settings, reference, storage)
    finally:
        for copy in fetched.values():  # a worker keeps no copy of received data once read
            copy.unlink(missing_ok=True)


def _read_and_put(jobs: list[ReadJob], settings: ReadSettings, reference: Reference, storage) -> list[StagedFile]:
    import dataclasses
    import tempfile

    with tempfile.TemporaryDirectory(prefix="explorer-read-") as folder:
        here = dataclasses.replace(settings, staging=Path(folder) / "staging", arrays_root=Path(folder) / "arrays")
        files = read_batch(jobs, here, reference)
        upload_arrays(storage, here.arrays_root)
        prefix = f"_staging/{settings.ingest_id}"
        uploaded: dict[Path, str] = {}

        def put(path: Path | None) -> str | None:
            if path is None:
                return None
            if path not in uploaded:
                uploaded[path] = f"{prefix}/{path.relative_to(here.staging).as_posix()}"
                storage.put_file(uploaded[path], path)
            return uploaded[path]

        return [dataclasses.replace(file, parts={table: put(part) for table, part in file.parts.items()},
                                    quarantine=put(file.quarantine)) for file in files]


def fetch_staged(files: list[StagedFile], settings: ReadSettings) -> list[StagedFile]:
    """Parts a worker put in the store (keys), fetched into this ingest's staging folder."""
    import dataclasses

    fetched: dict[str, Path] = {}

    def get(part):
        if part is None or isinstance(part, Path):
            return part
        if part not in fetched:
            key = PurePosixPath(part)
            target = settings.staging / "fetched" / key.parent.name / key.name  # <table>/part-<batch>.parquet
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(settings.storage.read_bytes(part))
            fetched[part] = target
        return fetched[part]

    out = [dataclasses.replace(file, parts={table: get(part) for table, part in file.parts.items()},
                               quarantine=get(file.quarantine)) for file in files]
    if fetched:
        settings.storage.delete_prefix(f"_staging/{settings.ingest_id}")
    return out


def upload_arrays(storage, arrays: Path) -> None:
    """Put the Zarr stores read into ``arrays`` (``<variable>/<sha>.zarr``) under the lake's
    ``arrays/``, before the commit that lists them: a store is content-addressed, so one already
    there is the same store and is kept."""
    for store in sorted(arrays.glob("*/*.zarr")) if arrays.is_dir() else ():
        storage.put_tree(f"arrays/{store.parent.name}/{store.name}", store)


def read_in_workers(jobs: list[ReadJob], settings: ReadSettings, reference: Reference, workers: int,
                    tick: Callable[[int, str], None], done: int) -> list[StagedFile]:
    """Read ``jobs`` on ``workers`` processes, in batches of about :data:`BATCH_BYTES`."""
    batches = _batches(jobs, BATCH_BYTES)
    read = []
    # spawned, not forked: the ingesting process holds threads and DuckDB connections a fork would copy mid-state
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(read_batch, batch, settings, reference) for batch in batches]
        for future in futures:
            for file in future.result():
                read.append(file)
                done += 1
                tick(done, file.outcome.source_name)
    return read


def read_batch(jobs: list[ReadJob], settings: ReadSettings, reference: Reference) -> list[StagedFile]:
    """Read several files, check their rows together, then stage one Parquet part per table for
    all of them: thousands of small files (one per day per stream) cost a handful of checks and
    writes, not thousands.

    Runs in the ingesting process or in a worker.
    """
    pseudonymizer = Pseudonymizer(settings.pseudonym_key)
    catalog = default_catalog()
    outcomes: dict[int, FileOutcome] = {}
    parsed: list[tuple[int, ReadJob, str, ReadResult]] = []
    context = None
    for k, job in enumerate(jobs):
        context = Context(pseudonymizer=pseudonymizer, now=settings.now, source_name=job.source_name,
                          source_sha256=job.raw.sha256, arrays_root=settings.arrays_root, reference=reference,
                          participant=settings.participant)
        file = read_file(job, context)
        if isinstance(file, FileOutcome):
            outcomes[k] = file
        else:
            parsed.append((k, job, *file))
    batch = check_batch([(job, fmt, result) for _, job, fmt, result in parsed], context, catalog)
    parts, quarantine = stage_rows(batch.tables, [batch.quarantined] if len(batch.quarantined) else [],
                                   settings.staging, f"b{jobs[0].number:06d}")
    staged = {k: StagedFile(outcome, {}, None, {}) for k, outcome in outcomes.items()}
    for i, (k, _, _, _) in enumerate(parsed):
        # a part shared by several files of the batch is listed once per table by Staged.collect
        staged[k] = StagedFile(batch.outcomes[i], {table: parts[table] for table in batch.file_tables[i]},
                               quarantine if i in batch.quarantined_files else None, batch.reference_rows[i])
    return [staged[k] for k in range(len(jobs))]


def read_file(job: ReadJob, context: Context) -> tuple[str, ReadResult] | FileOutcome:
    """Read one file with the first reader, in detection order, whose sniff accepted it and whose
    read succeeds: its format and what the reader made of it, to be checked. A file no reader
    accepts is quarantined whole with what each reader said, and a reader's unexpected failure
    recorded as an error (never lost): their outcome is returned instead."""
    said, failed = [], []
    for fmt, why in job.sniffs:
        if why is not None:
            said.append(f"{fmt}: {why}")
            continue
        try:
            return fmt, READERS[fmt].read(job.raw.path, context)
        except ReaderError as exc:
            failed.append(f"{fmt}: {exc}")
            continue
        except Exception as exc:  # a reader bug must not lose the file or stop the ingest
            reason = f"reader {fmt} failed unexpectedly: {type(exc).__name__}: {exc}"
            traceback.print_exc()
            return FileOutcome(job.source_name, job.raw.sha256, "error", fmt, reason)
    if failed:  # a reader recognised the file but could not read it: that is the news
        reason = "recognised but not readable: " + "; ".join(failed)
    else:
        reason = refusal(job.raw.path, said)
    return FileOutcome(job.source_name, job.raw.sha256, "quarantined", None, reason)


def refusal(path: Path, said: list[str]) -> str:
    """Why no reader accepted a file, told by the nearest reader: its format and what it reads,
    what it expected and which of it is missing, and what would make the file readable. Only
    when no reader comes near (no expected column or structure found) are the readers' own
    reasons listed, shortened."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError:
        head = b""
    near = []
    for k, (fmt, why) in enumerate(item.split(": ", 1) for item in said):
        reader = READERS.get(fmt)
        judged = getattr(reader, "nearness", None)  # a plugin need not have it
        try:
            found = judged(path, head) if judged is not None else None
        except Exception:  # a judgement that fails must not hide the refusal itself
            found = None
        if found is not None and found[0] > 0:
            near.append((-found[0], k, fmt, reader.description, why, found[1]))
    if not near:
        return "no reader accepted this file: " + "; ".join(shorten(s) for s in said)
    _, _, fmt, description, why, explained = min(near)
    # the reader's own reason first: it may be the news (a column named twice), not the columns missing
    return f"no reader accepted this file; the nearest is {fmt} ({description}), which says: {shorten(why)}; {explained}"


@dataclass
class CheckedBatch:
    """The files of a batch read and checked together, before staging.

    Attributes
    ----------
    outcomes : list of FileOutcome
        Per file, in the batch's order.
    tables : dict
        Table -> frames of accepted rows of all the files (``source_file`` naming each row's).
    file_tables : list of set
        Per file, the tables it has accepted rows in.
    quarantined : pandas.DataFrame
        Quarantined rows of all the files (``_row``, ``table``, ``reason``, ``record``,
        ``source_records``, ``source_file``, ``source_name``, ``format``), in file order.
    quarantined_files : set of int
        The files (places in the batch) with quarantined rows.
    reference_rows : list of dict
        Per file, table -> its accepted rows of a reference table, which later files look up.
    """

    outcomes: list[FileOutcome]
    tables: dict[str, list[pd.DataFrame]]
    file_tables: list[set[str]]
    quarantined: pd.DataFrame
    quarantined_files: set[int]
    reference_rows: list[dict[str, pd.DataFrame]]


def check_batch(items: list[tuple[ReadJob, str, ReadResult]], context: Context | None, catalog=None) -> CheckedBatch:
    """Check every row the readers returned for a batch of files, split accepted from
    quarantined rows, and account for every source record of each file:
    ``rows_read == rows_accepted + rows_quarantined + rows_ignored``, or the file is an error.

    Rows of one table from files of the same layout (columns and types) are checked as one
    frame, each row judged as it would be in its own file: a repeated minute is one repeated
    within its file. That is what keeps a day's export file, a few thousand rows, from paying
    the checks' fixed cost on its own.

    Parameters
    ----------
    items : list of (ReadJob, str, ReadResult)
        Each file read, with its format and what its reader made of it.
    context : Context
        Any of the batch's contexts: the checks use its reference and ``now``, common to all.
    catalog : Catalog, optional
        The catalog whose entries declare the checks (default :func:`default_catalog`).
    """
    catalog = catalog or default_catalog()
    shas = [job.raw.sha256 for job, _, _ in items]
    sha_codes, sha_names = pd.factorize(pd.Series(shas, dtype=object))  # one category per distinct file
    # blocks of quarantined rows, each with its file (_file) and its place in that file's order (_seq)
    blocks = [result.quarantined.assign(_file=k, _seq=0) for k, (_, _, result) in enumerate(items) if len(result.quarantined)]
    layouts: dict[tuple, list[tuple[int, int, pd.DataFrame]]] = {}
    for k, (_, _, result) in enumerate(items):
        for seq, (table, rows) in enumerate(result.tables.items(), 1):
            layout = (table, tuple((c, str(rows[c].dtype)) for c in rows.columns))
            layouts.setdefault(layout, []).append((k, seq, rows))
    accepted_keys, goods, zones = [], {}, []
    for (table, _), group in layouts.items():
        frames = [rows.assign(_file=k, _seq=seq) for k, seq, rows in group]
        rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        reasons, local_days = check_rows(table, rows, context, catalog=catalog, within="_file" if len(frames) > 1 else None)
        bad = reasons.notna().to_numpy()
        # a row may stand for several source records (a minute of heart-rate samples: ``_records``)
        weight = rows["_records"].to_numpy() if "_records" in rows else np.ones(len(rows), dtype="int64")
        file_of, seq_of = rows["_file"].to_numpy(), rows["_seq"].to_numpy()
        if bad.any():
            # the quarantined record shows the source identifier the reader kept, not the pseudonym
            source = (rows.loc[bad].drop(columns=["person_id", "_records", "_row", "_file", "_seq"], errors="ignore")
                      .rename(columns={"_source_person": "person_id"}))
            blocks.append(pd.DataFrame({"_row": rows.loc[bad, "_row"].to_numpy(), "table": table,
                                        "reason": reasons[bad].to_numpy(),
                                        "record": source.to_json(orient="records", lines=True, date_format="iso").splitlines(),
                                        "source_records": weight[bad], "_file": file_of[bad], "_seq": seq_of[bad]}))
        accepted_keys.append(pd.DataFrame({"file": file_of[~bad], "row": rows.loc[~bad, "_row"].to_numpy(),
                                           "weight": weight[~bad]}))
        if local_days is not None:
            codes, days = local_days
            worn = pd.DataFrame({"_file": file_of[~bad], "_seq": seq_of[~bad], "code": codes[~bad]}).drop_duplicates(["_file", "code"])
            zones.append(pd.concat([worn[["_file", "_seq"]].reset_index(drop=True),
                                    days.iloc[worn["code"].to_numpy()].reset_index(drop=True)], axis=1))
        good = rows.loc[~bad].drop(columns=[c for c in ("_row", "_source_person", "_records") if c in rows.columns])
        good["source_file"] = pd.Categorical.from_codes(sha_codes[good["_file"].to_numpy()], categories=sha_names)
        goods.setdefault(table, []).append(good.reset_index(drop=True))
    unzoned: dict[int, set[str]] = {}
    if zones:  # the zone of every local day with accepted rows, once per file
        day_zones = pd.concat(zones, ignore_index=True).sort_values(["_file", "_seq"], kind="stable")
        day_zones = day_zones.rename(columns={"day": "date"}).drop_duplicates(["_file", "person_id", "date"])
        unzoned = _unzoned(day_zones)
        day_zones = day_zones[day_zones["time_zone"].notna()]
        if len(day_zones):
            goods[DAY_ZONE_TABLE] = [day_zones.assign(date=day_zones["date"].dt.date,
                                                      source_file=np.asarray(shas, dtype=object)[day_zones["_file"].to_numpy()])]
    accepted = _accepted_records(accepted_keys, len(items))
    quarantined = pd.concat(blocks, ignore_index=True).sort_values(["_file", "_seq"], kind="stable") if blocks \
        else pd.DataFrame(columns=["_row", "table", "reason", "record", "_file", "_seq"])
    # source records each quarantined row stands for: 1 for what the reader rejected, a minute's samples for a minute
    quarantined["source_records"] = (quarantined["source_records"].fillna(1).astype("int64") if "source_records" in quarantined
                                     else pd.Series(1, index=quarantined.index, dtype="int64"))
    records_of = quarantined.groupby("_file")["source_records"].sum()
    reasons_of: dict[int, Counter] = {}
    for (k, reason), n in quarantined.groupby(["_file", "reason"], sort=False)["source_records"].sum().items():
        reasons_of.setdefault(k, Counter())[reason] += int(n)
    outcomes, dropped = [], set()
    for k, (job, fmt, result) in enumerate(items):
        file = FileOutcome(job.source_name, job.raw.sha256, "accepted", fmt, None, result.rows_read, int(accepted[k]),
                           int(records_of.get(k, 0)), reasons_of.get(k, Counter()), Counter(result.ignored),
                           frozenset(unzoned.get(k, ())))
        if file.rows_read != file.rows_accepted + file.rows_quarantined + file.rows_ignored:  # the nothing-lost identity
            file.status, file.reason = "error", (f"internal error: {file.rows_read} rows read but {file.rows_accepted} "
                                                 f"accepted + {file.rows_quarantined} quarantined + {file.rows_ignored} "
                                                 "of kinds not stored")
            dropped.add(k)
        elif int(accepted[k]) == 0 and result.rows_read > file.rows_ignored:
            file.status, file.reason = "quarantined", "every row failed its checks (see quarantine_row)"
        outcomes.append(file)
    tables, file_tables = _by_file(goods, len(items), dropped)
    quarantined = quarantined[~quarantined["_file"].isin(dropped)]
    names = np.asarray([job.source_name for job, _, _ in items], dtype=object)
    formats = np.asarray([fmt for _, fmt, _ in items], dtype=object)
    file_of = quarantined["_file"].to_numpy(dtype="int64")
    quarantined = quarantined.drop(columns=["_file", "_seq"]).reset_index(drop=True).assign(
        source_file=np.asarray(shas, dtype=object)[file_of], source_name=names[file_of], format=formats[file_of])
    quarantined["record"] = quarantined["record"].astype(str)
    reference_rows = [{} for _ in items]
    for table in REFERENCE_COLUMNS:
        for frame in tables.get(table, []):
            for k in range(len(items)):
                if table in file_tables[k]:
                    reference_rows[k][table] = frame[frame["source_file"].astype(str) == shas[k]].reset_index(drop=True)
    return CheckedBatch(outcomes, tables, file_tables, quarantined, set(file_of.tolist()), reference_rows)


def _accepted_records(keys: list[pd.DataFrame], n_files: int) -> np.ndarray:
    """Source records accepted per file: a record kept in several rows or tables counts once,
    with the most source records any of its rows stands for."""
    if not keys:
        return np.zeros(n_files, dtype="int64")
    frame = pd.concat(keys, ignore_index=True) if len(keys) > 1 else keys[0]
    file, row = frame["file"].to_numpy(dtype="int64"), frame["row"].to_numpy()
    if len(keys) == 1 and row.dtype.kind in "iu" and len(row) > 1:
        key = file * (1 << 40) + row.astype("int64")
        if (key[1:] > key[:-1]).all():  # every (file, record) once, the common case: no grouping needed
            return np.bincount(file, weights=frame["weight"].to_numpy(), minlength=n_files).astype("int64")
    per_record = frame.groupby(["file", "row"], sort=False)["weight"].max()
    return np.bincount(per_record.index.get_level_values("file").to_numpy(dtype="int64"),
                       weights=per_record.to_numpy(), minlength=n_files).astype("int64")


def _by_file(goods: dict[str, list[pd.DataFrame]], n_files: int, dropped: set[int]) -> tuple[dict, list[set[str]]]:
    """Accepted rows per table without the files whose accounting failed, in file order, and the
    tables each file has rows in; the helper columns ``_file`` and ``_seq`` dropped."""
    tables, file_tables = {}, [set() for _ in range(n_files)]
    for table, frames in goods.items():
        if len(frames) > 1:  # files of several layouts: back into file order, one frame per file
            pieces = sorted(((k, frame) for frame in frames for k, frame in frame.groupby("_file", sort=True)),
                            key=lambda item: item[0])
            frames = [frame for _, frame in pieces]
        out = []
        for frame in frames:
            if dropped:
                frame = frame[~frame["_file"].isin(dropped)]
            if not len(frame):
                continue
            for k in np.unique(frame["_file"].to_numpy()):
                file_tables[int(k)].add(table)
            out.append(frame.drop(columns=["_file", "_seq"]).reset_index(drop=True))
        if out:
            tables[table] = out
    return tables, file_tables


def _unzoned(worn_days: pd.DataFrame) -> dict[int, set[str]]:
    """Per file, persons with accepted local (floating) times on a day no residence history
    covers and no default zone names: their minutes cannot be placed in UTC, so the ingest warns
    about them."""
    unzoned = worn_days[worn_days["time_zone"].isna()]
    return {int(k): set(group["person_id"].astype(str)) for k, group in unzoned.groupby("_file")}


def check_rows(table: str, rows: pd.DataFrame, context: Context, *, catalog=None,
               within: str | None = None) -> tuple[pd.Series, tuple[np.ndarray, pd.DataFrame] | None]:
    """The checks ``table``'s catalog entry declares, run on ``rows``; the first failing check
    of a row gives its reason. With ``within`` (a column), the rows are of several files and a
    minute repeats only within the same value of that column.

    In order: column ranges, required columns (``nullable: false``), the entry's
    ``unique_local_minute`` (duplicated minutes, then minutes skipped by a spring clock change),
    and columns ``not_in_future``. A table without a catalog entry is not checked here.

    Returns
    -------
    reasons : pandas.Series
        Per row, None or why it is quarantined.
    local_days : (numpy.ndarray, pandas.DataFrame) or None
        For ``unique_local_minute``: :meth:`Reference.local_days` of the rows, whose zones the
        accepted rows record in ``wearable_day_zone``.
    """
    entry = (catalog or default_catalog()).get(table)
    if entry is None:
        return checks.no_reasons(rows), None
    reasons = checks.range_reasons(entry, rows).fillna(checks.required_reasons(entry, rows))
    local_days = None
    if entry.checks.unique_local_minute is not None:
        person, time = entry.entity, entry.time
        codes, days = context.reference.local_days(rows[person], rows[time])
        zones = pd.Series(days["time_zone"].to_numpy()[codes], index=rows.index, dtype=object)
        reasons = reasons.fillna(checks.duplicate_reasons(rows, entry.checks.unique_local_minute, zones,
                                                          person=person, time=time, within=within))
        reasons = reasons.fillna(checks.skipped_hour_reasons(rows[time], days, codes))
        local_days = (codes, days)
    for column in entry.schema:
        if column.checks.not_in_future and column.name in rows:
            reasons = reasons.fillna(checks.future_reasons(rows, column.name, context.now))
    return reasons, local_days
