"""Refresh of aggregate tables on Dask: incremental, atomic, recorded (see :mod:`explorer.jobs.refresh`)."""

from explorer.jobs.refresh import RefreshBusy, RefreshReport, refresh, runs
from explorer.jobs.steps import STEPS, Partition, RefreshStep, person_bucket

__all__ = ["STEPS", "Partition", "RefreshBusy", "RefreshReport", "RefreshStep", "person_bucket", "refresh", "runs"]
