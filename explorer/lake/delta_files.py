"""Where the files of a Delta version are: keys under the table, or local paths."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
from deltalake import DeltaTable


def data_files(dt: DeltaTable) -> list[Path]:
    """Local paths of the data files of one version.

    Log paths are percent-encoded once more than the names on disk (a partition value
    ``a b`` is the folder ``k=a%20b``), and ``file_uris()`` encodes the root but not that extra
    level, so paths are rebuilt from the log: one decoding, joined to the decoded table root.
    """
    root = Path(unquote(urlparse(dt.table_uri).path))
    return [root / relative for relative in data_keys(dt)]


def data_keys(dt: DeltaTable) -> list[str]:
    """The data files of one version relative to the table's root (decoded once), on any storage."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    return [unquote(path) for path in actions["path"].to_pylist()]
