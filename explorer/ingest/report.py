"""What an ingest reports: per file, what became of it; per ingest, the summary and data quality."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from explorer.errors import shorten
from explorer.ingest.quality import DQ_TABLE, store_report
from explorer.ingest.walk import IGNORE_FILE

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake


@dataclass
class FileOutcome:
    """What became of one file: a row of ``ingest_file``.

    ``status`` is ``accepted``, ``quarantined``, ``skipped`` (already ingested, or the same
    content twice in one delivery), ``unpacked`` (a zip, whose members are files of their own)
    or ``error`` (a reader failed unexpectedly). ``row_reasons`` counts the reasons rows of the
    file were quarantined; ``ignored_kinds`` counts records of kinds the suite does not store;
    ``unzoned_persons`` holds the persons whose local wearable times fell on days without a known
    time zone (no residence history, no default zone).
    """

    source_name: str
    sha256: str
    status: str
    format: str | None = None
    reason: str | None = None
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    row_reasons: Counter = field(default_factory=Counter)
    ignored_kinds: Counter = field(default_factory=Counter)
    unzoned_persons: frozenset = frozenset()  # pseudonyms with local times on days of no known time zone

    @property
    def rows_ignored(self) -> int:
        """Records of kinds the suite does not store (counted, named, not quarantined)."""
        return sum(self.ignored_kinds.values())

    @property
    def ignored(self) -> str | None:
        """The kinds of ignored records with their counts, most first (``Immunization: 3; Organization: 1``)."""
        return "; ".join(f"{kind}: {n}" for kind, n in self.ignored_kinds.most_common()) or None


@dataclass
class IngestReport:
    """The result of :func:`explorer.ingest.ingest`; ``str(report)`` is the summary the command prints.

    Attributes
    ----------
    ingest_id : str
        ``<UTC time>-<random>``, the ``ingest_id`` of every row it recorded.
    files : list of FileOutcome
        Every file received, zip members included.
    versions : dict
        Table name -> the version this ingest committed.
    ignored : int
        Files left out by ``.explorerignore``.
    quality : pandas.DataFrame or None
        The data-quality report of this ingest (its ``dq_result`` rows).
    quality_error : str or None
        Why the data-quality report failed, if it did (the data is committed regardless).
    seconds : dict
        Wall time of each phase: ``keep`` (raw zone and detection), ``read`` (reading, checks,
        staging), ``commit`` (the table commits and the file records) and ``quality``.
    """

    ingest_id: str
    files: list[FileOutcome]
    versions: dict[str, int]
    ignored: int = 0
    quality: pd.DataFrame | None = None
    quality_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def unzoned_persons(self) -> set[str]:
        """Pseudonyms of persons with wearable local times on days whose time zone is unknown (no
        residence history covers them and no ``default_time_zone`` was given)."""
        return set().union(*(f.unzoned_persons for f in self.files)) if self.files else set()

    @property
    def warnings(self) -> list[str]:
        """What the data holds that the ingest could not settle, and what to do about it."""
        out = []
        if n := len(self.unzoned_persons):
            out.append(f"warning: {n:,} person{'s' if n != 1 else ''} with wearable local times but no known time zone "
                       "(no residence history covers those days and no --default-time-zone was given): those days get no "
                       "wearable_day_zone row and their minutes cannot be placed in UTC. Ingest a residence history, or "
                       "ingest again with --default-time-zone ZONE (e.g. America/Denver); see the data-quality check "
                       "wearable_zone_unknown.")
        return out

    def count(self, status: str) -> int:
        """Files with ``status``."""
        return sum(f.status == status for f in self.files)

    @property
    def errors(self) -> list[FileOutcome]:
        """Files a reader failed on unexpectedly (a bug, not bad data)."""
        return [f for f in self.files if f.status == "error"]

    def __str__(self) -> str:
        accepted = sum(f.rows_accepted for f in self.files)
        quarantined_rows = sum(f.rows_quarantined for f in self.files)
        ignored_kinds = sum((f.ignored_kinds for f in self.files), Counter())
        lines = [f"ingest {self.ingest_id}: {len(self.files)} files: {self.count('accepted')} accepted, "
                 f"{self.count('quarantined')} quarantined, {self.count('skipped')} already ingested"
                 + (f", {self.ignored} ignored by {IGNORE_FILE}" if self.ignored else "")
                 + (f", {len(self.errors)} failed with an internal error" if self.errors else ""),
                 f"rows: {accepted:,} accepted, {quarantined_rows:,} quarantined"
                 + (f", {sum(ignored_kinds.values()):,} of kinds not stored (" + ", ".join(
                     f"{kind} {n:,}" for kind, n in ignored_kinds.most_common(6)) + ")" if ignored_kinds else "")]
        lines.extend(f"  {line}" for line in reason_lines(f.row_reasons for f in self.files))
        for f in self.files:
            if f.status in ("quarantined", "error"):
                lines.append(f"  file {f.status}: {f.source_name}: {shorten(f.reason or '', 300)}")
        lines.extend(self.warnings)
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
        if self.seconds:
            lines.append("time: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.seconds.items())
                         + f" ({sum(self.seconds.values()):.1f} s)")
        return "\n".join(lines)


def reason_kind(reason: str) -> str:
    """A row reason without its row-specific values (row numbers, numbers become ``#``), so
    the summary counts reasons by kind."""
    return re.sub(r"\b(row \d+|-?\d+(\.\d+)?)\b", "#", reason)


def reason_lines(counters, limit: int = 12) -> list[str]:
    """The quarantine reasons of ``counters`` (one :class:`Counter` of reasons per file) grouped
    by kind (:func:`reason_kind`), most rows first, each group shown by one real reason of it,
    its most frequent: ``heart_rate_value 255 bpm outside 25-250`` tells what to look for, where
    ``heart_rate_value # bpm outside #-#`` would hide the range and the codes."""
    rows, examples = Counter(), {}
    for counter in counters:
        for reason, n in counter.items():
            kind = reason_kind(reason)
            rows[kind] += n
            examples.setdefault(kind, Counter())[reason] += n
    lines = []
    for kind, n in rows.most_common(limit):
        alike = examples[kind]
        example = min(alike, key=lambda r: (-alike[r], r))  # the most frequent; ties the same way every run
        more = f"  (e.g.; {len(alike) - 1:,} other reason{'s' * (len(alike) != 2)} like it)" if len(alike) > 1 else ""
        lines.append(f"{n:>10,} rows  {example}{more}")
    return lines


def add_quality_report(lake: Lake, report: IngestReport) -> None:
    """Compute the data-quality report of the rows ``report``'s ingest added, store it in
    ``dq_result`` and attach it to ``report``; a failure is attached as ``quality_error``.

    Parameters
    ----------
    lake : explorer.Lake
        The lake the ingest committed to.
    report : IngestReport
        The ingest's report; ``quality``, ``quality_error`` and ``versions`` are filled in.
    """
    received = [o for o in report.files if o.status != "skipped"]
    accounting = pd.DataFrame([{"sha256": o.sha256, "format": o.format, "status": o.status, "rows_read": o.rows_read,
                                "rows_quarantined": o.rows_quarantined, "rows_ignored": o.rows_ignored} for o in received])
    try:
        report.quality = store_report(lake, report.ingest_id, accounting)
        if len(report.quality):
            report.versions[DQ_TABLE] = lake.version(DQ_TABLE)
    except Exception as exc:  # the data is committed: a failed report must not read as a failed ingest
        report.quality_error = f"{type(exc).__name__}: {exc}"
