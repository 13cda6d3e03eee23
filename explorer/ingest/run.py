"""`ingest`: keep every file, detect its format, parse, validate, unify, and account for every row.

One ingest stores each file's bytes in the raw zone first, then reads the files (residence
history before wearables, which take their time zone from it), stages accepted rows per
unified table, and finally commits each table once, with the raw files it drew on as lineage.
Rows that fail a check go to ``quarantine_row`` with their reason and original values; files
no reader accepts are quarantined whole. ``ingest_file`` records per file: status, reason, rows
read, accepted and quarantined, and for every file ``rows_read == rows_accepted + rows_quarantined``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
import traceback
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from explorer.errors import ExplorerError, shorten
from explorer.ingest import checks
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.readers import ReaderError, ReadResult, readers_in_order

INGEST_FILE = "ingest_file"
QUARANTINE = "quarantine_row"
IGNORE_FILE = ".explorerignore"
HEAD_BYTES = 65536
REFERENCE_ORDER = 10  # readers at or before this order run first, in this process
PARALLEL_BYTES = 64 << 20  # below this, worker start-up costs more than it saves
BATCH_BYTES = 32 << 20


@dataclass
class FileOutcome:
    source_name: str
    sha256: str
    status: str  # accepted | quarantined | skipped | unpacked (a zip) | error
    format: str | None = None
    reason: str | None = None
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    row_reasons: Counter = field(default_factory=Counter)


@dataclass
class IngestReport:
    ingest_id: str
    files: list[FileOutcome]
    versions: dict[str, int]
    ignored: int = 0
    quality: pd.DataFrame | None = None  # the data-quality report of this ingest (dq_result rows)
    quality_error: str | None = None

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def errors(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "error"]

    def __str__(self) -> str:
        accepted = sum(f.rows_accepted for f in self.files)
        quarantined_rows = sum(f.rows_quarantined for f in self.files)
        lines = [f"ingest {self.ingest_id}: {len(self.files)} files: {self.count('accepted')} accepted, "
                 f"{self.count('quarantined')} quarantined, {self.count('skipped')} already ingested"
                 + (f", {self.ignored} ignored by {IGNORE_FILE}" if self.ignored else "")
                 + (f", {len(self.errors)} failed with an internal error" if self.errors else ""),
                 f"rows: {accepted:,} accepted, {quarantined_rows:,} quarantined"]
        reasons = Counter()
        for f in self.files:
            for reason, n in f.row_reasons.items():
                reasons[_reason_kind(reason)] += n
        for reason, n in reasons.most_common(12):
            lines.append(f"  {n:>10,} rows  {reason}")
        for f in self.files:
            if f.status in ("quarantined", "error"):
                lines.append(f"  file {f.status}: {f.source_name}: {shorten(f.reason or '', 300)}")
        if self.versions:
            lines.append("tables: " + ", ".join(f"{t}@{v}" for t, v in sorted(self.versions.items())))
        if self.quality is not None and len(self.quality):
            failed = self.quality[~self.quality["passed"]]
            lines.append(f"data quality: {len(self.quality) - len(failed)} of {len(self.quality)} checks pass"
                         + (": failing " + ", ".join(failed["check_id"]) if len(failed) else "")
                         + f" (`explorer quality {self.ingest_id}` for the numbers)")
        if self.quality_error:
            lines.append(f"data quality report failed: {self.quality_error}; the data is committed. "
                         f"Run `explorer quality {self.ingest_id}` to try again.")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """Group row reasons by kind for the summary (drop the row-specific values)."""
    import re

    return re.sub(r"\b(row \d+|-?\d+(\.\d+)?)\b", "#", reason)


class Context:
    """What readers may use: pseudonyms, the current time, the ingest's settings."""

    def __init__(self, pseudonymizer: Pseudonymizer, now: datetime):
        self._pseudonymizer = pseudonymizer
        self.now = pd.Timestamp(now).tz_localize(None) if pd.Timestamp(now).tzinfo else pd.Timestamp(now)

    def pseudonymize(self, values) -> pd.Categorical:
        """Pseudonyms of ``values`` (missing stays missing), one HMAC per distinct value. A
        categorical: a file holds few people in many rows, and codes are cheap to carry, compare
        and write (Parquet dictionary encoding) where millions of strings are not."""
        codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
        return pd.Categorical.from_codes(codes, categories=pd.Index(self._pseudonymizer.many(uniques), dtype=object))


def _is_zarr_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in ("zarr.json", ".zgroup"))


#: limits on what one zip archive may expand to (a small zip must not become gigabytes in memory
#: or on disk): total bytes, bytes per compressed byte, and the longest line of a text member
MAX_UNZIPPED_BYTES = int(os.environ.get("EXPLORER_MAX_UNZIPPED_BYTES", 8 << 30))
MAX_COMPRESSION_RATIO = 200
MAX_LINE_BYTES = 16 << 20
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".ndjson", ".jsonl")


