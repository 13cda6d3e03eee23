"""Readers: one subclass per source format, found by name, tried in a documented order.

A reader says whether a file looks like its format (``sniff``: cheap, from the first bytes),
then parses and validates it (``read``). Detection goes by content, not by extension alone:
the first reader, in ``order``, whose sniff accepts the file and whose read succeeds wins. A
file no reader accepts is quarantined with what each reader said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from explorer.errors import ExplorerError, did_you_mean

READERS: dict[str, type[Reader]] = {}


class ReaderError(ExplorerError):
    """The whole file cannot be read as this format; the message says why, where possible with
    the line, field or key."""


@dataclass
class ReadResult:
    """What a reader made of one file.

    ``tables`` maps unified table names to rows; every frame carries ``_row``, the 1-based
    record number in the source (a CSV data row, a bundle entry), so that accepted plus
    quarantined rows can be counted against ``rows_read``. ``quarantined`` holds rows the
    reader itself rejected: ``_row``, ``table``, ``reason``, ``record``.
    """

    rows_read: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    quarantined: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["_row", "table", "reason", "record"]))


class Reader:
    """Base class. Subclasses set ``format`` (the name), ``order`` and ``description``."""

    format: ClassVar[str] = ""
    order: ClassVar[int] = 100
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.format:
            READERS[cls.format] = cls

    def sniff(self, path: Path, head: bytes) -> str | None:
        """None if the file looks like this format, else a short reason why not."""
        raise NotImplementedError

    def read(self, path: Path, context) -> ReadResult:
        raise NotImplementedError


def readers_in_order() -> list[Reader]:
    from explorer.ingest.readers import csv_tables, fhir, fitbit_json, grids, parquet  # noqa: F401  (registers the readers)

    return [cls() for cls in sorted(READERS.values(), key=lambda c: (c.order, c.format))]


def reader(name: str) -> Reader:
    readers_in_order()
    try:
        return READERS[name]()
    except KeyError:
        raise ExplorerError(f"no reader named {name!r}{did_you_mean(name, READERS)}; readers: {', '.join(sorted(READERS))}") from None
