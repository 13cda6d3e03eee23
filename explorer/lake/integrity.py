"""Checksums recorded at write time, and `verify`, which re-hashes everything against them.

Why: a flipped byte inside an uncompressed Parquet page still decodes, and every engine then
returns a wrong value without an error. Only a checksum recorded when the file was written
catches it. Delta's log records sizes, not hashes, so each commit's files are hashed right
after the commit and kept in ``_integrity/<table>/<version>.json`` (written atomically).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

from explorer.lake.delta_files import data_keys
from explorer.lake.raw import hash_key

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake.lake import Lake


def _records_dir(lake: Lake, table: str) -> str:
    return f"_integrity/{table}"


def _added_files(lake: Lake, table: str, version: int) -> list[str]:
    """Relative paths of the data files added by one commit, read from the Delta log."""
    added = []
    for line in lake.storage.read_text(f"{lake.table_key(table)}/_delta_log/{version:020d}.json").splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action:  # paths in the log are percent-encoded URIs
            added.append(unquote(action["add"]["path"]))
    return added


def _record_versions(lake: Lake, table: str) -> dict[int, str]:
    """Version -> key of each checksum record of ``table``."""
    out = {}
    for key in lake.storage.keys(_records_dir(lake, table)):
        stem = key.rsplit("/", 1)[-1].removesuffix(".json")
        if key.endswith(".json") and stem.isdigit() and key.count("/") == 2:
            out[int(stem)] = key
    return out


def record(lake: Lake, table: str, version: int, *, every_live_file: bool = False) -> None:
    """Hash the commit file and the data files that ``table@version`` added (or, with
    ``every_live_file``, every data file of that version), and keep the hashes."""
    table_dir = lake.table_key(table)
    files = {f"_delta_log/{version:020d}.json": None}
    checkpoint = f"_delta_log/{version:020d}.checkpoint.parquet"
    if lake.storage.exists(f"{table_dir}/{checkpoint}"):  # written by the commit's post-commit hook
        files[checkpoint] = None
    if every_live_file:
        files.update({relative: None for relative in data_keys(lake.delta(table, version))})
    else:
        files.update({path: None for path in _added_files(lake, table, version)})
    entries = {}
    for relative in files:
        digest, size = hash_key(lake.storage, f"{table_dir}/{relative}")
        entries[relative] = {"sha256": digest, "size": size}
    document = json.dumps({"table": table, "version": version, "files": entries}, indent=1)
    lake.storage.write_bytes(f"{_records_dir(lake, table)}/{version:020d}.json", document.encode())


def purged_before(lake: Lake, table: str) -> int:
    """The first version of ``table`` whose commit file still exists (0 unless its history was
    purged, as an erasure does)."""
    try:
        return json.loads(lake.storage.read_text(f"{_records_dir(lake, table)}/purged.json"))["before"]
    except FileNotFoundError:
        return 0


def forget_before(lake: Lake, table: str, version: int) -> None:
    """Drop the checksum records of versions before ``version`` (their files were purged), and
    remember that the history starts there."""
    for number, key in _record_versions(lake, table).items():
        if number < version:
            lake.storage.delete(key)
    lake.storage.write_bytes(f"{_records_dir(lake, table)}/purged.json",
                             json.dumps({"table": table, "before": version}).encode())
    # the checkpoint stands in for the history, and the files earlier commits added and this
    # version still uses are recorded again, since their own records went with those commits
    record(lake, table, version, every_live_file=True)


def _recorded_versions(lake: Lake, table: str) -> set[int]:
    return set(_record_versions(lake, table))


def recorded(lake: Lake, table: str) -> dict[str, dict]:
    """Every file checksum recorded for ``table``: relative path -> {sha256, size, version}."""
    out: dict[str, dict] = {}
    for _, key in sorted(_record_versions(lake, table).items()):
        document = json.loads(lake.storage.read_text(key))
        for relative, entry in document["files"].items():
            out[relative] = {**entry, "version": document["version"]}
    return out


@dataclass
class Problem:
    kind: str  # failures: modified, missing, foreign, unreadable; warnings: unrecorded, orphan
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind.upper():10} {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`: what was checked, and every difference found."""

    raw_files: int = 0
    data_files: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    #: kinds that mean data can no longer be trusted (the others are warnings)
    FAILURES = ("modified", "missing", "foreign", "unreadable")

    @property
    def ok(self) -> bool:
        return not any(p.kind in self.FAILURES for p in self.problems)

    def __str__(self) -> str:
        head = (f"checked {self.raw_files} raw files and {self.data_files} table files "
                f"({self.bytes_hashed / 1e6:.1f} MB): ")
        if not self.problems:
            return head + "all match what was recorded."
        lines = [head + f"{len(self.problems)} difference(s)"] + [f"  {p}" for p in self.problems]
        if not self.ok:
            lines.append("Restore the listed files from a backup, or re-ingest the raw files they came "
                         "from; `explorer catalog NAME` shows each table's lineage.")
        return "\n".join(lines)


