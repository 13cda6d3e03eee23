"""Refresh steps for tests of the machinery itself: one that is slow (so a test can kill a worker
or the client while tasks run) and one that fails on one partition. Workers find them when
``EXPLORER_STEP_MODULES=explorer.testing.steps`` is set where they start."""

from __future__ import annotations

import os
import time

from explorer.jobs.steps.overview import DataAvailability
from explorer.jobs.steps import Partition, RefreshStep

#: seconds each task of the slow step sleeps before computing
DELAY_ENV = "EXPLORER_TESTING_STEP_DELAY"


class SlowAvailability(DataAvailability):
    """data_availability again, into its own table, with a pause per task."""

    name = "slow_availability"
    description = "data_availability with a pause per task (tests)"
    output = "slow_availability"

    def compute(self, con, partition: Partition):
        time.sleep(float(os.environ.get(DELAY_ENV, "1.0")))
        return super().compute(con, partition)


class FailingOnBucketZero(RefreshStep):
    """Counts persons per bucket, and fails on the partition holding bucket 0."""

    name = "failing_on_bucket_zero"
    description = "fails on the partition with bucket 0 (tests)"
    inputs = ("person",)
    output = "failing_output"
    partition = "person_bucket"

    def compute(self, con, partition: Partition):
        if 0 in (partition.buckets or ()):
            raise ValueError("planted failure for bucket 0")
        from explorer.jobs.steps import bucket_sql

        return con.execute(f"SELECT {bucket_sql()} AS person_bucket, count(*) AS n FROM person "
                           f"WHERE {partition.where()} GROUP BY ALL").df()


class ReadsFailing(RefreshStep):
    """Reads the failing step's output, so it must be skipped when that step fails."""

    name = "reads_failing"
    description = "downstream of failing_on_bucket_zero (tests)"
    inputs = ("failing_output",)
    output = "reads_failing_output"
    partition = "whole"

    def compute(self, con, partition: Partition):
        return con.execute("SELECT sum(n) AS n FROM failing_output").df()
