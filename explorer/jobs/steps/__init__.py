"""Refresh steps: what an aggregate table is made from, and how its work splits into partitions.

A step is a subclass of :class:`RefreshStep` with a name, found in :data:`STEPS` by that name
(as xclim finds indicators and Lumen finds sources). The suite's steps live in
``explorer/jobs/steps/<domain>.py``; they and a site package's steps are found through the
``explorer.steps`` entry points::

    [project.entry-points."explorer.steps"]
    my_site = "my_site.steps"     # a module defining RefreshStep subclasses

A step declares

- ``inputs``: the lake tables it reads (unified tables, or the outputs of other steps, which
  orders the steps: a step runs after the steps whose outputs it reads);
- ``output``: the table it writes, with a catalog entry in ``data_catalog/``;
- ``partition``: how its work and its output split. ``"person_bucket"``: by a stable hash of
  ``person_id`` (:func:`person_bucket`); ``"person_bucket_day"``: by bucket and local day, for
  person-day tables, so one new day of data recomputes only that day; ``"whole"``: the step is
  small and is recomputed whole when any input changed;
- ``time_columns``: for ``person_bucket_day``, the column of each input that places a row on a day;
- ``compute(con, partition)``: the rows of the output for one partition, from DuckDB views of the
  inputs pinned at the versions this refresh reads. It must be a pure function of those rows: the
  same inputs give the same output on any worker, which is what makes a killed or retried task safe.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass
from datetime import date
from importlib.metadata import entry_points
from typing import ClassVar

import pandas as pd

from explorer.errors import ExplorerError, did_you_mean

STEPS: dict[str, type[RefreshStep]] = {}
PARTITIONINGS = ("whole", "person_bucket", "person_bucket_day")
N_BUCKETS = 32  # part of the output layout: changing it means a full refresh


def person_bucket(person_id: str, n_buckets: int = N_BUCKETS) -> int:
    """Stable bucket of a pseudonym: where its first 32 bits (8 hex digits) fall when that range
    is cut into ``n_buckets`` equal slices, ``floor(int(person_id[:8], 16) * n_buckets / 2**32)``.

    Pseudonyms are HMAC-SHA256 hex digests, so buckets are evenly filled, the same on every
    machine and in every release (Python's ``hash`` is salted per process), and each bucket is
    one contiguous range of pseudonyms: a task reading a bucket can skip every Parquet row group
    whose person_id statistics lie outside it (ingest writes rows clustered by person_id).
    """
    return (int(person_id[:8], 16) * n_buckets) >> 32


def bucket_sql(column: str = "person_id", n_buckets: int = N_BUCKETS) -> str:
    """:func:`person_bucket` as a DuckDB expression."""
    return f"CAST((CAST('0x' || substr({column}, 1, 8) AS UBIGINT) * {int(n_buckets)}) >> 32 AS INTEGER)"


def bucket_bounds(bucket: int, n_buckets: int = N_BUCKETS) -> tuple[str, str | None]:
    """The pseudonyms of ``bucket``: ``low <= person_id < high`` (high None for the last bucket)."""
    low = f"{-(-(bucket << 32) // n_buckets):08x}"  # the first 8-hex prefix in the bucket
    high = None if bucket + 1 >= n_buckets else f"{-(-((bucket + 1) << 32) // n_buckets):08x}"
    return low, high


@dataclass(frozen=True)
class Partition:
    """The slice of a step's output one task computes: person buckets and, for day-partitioned
    steps, local days (None: all of them)."""

    buckets: tuple[int, ...] | None = None
    days: tuple[date, ...] | None = None

    def describe(self) -> str:
        parts = []
        if self.buckets is not None:
            parts.append(f"buckets {_ranges(self.buckets)}")
        if self.days is not None:
            parts.append(f"days {self.days[0]}..{self.days[-1]} ({len(self.days)})" if len(self.days) > 1 else f"day {self.days[0]}")
        return ", ".join(parts) or "whole table"

    def where(self, time_column: str | None = None, person_column: str = "person_id") -> str:
        """SQL condition selecting this partition's input rows; ``time_column`` places a row on a day.
        The day range comes first so DuckDB can skip Parquet row groups by their statistics."""
        clauses = []
        if self.days is not None and time_column:
            first, last = min(self.days), max(self.days)
            clauses.append(f"{time_column} >= DATE '{first.isoformat()}' AND {time_column} < DATE '{last.isoformat()}' + INTERVAL 1 DAY")
            if len(self.days) != (last - first).days + 1:
                days = ", ".join(f"DATE '{d.isoformat()}'" for d in self.days)
                clauses.append(f"CAST({time_column} AS DATE) IN ({days})")
        if self.buckets is not None:
            clauses.append(buckets_where(self.buckets, person_column))
        return " AND ".join(clauses) or "TRUE"


def buckets_where(buckets, person_column: str = "person_id") -> str:
    """SQL selecting the pseudonyms of ``buckets`` as ranges of ``person_column`` (which Parquet
    statistics can prune), one range per run of consecutive buckets."""
    ranges = []
    for first, last in _runs(sorted(buckets)):
        low, _ = bucket_bounds(first)
        _, high = bucket_bounds(last)
        ranges.append(f"({person_column} >= '{low}'" + (f" AND {person_column} < '{high}')" if high else ")"))
    return "(" + " OR ".join(ranges) + ")" if ranges else "FALSE"


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """``[0, 1, 2, 5, 7, 8]`` as ``[(0, 2), (5, 5), (7, 8)]``."""
    runs = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _ranges(values) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``0-2,5,7-8``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in _runs(sorted(values)))


class RefreshStep:
    """Base class of refresh steps; see the module notes."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    output: ClassVar[str] = ""
    partition: ClassVar[str] = "whole"
    time_columns: ClassVar[dict[str, str]] = {}
    #: inputs a step can run without (their modality may not have arrived yet)
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    #: for person_bucket_day: how many following days a changed day's rows can change too
    #: (a window that looks back across midnight, a night counted for the morning it ends)
    days_affected_after: ClassVar[int] = 0
    #: for person_bucket_day: "month" when the output has one row per calendar month (the changed
    #: days become their months, passed to compute as the months' first days), and the output
    #: column that holds a row's day or month
    period: ClassVar[str | None] = None
    output_day_column: ClassVar[str] = "date"
    #: the lake's root, set by the runner before compute: where a step finds arrays (Zarr grids)
    lake_root: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        if cls.partition not in PARTITIONINGS:
            raise ExplorerError(f"step {cls.name}: partition {cls.partition!r}; expected one of {', '.join(PARTITIONINGS)}")
        if cls.partition == "person_bucket_day":
            missing = [t for t in cls.inputs if t not in cls.time_columns]
            if missing:
                raise ExplorerError(f"step {cls.name}: partition person_bucket_day needs a time column for {', '.join(missing)}")
        STEPS[cls.name] = cls

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        raise NotImplementedError

    def empty_output(self, columns=None) -> pd.DataFrame:
        """No rows, but the catalog's column types: an empty frame built as ``{c: []}`` is all
        float64, and a date or string column of the output then cannot take it (``cannot store
        double as date32[day]``, event_exposure on a lake with no events).

        Parameters
        ----------
        columns : list of str, optional
            The columns, in order (default: the output's catalog columns); one the catalog does
            not declare is an empty object column.
        """
        from explorer.catalog import default_catalog

        entry = default_catalog().get(self.output)
        typed = entry.arrow_schema().empty_table().to_pandas() if entry is not None else pd.DataFrame()
        columns = list(typed.columns) if columns is None else list(columns)
        return pd.DataFrame({c: typed[c] if c in typed.columns else pd.Series([], dtype=object) for c in columns})

    def available(self, con, table: str) -> bool:
        """Whether ``table`` has a view on ``con`` (an optional input may be absent)."""
        return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [table]).fetchall()[0][0])


