"""Planning an ingest: keep every file's bytes, then decide which files to read, and in what order.

Every file received is stored in the raw zone before anything else. Then each one is either
settled without reading (refused, an unpacked zip, already ingested, the same content twice in
this delivery) or planned for reading: a file at a path delivered before with other content is
a correction that replaces the earlier delivery's rows. Planned files are sniffed by every
reader and read in detection order, reference files first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from explorer.ingest.history import (already_ingested, earlier_deliveries, path_identity, recorded_shas,
                                     unfinished_markers)
from explorer.ingest.readers import Reader, readers_in_order
from explorer.ingest.report import FileOutcome
from explorer.ingest.walk import Received, expand_zips, source_path, walk
from explorer.lake import RawFile

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: how much of a file the readers' sniff sees
HEAD_BYTES = 65536

#: detection order given to a file no reader's sniff accepts (read last, and quarantined)
NO_READER_ORDER = 999


@dataclass
class PlannedFile:
    """A file to read, with what every reader's sniff said of it.

    Attributes
    ----------
    order : int
        The lowest ``order`` of the readers that accepted it: reference files come first.
    source_name : str
        Its name as received.
    raw : RawFile
        Its bytes in the raw zone.
    candidates : list of (Reader, str or None)
        Every reader, in detection order, with None if it accepted the file, else why not.
    """

    order: int
    source_name: str
    raw: RawFile
    candidates: list[tuple[Reader, str | None]]


@dataclass
class Plan:
    """What an ingest was given and what it will do with each file.

    Attributes
    ----------
    files : list of (Path, str)
        Every file received, zip members included, with its name as received.
    ignored : int
        Files left out by ``.explorerignore``.
    stored : list of RawFile
        The files as kept in the raw zone, in the order of ``files``.
    source_paths : dict
        Name as received -> the absolute source path (a correction's identity).
    settled : list of FileOutcome
        Files settled without reading (refused, unpacked zips, skipped), in the order received.
    to_read : list of PlannedFile
        Files to read, in reading order: by detection order, then by name.
    supersedes : dict
        Content hash of a correction -> the hashes of the earlier deliveries at its path.
    recorded : set of str
        Every content hash ``ingest_file`` held before this ingest.
    unfinished : dict
        Markers of earlier ingests that began committing and never finished: marker path -> the
        content hashes of their files (``{"*"}`` when the marker itself was cut short).
    """

    files: list[Received]
    ignored: int
    stored: list[RawFile]
    source_paths: dict[str, str]
    settled: list[FileOutcome] = field(default_factory=list)
    to_read: list[PlannedFile] = field(default_factory=list)
    supersedes: dict[str, list[str]] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)
    unfinished: dict[str, set[str]] = field(default_factory=dict)


def keep_originals(lake: Lake, files: list[Received], say) -> list[RawFile]:
    """Store every file in the raw zone, byte for byte, under its SHA-256.

    Hashing and copying thousands of files waits on the disk more than the CPU: a few threads
    keep it busy (each file has its own temporary name; the final one is its hash). The bytes
    are forced to disk before the commit (:meth:`RawZone.make_durable`), not file by file here:
    the kernel writes them back while the files are read.
    """
    stored = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for k, raw in enumerate(pool.map(lambda item: lake.raw.store(*item, durable=False), files), 1):
            stored.append(raw)
            say(k, len(files) * 2, f"kept {raw.source_name}")
    return stored


def plan_ingest(lake: Lake, path: Path, scratch: Path, *, retry_quarantined: bool, say) -> Plan:
    """Receive what ``path`` holds, keep its bytes, and plan the reading.

    Parameters
    ----------
    lake : explorer.Lake
        The lake ingested into: its raw zone keeps the files, its ``ingest_file`` says what
        came before.
    path : Path
        A file, a folder or a .zip.
    scratch : Path
        A temporary folder for unpacked zip members and stand-ins of refused files.
    retry_quarantined : bool
        Read again files quarantined whole by an earlier ingest.
    say : callable
        ``say(done, total, label)``, progress.

    Returns
    -------
    Plan
    """
    refused: dict[str, str] = {}
    files, ignored = walk(path, scratch, refused)
    files, containers = expand_zips(files, scratch, refused)
    done_before = already_ingested(lake, retry_quarantined)
    earlier = earlier_deliveries(lake)
    plan = Plan(files, ignored, stored=[], source_paths={name: source_path(path, name) for _file, name in files},
                recorded=recorded_shas(lake), unfinished=unfinished_markers(lake))
    plan.stored = keep_originals(lake, files, say)
    readers = readers_in_order()
    seen: dict[tuple, str] = {}  # (content, path identity) -> the name it first came under in this delivery
    for (_file, name), raw in zip(files, plan.stored):
        identity = (raw.sha256, path_identity(name))
        latest, delivered = earlier.get(plan.source_paths[name], (None, set()))
        # new content at a path delivered before is a correction, even if it is an older
        # version coming back (A, then B, then A again: A is what the source says now)
        correction = latest is not None and latest != raw.sha256
        if name in refused:
            plan.settled.append(FileOutcome(name, raw.sha256, "quarantined", reason=refused[name]))
        elif name in containers and not containers[name].startswith("damaged"):
            plan.settled.append(FileOutcome(name, raw.sha256, "unpacked", "zip", containers[name]))
        elif identity in done_before and not correction:
            plan.settled.append(FileOutcome(name, raw.sha256, "skipped", reason=f"already ingested ({done_before[identity]})"))
        elif identity in seen:
            plan.settled.append(FileOutcome(name, raw.sha256, "skipped", reason=f"same content as {seen[identity]} in this ingest"))
        else:
            seen[identity] = name
            if correction:
                plan.supersedes[raw.sha256] = sorted(delivered - {raw.sha256})
            plan.to_read.append(sniffed(name, raw, readers))
    plan.to_read.sort(key=lambda planned: (planned.order, planned.source_name))  # residence first, then by name: deterministic
    return plan


def sniffed(name: str, raw: RawFile, readers: list[Reader]) -> PlannedFile:
    """``raw`` planned for reading, with what each reader's sniff said of its first bytes."""
    with raw.path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    candidates = [(reader, reader.sniff(raw.path, head)) for reader in readers]
    order = min([reader.order for reader, why in candidates if why is None] or [NO_READER_ORDER])
    return PlannedFile(order, name, raw, candidates)
