"""The lake: versioned Delta tables, a raw zone, lineage, integrity checks and DuckDB access."""

from explorer.lake.lake import Lake, default_root, is_lake, open
from explorer.lake.lineage import Lineage
from explorer.lake.raw import RawFile, RawZone
from explorer.lake.sandbox import SandboxedConnection
from explorer.lake.integrity import VerifyReport

__all__ = ["Lake", "Lineage", "RawFile", "RawZone", "SandboxedConnection", "VerifyReport", "default_root", "is_lake", "open"]