def _refused(scratch: Path, k: int, reason: str) -> Path:
    """A stand-in kept in the raw zone for something not read (a link, a member too large):
    the record of what arrived and why it was refused."""
    stand_in = scratch / f"refused-{k}"
    stand_in.write_text(f"not read by explorer ingest: {reason}\n", encoding="utf-8")
    return stand_in


def _walk(path: Path, scratch: Path | None = None, refused: dict | None = None) -> tuple[list[tuple[Path, str]], int]:
    """Files under ``path`` as (path on disk, name as received), honouring ``.explorerignore``.
    A Zarr store folder is one item (packed into one file later), not its many chunk files.
    A symbolic link that leads out of ``path`` (or to a folder) is not followed: it is listed
    with a stand-in file and its reason in ``refused``, so it is quarantined, not lost."""
    refused = {} if refused is None else refused
    if path.is_file() or _is_zarr_folder(path):
        return [(path, str(path))], 0
    if not path.is_dir():
        raise ExplorerError(f"{path}: no such file or folder; give a file, a folder or a .zip to ingest")
    patterns = []
    ignore = path / IGNORE_FILE
    if ignore.is_file():
        patterns = [line.strip().rstrip("/") for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    files, ignored = [], 0
    root = path.resolve()
    links = sorted(p for p in path.rglob("*") if p.is_symlink())
    stores = sorted(p for p in path.rglob("*") if _is_zarr_folder(p) and not p.is_symlink())
    for link in links:
        target = link.resolve()
        relative = link.relative_to(path).as_posix()
        if link.is_dir():
            reason = f"symbolic link to a folder ({target}): not followed; copy the files in instead"
        elif not target.is_relative_to(root):
            reason = f"symbolic link leading out of the folder being ingested (to {target}): not followed"
        else:
            continue  # a link to a file inside the folder is read like the file
        if scratch is None:
            raise ExplorerError(f"{link}: {reason}")
        refused[relative] = reason
        files.append((_refused(scratch, len(refused), reason), relative))
    outside = {link for link in links if link.is_dir() or not link.resolve().is_relative_to(root)}
    for file in sorted([p for p in path.rglob("*") if p.is_file() and p not in outside] + stores):
        relative = file.relative_to(path).as_posix()
        if any(store in file.parents for store in stores):
            continue  # a chunk of a store, travels with it
        if file.name.startswith(".") or any(fnmatch.fnmatch(relative, p) or relative.startswith(p + "/") for p in patterns):
            ignored += 1
            continue
        files.append((file, relative))
    return files, ignored


def _pack_folder(folder: Path, target: Path) -> Path:
    """A Zarr folder as one zip of its files (stored, sorted, fixed times): the same folder always
    packs to the same bytes, so it is kept and recognised in the raw zone like any file."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, file.read_bytes())
    return target


def _expand_zips(files, scratch: Path, refused: dict | None = None):
    """Members of each .zip become files named ``archive.zip!member``; the archive itself is
    listed too (kept, and recorded as unpacked), and a damaged archive is left whole for the
    readers to refuse, so it is quarantined with a reason instead of stopping the ingest. A Zarr
    folder is packed into one file, and a zipped Zarr store stays whole: both are grids.

    A member whose name would land outside the archive's folder (``../``, an absolute path:
    "zip slip"), one that expands beyond :data:`MAX_COMPRESSION_RATIO` or past the archive's
    :data:`MAX_UNZIPPED_BYTES`, and a text member with a line over :data:`MAX_LINE_BYTES` are
    not unpacked: each is listed in ``refused`` with its reason (quarantined), with a stand-in."""
    from explorer.ingest.readers.grids import is_zarr_zip

    refused = {} if refused is None else refused
    out, containers = [], {}
    for path, name in files:
        if path.is_dir():
            out.append((_pack_folder(path, scratch / f"{len(out)}.zarr.zip"), name))
            continue
        if not zipfile.is_zipfile(path) or is_zarr_zip(path):
            out.append((path, name))
            continue
        members = []
        try:
            with zipfile.ZipFile(path) as archive:
                budget = [MAX_UNZIPPED_BYTES]
                for k, member in enumerate(m for m in archive.infolist() if not m.is_dir()):
                    target = scratch / f"{len(out)}-{k}"
                    member_name = f"{name}!{member.filename}"
                    reason = _unsafe_member(member) or _unpack(archive, member, target, budget)
                    if reason:
                        refused[member_name] = reason
                        target = _refused(scratch, len(refused), reason)
                    members.append((target, member_name))
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            out.append((path, name))
            containers[name] = f"damaged zip archive: {exc}"
            continue
        out.extend(members)
        out.append((path, name))
        containers[name] = f"zip archive unpacked: {len(members)} member(s) ingested as {name}!<member>"
    return out, containers


def _unsafe_member(member: zipfile.ZipInfo) -> str | None:
    """Why a member's name is unsafe to unpack (it would land outside its folder), or None."""
    name = member.filename.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return (f"zip member {member.filename!r} would land outside the archive's folder (zip slip): not unpacked; "
                "ask the sender for an archive with relative member names")
    if (member.external_attr >> 16) & 0o170000 == 0o120000:
        return f"zip member {member.filename!r} is a symbolic link: not followed"
    return None


