"""``explorer refresh`` and ``jobs``: bring the aggregate tables up to date on Dask (once, or on a
schedule), and the record of what each refresh run did (table ``job_run``)."""

from __future__ import annotations

import signal
import textwrap

import pandas as pd

from explorer.command.common import HELP_FORMATTER, open_lake
from explorer.errors import ExplorerError
from explorer.jobs import runs
from explorer.jobs.refresh import every, parse_interval, refresh
from explorer.jobs.steps import ordered
from explorer.progress import Progress, table_text

NO_REFRESH_YET = "no refresh has run on this lake yet: run `explorer refresh`"


def add_parser(commands) -> None:
    """Declare ``refresh`` and ``jobs`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("refresh", help="bring the aggregate tables up to date, on Dask", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        Bring every aggregate table up to date with the tables it is made from. Each refresh
        step declares its inputs, its output and how it partitions (by person bucket, by bucket
        and day, or whole); only the partitions whose inputs changed since the output was last
        made are recomputed, decided from the Delta log. Work runs as Dask tasks: on a local
        cluster by default, or on a running cluster named by --scheduler or
        $EXPLORER_DASK_SCHEDULER (its workers must see the lake at the same path). Each output
        switches in one commit; a refresh killed at any moment leaves the previous aggregates
        readable and the next run finishes the work. Every step is recorded in job_run.
        Exit status 1 if a step failed (its output stays as it was), 2 if another refresh holds
        the lake (use --wait to queue)."""),
                            epilog="examples:\n  explorer refresh\n  explorer refresh --scheduler tcp://10.0.0.5:8786\n"
                                   "  explorer refresh --every 1h          # a long-running scheduler process\n"
                                   "  explorer refresh --step data_availability --full")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 "
                   "(default: $EXPLORER_DASK_SCHEDULER, else a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="local cluster size (default: CPU count, at most 8)")
    p.add_argument("--step", action="append", metavar="NAME", help="run only this step (repeatable); see `explorer jobs --steps`")
    p.add_argument("--full", action="store_true", help="recompute every partition, changed or not")
    p.add_argument("--wait", action="store_true", help="queue behind a refresh already running instead of exiting")
    p.add_argument("--every", default=None, metavar="INTERVAL", help="keep running: refresh now and every 90s/15m/1h/1d")
    p.set_defaults(func=cmd_refresh)

    p = commands.add_parser("jobs", help="list refresh runs (job_run) or the steps of one run", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        List the latest refresh runs, newest first, with how many steps succeeded, were up to
        date, failed or were skipped; with RUN_ID, that run's steps: input versions read, output
        version written, rows, tasks, partitions and, for a failed step, the partition and the
        error. --steps lists the registered refresh steps."""))
    p.add_argument("run_id", nargs="?", default=None, help="one run to show step by step")
    p.add_argument("--limit", type=int, default=20, help="runs to list (default 20)")
    p.add_argument("--steps", action="store_true", help="list the registered refresh steps, in run order")
    p.set_defaults(func=cmd_jobs)


def cmd_refresh(args) -> int:
    """Refresh once (exit status 1 if a step failed), or now and every ``--every`` until stopped."""
    lake = open_lake(args)
    options = dict(scheduler=args.scheduler, workers=args.workers, steps=args.step or None, full=args.full, wait=args.wait)
    if args.every:
        interval = parse_interval(args.every)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        print(f"refreshing {lake.location} now and every {args.every} (Ctrl-C or SIGTERM stops after the current run)", flush=True)
        try:
            every(lake, interval, on_report=lambda r: print(r, flush=True), stop=lambda: bool(stopping),
                  progress=Progress("refresh"), **options)
        except KeyboardInterrupt:
            pass
        return 0
    report = refresh(lake, progress=Progress("refresh"), **options)
    print(report)
    print("History: `explorer jobs`; one run's steps: `explorer jobs RUN_ID`.")
    return 1 if report.failed else 0


def cmd_jobs(args) -> int:
    """The registered steps (``--steps``), one run's steps (RUN_ID), or the latest runs."""
    if args.steps:
        print(table_text(pd.DataFrame([{"step": s.name, "inputs": ", ".join(s.inputs), "output": s.output,
                                        "partition": s.partition, "description": s.description} for s in ordered()])))
        return 0
    lake = open_lake(args)
    if args.run_id:
        if not lake.has_table("job_run"):
            raise ExplorerError(NO_REFRESH_YET)
        steps = lake.sql("SELECT step, status, started_at, duration_s, input_versions, output_table, output_version, "
                         "rows_written, tasks, partitions, error FROM job_run WHERE run_id = ? ORDER BY started_at", [args.run_id])
        if steps.empty:
            known = runs(lake, 5)["run_id"].tolist()
            raise ExplorerError(f"no refresh run {args.run_id!r}; latest: {', '.join(known) or 'none'}")
        print(table_text(steps))
        return 0
    history = runs(lake, args.limit)
    print(table_text(history) if len(history) else NO_REFRESH_YET)
    return 0