def step(name: str) -> RefreshStep:
    load_steps()
    try:
        return STEPS[name]()
    except KeyError:
        raise ExplorerError(f"no refresh step {name!r}{did_you_mean(name, STEPS)}; steps: {', '.join(sorted(STEPS))}") from None


#: entry-point group through which packages declare steps: each entry point names a module that
#: defines RefreshStep subclasses (the suite's own, ``explorer.jobs.steps.<domain>``, are declared
#: the same way in its pyproject.toml)
ENTRY_POINT_GROUP = "explorer.steps"

#: comma-separated modules that register more steps, for a module not packaged with an entry
#: point (a notebook's experiment); set it where the client *and* the Dask workers start
STEP_MODULES_ENV = "EXPLORER_STEP_MODULES"

#: the suite's own step modules: their absence means the package's metadata is stale
_OWN_ENTRY_POINTS = ("overview", "wearables", "exposure", "ageing", "cohorts")


def load_steps() -> dict[str, type[RefreshStep]]:
    """Import every step module declared in the ``explorer.steps`` entry points (the suite's own and
    site plugins') and in ``$EXPLORER_STEP_MODULES``, and return every step this process knows by name.

    Each process (client and every Dask worker) finds steps this way, so a site package installed
    where they run is enough: no variable to set. The entry points are read once per search path
    and variable (reading them costs about 15 ms, and every task of a refresh looks its step up).
    The result includes steps of modules imported earlier and no longer declared (erasure must
    still find their outputs); :func:`active_steps` is the set a refresh runs by default."""
    _import_step_modules(tuple(sys.path), os.environ.get(STEP_MODULES_ENV, ""))
    return STEPS


