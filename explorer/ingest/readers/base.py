"""What every reader is: the :class:`Reader` interface, its result and its error.

A reader says whether a file looks like its format (``sniff``: cheap, from the first bytes),
then parses and validates it (``read``). Readers are found by their ``format`` name in
:data:`explorer.ingest.readers.READERS`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import orjson
import pandas as pd

from explorer.errors import ExplorerError
from explorer.ingest.context import Context


class ReaderError(ExplorerError):
    """The whole file cannot be read as this format; the message says why, where possible with
    the line, field or key."""


@dataclass
class ReadResult:
    """What a reader made of one file.

    ``tables`` maps unified table names to rows; every frame carries ``_row``, the 1-based
    record number in the source (a CSV data row, a bundle entry), so that accepted, quarantined
    and ignored records can be counted against ``rows_read``. ``quarantined`` holds rows the
    reader itself rejected: ``_row``, ``table``, ``reason``, ``record``. ``ignored`` counts the
    records the format allows but the suite deliberately does not store, by kind (a FHIR
    ``Immunization``, an Apple Health record type no table holds): each kind is named once per
    file in ``ingest_file.ignored``, not quarantined as if it were bad data.
    """

    rows_read: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    quarantined: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["_row", "table", "reason", "record"]))
    ignored: Counter = field(default_factory=Counter)


class Reader:
    """Base class of the readers: one subclass per source format.

    A subclass sets ``format`` (its name, lower_snake_case, unique), ``order`` (detection order:
    readers are tried from the lowest; at most :data:`explorer.ingest.reference.REFERENCE_ORDER`
    marks a reference reader, whose files are read first because later files look things up in
    them) and ``description`` (one line, shown where readers are listed), and implements
    :meth:`sniff` and :meth:`read`. It holds no state between files: one instance reads them all.
    """

    format: ClassVar[str] = ""
    order: ClassVar[int] = 100
    description: ClassVar[str] = ""

    def sniff(self, path: Path, head: bytes) -> str | None:
        """Whether ``path`` looks like this format, judged from ``head`` (its first 64 KiB).

        Parameters
        ----------
        path : Path
            The file, for a format that needs more than its first bytes (a zip's member list).
        head : bytes
            The first bytes of the file.

        Returns
        -------
        str or None
            None if the file looks like this format, else a short reason why not (shown when no
            reader accepts the file).
        """
        raise NotImplementedError

    def nearness(self, path: Path, head: bytes) -> tuple[float, str] | None:
        """How close a file this reader refused comes to its format, for the message of a file no
        reader accepts: the nearest reader names what it expected and what would make the file
        readable, instead of every reader listing why not.

        Parameters
        ----------
        path : Path
            The file.
        head : bytes
            Its first 64 KiB.

        Returns
        -------
        (float, str) or None
            The share of the expected structure found (0-1; e.g. required columns present) and a
            sentence saying what is missing and what to do; None when this reader cannot judge
            (the default).
        """
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        """Parse and validate one file into rows of unified tables.

        Parameters
        ----------
        path : Path
            The file's bytes, as kept in the raw zone.
        context : Context
            Pseudonyms, the ingest's time, the file's name and hash, and reference lookups.

        Returns
        -------
        ReadResult

        Raises
        ------
        ReaderError
            When the file as a whole cannot be read as this format (rows that fail are
            quarantined in the result instead).
        """
        raise NotImplementedError


def load_json(data: bytes):
    """``json.loads(data)``, decoded by orjson where it can (several times faster on an export's
    thousands of records). Whatever orjson refuses (invalid JSON, text not UTF-8, ``NaN``, an
    integer beyond 64 bits, UTF-16) is decoded again by :mod:`json`, which accepts or refuses it
    with its own exception: a reader reports the same line, column or byte either way."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