def _unpack(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: list) -> str | None:
    """Copy one member to ``target`` within the limits; the reason it was stopped, or None."""
    ratio_cap = max(member.compress_size, 1) * MAX_COMPRESSION_RATIO
    text = member.filename.lower().endswith(TEXT_SUFFIXES)
    written, line = 0, 0
    with archive.open(member) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > budget[0]:
                reason = (f"zip member {member.filename!r} expands past the archive's limit of {MAX_UNZIPPED_BYTES:,} "
                          "bytes: not unpacked (set EXPLORER_MAX_UNZIPPED_BYTES to allow more)")
            elif written > ratio_cap and written > (1 << 20):
                reason = (f"zip member {member.filename!r} expands more than {MAX_COMPRESSION_RATIO} times its "
                          "compressed size (a zip bomb?): not unpacked")
            else:
                reason = None
            if text and reason is None:
                pieces = chunk.split(b"\n")
                longest = line + len(pieces[0])  # the line carried over from the chunk before
                if len(pieces) > 1:
                    longest = max([longest] + [len(piece) for piece in pieces[1:-1]])
                    line = len(pieces[-1])
                else:
                    line = longest
                if max(longest, line) > MAX_LINE_BYTES:
                    reason = f"zip member {member.filename!r} has a line longer than {MAX_LINE_BYTES:,} bytes: not unpacked"
            if reason:
                dst.close()
                target.unlink()
                return reason
            dst.write(chunk)
    budget[0] -= written
    return None


#: tables that later files of the same ingest look things up in; the readers that fill them
#: (order <= REFERENCE_ORDER) run first, in this process
REFERENCE_COLUMNS = {
    "residence": ["person_id", "start_date", "end_date", "latitude", "longitude"],
    "lab_column_map": ["column_name", "loinc_code", "unit", "test_name"],
    "fhir_patient_link": ["patient_ref", "person_id"],
}


class Reference:
    """What readers look up: where people lived (their time zones), how a wide lab file's columns
    map to LOINC codes and units, and which pseudonym a FHIR Patient reference stands for. Taken
    from the lake plus the reference files of this ingest, which are read first."""

    def __init__(self, frames: dict[str, list[pd.DataFrame]], default_zone: str | None):
        self.frames = {table: list(frames.get(table, [])) for table in REFERENCE_COLUMNS}
        self.default_zone = default_zone

    @classmethod
    def from_lake(cls, lake, default_zone):
        frames = {}
        for table, columns in REFERENCE_COLUMNS.items():
            if lake.has_table(table):
                frames[table] = [lake.sql(f"SELECT {', '.join(columns)}, source_file FROM {table}")]
        return cls(frames, default_zone)

    def add(self, tables: dict[str, pd.DataFrame]):
        for table, columns in REFERENCE_COLUMNS.items():
            if table in tables and len(tables[table]):
                self.frames[table].append(tables[table][columns + ["source_file"]])

    def exclude(self, source_files) -> None:
        """Forget the rows of files an accepted correction has just replaced (a garbled
        correction, quarantined, replaces nothing, so the rows it would have replaced stay)."""
        gone = set(source_files)
        if gone:
            for table, frames in self.frames.items():
                self.frames[table] = [f[~f["source_file"].astype(str).isin(gone)] for f in frames]

    def lab_columns(self) -> dict[str, tuple]:
        """Wide lab column name -> (loinc_code, unit, test_name); a later mapping wins."""
        out = {}
        for frame in self.frames["lab_column_map"]:
            for row in frame.itertuples(index=False):
                out[row.column_name] = (row.loinc_code, row.unit, row.test_name)
        return out

    def fhir_patients(self) -> dict[str, str]:
        """Keyed hash of a FHIR Patient reference -> person_id."""
        out = {}
        for frame in self.frames["fhir_patient_link"]:
            out.update(zip(frame["patient_ref"], frame["person_id"]))
        return out

    def local_days(self, person: pd.Series, when: pd.Series) -> tuple[np.ndarray, pd.DataFrame]:
        """Where each row's local day was lived: per distinct (person, day), the IANA zone from
        the residence that covers it (else the declared default) and that day's clock change,
        if any (:func:`checks.clock_change`). Returns ``(codes, days)``: row ``i`` is on
        ``days.iloc[codes[i]]``. Decided once per person-day, not per minute."""
        import tzfpy

        when = when if hasattr(when, "dt") else pd.to_datetime(when)
        person_codes, _ = pd.factorize(person, use_na_sentinel=True)
        day_number = when.to_numpy().astype("datetime64[D]").astype("int64")
        day_number = np.where(when.isna().to_numpy(), 1 << 31, day_number & 0x7FFFFFFF)  # a missing time is no day
        # one integer per (person, day): hashing two int64 columns is far cheaper than strings and dates
        codes, _ = pd.factorize(person_codes.astype("int64") * (1 << 32) + day_number)
        _, first = np.unique(codes, return_index=True)  # each code's first row (codes count up from 0)
        distinct = pd.DataFrame({"person_id": np.asarray(person)[first],
                                 "day": when.to_numpy()[first].astype("datetime64[D]").astype(when.dtype)})
        zone_of = [self.default_zone] * len(distinct)
        if self.frames["residence"] and len(distinct):
            residence = pd.concat(self.frames["residence"], ignore_index=True)
            residence = residence[residence["person_id"].isin(set(distinct["person_id"]))]
            for row in residence.itertuples(index=False):
                zone = tzfpy.get_tz(float(row.longitude), float(row.latitude)) or self.default_zone
                start = pd.Timestamp(row.start_date)
                end = (pd.Timestamp(row.end_date) + pd.Timedelta(days=1)
                       if row.end_date is not None and row.end_date == row.end_date else pd.Timestamp.max)
                match = ((distinct["person_id"] == row.person_id) & (distinct["day"] >= start) & (distinct["day"] < end)).to_numpy()
                for i in match.nonzero()[0]:
                    zone_of[i] = zone
        distinct["time_zone"] = pd.Series(zone_of, dtype=object)
        changes = {}
        for zone, day_ in distinct[["time_zone", "day"]].drop_duplicates().itertuples(index=False):
            changes[(zone, day_)] = checks.clock_change(zone, day_) if zone and pd.notna(day_) else (None, None, None, None)
        columns = list(zip(*[changes[(z, d)] for z, d in zip(distinct["time_zone"], distinct["day"])])) or [[]] * 4
        distinct["utc_offset_start_minutes"], distinct["utc_offset_end_minutes"], distinct["clock_change_local"], \
            distinct["clock_shift_minutes"] = (pd.array(columns[0], dtype="Int16"), pd.array(columns[1], dtype="Int16"),
                                               pd.to_datetime(pd.Series(columns[2], dtype=object)), pd.array(columns[3], dtype="Int16"))
        return codes, distinct


