"""What the command modules share: the lake named by ``--lake``, the role a command acts in, its
audit entry, the help layout, and the checks and page saving several commands make alike.

Imports of Panel stay inside the functions: it takes a good part of a second to import, and
``explorer --help`` (which imports every command module) does not need it.
"""

from __future__ import annotations

import argparse
import os

import explorer
from explorer.errors import ExplorerError
from explorer.lake import Lake
from explorer.lake.engine import current_user
from explorer.privacy import ACCESS, PROFILES, AuditLog, require
from explorer.privacy import ROLES as PRIVACY_ROLES

EPILOG_LAKE = ("The lake is --lake PATH (a folder, or s3://bucket/prefix with AWS_ENDPOINT_URL and credentials in the "
               "environment), else $EXPLORER_HOME, else ./explorer-data.")

#: the choices of --role and --profile: the privacy layer's own lists (a profile added there is a
#: choice here)
ROLES = list(PRIVACY_ROLES)
DISCLOSURE_PROFILES = list(PROFILES)

#: keeps the line breaks of a command's description and epilog, where its examples are laid out
HELP_FORMATTER = argparse.RawDescriptionHelpFormatter


def open_lake(args: argparse.Namespace, *, create: bool = False) -> Lake:
    """The lake of ``--lake`` (else ``$EXPLORER_HOME``, else ``./explorer-data``).

    Only a command that writes a new lake (``ingest``, ``demo``) passes ``create``: any other
    refuses a folder without a lake (exit 2) rather than make an empty one and report on it.
    """
    from explorer.lake.storage import parse_storage_options

    options = parse_storage_options(getattr(args, "storage_option", None)) or None
    return explorer.open(args.lake, create=create, storage_options=options)


def acting_role(args: argparse.Namespace, access: str, what: str) -> str:
    """The role a command acts in: ``--role``, else ``$EXPLORER_ROLE``, else the least role the
    command needs (someone with a shell on the lake's files has that anyway).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (its ``role``, when the command has one).
    access : str
        The kind of access the command needs, a key of :data:`explorer.privacy.ACCESS`.
    what : str
        The command, as named in the refusal.

    Returns
    -------
    str
        The role, once checked to allow ``access``.

    Raises
    ------
    explorer.privacy.PermissionDenied
        When the role given allows too little.
    """
    role = getattr(args, "role", None) or os.environ.get("EXPLORER_ROLE") or ACCESS[access]
    require(role, access, what)
    return role


def record_audit(lake: Lake, role: str, action: str, **details) -> None:
    """One audit-log entry for a command-line user: on the command line the user is the account
    that runs the command (roles are checked by :func:`acting_role`)."""
    AuditLog(lake).record(user=current_user(), role=role, action=action, **details)


def require_tables(lake: Lake, tables, *, first: str = "run `explorer refresh` first", read: bool = False) -> None:
    """Refuse, saying what to run ``first``, when a table the command reads is not in the lake yet.

    With ``read``, each table is then read once (a query of no rows), so that one whose files
    cannot be read fails here, before any work, with the query's own message.
    """
    for table in tables:
        if not lake.has_table(table):
            raise ExplorerError(f"table {table} is not there yet: {first}")
    if read:
        for table in tables:
            lake.sql(f"SELECT 1 FROM {table} LIMIT 0")


def save_page(view, out: str) -> None:
    """Save a Panel view as a standalone HTML page (resources inline, so it opens offline)."""
    import panel as pn

    pn.panel(view).save(out, embed=False, resources="inline")
    print(f"wrote {out}: open it in a browser")
