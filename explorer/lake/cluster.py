"""The Dask cluster ingest and refresh run on: a LocalCluster by default, or an existing one.

A cluster whose workers share nothing with this machine but the lake's object storage is enough:
tasks are sent the lake's storage (its URL and options), never a local path they could not see.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from explorer.errors import ExplorerError

#: the scheduler's address when ``--scheduler`` is not given (``tcp://host:8786``)
SCHEDULER_ENV = "EXPLORER_DASK_SCHEDULER"


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: on the cluster at ``scheduler`` (or ``$EXPLORER_DASK_SCHEDULER``), else (or
    with ``scheduler="local"``) on a LocalCluster of ``workers`` single-threaded processes
    (default: the CPU count, at most 8)."""
    from distributed import Client, LocalCluster

    address = None if scheduler == "local" else scheduler or os.environ.get(SCHEDULER_ENV)
    if address:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise ExplorerError(f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
                                "`dask scheduler`, or leave out --scheduler for a local cluster") from None
        with client:
            yield client, address
        return
    n = workers or min(8, os.cpu_count() or 1)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client, f"LocalCluster({n} workers)"
