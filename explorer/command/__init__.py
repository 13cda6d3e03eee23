"""The ``explorer`` command: one module per group of sub-commands, each declaring its commands'
arguments beside their handlers (``add_parser(commands)``), and :func:`main`, which parses the
command line, runs the handler and turns the errors a user can act on into a message and an exit
status.

=================  ================================================
module             commands
=================  ================================================
``catalog``        catalog, verify, versions, lineage
``query``          sql
``ingest``         ingest, quality, synth
``refresh``        refresh, jobs
``wearables``      wearables
``exposure``       exposure
``ageing``         ageing
``privacy``        export, count, budget, erase, audit
``cohort``         cohort
``federation``     federation (a site), federate (a coordinator)
``serve``          serve, users, demo, lab
=================  ================================================

The analyses the commands run live in the library (``explorer.privacy.release``,
``explorer.exposure.point`` and the rest), so that a notebook calls what the command calls.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from explorer import __version__
from explorer.command import (ageing, analysis, catalog, cohort, exposure, federation, ingest, privacy, query, refresh, serve,
                              wearables)
from explorer.command.common import EPILOG_LAKE, ROLES
from explorer.errors import ExplorerError

#: in the order ``explorer --help`` lists their commands
COMMAND_MODULES = (catalog, query, ingest, refresh, wearables, exposure, ageing, analysis, privacy, cohort, federation, serve)


def build_parser() -> argparse.ArgumentParser:
    """The ``explorer`` parser: the options every command shares, and each module's commands."""
    parser = argparse.ArgumentParser(
        prog="explorer",
        description="Cohort Explorer: a versioned lake of wearable, exposure and lab data, "
                    "with analytics, dashboards and notebooks on top.",
        epilog=EPILOG_LAKE + " Run `explorer COMMAND --help` for each command.",
    )
    parser.add_argument("--lake", metavar="PATH", default=None,
                        help="lake folder, or s3://bucket/prefix for a lake on S3-compatible object storage "
                             "(default: $EXPLORER_HOME or ./explorer-data)")
    parser.add_argument("--storage-option", metavar="KEY=VALUE", action="append", default=[],
                        help="for an s3:// lake: an S3 setting over the environment's, e.g. "
                             "AWS_ENDPOINT_URL=http://host:8333, AWS_REGION=eu-west-1, AWS_ALLOW_HTTP=true "
                             "(repeatable; credentials are better left in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    parser.add_argument("--role", choices=ROLES, default=None,
                        help="role to act in (default: $EXPLORER_ROLE, else the least role the command needs); "
                             "recorded in the audit log")
    parser.add_argument("--version", action="version", version=f"cohort-explorer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parser(commands)
    return parser


def main(argv=None) -> int:
    """Run the ``explorer`` command line ``argv`` (default: the process's arguments).

    Returns
    -------
    int
        The exit status: the command's own (0 success; see each command's help for others), 2
        for an error the user can act on (printed as ``error: ...`` on standard error, as is a
        failed query), 0 when the reader of the output went away (a closed pipe).
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except duckdb.Error as exc:
        print(f"error: the query failed: {exc}", file=sys.stderr)
        return 2
