"""Refresh step of saved cohorts: their members and index dates."""

from __future__ import annotations

import pandas as pd

from explorer.cohorts.store import COHORT_INPUTS, compute_members
from explorer.jobs.steps import Partition, RefreshStep


class CohortMember(RefreshStep):
    """Members and index dates of every saved cohort definition (explorer.cohorts), recomputed
    whenever a table the cohorts read has a new version, or a definition is saved."""

    name = "cohort_member"
    description = "per saved cohort: its members and their index dates"
    inputs = COHORT_INPUTS
    optional_inputs = tuple(t for t in COHORT_INPUTS if t != "person")  # no saved cohort yet: an empty table
    output = "cohort_member"
    partition = "whole"

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        return compute_members(con)
