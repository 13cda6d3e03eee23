"""`explorer refresh`: bring every aggregate table up to date with the tables it is made from.

For each step, in the order of their declared inputs:

1. pin the inputs at their current versions;
2. read, from the output table's own last commit, the input versions it was made from (the
   lineage is written in the same commit as the data, so it cannot disagree with it);
3. find the partitions the input commits since then touched (:mod:`explorer.jobs.changes`);
4. compute those partitions as Dask tasks, on a ``LocalCluster`` or on the cluster named by
   ``--scheduler`` / ``$EXPLORER_DASK_SCHEDULER``. Tasks read the pinned inputs themselves and
   return rows; they write nothing, so a task lost with its worker is simply run again;
5. swap the recomputed partitions in with one commit (``replace_where``), recording the input
   versions as lineage.

When the run ends, ``job_run`` gets a row per step, in one commit (also when the run fails or is
interrupted; a killed client leaves the outputs' lineage, which is what the next run reads, and
no rows). A step that fails leaves its output as it was and its ``job_run`` row names the partition and
the error; steps that read its output are skipped, the others run. A refresh killed at any
moment leaves every output at its last commit, which is consistent with the lineage it
records, so the next refresh recomputes exactly what is still missing. One refresh runs per
lake at a time (an exclusive lock the operating system frees with the process).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from explorer.errors import ExplorerError, shorten
from explorer.jobs import changes as changes_module
from explorer.jobs.steps import N_BUCKETS, Partition, RefreshStep, ordered
from explorer.lake.cluster import dask_client

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

JOB_RUN = "job_run"


class RefreshBusy(ExplorerError):
    """Another refresh holds this lake's refresh lock."""


@dataclass
class StepOutcome:
    step: str
    status: str  # succeeded | up_to_date | failed | skipped
    inputs: dict[str, int] = field(default_factory=dict)
    output_version: int | None = None
    rows: int = 0
    tasks: int = 0
    partitions: str = ""
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RefreshReport:
    run_id: str
    scheduler: str
    steps: list[StepOutcome]
    seconds: float

    @property
    def failed(self) -> list[StepOutcome]:
        return [s for s in self.steps if s.status == "failed"]

    def __str__(self) -> str:
        lines = [f"refresh {self.run_id} on {self.scheduler}: {len(self.steps)} steps in {self.seconds:.1f} s"]
        for s in self.steps:
            what = {"succeeded": f"{s.rows:,} rows in {s.tasks} task(s), {s.partitions} -> {{}}@{s.output_version}",
                    "up_to_date": "up to date", "failed": f"FAILED: {s.error}", "skipped": f"skipped: {s.error}"}[s.status]
            lines.append(f"  {s.step:<20} {what.replace('{}', step_output(s.step))}  ({s.seconds:.1f} s)")
        return "\n".join(lines)


def step_output(name: str) -> str:
    from explorer.jobs.steps import step

    return step(name).output


@contextmanager
def refresh_lock(lake: Lake, wait: bool = False):
    """Hold the lake's refresh lock; the holder's pid and start time are written into it."""
    if not lake.is_local:  # no flock on object storage: a lease renewed while the refresh runs
        from explorer.lake.storage import LeaseHeld, lease

        try:
            with lease(lake.storage, "_locks/refresh.lock", wait=wait):
                yield
        except LeaseHeld as held:
            raise RefreshBusy(f"another refresh is running on {lake.location} ({held.holder}); it keeps every table "
                              "consistent, so wait for it to finish, or pass --wait to queue behind it") from None
        return
    path = lake.root / "_locks" / "refresh.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RefreshBusy(f"another refresh is running on {lake.root} ({holder}); it keeps every table consistent, "
                              "so wait for it to finish, or pass --wait to queue behind it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        yield
    finally:
        handle.close()  # closing frees the lock; so does the process dying




_LAKES: dict[str, object] = {}


def compute_partition(root, step_name: str, versions: dict[str, int], partition: Partition) -> pd.DataFrame:
    """One task: the step's rows for one partition, read from the inputs pinned at ``versions``.
    ``root``: the lake's storage (a folder or an object-storage prefix with its options)."""
    from explorer.jobs.steps import step
    from explorer.lake import open as open_lake
    from explorer.lake.engine import new_connection

    name = repr(root)
    lake = _LAKES.get(name)
    if lake is None:  # a worker lives for many tasks and runs: open the lake (and its pinned snapshots) once
        lake = _LAKES[name] = open_lake(root)
    threads = 1
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):
        pass
    con = new_connection(threads=threads)
    import dask

    try:
        lake.pinned_views(con, list(versions), versions)
        instance = step(step_name)
        instance.lake_root = lake.storage
        # a step's lazy arrays (grids, the minute cube) are computed within this task, not sent
        # back to the cluster from inside it
        with dask.config.set(scheduler="synchronous"):
            return instance.compute(con, partition)
    finally:
        con.close()


