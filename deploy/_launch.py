"""What the launchers share: the explorer command they run on the cluster they start."""

from __future__ import annotations

import argparse


def parse_with_command(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser``'s arguments, then the explorer command to run (refresh or ingest, with its own)."""
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the explorer command and its arguments: refresh [--full] | ingest PATH ...")
    args = parser.parse_args(argv)
    if not args.command or args.command[0] not in ("refresh", "ingest"):
        parser.error("give the command to run on the cluster: refresh [...] or ingest PATH [...]")
    return args


def explorer_argv(args: argparse.Namespace, scheduler: str) -> list[str]:
    """The ``explorer`` arguments that run ``args.command`` on the lake, on the cluster at ``scheduler``."""
    return ["--lake", args.lake, args.command[0], "--scheduler", scheduler, *args.command[1:]]