def ingest(lake, path, *, key_file=None, default_time_zone: str | None = None, progress=None,
           now: datetime | None = None, workers: int | None = None, quality: bool = True,
           retry_quarantined: bool = False) -> IngestReport:
    """Ingest a file, a folder (recursively) or a .zip into ``lake``. See the module notes.

    With ``quality`` (the default) the data-quality report of the rows this ingest added is
    computed after the commits and stored in ``dq_result`` (:mod:`explorer.ingest.quality`).
    With ``retry_quarantined``, files quarantined whole before are read again (a wide lab file
    whose mapping, or an Observation file whose Patient file, has arrived since).
    """
    path = Path(path)
    pseudonymizer = Pseudonymizer.from_environment(lake.root, key_file)  # refuse before touching anything
    workers = workers or min(4, os.cpu_count() or 1)
    now = now or datetime.now(timezone.utc)
    ingest_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    say = progress or (lambda done, total, label="": None)
    readers = readers_in_order()
    staging = lake.root / "_staging" / ingest_id
    staging.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="explorer-ingest-"))
    try:
        refused: dict[str, str] = {}
        files, ignored = _walk(path, scratch, refused)
        files, containers = _expand_zips(files, scratch, refused)
        done_before = _already_ingested(lake, retry_quarantined)
        earlier = _earlier_deliveries(lake)
        recorded = _recorded_shas(lake)
        supersedes: dict[str, list[str]] = {}  # new sha -> shas of earlier files at the same path
        where = {name: _source_path(path, name) for _file, name in files}
        outcomes, seen = [], {}
        # hashing, copying and fsync-ing thousands of files waits on the disk more than the CPU:
        # a few threads keep it busy (each file has its own temporary name; the final one is its hash)
        from concurrent.futures import ThreadPoolExecutor

        stored = []
        with ThreadPoolExecutor(max_workers=4) as pool:
            for k, raw in enumerate(pool.map(lambda item: lake.raw.store(*item), files), 1):
                stored.append(raw)
                say(k, len(files) * 2, f"kept {raw.source_name}")
        plan = []
        for (file, name), raw in zip(files, stored):
            identity = (raw.sha256, _path_identity(name))
            latest, delivered = earlier.get(where[name], (None, set()))
            # new content at a path delivered before is a correction, even if it is an older
            # version coming back (A, then B, then A again: A is what the source says now)
            correction = latest is not None and latest != raw.sha256
            if name in refused:
                outcomes.append(FileOutcome(name, raw.sha256, "quarantined", reason=refused[name]))
            elif name in containers and not containers[name].startswith("damaged"):
                outcomes.append(FileOutcome(name, raw.sha256, "unpacked", "zip", containers[name]))
            elif identity in done_before and not correction:
                outcomes.append(FileOutcome(name, raw.sha256, "skipped", reason=f"already ingested ({done_before[identity]})"))
            elif identity in seen:
                outcomes.append(FileOutcome(name, raw.sha256, "skipped", reason=f"same content as {seen[identity]} in this ingest"))
            else:
                seen[identity] = name
                if correction:
                    supersedes[raw.sha256] = sorted(delivered - {raw.sha256})
                with raw.path.open("rb") as handle:
                    head = handle.read(HEAD_BYTES)
                candidates = [(r, r.sniff(raw.path, head)) for r in readers]
                plan.append((min([r.order for r, why in candidates if why is None] or [999]), name, raw, candidates))
        plan.sort(key=lambda item: (item[0], item[1]))  # residence first, then by name: deterministic

        reference = Reference.from_lake(lake, default_time_zone)
        staged: dict[str, list[Path]] = {}
        inputs: dict[str, set[str]] = {}
        quarantine_parts: list[Path] = []
        # Reference files first, here: later files take time zones, lab codes and patients from them.
        first = [item for item in plan if item[0] <= REFERENCE_ORDER]
        rest = [item for item in plan if item[0] > REFERENCE_ORDER]
        jobs = [(k, name, raw, [(r.format, why) for r, why in candidates]) for k, (_o, name, raw, candidates) in enumerate(plan, 1)]
        settings = (pseudonymizer.key, now, staging, default_time_zone, lake.root / "arrays")
        results = [_process(job, settings, reference) for job in jobs[:len(first)]]
        for result in results:
            reference.add(result["reference"])
            if result["outcome"].status == "accepted":
                reference.exclude(supersedes.get(result["outcome"].sha256, ()))
        total_bytes = sum(raw.size_bytes for _o, _n, raw, _c in rest)
        if workers > 1 and total_bytes > PARALLEL_BYTES and len(rest) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # small files travel in batches of about BATCH_BYTES, so per-task overhead stays small
            batches, current, size = [], [], 0
            for job in jobs[len(first):]:
                current.append(job)
                size += job[2].size_bytes
                if size >= BATCH_BYTES:
                    batches.append(current)
                    current, size = [], 0
            if current:
                batches.append(current)
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_process_batch, batch, settings, reference) for batch in batches]
                done = len(first)
                for future in futures:
                    for result in future.result():
                        results.append(result)
                        done += 1
                        say(len(files) + done, len(files) * 2, f"read {result['outcome'].source_name}")
        else:
            for k, job in enumerate(jobs[len(first):], len(first) + 1):
                results.append(_process(job, settings, reference))
                say(len(files) + k, len(files) * 2, f"read {job[1]}")
        for result in results:
            outcomes.append(result["outcome"])
            for table, part in result["parts"].items():
                if part not in staged.setdefault(table, []):
                    staged[table].append(part)
                inputs.setdefault(table, set()).add(f"raw:{result['outcome'].sha256}")
            if result["quarantine"] is not None and result["quarantine"] not in quarantine_parts:
                quarantine_parts.append(result["quarantine"])

        # only an accepted correction replaces what came before: a garbled one leaves it in place
        accepted = {o.sha256 for o in outcomes if o.status == "accepted"}
        supersedes = {new: old for new, old in supersedes.items() if new in accepted}
        superseded = sorted({sha for shas in supersedes.values() for sha in shas})
        versions = {}
        replaced = _tables_holding(lake, superseded)  # a correction may no longer feed a table
        # An earlier run that stopped between its table commits (files are recorded in ingest_file
        # only at the end) left a marker naming its files; rows of those files already in a table
        # are replaced in the same commit, never doubled, so running the ingest again completes it.
        # Without a marker nothing is searched: an ordinary ingest does not scan the lake.
        markers = _unfinished(lake)
        pending = set().union(*markers.values())
        interrupted = sorted((accepted - recorded) & pending if "*" not in pending else accepted - recorded)
        for table, shas in _tables_holding(lake, interrupted, include_quarantine=True).items():
            replaced[table] = sorted(set(replaced.get(table, [])) | set(shas))
        marker = lake.root / "_staging" / f"{ingest_id}{UNFINISHED}"
        marker.write_text(json.dumps(sorted(accepted)))
        for table in sorted(set(replaced) - set(staged) - ({QUARANTINE} if quarantine_parts else set())):
            versions[table] = lake.write(table, pa.schema(lake.delta(table).schema().to_arrow()).empty_table(), mode="append",
                                         inputs=sorted(f"raw:{new}" for new, old in supersedes.items() if set(old) & set(replaced[table])),
                                         operation=f"ingest {ingest_id}", supersede=replaced[table])
        for table, parts in sorted(staged.items()):
            # parts differ where one file lacked an optional column (all-null there): unify first
            schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
            dataset = pads.dataset([str(p) for p in parts], schema=schema, format="parquet")
            # one batch and one file at a time: the commit's memory does not grow with the delivery
            scanner = dataset.scanner(batch_size=1 << 18, batch_readahead=0, fragment_readahead=0)
            # tables with a primary key (person) take the newest row per key; the rest append
            keyed = (entry := lake.catalog.get(table)) is not None and bool(entry.primary_key)
            versions[table] = lake.write(table, scanner.to_reader(), mode="upsert" if keyed else "append",
                                         inputs=sorted(inputs[table]), operation=f"ingest {ingest_id}", schema_mode="merge",
                                         supersede=replaced.get(table, ()))
        if quarantine_parts:
            rows = pd.concat([pd.read_parquet(p) for p in quarantine_parts], ignore_index=True)
            rows = rows.rename(columns={"_row": "row_number", "table": "target_table"}).assign(ingest_id=ingest_id)
            rows["row_number"] = rows["row_number"].astype("int64")
            versions[QUARANTINE] = lake.write(QUARANTINE, rows, inputs=sorted({f"raw:{s}" for s in rows["source_file"]}),
                                              operation=f"ingest {ingest_id}", supersede=replaced.get(QUARANTINE, ()))
        for outcome in outcomes:
            if outcome.sha256 in supersedes and outcome.status != "skipped":
                note = "supersedes the earlier delivery " + ", ".join(s[:12] for s in supersedes[outcome.sha256])
                outcome.reason = f"{outcome.reason}; {note}" if outcome.reason else note
        received = [o for o in outcomes if o.status != "skipped"]
        if received:  # a run that only found files already ingested changes no table
            versions[INGEST_FILE] = lake.write(INGEST_FILE, pd.DataFrame([{
                "ingest_id": ingest_id, "sha256": o.sha256, "source_name": o.source_name,
                "source_path": where.get(o.source_name), "format": o.format,
                "status": o.status, "reason": o.reason, "rows_read": o.rows_read, "rows_accepted": o.rows_accepted,
                "rows_quarantined": o.rows_quarantined, "ingested_at": now} for o in outcomes]),
                inputs=sorted({f"raw:{o.sha256}" for o in outcomes}), operation=f"ingest {ingest_id}")
        by_sha = {raw.sha256: raw for raw in stored}
        if received:
            lake.raw.record([by_sha[o.sha256] for o in received], [o.format for o in received],
                            [o.status for o in received], [o.reason for o in received], received_at=now)
        # finished: this run's marker goes, and an earlier one once all its files are recorded
        marker.unlink(missing_ok=True)
        done = recorded | {o.sha256 for o in received}
        for path, shas in markers.items():
            if shas <= done:
                path.unlink(missing_ok=True)
        report = IngestReport(ingest_id, outcomes, versions, ignored)
        if quality and any(o.rows_accepted for o in outcomes):
            from explorer.ingest.quality import DQ_TABLE, store_report

            say(len(files) * 2, len(files) * 2, "data-quality report")
            accounting = pd.DataFrame([{"sha256": o.sha256, "format": o.format, "status": o.status, "rows_read": o.rows_read,
                                        "rows_quarantined": o.rows_quarantined} for o in received])
            try:
                report.quality = store_report(lake, ingest_id, accounting)
                if len(report.quality):
                    versions[DQ_TABLE] = lake.version(DQ_TABLE)
            except Exception as exc:  # the data is committed: a failed report must not read as a failed ingest
                report.quality_error = f"{type(exc).__name__}: {exc}"
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _path_identity(name: str) -> str | None:
    """Part of a file's identity that lives in its path, not its bytes: the participant folder of
    a Fitbit export (two people's identical day files are two deliveries, not one)."""
    from explorer.ingest.readers.fitbit_json import participant_of

    return participant_of(name)


