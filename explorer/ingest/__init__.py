"""Ingestion: detect -> parse -> validate -> unify; originals kept; bad input quarantined.

``lake.ingest(path)`` / ``explorer ingest PATH``. See :mod:`explorer.ingest.run`.
"""

from explorer.ingest.pseudonym import Pseudonymizer, PseudonymKeyError
from explorer.ingest.readers import READERS, Reader, ReaderError, ReadResult, readers_in_order
from explorer.ingest.run import IngestReport, ingest
from explorer.lake.lake import register_ingest

register_ingest(ingest)  # lake.ingest(path): the lake (storage) does not import this layer

__all__ = ["READERS", "IngestReport", "PseudonymKeyError", "Pseudonymizer", "ReadResult", "Reader", "ReaderError",
           "ingest", "readers_in_order"]
