"""The wearable aggregates recover what ``explorer synth`` planted: each person's resting heart
rate, and non-wear (whole days off, showers, charging, nights off) never counted as wear."""

from __future__ import annotations

import os
from datetime import date

import pandas as pd
import pytest

import explorer
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.jobs import refresh
from explorer.synth import SynthConfig, generate

KEY = "an-example-key-for-tests-only-0123456789"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery")
    generate(root / "cohort", SynthConfig(participants=16, days=21, seed=11, start=date(2024, 5, 6), faults=False,
                                          workers=1))
    previous = os.environ.get("EXPLORER_PSEUDONYM_KEY")
    os.environ["EXPLORER_PSEUDONYM_KEY"] = KEY
    try:
        lake = explorer.open(root / "lake")
        lake.ingest(root / "cohort", quality=False)
        refresh(lake, workers=1, steps=["wearable_daily", "wearable_circadian"])
    finally:
        if previous is None:
            os.environ.pop("EXPLORER_PSEUDONYM_KEY")
        else:
            os.environ["EXPLORER_PSEUDONYM_KEY"] = previous
    pseudonym = Pseudonymizer(KEY.encode())
    truth = pd.read_parquet(root / "cohort" / "truth" / "truth_daily.parquet")
    truth["person_id"] = pseudonym.many(truth["source_id"].astype(str))
    truth["date"] = pd.to_datetime(truth["date"])
    artefacts = pd.read_parquet(root / "cohort" / "truth" / "truth_artefacts.parquet")
    artefacts["person_id"] = pseudonym.many(artefacts["source_id"].astype(str))
    daily = lake.sql("SELECT * FROM wearable_daily")
    daily["date"] = pd.to_datetime(daily["date"])
    return lake, truth, artefacts, daily


def test_planted_resting_heart_rate_recovered_within_2_bpm(cohort):
    _, truth, _, daily = cohort
    days = daily[daily.valid_day].merge(truth, on=["person_id", "date"])
    per_person = days.groupby("person_id").agg(valid_days=("date", "size"), estimate=("resting_hr", "mean"),
                                               planted=("resting_hr_true", "mean"))
    eligible = per_person[per_person.valid_days >= 14]
    assert len(eligible) >= 10, per_person
    error = (eligible.estimate - eligible.planted).abs()
    assert error.max() < 2.0, eligible.assign(error=error).sort_values("error").tail()
    # and it follows the planted day-to-day changes (heat), not only the person's level
    centred = days.assign(est=days.resting_hr - days.groupby("person_id").resting_hr.transform("mean"),
                          true=days.resting_hr_true - days.groupby("person_id").resting_hr_true.transform("mean"))
    assert centred[["est", "true"]].corr().iloc[0, 1] > 0.3


def test_planted_non_wear_is_not_counted_as_wear(cohort):
    _, truth, artefacts, daily = cohort
    rejected = artefacts[artefacts.kind.isin(["hr_zero", "hr_255"])]  # quarantined readings, not wear
    rejected = rejected.assign(date=pd.to_datetime(rejected.datetime.dt.date)).groupby(["person_id", "date"]).size()
    days = truth.merge(daily, on=["person_id", "date"], how="left").fillna({"wear_minutes": 0})
    days = days.join(rejected.rename("rejected"), on=["person_id", "date"]).fillna({"rejected": 0})
    assert (days.wear_minutes <= days.worn_minutes).all()
    off = days[days.worn_minutes == 0]
    assert len(off) and (off.wear_minutes == 0).all() and not off.valid_day.fillna(False).any()
    # every worn minute is wear unless its reading was rejected; the one exception is the hour
    # lived twice on the day of a move west (its local minutes repeat and are quarantined as
    # conflicting duplicates, with their reason)
    moved = days.time_zone.ne(days.groupby("person_id").time_zone.shift(-1)) & \
        days.groupby("person_id").time_zone.shift(-1).notna()
    unexplained = days.worn_minutes - days.wear_minutes - days.rejected
    assert (unexplained[~moved] == 0).all(), days[~moved & (unexplained != 0)]
    assert unexplained[moved].between(0, 60).all()