def _already_ingested(lake, retry_quarantined: bool = False) -> dict[tuple, str]:
    if not lake.has_table(INGEST_FILE):
        return {}
    statuses = "('accepted', 'unpacked')" if retry_quarantined else "('accepted', 'quarantined', 'unpacked')"
    done = lake.sql(f"SELECT sha256, source_name, ingest_id FROM {INGEST_FILE} WHERE status IN {statuses}")
    out: dict[tuple, str] = {}
    for sha, name, ingest_id in done.itertuples(index=False):
        out.setdefault((sha, _path_identity(name)), ingest_id)
    return out


def _source_path(root: Path, name: str) -> str:
    """Where a file was ingested from, absolute (``archive.zip!member`` for a zip member): the
    identity of a source location, so a later file there with new content corrects this one,
    while next month's folder with the same file names is a delivery of its own."""
    head, bang, member = name.partition("!")
    base = root / head if root.is_dir() and not _is_zarr_folder(root) else Path(head)
    return str(base.resolve()) + bang + member


def _earlier_deliveries(lake) -> dict[str, tuple[str, set[str]]]:
    """Source path -> (the content hash accepted there last, every hash accepted there): a file
    at the same path with other content is a correction and replaces their rows."""
    if not lake.has_table(INGEST_FILE) or "source_path" not in pa.schema(lake.delta(INGEST_FILE).schema().to_arrow()).names:
        return {}
    done = lake.sql(f"SELECT source_path, sha256 FROM {INGEST_FILE} WHERE status = 'accepted' AND source_path IS NOT NULL "
                    "ORDER BY ingested_at, ingest_id")
    out: dict[str, tuple[str, set[str]]] = {}
    for path, sha in done.itertuples(index=False):
        out[path] = (sha, out.get(path, (None, set()))[1] | {sha})
    return out