def verify(lake: Lake, *, all_versions: bool = False, progress=None) -> VerifyReport:
    """Re-hash raw files and the files of current table versions (or of every version)."""
    report = VerifyReport()
    work: list[tuple[str, str, str | None, int | None, str]] = []  # (label, key, sha, size, context)

    manifest_shas = set()
    if lake.has_table("raw_manifest"):
        try:
            manifest_shas = set(lake.sql("SELECT DISTINCT sha256 FROM raw_manifest")["sha256"])
        except Exception as exc:  # a damaged manifest is a finding, not a crash
            report.problems.append(Problem("unreadable", "tables/raw_manifest", f"cannot be read ({exc})"))
    stored = {sha: lake.raw.key(sha) for sha in lake.raw.shas()}
    for sha, key in stored.items():
        work.append((key, key, sha, None, "raw"))
        if manifest_shas and sha not in manifest_shas:
            report.problems.append(Problem("orphan", f"raw/{sha[:2]}/{sha}", "stored but not in raw_manifest "
                                           "(a receipt interrupted before its manifest commit)"))
    for sha in sorted(manifest_shas - set(stored)):
        report.problems.append(Problem("missing", f"raw/{sha[:2]}/{sha}", "listed in raw_manifest but the file is gone"))

    recorded_tables = {name for name in lake.storage.children("_integrity") if "." not in name}
    present = set(lake.tables())
    for table in sorted(recorded_tables - present):
        report.problems.append(Problem("missing", f"tables/{table}", "checksums were recorded for this table but it is gone"))

    for table in sorted(present):
        records = recorded(lake, table)
        recorded_versions = _recorded_versions(lake, table)
        table_dir = lake.table_key(table)
        dt = lake.delta(table)
        latest = dt.version()
        for v in sorted(v for v in recorded_versions if v > latest):
            report.problems.append(Problem("missing", f"tables/{table}/_delta_log/{v:020d}.json",
                                           f"{table}@{v} was committed and recorded but its commit file is gone "
                                           "(the table silently rolled back)"))
        if all_versions:
            wanted = {rel: f"{table}@{r['version']}" for rel, r in records.items()}
        else:
            wanted = {relative: f"{table}@{latest}" for relative in data_keys(dt)}
        for v in range(purged_before(lake, table), latest + 1):  # the commit log decides what every version holds
            wanted.setdefault(f"_delta_log/{v:020d}.json", f"{table}@{v}")
        for checkpoint in lake.storage.keys(f"{table_dir}/_delta_log"):
            name = checkpoint.rsplit("/", 1)[-1]
            if name.endswith(".checkpoint.parquet"):
                wanted.setdefault(f"_delta_log/{name}", f"{table}@{int(name.split('.')[0])}")
        # A writer stopped between its commit and the checksum record leaves only its own newest
        # commit unrecorded: a warning. Anything else unrecorded was written behind the lake's back.
        newest_unrecorded = set()
        if latest not in recorded_versions:
            newest_unrecorded = {f"_delta_log/{latest:020d}.json", *_added_files(lake, table, latest)}
        for relative, context in sorted(wanted.items()):
            entry = records.get(relative)
            label = f"tables/{table}/{relative}"
            if entry is None:
                if relative in newest_unrecorded:
                    report.problems.append(Problem("unrecorded", label, f"part of {context}, the newest commit, whose "
                                                   "writer stopped before recording checksums"))
                else:
                    report.problems.append(Problem("foreign", label, f"part of {context} but not written through the "
                                                   "lake (no checksum recorded): the table was changed behind its back"))
                continue
            work.append((label, f"{table_dir}/{relative}", entry["sha256"], entry["size"], context))

    for i, (label, key, expected, size, context) in enumerate(work, 1):
        if progress:
            progress(i, len(work), label)
        try:
            actual, actual_size = hash_key(lake.storage, key)
        except FileNotFoundError:
            report.problems.append(Problem("missing", label, f"file of {context} is gone"))
            continue
        report.bytes_hashed += actual_size
        if context == "raw":
            report.raw_files += 1
        else:
            report.data_files += 1
        if actual != expected:
            what = "content no longer matches its name (SHA-256)" if context == "raw" else f"file of {context} changed"
            sizes = "" if size is None or size == actual_size else f"; size {size} -> {actual_size} bytes"
            report.problems.append(Problem("modified", label, f"{what}: recorded {expected[:12]}…, "
                                           f"now {actual[:12]}…{sizes}"))
    return report
