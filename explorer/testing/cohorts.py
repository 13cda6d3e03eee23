"""A synthetic cohort in a lake, refreshed: what the recovery tests compare with the planted truth."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

#: the pseudonym key of test lakes (tests only: a real key lives outside the lake and the repo)
TEST_KEY = "an-example-key-for-tests-only-0123456789"


@contextmanager
def pseudonym_key(key: str = TEST_KEY):
    """``$EXPLORER_PSEUDONYM_KEY`` set to ``key`` for the block, restored after."""
    previous = os.environ.get("EXPLORER_PSEUDONYM_KEY")
    os.environ["EXPLORER_PSEUDONYM_KEY"] = key
    try:
        yield key
    finally:
        if previous is None:
            os.environ.pop("EXPLORER_PSEUDONYM_KEY")
        else:
            os.environ["EXPLORER_PSEUDONYM_KEY"] = previous


def synthetic_lake(root: Path, config, steps, *, workers: int = 1):
    """``explorer synth`` with ``config`` into ``root/cohort``, ingested into ``root/lake`` (no
    quality report) and refreshed with ``steps`` (None: all; empty: no refresh); returns the lake.
    A failed step fails."""
    import explorer
    from explorer.jobs import refresh
    from explorer.synth import generate

    generate(Path(root) / "cohort", config)
    with pseudonym_key():
        lake = explorer.open(Path(root) / "lake")
        lake.ingest(Path(root) / "cohort", quality=False)
        if steps is not None and not list(steps):
            return lake
        report = refresh(lake, workers=workers, steps=None if steps is None else list(steps))
    if report.failed:
        raise AssertionError(str(report))
    return lake


def truth(root: Path, name: str) -> pd.DataFrame:
    """A planted-truth table of the cohort (``truth_daily``, ``truth``, ...) keyed by the lake's
    pseudonyms (``person_id``) beside the source ids."""
    from explorer.ingest.pseudonym import Pseudonymizer

    frame = pd.read_parquet(Path(root) / "cohort" / "truth" / f"{name}.parquet")
    frame["person_id"] = Pseudonymizer(TEST_KEY.encode()).many(frame["source_id"].astype(str))
    return frame