UNFINISHED = ".unfinished"


def _unfinished(lake) -> dict[Path, set[str]]:
    """Markers of ingests that began committing and never finished: marker path -> their files."""
    out = {}
    for path in (lake.root / "_staging").glob(f"*{UNFINISHED}"):
        try:
            out[path] = set(json.loads(path.read_text()))
        except (OSError, ValueError):  # a marker cut short by the crash itself: search every new file
            out[path] = {"*"}
    return out


def _recorded_shas(lake) -> set[str]:
    """Every content hash ingest_file knows, whatever became of it."""
    if not lake.has_table(INGEST_FILE):
        return set()
    return set(lake.sql(f"SELECT DISTINCT sha256 FROM {INGEST_FILE}")["sha256"])


def _tables_holding(lake, shas: list[str], include_quarantine: bool = False) -> dict[str, list[str]]:
    """Tables that hold rows of the given raw files, with the files found in each. Keyed tables
    (person, wearable_day_zone, ...) are left out: their rows are replaced by key on upsert, and
    a key another file still supports must not be deleted with the file that wrote it last."""
    if not shas:
        return {}
    found = {}
    for table in lake.tables():
        entry = lake.catalog.get(table)
        if table == INGEST_FILE or (table == QUARANTINE and not include_quarantine) or (entry is not None and entry.primary_key) \
                or "source_file" not in pa.schema(lake.delta(table).schema().to_arrow()).names:
            continue
        rows = lake.sql(f"SELECT DISTINCT source_file FROM {table} WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))",
                        [shas])
        if len(rows):
            found[table] = sorted(rows["source_file"])
    return found