def active_steps() -> dict[str, type[RefreshStep]]:
    """The steps of the modules declared now (entry points and ``$EXPLORER_STEP_MODULES``), by name.

    A module named in the variable once and no longer (a test's failing step, a notebook's
    experiment) stays imported, and its classes stay in :data:`STEPS`; a refresh of "every step"
    must not run them, since the workers started without the variable do not know them."""
    modules = _import_step_modules(tuple(sys.path), os.environ.get(STEP_MODULES_ENV, ""))
    declared = {cls for module in modules for cls in vars(module).values()
                if isinstance(cls, type) and issubclass(cls, RefreshStep) and cls.name}
    return {name: cls for name, cls in STEPS.items() if cls in declared}


@functools.lru_cache(maxsize=8)
def _import_step_modules(search_path: tuple[str, ...], named: str) -> tuple:
    declared = entry_points(group=ENTRY_POINT_GROUP)
    missing = set(_OWN_ENTRY_POINTS) - {point.name for point in declared}
    if missing:
        raise ExplorerError(f"the {ENTRY_POINT_GROUP!r} entry points of cohort-explorer are missing ({', '.join(sorted(missing))}): "
                            "its installed metadata is older than the code; reinstall it (`pip install -e .` in a checkout)")
    modules = []
    for point in declared:
        try:
            modules.append(importlib.import_module(point.value.split(":")[0]))
        except Exception as exc:
            raise ExplorerError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINT_GROUP}) cannot be "
                                f"imported: {exc}; install the package that declares it where the client and the "
                                "workers run, or uninstall it") from exc
    for module in filter(None, (m.strip() for m in named.split(","))):
        try:
            modules.append(importlib.import_module(module))
        except ImportError as exc:
            raise ExplorerError(f"${STEP_MODULES_ENV} names {module!r}, which cannot be imported ({exc}); "
                                "install it where the client and the workers run, or fix the variable") from None
    return tuple(modules)


def ordered(names=None) -> list[RefreshStep]:
    """Steps in an order where every step comes after the steps whose outputs it reads."""
    active = active_steps()
    chosen = [step(n) for n in (names or sorted(active))]
    producers = {cls.output: cls.name for cls in active.values()}
    producers.update({s.output: s.name for s in chosen})
    done, order, visiting = set(), [], set()

    def visit(s: RefreshStep):
        if s.name in done:
            return
        if s.name in visiting:
            raise ExplorerError(f"refresh steps read each other's outputs in a cycle through {s.name}")
        visiting.add(s.name)
        for table in s.inputs:
            if table in producers and producers[table] != s.name:
                visit(step(producers[table]))
        visiting.discard(s.name)
        done.add(s.name)
        order.append(s)

    for s in chosen:
        visit(s)
    return order
