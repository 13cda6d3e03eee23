"""Roles: who may see what, checked where the data is read.

Three roles, each allowed everything the one before it is:

- ``public``: aggregates only, every count under disclosure control;
- ``researcher``: pseudonymised person-level rows (no direct identifiers), SQL, exports under
  Safe Harbor;
- ``steward``: ingest, erasure, the audit log.

A view, an export or a query asks :func:`require` before it reads anything, so hiding a widget is
never the only thing standing between a public page and a person's rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from explorer.catalog.entries import SENSITIVITY_TIERS
from explorer.errors import ExplorerError, did_you_mean
from explorer.lake.engine import current_user, referenced_tables

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: Roles in order of trust: each may do everything the ones before it may.
#: (the catalog's sensitivity tiers: a dataset's tier is the least role that reads it)
ROLES = SENSITIVITY_TIERS

#: The least role each kind of access needs.
ACCESS = {
    "aggregates": "public",
    "person_rows": "researcher",
    "sql": "researcher",
    "export": "researcher",
    # counting persons under a definition of one's own: a public user could ask two definitions
    # that differ by one criterion and subtract the counts (differencing), so public users see
    # the attrition of saved definitions only, which a researcher wrote and reviewed
    "define_cohorts": "researcher",
    "ingest": "steward",
    "erase": "steward",
    "audit": "steward",
    # a site answering federated studies on its lake, and its output airlock, are the steward's
    "serve_federation": "steward",
    # running a study across sites sees only what each site released; saving it writes a public table
    "coordinate": "researcher",
}


class PermissionDenied(ExplorerError, PermissionError):
    """A role asked for something only a more trusted role may have."""


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else an error that lists them."""
    if role not in ROLES:
        raise ExplorerError(f"role {role!r} is not a role; use one of {', '.join(ROLES)}{did_you_mean(role, ROLES)}")
    return role


def allows(role: str, access: str) -> bool:
    """Whether ``role`` may have ``access`` (a key of :data:`ACCESS`)."""
    if access not in ACCESS:
        raise ExplorerError(f"access {access!r} is unknown; use one of {', '.join(ACCESS)}{did_you_mean(access, ACCESS)}")
    return ROLES.index(check_role(role)) >= ROLES.index(ACCESS[access])


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user name and the role they act in."""

    user: str
    role: str

    def __post_init__(self):
        check_role(self.role)

    @classmethod
    def current(cls, role: str | None = None) -> Principal:
        """The person at this terminal, in ``role`` (default ``$EXPLORER_ROLE``, else researcher:
        someone with a shell on the lake's machine can read its files anyway)."""
        return cls(current_user(), role or os.environ.get("EXPLORER_ROLE", "researcher"))


def require(principal: Principal | str, access: str, what: str) -> None:
    """Raise :class:`PermissionDenied` unless ``principal`` may have ``access``; ``what`` names
    the thing asked for in the message."""
    role = principal.role if isinstance(principal, Principal) else principal
    if not allows(role, access):
        needed = ACCESS[access]
        raise PermissionDenied(
            f"{what} needs the {needed} role ({access.replace('_', '-')}); the {role} role sees "
            + ("aggregates under disclosure control only" if role == "public" else "less than that")
            + f". Ask a data steward for {needed} access, or use an aggregate view.")



def table_tier(lake: Lake, name: str) -> str:
    """The least role that reads table ``name``: its catalog ``sensitivity`` tier (steward for a
    table without a catalog entry)."""
    entry = lake.catalog.get(name)
    return entry.sensitivity if entry is not None and entry.sensitivity in ROLES else "steward"


def readable_tables(lake: Lake, role: str) -> list[str]:
    """Tables of ``lake`` that ``role`` may read: those whose catalog ``sensitivity`` tier is at
    or below the role (a table without a catalog entry is steward-only)."""
    rank = ROLES.index(check_role(role))
    return [name for name in lake.tables() if ROLES.index(table_tier(lake, name)) <= rank]


def query_as(lake: Lake, role: str, query: str, params=None, versions=None):
    """``query`` run as ``role`` may run it: a steward on the lake's own connection; anyone else
    on a sandboxed one that holds only the tables of their catalog tier and can open no file (so
    ``read_csv('<lake>/raw/...')`` finds nothing). Returns a pandas DataFrame."""
    if role == "steward":
        return lake.sql(query, params or None, versions=versions or None)
    readable = readable_tables(lake, role)
    hidden = sorted((referenced_tables(query) or set()) & set(lake.tables()) - set(readable))
    if hidden:  # said here, with the role it needs: the sandbox knows only that the table is not on it
        needs = {name: table_tier(lake, name) for name in hidden}
        raise PermissionDenied(
            "the query reads " + ", ".join(f"{name} (needs the {tier} role)" for name, tier in needs.items())
            + f", which the {role} role may not read (catalog sensitivity tier); ask a data steward, "
            "or query a table of your tier (`explorer catalog` shows each table's tier)")
    with lake.sandbox(tables=readable, memory_limit="8GB", threads=os.cpu_count() or 2) as con:
        return con.sql(query, params or None, versions=versions or None)


def require_tables(lake: Lake, role: str, tables, what: str) -> None:
    """Raise :class:`PermissionDenied` if ``role`` may not read every one of ``tables``."""
    allowed = set(readable_tables(lake, role))
    denied = sorted(set(tables) & set(lake.tables()) - allowed)
    if denied:
        raise PermissionDenied(f"{what} reads {', '.join(denied)}, which the {role} role may not read (catalog "
                               "sensitivity tier); ask a data steward, or use a table of your tier")