def _process_batch(jobs, settings, reference: Reference) -> list[dict]:
    """Read and check several files, then stage one Parquet part per table for all of them:
    thousands of small files (one per day per stream) cost a handful of writes, not thousands."""
    key, now, staging, default_zone, arrays_root = settings
    pseudonymizer = Pseudonymizer(key)
    by_format = {r.format: r for r in readers_in_order()}
    read, tables, quarantined = [], {}, []
    for k, name, raw, sniffs in jobs:
        context = Context(pseudonymizer, now)
        context.arrays_root, context.source_sha256, context.reference = arrays_root, raw.sha256, reference
        outcome = _read_one(name, raw, [(by_format[f], why) for f, why in sniffs], context, reference)
        kept = {t: rows for t, rows in outcome.tables.items() if len(rows)}
        for table, rows in kept.items():
            tables.setdefault(table, []).append(rows)
        if len(outcome.quarantined):
            frame = outcome.quarantined.assign(source_file=raw.sha256, source_name=name, format=outcome.file.format)
            frame["record"] = frame["record"].astype(str)
            quarantined.append(frame)
        read.append((outcome.file, kept, bool(len(outcome.quarantined))))
    parts, quarantine = _stage(tables, quarantined, staging, f"b{jobs[0][0]:06d}")
    # a part shared by several files of the batch is listed once per table by the caller
    return [{"outcome": file, "parts": {t: parts[t] for t in kept}, "quarantine": quarantine if any_bad else None,
             "reference": {t: kept[t] for t in REFERENCE_COLUMNS if t in kept}}
            for file, kept, any_bad in read]


def _process(job, settings, reference) -> dict:
    """Read, check and stage one file in this process."""
    return _process_batch([job], settings, reference)[0]


def _concat_arrow(frames: list[pd.DataFrame]) -> pa.Table:
    """Frames as one Arrow table, rows clustered by ``person_id``.

    Categorical columns (pseudonyms, source files) stay dictionary encoded, each frame with its
    own dictionary (pandas would turn categoricals with different categories into millions of
    Python strings); a frame holding the same column as plain text is encoded to match. Parquet
    stores either as strings. Sorting by person (stable, so each person's rows keep their order)
    gives every row group a narrow range of pseudonyms, which a query or a refresh task reading
    one range of persons skips to by the row groups' statistics; the sort runs on small integer
    ranks of the dictionaries, not on the strings.
    """
    tables = [pa.Table.from_pandas(frame, preserve_index=False) for frame in frames]
    encoded = {c.name for t in tables for c in t.schema if pa.types.is_dictionary(c.type)}
    target = pa.dictionary(pa.int32(), pa.string())
    out = []
    for table in tables:
        for i, column in enumerate(table.schema):
            if column.name in encoded and column.type != target:
                data = table.column(i)
                if not pa.types.is_dictionary(column.type):
                    data = pc.dictionary_encode(data.cast(pa.string()))
                table = table.set_column(i, pa.field(column.name, target), data.cast(target))
        out.append(table)
    table = pa.concat_tables(out, promote_options="permissive")
    if "person_id" in encoded and table.num_rows > 1:
        chunks = table.column("person_id").chunks
        values = sorted({v for chunk in chunks for v in chunk.dictionary.to_pylist() if v is not None})
        rank_of = {v: k for k, v in enumerate(values)}
        ranks = np.concatenate([
            np.append(np.array([rank_of.get(v, len(values)) for v in chunk.dictionary.to_pylist()], dtype="int64"),
                      len(values))[chunk.indices.fill_null(len(chunk.dictionary)).to_numpy(zero_copy_only=False)]
            for chunk in chunks])
        order = np.argsort(ranks, kind="stable")
        if (order[1:] < order[:-1]).any():  # not already in order
            table = table.take(pa.array(order))
    return table


