"""Readers: one per source format, found by name, tried in a documented order.

A reader says whether a file looks like its format (``sniff``: cheap, from the first bytes),
then parses and validates it (``read``). Detection goes by content, not by extension alone:
the first reader, in ``order``, whose sniff accepts the file and whose read succeeds wins. A
file no reader accepts is quarantined with what each reader said. Every reader, the suite's
own and those site packages add through the ``explorer.readers`` entry points, is in the one
registry :data:`READERS` (:mod:`explorer.ingest.readers.registry` says how to add one).
"""

from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult
from explorer.ingest.readers.registry import (
    ENTRY_POINT_GROUP,
    READERS,
    ReaderPluginError,
    ReaderRegistry,
    UnknownReaderError,
    reader,
    readers_in_order,
    reset_readers,
)

__all__ = ["ENTRY_POINT_GROUP", "READERS", "Context", "ReadResult", "Reader", "ReaderError", "ReaderPluginError",
           "ReaderRegistry", "UnknownReaderError", "reader", "readers_in_order", "reset_readers"]
