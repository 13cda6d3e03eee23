"""What an ingest is given: the files under a path, and what zip archives hold, within limits.

A folder is walked recursively, honouring ``.explorerignore``; a Zarr store folder is one item;
a symbolic link that leads out of the folder is not followed. Zip archives are unpacked into a
scratch folder, member by member, within limits on what one archive may expand to, so that a
small zip cannot become gigabytes in memory or on disk. Whatever is refused (a link, an unsafe
or oversized member) is listed with a small stand-in file and its reason, so it is kept and
quarantined, never silently lost.
"""

from __future__ import annotations

import fnmatch
import os
import re
import zipfile
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.ingest.readers.grids import is_zarr_zip

#: at the top of a folder: patterns (fnmatch, one a line, # for comments) of files to leave out
IGNORE_FILE = ".explorerignore"

#: a file's name as received (relative to the folder ingested, ``archive.zip!member`` for a
#: member) with where its bytes are now: the file itself, an unpacked member, or a stand-in
Received = tuple[Path, str]


def is_zarr_folder(path: Path) -> bool:
    """A folder holding a Zarr store (v3 ``zarr.json`` or v2 ``.zgroup``)."""
    return path.is_dir() and any((path / marker).is_file() for marker in ("zarr.json", ".zgroup"))


#: limits on what one zip archive may expand to (a small zip must not become gigabytes in memory
#: or on disk): total bytes, bytes per compressed byte, and the longest line of a text member
MAX_UNZIPPED_BYTES = int(os.environ.get("EXPLORER_MAX_UNZIPPED_BYTES", 8 << 30))
MAX_COMPRESSION_RATIO = 200
MAX_LINE_BYTES = 16 << 20
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".ndjson", ".jsonl")


def refused_stand_in(scratch: Path, k: int, reason: str) -> Path:
    """A stand-in kept in the raw zone for something not read (a link, a member too large):
    the record of what arrived and why it was refused."""
    stand_in = scratch / f"refused-{k}"
    stand_in.write_text(f"not read by explorer ingest: {reason}\n", encoding="utf-8")
    return stand_in


def walk(path: Path, scratch: Path | None = None, refused: dict | None = None) -> tuple[list[Received], int]:
    """Files under ``path``, honouring ``.explorerignore``.

    A Zarr store folder is one item (packed into one file later), not its many chunk files.
    A symbolic link that leads out of ``path`` (or to a folder) is not followed: it is listed
    with a stand-in file and its reason in ``refused``, so it is quarantined, not lost.

    Parameters
    ----------
    path : Path
        A file, a folder or a Zarr store folder.
    scratch : Path, optional
        Where stand-ins for refused links are written; without it a refused link raises.
    refused : dict, optional
        Filled with name as received -> why it was not read.

    Returns
    -------
    files : list of (Path, str)
        Path on disk and name as received, in name order.
    ignored : int
        Files left out by ``.explorerignore`` or because their name starts with a dot.
    """
    refused = {} if refused is None else refused
    if path.is_file() or is_zarr_folder(path):
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
    stores = sorted(p for p in path.rglob("*") if is_zarr_folder(p) and not p.is_symlink())
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
        files.append((refused_stand_in(scratch, len(refused), reason), relative))
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


def pack_folder(folder: Path, target: Path) -> Path:
    """A Zarr folder as one zip of its files (stored, sorted, fixed times): the same folder always
    packs to the same bytes, so it is kept and recognised in the raw zone like any file."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, file.read_bytes())
    return target


def expand_zips(files: list[Received], scratch: Path,
                refused: dict | None = None) -> tuple[list[Received], dict[str, str]]:
    """Members of each .zip become files named ``archive.zip!member``; the archive itself is
    listed too (kept, and recorded as unpacked), and a damaged archive is left whole for the
    readers to refuse, so it is quarantined with a reason instead of stopping the ingest. A Zarr
    folder is packed into one file, and a zipped Zarr store stays whole: both are grids.

    A member whose name would land outside the archive's folder (``../``, an absolute path:
    "zip slip"), one that expands beyond :data:`MAX_COMPRESSION_RATIO` or past the archive's
    :data:`MAX_UNZIPPED_BYTES`, and a text member with a line over :data:`MAX_LINE_BYTES` are
    not unpacked: each is listed in ``refused`` with its reason (quarantined), with a stand-in.

    Returns
    -------
    files : list of (Path, str)
        ``files`` with each archive's members before the archive itself.
    containers : dict
        Archive name -> what became of it (unpacked, or damaged), the reason recorded for it.
    """
    refused = {} if refused is None else refused
    out, containers = [], {}
    for path, name in files:
        if path.is_dir():
            out.append((pack_folder(path, scratch / f"{len(out)}.zarr.zip"), name))
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
                    reason = unsafe_member(member) or unpack_member(archive, member, target, budget)
                    if reason:
                        refused[member_name] = reason
                        target = refused_stand_in(scratch, len(refused), reason)
                    members.append((target, member_name))
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            out.append((path, name))
            containers[name] = f"damaged zip archive: {exc}"
            continue
        out.extend(members)
        out.append((path, name))
        containers[name] = f"zip archive unpacked: {len(members)} member(s) ingested as {name}!<member>"
    return out, containers


def unsafe_member(member: zipfile.ZipInfo) -> str | None:
    """Why a member's name is unsafe to unpack (it would land outside its folder), or None."""
    name = member.filename.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return (f"zip member {member.filename!r} would land outside the archive's folder (zip slip): not unpacked; "
                "ask the sender for an archive with relative member names")
    if (member.external_attr >> 16) & 0o170000 == 0o120000:
        return f"zip member {member.filename!r} is a symbolic link: not followed"
    return None


def unpack_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: list) -> str | None:
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


def source_path(root: Path, name: str) -> str:
    """Where a file was ingested from, absolute (``archive.zip!member`` for a zip member): the
    identity of a source location, so a later file there with new content corrects this one,
    while next month's folder with the same file names is a delivery of its own."""
    head, bang, member = name.partition("!")
    base = root / head if root.is_dir() and not is_zarr_folder(root) else Path(head)
    return str(base.resolve()) + bang + member