def refresh(lake: Lake, *, scheduler: str | None = None, workers: int | None = None, steps=None, full: bool = False,
            wait: bool = False, progress=None, client=None, tasks_per_worker: int = 2) -> RefreshReport:
    """Bring the aggregate tables up to date; see the module notes.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); default ``$EXPLORER_DASK_SCHEDULER``,
        else a LocalCluster of ``workers`` processes. The workers must see the lake at the same path.
    steps : list of str, optional
        Run only these steps (default: all registered), in dependency order.
    full : bool
        Recompute every partition, whatever changed.
    wait : bool
        Queue behind a refresh already running instead of raising :class:`RefreshBusy`.
    client : distributed.Client, optional
        Use this client (the ``--every`` loop keeps one for its lifetime).
    """
    say = progress or (lambda done, total, label="": None)
    plan = ordered(steps)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    with refresh_lock(lake, wait=wait):
        if client is not None:
            return _run(lake, plan, client, client.scheduler_info()["address"], run_id, full, say, tasks_per_worker, started)
        with dask_client(scheduler, workers) as (own, where):
            return _run(lake, plan, own, where, run_id, full, say, tasks_per_worker, started)


def _run(lake: Lake, plan, client, where, run_id, full, say, tasks_per_worker, started) -> RefreshReport:
    outcomes: list[StepOutcome] = []
    records: list[dict] = []
    n_workers = max(1, len(client.nthreads()))
    try:
        _run_steps(lake, plan, client, where, run_id, full, say, n_workers * tasks_per_worker, outcomes, records)
    finally:  # the run's rows in one commit, also when it is interrupted: a commit per step cost 60 ms each
        _record(lake, run_id, records)
    return RefreshReport(run_id, where, outcomes, time.perf_counter() - started)


def _run_steps(lake: Lake, plan, client, where, run_id, full, say, n_tasks, outcomes, records) -> None:
    """Run ``plan``, appending each step's outcome and job_run row as it ends (the caller records
    them even when a step raises); both lists end in plan order.

    A step starts as soon as every earlier step whose output it reads has ended, and ends (its
    commit) as soon as its own tasks are done: steps that do not read each other run side by side
    on the workers, and a step never waits for an unrelated one's tasks or commit (a wave barrier
    held an incremental run's monthly step behind the daily summary it does not read).
    """
    from distributed import as_completed

    position = {step.name: k for k, step in enumerate(plan)}
    upstream = _upstream(plan)
    broken: dict[str, str] = {}  # outputs of steps that failed or were skipped this run -> which
    waiting, ended = list(plan), set()
    running: dict[str, tuple] = {}  # step name -> (step, begun, when, its _Started, futures not yet done)
    finished = as_completed()

    def end(step, begun, when, work) -> None:
        outcome = _finish_step(lake, work, client) if isinstance(work, _Started) else work
        outcome.seconds = time.perf_counter() - begun
        if outcome.status in ("failed", "skipped"):
            broken[step.output] = outcome.status
        records.append(_job_run_row(run_id, where, step, outcome, when))
        outcomes.append(outcome)
        ended.add(step.name)

    def start_ready() -> None:
        progressed = True
        while progressed:  # a step that ends at once (skipped, up to date) may free others
            progressed = False
            for step in [s for s in waiting if upstream[s.name] <= ended]:
                waiting.remove(step)
                progressed = True
                begun, when = time.perf_counter(), datetime.now(timezone.utc)
                work = _begin(lake, step, client, n_tasks, full, run_id, broken)
                if isinstance(work, _Started) and work.futures:
                    running[step.name] = (step, begun, when, work, set(work.futures))
                    finished.update(work.futures)
                else:
                    end(step, begun, when, work)

    try:
        start_ready()
        for future in finished:
            for name, (step, begun, when, work, left) in list(running.items()):
                if future not in left:
                    continue
                left.discard(future)
                done = len(work.futures) - len(left)
                say(done, len(work.futures), f"{step.name}: {done}/{len(work.futures)} tasks")
                if not left or future.status == "error":  # a failed task ends its step: the rest are cancelled
                    del running[name]
                    end(step, begun, when, work)
            start_ready()
    finally:
        outcomes.sort(key=lambda outcome: position[outcome.step])
        records.sort(key=lambda record: position[record["step"]])