def _stage(tables: dict[str, list[pd.DataFrame]], quarantined: list[pd.DataFrame], staging: Path, tag: str):
    parts = {}
    for table, frames in tables.items():
        part = staging / table / f"part-{tag}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_concat_arrow(frames), part, store_schema=False)  # read back as plain strings
        parts[table] = part
    quarantine = None
    if quarantined:
        quarantine = staging / "_quarantine" / f"part-{tag}.parquet"
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(quarantined, ignore_index=True).to_parquet(quarantine, index=False)
    return parts, quarantine


@dataclass
class _Outcome:
    file: FileOutcome
    tables: dict[str, pd.DataFrame]
    quarantined: pd.DataFrame


def _read_one(name, raw, candidates, context, reference) -> _Outcome:
    said, failed = [], []
    for reader, why in candidates:
        if why is not None:
            said.append(f"{reader.format}: {why}")
            continue
        try:
            context.source_name = name
            result = reader.read(raw.path, context)
        except ReaderError as exc:
            failed.append(f"{reader.format}: {exc}")
            continue
        except Exception as exc:  # a reader bug must not lose the file or stop the ingest
            reason = f"reader {reader.format} failed unexpectedly: {type(exc).__name__}: {exc}"
            file = FileOutcome(name, raw.sha256, "error", reader.format, reason)
            traceback.print_exc()
            return _Outcome(file, {}, pd.DataFrame())
        return _checked(name, raw, reader.format, result, reference, context)
    if failed:  # a reader recognised the file but could not read it: that is the news
        reason = "recognised but not readable: " + "; ".join(failed)
    else:
        reason = "no reader accepted this file: " + "; ".join(shorten(s) for s in said)
    return _Outcome(FileOutcome(name, raw.sha256, "quarantined", None, reason), {}, pd.DataFrame())


def _checked(name, raw, fmt, result: ReadResult, reference: Reference, context) -> _Outcome:
    tables, quarantined, accepted_records = {}, [result.quarantined], set()
    for table, rows in result.tables.items():
        reasons = checks.range_reasons(table, rows).fillna(checks.required_reasons(table, rows))
        if table in ("heart_rate_minute", "steps_minute"):
            value = "heart_rate_value" if table == "heart_rate_minute" else "steps"
            codes, days = reference.local_days(rows["person_id"], rows["datetime"])
            zones = pd.Series(days["time_zone"].to_numpy()[codes], index=rows.index, dtype=object)
            reasons = reasons.fillna(checks.duplicate_reasons(rows, value, zones))
            reasons = reasons.fillna(checks.skipped_hour_reasons(rows["datetime"], days, codes))
            reasons = reasons.fillna(checks.future_reasons(rows, "datetime", context.now))
        bad = reasons.notna().to_numpy()
        if bad.any():
            source = rows.loc[bad].drop(columns=["person_id"]).rename(columns={"_source_person": "person_id"})
            quarantined.append(pd.DataFrame({"_row": rows.loc[bad, "_row"].to_numpy(), "table": table,
                                             "reason": reasons[bad].to_numpy(),
                                             "record": source.drop(columns=["_row"]).to_json(orient="records", lines=True,
                                                                                            date_format="iso").splitlines()}))
        accepted_records.update(rows.loc[~bad, "_row"].tolist())
        if table in ("heart_rate_minute", "steps_minute"):
            worn = days.iloc[np.unique(codes[~bad])]  # the zone of every local day that has rows
            worn = worn[worn["time_zone"].notna()].rename(columns={"day": "date"}).assign(date=lambda d: d["date"].dt.date)
            tables["wearable_day_zone"] = pd.concat([tables.get("wearable_day_zone"), worn.assign(source_file=raw.sha256)],
                                                    ignore_index=True).drop_duplicates(["person_id", "date"])
        good = rows.loc[~bad].drop(columns=[c for c in ("_row", "_source_person") if c in rows.columns])
        good["source_file"] = pd.Categorical.from_codes(np.zeros(len(good), dtype="int8"), categories=[raw.sha256])
        tables[table] = good.reset_index(drop=True)
    quarantined = pd.concat([q for q in quarantined if len(q)], ignore_index=True) if any(len(q) for q in quarantined) \
        else pd.DataFrame(columns=["_row", "table", "reason", "record"])
    accepted = len(accepted_records)  # source records, however many unified rows each became
    file = FileOutcome(name, raw.sha256, "accepted", fmt, None, result.rows_read, accepted, len(quarantined),
                       Counter(quarantined["reason"]) if len(quarantined) else Counter())
    if file.rows_read != file.rows_accepted + file.rows_quarantined:  # the nothing-lost identity
        file.status, file.reason = "error", (f"internal error: {file.rows_read} rows read but {file.rows_accepted} "
                                             f"accepted + {file.rows_quarantined} quarantined")
        return _Outcome(file, {}, pd.DataFrame())
    if accepted == 0 and result.rows_read > 0:
        file.status, file.reason = "quarantined", "every row failed its checks (see quarantine_row)"
    return _Outcome(file, tables, quarantined)
