"""Errors the suite raises on purpose.

Every message says what was wrong, where (file, table, row, key) and what to do next, so that a
user who sees only the message can act on it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ExplorerError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class TableNotFoundError(ExplorerError, LookupError):
    """A table name that the lake does not hold."""


class VersionNotFoundError(ExplorerError, LookupError):
    """A table version that does not exist (yet, or any more)."""


class ConcurrentWriteError(ExplorerError):
    """Another writer committed a conflicting change first. Retrying the write is safe."""

    retryable = True


class SchemaError(ExplorerError, ValueError):
    """Data whose columns or types do not match the table's catalog entry."""


class LineageError(ExplorerError, ValueError):
    """A lineage reference that does not name an existing raw file or table version."""


class CatalogError(ExplorerError, ValueError):
    """A catalog entry that does not validate against the catalog schema."""


class SandboxViolation(ExplorerError, PermissionError):
    """A statement a sandboxed (dashboard) connection is not allowed to run."""


class QueryError(ExplorerError):
    """A query DuckDB refused or failed, told in the suite's words (the DuckDB error is its
    ``__cause__``)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def shorten(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for one-line reasons."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