def _begin(lake: Lake, step: RefreshStep, client, n_tasks: int, full: bool, run_id, broken: dict[str, str]):
    """Submit ``step``'s tasks (a :class:`_Started`), or its outcome when it has nothing to run."""
    # an optional input whose step was skipped and that the lake does not hold blocks nothing:
    # the step runs without it, as it would had that step never existed
    blocked = [t for t in step.inputs if t in broken and not (t in step.optional_inputs and not lake.has_table(t))]
    missing = [t for t in step.inputs if not lake.has_table(t) and t not in step.optional_inputs]
    if blocked or missing or not any(lake.has_table(t) for t in step.inputs):
        # a skipped input is not a failure: the reason says which, so a sparse lake reads as sparse
        failed = [t for t in blocked if broken[t] == "failed"]
        skipped = [t for t in blocked if broken[t] == "skipped"]
        reason = "; ".join([f"its input {', '.join(failed)} failed in this run"] * bool(failed)
                           + [f"its input {', '.join(skipped)} was skipped in this run"] * bool(skipped)
                           ) or f"input {', '.join(missing or step.inputs)} not in the lake yet"
        return StepOutcome(step.name, "skipped", error=reason)
    try:
        return _start_step(lake, step, client, n_tasks, full, run_id)
    except Exception as exc:  # planning or reading versions failed: this step fails, the run goes on
        return StepOutcome(step.name, "failed", error=shorten(f"{type(exc).__name__}: {exc}", 1000))


def _upstream(plan: list[RefreshStep]) -> dict[str, set[str]]:
    """Step -> the steps before it in ``plan`` (dependency order) whose outputs it reads: what
    must have ended before it starts."""
    upstream: dict[str, set[str]] = {}
    producer: dict[str, str] = {}
    for step in plan:
        upstream[step.name] = {producer[t] for t in step.inputs if t in producer}
        producer[step.output] = step.name
    return upstream


def _last_inputs(lake: Lake, step: RefreshStep) -> dict[str, int] | None:
    """Input versions the output's latest commit was made from (None: no output yet)."""
    if not lake.has_table(step.output):
        return None
    refs = lake.versions(step.output, limit=1)["inputs"].iloc[-1]
    out = {}
    for ref in refs:
        table, _, version = ref.rpartition("@")
        if table and version.isdigit():
            out[table] = int(version)
    return out


@dataclass
class _Started:
    """A step whose tasks are submitted: what its commit needs once they are done."""

    step: RefreshStep
    outcome: StepOutcome
    partitions: list[Partition]
    replace_where: str | None
    reshaped: bool
    futures: list


def _start_step(lake: Lake, step: RefreshStep, client, n_tasks: int, full: bool, run_id) -> _Started | StepOutcome:
    versions = {t: lake.version(t) for t in step.inputs if lake.has_table(t)}
    outcome = StepOutcome(step.name, "succeeded", inputs=versions)
    before = _last_inputs(lake, step)
    reshaped = _output_reshaped(lake, step)
    partitions, replace_where, described = _plan(lake, step, versions, before, full or reshaped, n_tasks)
    if reshaped:
        described = f"all partitions ({step.output}'s columns changed: the table is rebuilt)"
    if partitions is None:
        outcome.status = "up_to_date"
        return outcome
    outcome.partitions = described
    outcome.tasks = len(partitions)
    futures = [client.submit(compute_partition, lake.storage, step.name, versions, p, pure=False,
                             key=f"{step.name}-{run_id}-{k}") for k, p in enumerate(partitions)]
    return _Started(step, outcome, partitions, replace_where, reshaped, futures)


