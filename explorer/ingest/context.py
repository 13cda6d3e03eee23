"""`Context`: everything a reader is handed besides the file itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from explorer.ingest.pseudonym import Pseudonymizer
from explorer.ingest.reference import Reference


@dataclass(frozen=True, slots=True)
class Context:
    """What a reader may use while it reads one file.

    The ingest builds one per file; it is frozen and slotted, so a reader sees exactly these
    fields and nothing can be attached to it afterwards.

    Attributes
    ----------
    pseudonymizer : Pseudonymizer
        Keyed HMAC of source identifiers; readers call :meth:`pseudonymize`.
    now : pandas.Timestamp
        When the ingest started, as naive wall-clock time (source times carry no zone either): the
        zone of the time given is dropped, and the ingest gives UTC unless told another ``now``. A
        reader refuses a date after it as "in the future".
    source_name : str
        The file's name as received: relative to the folder ingested, ``archive.zip!member`` for
        a member of a zip. Some formats say whose data a file is only in its path (the
        participant folder of a Fitbit export).
    source_sha256 : str
        SHA-256 of the file's bytes, its name in the raw zone: what a reader names its
        content-addressed output by (a Zarr store).
    arrays_root : Path
        The lake's folder of Zarr stores (``<lake root>/arrays``).
    reference : Reference
        Lookups in the lake and in this ingest's reference files, read first: time zones of
        where people lived, wide lab column mappings, FHIR Patient pseudonyms.
    participant : str or None
        The source identifier of the person whose data the whole delivery is, where its layout
        names nobody (a Google Takeout folder): ``ingest(..., participant=)`` or
        ``explorer ingest --participant``.
    """

    pseudonymizer: Pseudonymizer
    now: pd.Timestamp
    source_name: str
    source_sha256: str
    arrays_root: Path
    reference: Reference
    participant: str | None = None

    def __post_init__(self):
        stamp = pd.Timestamp(self.now)
        # readers compare it with zone-less source times: keep the wall time, drop the zone
        naive = stamp.tz_localize(None) if stamp.tzinfo else stamp
        object.__setattr__(self, "now", naive)  # the frozen dataclass's own way to set a field once

    def pseudonymize(self, values) -> pd.Categorical:
        """Pseudonyms of ``values``, missing staying missing, one HMAC per distinct value.

        Parameters
        ----------
        values : array-like of str
            Source person identifiers.

        Returns
        -------
        pandas.Categorical
            A categorical, because a file holds few people in many rows: codes are cheap to carry,
            compare and write (Parquet dictionary encoding) where millions of strings are not.
        """
        codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
        return pd.Categorical.from_codes(codes, categories=pd.Index(self.pseudonymizer.many(uniques), dtype=object))

    def pseudonym(self, source_id: str) -> str:
        """The pseudonym of one source identifier (a file's one person, a FHIR resource's
        subject): what ``pseudonymize([source_id])[0]`` gives, without building a categorical
        for every resource of a bundle."""
        return self.pseudonymizer(source_id)
