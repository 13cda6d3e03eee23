"""What the lake remembers of earlier ingests: files recorded, deliveries, unfinished commits.

Each ingest records its files in ``ingest_file`` (content hash, name and path as received,
status) only at its end, after its table commits; a run that stopped between its commits left a
marker in ``_staging`` naming the files it was committing. These lookups let the next ingest skip
what is already in, treat new content at a known path as a correction, and complete an
interrupted run without doubling rows.
"""

from __future__ import annotations

import json

import pyarrow as pa

from explorer.ingest.readers.fitbit_json import participant_of

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: the table of per-file outcomes, and the table of rows that failed their checks
INGEST_FILE = "ingest_file"
QUARANTINE = "quarantine_row"

#: suffix of the marker an ingest leaves in ``<lake>/_staging`` while it commits
UNFINISHED = ".unfinished"


def path_identity(name: str) -> str | None:
    """Part of a file's identity that lives in its path, not its bytes: the participant folder of
    a Fitbit export (two people's identical day files are two deliveries, not one)."""
    return participant_of(name)


def already_ingested(lake: Lake, retry_quarantined: bool = False) -> dict[tuple, str]:
    """(content hash, path identity) -> the ingest that took the file in; with
    ``retry_quarantined``, files quarantined whole are left out, so they are read again."""
    if not lake.has_table(INGEST_FILE):
        return {}
    statuses = "('accepted', 'unpacked')" if retry_quarantined else "('accepted', 'quarantined', 'unpacked')"
    done = lake.sql(f"SELECT sha256, source_name, ingest_id FROM {INGEST_FILE} WHERE status IN {statuses}")
    out: dict[tuple, str] = {}
    for sha, name, ingest_id in done.itertuples(index=False):
        out.setdefault((sha, path_identity(name)), ingest_id)
    return out


def earlier_deliveries(lake: Lake) -> dict[str, tuple[str, set[str]]]:
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


def unfinished_markers(lake: Lake) -> dict[str, set[str]]:
    """Markers of ingests that began committing and never finished: marker key -> their files."""
    out = {}
    for key in lake.storage.children("_staging"):
        if not key.endswith(UNFINISHED):
            continue
        key = f"_staging/{key}"
        try:
            out[key] = set(json.loads(lake.storage.read_text(key)))
        except (OSError, ValueError):  # a marker cut short by the crash itself: search every new file
            out[key] = {"*"}
    return out


def recorded_shas(lake: Lake) -> set[str]:
    """Every content hash ingest_file knows, whatever became of it."""
    if not lake.has_table(INGEST_FILE):
        return set()
    return set(lake.sql(f"SELECT DISTINCT sha256 FROM {INGEST_FILE}")["sha256"])


def tables_holding(lake: Lake, shas: list[str], include_quarantine: bool = False) -> dict[str, list[str]]:
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