def _finish_step(lake: Lake, started: _Started, client) -> StepOutcome:
    from distributed import as_completed

    step, outcome, futures = started.step, started.outcome, started.futures
    results = []
    try:
        for future in as_completed(futures):
            failure = future.exception()
            if failure is not None:
                partition = started.partitions[futures.index(future)]
                raise _StepFailed(f"partition {partition.describe()}: {type(failure).__name__}: {failure}")
            results.append(future.result())
    except _StepFailed as exc:
        client.cancel(futures)
        outcome.status, outcome.error = "failed", shorten(str(exc), 1000)
        return outcome
    frames = [r for r in results if len(r)]
    rows = pd.concat(frames, ignore_index=True) if frames else results[0].iloc[0:0]
    inputs = [f"{t}@{v}" for t, v in sorted(outcome.inputs.items())]
    try:
        outcome.output_version = lake.write(step.output, rows, mode="overwrite", inputs=inputs,
                                            operation=f"refresh:{step.name}", replace_where=started.replace_where,
                                            schema_mode="overwrite" if started.reshaped else None)
    except Exception as exc:  # the commit did not land: the output is as it was
        traceback.print_exc()
        outcome.status, outcome.error = "failed", shorten(f"writing {step.output}: {type(exc).__name__}: {exc}", 1000)
        return outcome
    outcome.rows = len(rows)
    return outcome


class _StepFailed(Exception):
    pass


def _output_reshaped(lake: Lake, step: RefreshStep) -> bool:
    """True when the output table lacks a column its catalog entry declares, or holds one with
    another type (a new version of the suite added or changed it): then every partition is
    recomputed and the table's schema replaced in the same commit; earlier versions still read as
    they were. Columns the table has beyond the declared ones (a site step's own) are left alone."""
    entry = lake.catalog.get(step.output)
    if entry is None or not lake.has_table(step.output):
        return False
    have = pa.schema(lake.delta(step.output).schema().to_arrow())
    return any(column.name not in have.names or have.field(column.name).type != column.arrow_type
               for column in entry.schema)


def _plan(lake: Lake, step: RefreshStep, versions: dict[str, int], before: dict[str, int] | None, full: bool, n_tasks: int):
    """(partitions to compute, predicate of the rows they replace, description); partitions is
    None when nothing changed. A predicate of None replaces the whole table."""
    everything = _all_partitions(step, n_tasks)
    if full or before is None or set(before) != set(versions) or step.partition == "whole":
        if not full and before is not None and before == versions:
            return None, None, ""
        return everything, None, "all partitions"
    if before == versions:
        return None, None, ""
    buckets: set[int] = set()
    days: set = set()
    for table, version in versions.items():
        old = before[table]
        if old == version:
            continue
        if old > version:  # the input was rebuilt from scratch: its history restarted
            return everything, None, "all partitions (an input's history restarted)"
        found = changes_module.changes(lake.table_key(table), old, version, storage=lake.storage,
                                       time_column=step.time_columns.get(table) if step.partition == "person_bucket_day" else None)
        if found is None:
            return everything, None, f"all partitions ({table}'s changes could not be read from its log)"
        buckets |= found.buckets
        days |= {d for _, d in found.bucket_days}
    if not buckets:
        return None, None, ""
    if step.partition == "person_bucket_day" and step.days_affected_after:
        days |= {d + timedelta(days=k) for d in days for k in range(1, step.days_affected_after + 1)}
    if step.partition == "person_bucket_day" and step.period == "month":
        days = {d.replace(day=1) for d in days}  # a changed day recomputes its whole month
    if step.partition == "person_bucket_day":
        # the share of the output being recomputed sets how many tasks are worth their start-up:
        # one new day out of ninety is one task, not one per worker, and a month out of four one
        # task per worker (n_tasks is tasks_per_worker for each): more would each pay a task's
        # fixed cost (a connection, pinned snapshots) for a few persons' month of bitmaps
        known_days = _output_days(lake, step) or len(days)
        share = len(buckets) / N_BUCKETS * min(1.0, len(days) / max(1, known_days))
        n_tasks = max(1, min(n_tasks, math.ceil(n_tasks * share * 2)))
    groups = _split(sorted(buckets), n_tasks)
    if step.partition == "person_bucket_day":
        ordered_days = tuple(sorted(days))
        # the recomputed block is changed buckets x changed days: a superset of what changed,
        # so every changed (bucket, day) is recomputed and the rest is rewritten unchanged
        partitions = [Partition(buckets=tuple(g), days=ordered_days) for g in groups]
        described = Partition(buckets=tuple(sorted(buckets)), days=ordered_days).describe()
        day_list = ", ".join(f"DATE '{d.isoformat()}'" for d in ordered_days)
        return partitions, (f"person_bucket IN ({', '.join(map(str, sorted(buckets)))}) "
                            f"AND {step.output_day_column} IN ({day_list})"), described
    partitions = [Partition(buckets=tuple(g)) for g in groups]
    return partitions, f"person_bucket IN ({', '.join(map(str, sorted(buckets)))})", Partition(buckets=tuple(sorted(buckets))).describe()


