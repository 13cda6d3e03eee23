"""`ingest`: keep every file, detect its format, parse, validate, unify, and account for every row.

One ingest reads as four steps:

1. **plan** (:mod:`explorer.ingest.plan`): walk the input within the archive limits
   (:mod:`explorer.ingest.walk`), keep each file's bytes in the raw zone, and decide which files
   to read and in what order (residence history before wearables, which take their time zone
   from it);
2. **read** (:mod:`explorer.ingest.read`): each file with the reader its content matches, rows
   checked against what the catalog declares for their table, accepted rows staged per unified
   table (:mod:`explorer.ingest.staging`);
3. **commit** (:func:`commit`): each table once, with the raw files it drew on as lineage, a
   correction replacing the rows of the delivery it corrects;
4. **record** (:func:`record`): ``ingest_file`` per file (status, reason, rows read, accepted
   quarantined and ignored: ``rows_read == rows_accepted + rows_quarantined + rows_ignored``), the raw manifest, and
   the data-quality report (:mod:`explorer.ingest.report`).

Rows that fail a check go to ``quarantine_row`` with their reason and original values; files
no reader accepts are quarantined whole.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from explorer.errors import ConcurrentWriteError
from explorer.ingest.history import INGEST_FILE, QUARANTINE, UNFINISHED, recorded_shas, tables_holding
from explorer.ingest.plan import Plan, plan_ingest
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.read import ReadSettings, read_planned, upload_arrays
from explorer.ingest.reference import Reference
from explorer.ingest.report import IngestReport, add_quality_report
from explorer.ingest.staging import Staged
from explorer.lake.cluster import SCHEDULER_ENV
from explorer.lake.storage import exclusive

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

__all__ = ["IngestReport", "commit", "ingest", "record"]


def ingest(lake: Lake, path, *, key_file=None, default_time_zone: str | None = None, progress=None,
           now: datetime | None = None, workers: int | None = None, quality: bool = True,
           retry_quarantined: bool = False, participant: str | None = None,
           scheduler: str | None = None) -> IngestReport:
    """Ingest a file, a folder (recursively) or a .zip into ``lake``. See the module notes.

    Parameters
    ----------
    lake : explorer.Lake
        The lake written to.
    path : str or Path
        What was received.
    key_file : path, optional
        The pseudonym key; default ``$EXPLORER_PSEUDONYM_KEY_FILE`` or ``$EXPLORER_PSEUDONYM_KEY``.
    default_time_zone : str, optional
        IANA zone of wearable rows of a person with no residence history.
    progress : callable, optional
        ``progress(done, total, label)``.
    now : datetime, optional
        When the ingest happens (default: now; a time without zone is UTC): dates after it are
        "in the future".
    workers : int, optional
        Processes reading a large delivery (default: up to 4); with ``scheduler="local"``, the
        LocalCluster's workers.
    scheduler : str, optional
        Read the files as Dask tasks on the cluster at this address (``tcp://host:8786``), or on a
        LocalCluster with ``"local"``; default ``$EXPLORER_DASK_SCHEDULER``, else a local process
        pool for a large delivery. Workers of a lake on object storage need share nothing but
        the store. Each table still lands in one commit, made here; the rows are the same.
    quality : bool
        Compute and store the data-quality report of the rows this ingest added (``dq_result``).
    retry_quarantined : bool
        Read again files quarantined whole before (a wide lab file whose mapping, or an
        Observation file whose Patient file, has arrived since).
    participant : str, optional
        Source identifier of the one person whose data ``path`` is, for layouts that name nobody
        (a Google Takeout folder); it takes precedence over folder names. Default
        ``$EXPLORER_PARTICIPANT``.

    Returns
    -------
    IngestReport
    """
    path = Path(path)
    pseudonymizer = Pseudonymizer.from_environment(lake.root if lake.is_local else None, key_file)  # refuse first
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:  # a bare time is read as UTC, as the default is (it failed at the last commit)
        now = now.replace(tzinfo=timezone.utc)
    ingest_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    say = progress or (lambda done, total, label="": None)
    scratch = Path(tempfile.mkdtemp(prefix="explorer-ingest-"))
    # staged parts are the run's own scratch: in the lake folder when local (same disk as the
    # tables), beside the run for a lake on object storage, whose arrays are uploaded when read
    staging = lake.root / "_staging" / ingest_id if lake.is_local else scratch / "staging"
    staging.mkdir(parents=True)
    arrays = lake.root / "arrays" if lake.is_local else scratch / "arrays"
    clock, seconds = time.perf_counter(), {}

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase] = time.perf_counter() - clock
        clock = time.perf_counter()

    try:
        plan = plan_ingest(lake, path, scratch, retry_quarantined=retry_quarantined, say=say)
        lap("keep")
        settings = ReadSettings(pseudonymizer.key, now, staging, arrays,
                                participant=participant or os.environ.get("EXPLORER_PARTICIPANT", "").strip() or None,
                                storage=lake.storage, ingest_id=ingest_id)
        read = read_planned(plan.to_read, settings, Reference.from_lake(lake, default_time_zone), plan.supersedes,
                            workers=workers or min(4, os.cpu_count() or 1), say=say, n_files=len(plan.files),
                            scheduler=scheduler or os.environ.get(SCHEDULER_ENV) or None)
        if not lake.is_local:
            upload_arrays(lake.storage, arrays)
        lap("read")
        lake.raw.make_durable(plan.stored)  # before any table or record names them
        outcomes = plan.settled + [file.outcome for file in read]
        # only an accepted correction replaces what came before: a garbled one leaves it in place
        accepted = {o.sha256 for o in outcomes if o.status == "accepted"}
        corrections = {new: old for new, old in plan.supersedes.items() if new in accepted}
        # ingests read side by side but commit in turn: one that committed a file while this one
        # read it has recorded it by the time this one commits, which then replaces its rows
        with exclusive(lake.storage, "_locks/ingest-commit.lock"):
            versions = commit(lake, ingest_id, Staged.collect(read), accepted, corrections, plan)
            report = IngestReport(ingest_id, outcomes, versions, plan.ignored, seconds=seconds)
            record(lake, report, corrections, plan, now)
        lap("commit")
        if quality and any(o.rows_accepted for o in outcomes):
            say(len(plan.files) * 2, len(plan.files) * 2, "data-quality report")
            add_quality_report(lake, report)
            lap("quality")
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _retrying(write, attempts: int = 6):
    """``write()``, again on :class:`ConcurrentWriteError`: another ingest committed to the table
    first (a merge or an overwrite is never rebased onto it), so the write is made again on the
    new version; nothing of the failed attempt is visible."""
    for attempt in range(attempts):
        try:
            return write()
        except ConcurrentWriteError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)  # apart, so the writers stop colliding


def commit(lake: Lake, ingest_id: str, staged: Staged, accepted: set[str], corrections: dict[str, list[str]],
           plan: Plan) -> dict[str, int]:
    """Write every staged table once, and the quarantined rows; returns table -> version.

    ``accepted`` holds the content hashes of the files accepted; ``corrections`` maps an accepted
    correction to the earlier deliveries it replaces. A correction that no longer feeds a table
    empties its rows there. An earlier run that stopped
    between its table commits left a marker naming its files: rows of those files already in a
    table are replaced in the same commit, never doubled, so running the ingest again completes
    it. Without a marker nothing is searched: an ordinary ingest does not scan the lake.
    """
    superseded = sorted({sha for shas in corrections.values() for sha in shas})
    replaced = tables_holding(lake, superseded)
    pending = set().union(*plan.unfinished.values())
    interrupted = sorted((accepted - plan.recorded) & pending if "*" not in pending else accepted - plan.recorded)
    # files another ingest committed after this one planned (they ran side by side)
    concurrent = sorted((accepted - plan.recorded) & recorded_shas(lake))
    for table, shas in tables_holding(lake, sorted(set(interrupted) | set(concurrent)), include_quarantine=True).items():
        replaced[table] = sorted(set(replaced.get(table, [])) | set(shas))
    lake.storage.write_bytes(f"_staging/{ingest_id}{UNFINISHED}", json.dumps(sorted(accepted)).encode())
    versions = {}
    operation = f"ingest {ingest_id}"
    for table in sorted(set(replaced) - set(staged.parts) - ({QUARANTINE} if staged.quarantine else set())):
        versions[table] = _retrying(lambda table=table: lake.write(
                                     table, pa.schema(lake.delta(table).schema().to_arrow()).empty_table(), mode="append",
                                     inputs=sorted(f"raw:{new}" for new, old in corrections.items()
                                                   if set(old) & set(replaced[table])),
                                     operation=operation, supersede=replaced[table]))
    for table, parts in sorted(staged.parts.items()):
        # parts differ where one file lacked an optional column (all-null there): unify first
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        dataset = pads.dataset([str(p) for p in parts], schema=schema, format="parquet")
        # tables with a primary key (person) take the newest row per key; the rest append
        keyed = (entry := lake.catalog.get(table)) is not None and bool(entry.primary_key)
        # one batch and one file at a time: the commit's memory does not grow with the delivery
        versions[table] = _retrying(lambda table=table, dataset=dataset, keyed=keyed: lake.write(
            table, dataset.scanner(batch_size=1 << 18, batch_readahead=0, fragment_readahead=0).to_reader(),
            mode="upsert" if keyed else "append", inputs=sorted(staged.inputs[table]), operation=operation,
            schema_mode="merge", supersede=replaced.get(table, ())))
    if staged.quarantine:
        # streamed like the tables: a delivery's quarantined rows (0.4M at 800 persons, with their
        # original text) held whole as one frame grew the commit's memory with the delivery
        schema = pa.unify_schemas([pq.read_schema(p) for p in staged.quarantine], promote_options="permissive")
        dataset = pads.dataset([str(p) for p in staged.quarantine], schema=schema, format="parquet")
        sources = pc.unique(dataset.to_table(columns=["source_file"])["source_file"]).to_pylist()
        versions[QUARANTINE] = _retrying(lambda: lake.write(
            QUARANTINE, _quarantine_reader(dataset, ingest_id), inputs=sorted(f"raw:{s}" for s in sources if s),
            operation=operation, supersede=replaced.get(QUARANTINE, ()),
            schema_mode="merge"))  # a lake from before source_records gains it
    return versions


def _quarantine_reader(dataset: pads.Dataset, ingest_id: str) -> pa.RecordBatchReader:
    """The staged quarantined rows as ``quarantine_row`` rows, a batch at a time: ``_row`` and
    ``table`` named as the table names them, and the ingest's id."""
    renamed = {"_row": "row_number", "table": "target_table"}
    fields = [pa.field(renamed.get(f.name, f.name), pa.int64() if f.name == "_row" else f.type) for f in dataset.schema]
    schema = pa.schema(fields + [pa.field("ingest_id", pa.string())])

    def batches():
        for batch in dataset.to_batches(batch_size=1 << 16, batch_readahead=0, fragment_readahead=0):
            columns = [batch.column(k).cast(field.type) for k, field in enumerate(fields)]
            yield pa.record_batch(columns + [pa.array([ingest_id] * batch.num_rows, pa.string())], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def record(lake: Lake, report: IngestReport, corrections: dict[str, list[str]], plan: Plan, now: datetime) -> None:
    """Record every file received in ``ingest_file`` and the raw manifest, and clear the run's
    unfinished marker (and an earlier one, once all its files are recorded)."""
    for outcome in report.files:
        if outcome.sha256 in corrections and outcome.status != "skipped":
            note = "supersedes the earlier delivery " + ", ".join(s[:12] for s in corrections[outcome.sha256])
            outcome.reason = f"{outcome.reason}; {note}" if outcome.reason else note
    received = [o for o in report.files if o.status != "skipped"]
    if received:  # a run that only found files already ingested changes no table
        report.versions[INGEST_FILE] = lake.write(INGEST_FILE, pd.DataFrame([{
            "ingest_id": report.ingest_id, "sha256": o.sha256, "source_name": o.source_name,
            "source_path": plan.source_paths.get(o.source_name), "format": o.format,
            "status": o.status, "reason": o.reason, "rows_read": o.rows_read, "rows_accepted": o.rows_accepted,
            "rows_quarantined": o.rows_quarantined, "rows_ignored": o.rows_ignored, "ignored": o.ignored,
            "ingested_at": now} for o in report.files]),
            inputs=sorted({f"raw:{o.sha256}" for o in report.files}), operation=f"ingest {report.ingest_id}",
            schema_mode="merge")  # a lake from before a column was added gains it
        by_sha = {raw.sha256: raw for raw in plan.stored}
        lake.raw.record([by_sha[o.sha256] for o in received], [o.format for o in received],
                        [o.status for o in received], [o.reason for o in received], received_at=now)
    lake.storage.delete(f"_staging/{report.ingest_id}{UNFINISHED}")
    done = plan.recorded | {o.sha256 for o in received}
    for marker, shas in plan.unfinished.items():
        if shas <= done:
            lake.storage.delete(marker)