def _output_days(lake: Lake, step: RefreshStep) -> int:
    """Distinct days (months, for a monthly step) in the step's output, from its commit
    statistics (min and max of its day column)."""
    column = step.output_day_column
    try:
        actions = pa.table(lake.delta(step.output).get_add_actions(flatten=True))
        low, high = pc.min(actions[f"min.{column}"]).as_py(), pc.max(actions[f"max.{column}"]).as_py()
    except Exception:  # no statistics: plan as if everything changed
        return 0
    if not (low and high):
        return 0
    if step.period == "month":
        return (high.year - low.year) * 12 + high.month - low.month + 1
    return (high - low).days + 1


def _all_partitions(step: RefreshStep, n_tasks: int) -> list[Partition]:
    if step.partition == "whole":
        return [Partition()]
    return [Partition(buckets=tuple(g)) for g in _split(list(range(N_BUCKETS)), n_tasks)]


def _split(values: list, n: int) -> list[list]:
    """``values`` in at most ``n`` contiguous, nearly equal runs (a run of buckets is one range of
    pseudonyms, which a task reads by skipping the row groups of all others)."""
    n = max(1, min(n, len(values)))
    size, extra = divmod(len(values), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (k < extra)
        out.append(values[start:end])
        start = end
    return out


def _job_run_row(run_id: str, where: str, step: RefreshStep, outcome: StepOutcome, started: datetime) -> dict:
    return {"run_id": run_id, "step": step.name, "status": outcome.status, "started_at": started,
            "ended_at": datetime.now(timezone.utc), "duration_s": round(outcome.seconds, 3),
            "input_versions": json.dumps({t: v for t, v in sorted(outcome.inputs.items())}),
            "output_table": step.output, "output_version": outcome.output_version, "rows_written": outcome.rows,
            "tasks": outcome.tasks, "partitions": outcome.partitions, "scheduler": where, "error": outcome.error}


def _record(lake: Lake, run_id: str, rows: list[dict]) -> None:
    """The run's job_run rows, one per step, in one commit whose lineage names each output written."""
    if not rows:
        return
    try:
        inputs = [f"{row['output_table']}@{row['output_version']}" for row in rows if row["output_version"] is not None]
        lake.write(JOB_RUN, pd.DataFrame(rows), inputs=inputs, operation=f"refresh {run_id}")
    except Exception as exc:  # the steps' own commits stand; say so rather than fail the run
        print(f"warning: job_run rows of run {run_id} not recorded: {exc}")


def runs(lake: Lake, limit: int = 20) -> pd.DataFrame:
    """The latest refresh runs, newest first: one row per run with its steps' statuses."""
    if not lake.has_table(JOB_RUN):
        return pd.DataFrame()
    return lake.sql("""
        SELECT run_id, min(started_at) AS started_at, round(sum(duration_s), 1) AS duration_s,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'up_to_date') AS up_to_date,
               count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'skipped') AS skipped,
               sum(rows_written) AS rows_written, any_value(scheduler) AS scheduler
        FROM job_run GROUP BY run_id ORDER BY started_at DESC LIMIT ?""", [limit])


def parse_interval(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``1d`` (or a bare number of seconds) in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ExplorerError(f"--every {text!r}: expected a duration such as 90s, 15m, 1h or 1d") from None
    if seconds <= 0:
        raise ExplorerError(f"--every {text!r}: the interval must be positive")
    return seconds


def every(lake: Lake, interval: float, *, on_report=print, stop=None, **options) -> None:
    """Refresh now and then every ``interval`` seconds, on one Dask client for the whole life of
    the process; a failed step or a busy lake is reported and the schedule goes on."""
    stop = stop or (lambda: False)
    with dask_client(options.pop("scheduler", None), options.pop("workers", None)) as (client, where):
        next_at = time.monotonic()
        while not stop():
            try:
                on_report(refresh(lake, client=client, **options))
            except RefreshBusy as exc:
                on_report(f"skipped this round: {exc}")
            except Exception as exc:  # a scheduler process outlives one bad round; the next may succeed
                on_report(f"this round failed ({type(exc).__name__}: {exc}); trying again at the next one")
            # after a run longer than the interval, wait for the next tick rather than firing the missed ones
            next_at = max(next_at + interval, time.monotonic())
            while not stop() and time.monotonic() < next_at:
                time.sleep(min(1.0, next_at - time.monotonic()))
