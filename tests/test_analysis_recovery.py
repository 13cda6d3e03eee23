"""The analyses recover what ``explorer synth --plant-analyses`` planted, from the lake: the heat
effect on resting heart rate by lag (a person-day DLNM) and the steps-outcome hazard ratio (Cox on
start/stop rows built by the study-frame rules), each within its confidence interval; frames are
rebuilt exactly from their pinned versions."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from explorer.analysis import dlnm, frames, splines, survival, table_one
from explorer.synth import SynthConfig
from explorer.synth.config import INCIDENT_CONDITION
from explorer.testing.cohorts import truth

from conftest import PLANTED_ANALYSES

CONFIG = SynthConfig(**PLANTED_ANALYSES, start=date(2024, 8, 15))
pytestmark = pytest.mark.slow
OUTCOME = frames.ConditionOutcome((INCIDENT_CONDITION[1],), INCIDENT_CONDITION[0], name="dyspnea")


@pytest.fixture(scope="module")
def planted(planted_analyses):
    return planted_analyses


def test_the_planted_heat_effect_on_resting_heart_rate_is_recovered_lag_by_lag(planted):
    lake, _, document = planted
    study = frames.person_day_frame(lake, "resting_hr", "tas_anomaly")
    crossbasis = dlnm.CrossBasis(splines.linear(), splines.integer(range(5)), max_lag=4)
    fit = dlnm.fit_person_days(study.frame, "resting_hr", "tas_anomaly", crossbasis)
    prediction = fit.predict(at=[1.0], centre=0.0)
    by_lag = [document["heat_effect_bpm_per_k"], *document["heat_lag_effects_bpm_per_k"]["bpm_per_k"]]
    truth_by_lag = np.r_[by_lag, np.zeros(5 - len(by_lag))]
    lags = prediction.lag_frame()
    assert ((lags.low <= truth_by_lag) & (truth_by_lag <= lags.high)).all(), (lags, truth_by_lag)
    overall = prediction.overall_frame().iloc[0]
    assert overall.low <= sum(by_lag) <= overall.high
    assert fit.model.n_groups == CONFIG.participants


def test_the_planted_steps_hazard_ratio_is_recovered_by_cox_on_the_study_frame(planted):
    lake, root, document = planted
    study = frames.time_to_event_frame(lake, OUTCOME)
    rows = study.frame
    planted_blocks = truth(root, "truth_incident")
    assert abs(int(rows.event.sum()) - document["incident_outcome"]["events"]) <= 2
    assert (rows.start < rows.stop).all() and (rows.start >= 30).all()
    assert rows.groupby("person_id").event.sum().max() == 1  # follow-up ends at the event
    # the steps of each interval are the previous block's, as planted (a person not wearing the device
    # on the synth's first day has time zero a day later, so blocks one day off)
    both = rows.merge(planted_blocks.rename(columns={"start_day": "start"}), on=["person_id", "start"])
    assert len(both) == len(rows)
    # a step or two a day can differ where the files held a duplicated or artefact minute
    same = np.isclose(both.steps_previous, both.previous_steps, rtol=0.01)
    close = np.isclose(both.steps_previous, both.previous_steps, rtol=0.05)
    assert same.mean() >= 0.95 and (close | (both.time_zero > pd.Timestamp(CONFIG.start))).all()
    fit = survival.cox(rows, "stop", "event", ["steps_previous_1000"], start="start", cluster="person_id")
    term = fit.table.loc["steps_previous_1000"]
    ratio = document["incident_outcome"]["hazard_ratio_per_1000_steps"]
    assert term.low <= ratio <= term.high, fit.table
    # a spline of the same exposure gives the planted log-linear dose-response
    basis = splines.restricted_cubic_spline(rows.steps_previous, n_knots=3)
    curve = survival.cox(rows, "stop", "event", start="start", cluster="person_id",
                         splines={"steps_previous": basis}).dose_response("steps_previous", [5000.0], reference=8000.0)
    se = (np.log(curve.high[0]) - np.log(curve.low[0])) / (2 * 1.96)
    z = abs(np.log(curve.hazard_ratio[0]) - np.log(ratio ** -3)) / se
    assert z < 2.576, (curve, fit.table)  # 99%: this seed's linear estimate already sits 1.6 SE from the truth


def test_a_frame_is_rebuilt_exactly_from_its_versions(planted):
    lake, _, _ = planted
    first = frames.time_to_event_frame(lake, OUTCOME)
    assert set(first.versions) == {"wearable_daily", "person", "condition_occurrence"}
    again = frames.time_to_event_frame(lake, OUTCOME, versions=first.versions)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert list(first.attrition.step)[0] == "persons with wearable data" and first.attrition.persons.is_monotonic_decreasing
    assert "washout" in str(first.rules)


def test_table_one_of_the_study_population_equals_a_recount(planted):
    lake, _, _ = planted
    rows = frames.time_to_event_frame(lake, OUTCOME).frame
    persons = rows.groupby("person_id").agg(event=("event", "max"), age=("age", "first"), sex=("sex_at_birth", "first"),
                                            steps=("steps_previous", "mean")).reset_index()
    table = table_one.table_one(persons, "event", continuous=["age"], categorical=["sex"], nonnormal=["steps"])
    n = table[table.variable == "n"].iloc[0]
    assert n["True|n"] == persons.event.sum() and n["Overall|n"] == len(persons)
    age = table[table.variable == "age"].iloc[0]
    assert age["False|value"] == pytest.approx(persons.loc[~persons.event, "age"].mean())


def test_the_command_runs_each_analysis_prints_its_rules_and_saves_its_views(planted, tmp_path):
    from conftest import run_cli

    lake, _, _ = planted
    root = lake.location
    cases = {
        "dlnm": (["--max-lag", "3", "--at", "1,2"], ["Overall cumulative effect", "fixed effect per day"]),
        "cox": (["--condition", INCIDENT_CONDITION[1], "--spline"], ["steps_previous_1000", "Grambsch-Therneau", "washout"]),
        "km": (["--condition", INCIDENT_CONDITION[1]], ["lowest third", "highest third"]),
        "case-crossover": (["--condition", INCIDENT_CONDITION[1], "--exposure", "tasmax", "--lags", "0,1"], ["tasmax_lag1"]),
        "table1": (["--condition", INCIDENT_CONDITION[1]], ["median [IQR]", "no event"]),
    }
    for action, (options, expected) in cases.items():
        out = tmp_path / f"{action}.html"
        result = run_cli("--role", "researcher", "analysis", action, *options, "--out", out, lake_root=root)
        assert result.returncode == 0, (action, result.stderr[-2000:])
        for text in expected:
            assert text in result.stdout, (action, text, result.stdout[-3000:])
        assert "bokeh" in out.read_text().lower()
    audit = run_cli("--role", "steward", "audit", lake_root=root)
    assert audit.stdout.count("analysis") >= len(cases)


def test_the_command_refuses_the_public_role_and_says_what_is_wrong(planted):
    from conftest import run_cli

    lake, _, _ = planted
    public = run_cli("--role", "public", "analysis", "cox", "--condition", "R06.00", lake_root=lake.location)
    assert public.returncode != 0 and "researcher" in public.stderr
    table = run_cli("--role", "public", "analysis", "table1", "--condition", "R06.00", lake_root=lake.location)
    assert table.returncode == 0 and "released under All of Us" in table.stdout, table.stderr[-2000:]
    # without --role, km and table1 act as the least role they need: public, their release
    default = run_cli("analysis", "km", "--condition", "R06.00", lake_root=lake.location)
    assert default.returncode == 0 and "released under" in default.stdout
    # Kaplan-Meier has a public form: released steps only, every count clear of the profile
    curves = run_cli("--role", "public", "analysis", "km", "--condition", "R06.00", "--profile", "cms", lake_root=lake.location)
    assert curves.returncode == 0 and "released under CMS" in curves.stdout, curves.stderr[-2000:]
    assert "Study frame" not in curves.stdout  # no person-level attrition for the public
    both = run_cli("analysis", "cox", "--condition", "R06.00", "--lab", "2345-7", lake_root=lake.location)
    assert both.returncode != 0 and "name one outcome" in both.stderr
    wrong = run_cli("analysis", "dlnm", "--outcome", "blood_pressure", lake_root=lake.location)
    assert wrong.returncode != 0 and "resting_hr" in wrong.stderr
    nobody = run_cli("analysis", "case-crossover", "--condition", "Z99.99", lake_root=lake.location)
    assert nobody.returncode != 0 and "no person has the outcome" in nobody.stderr


def test_time_varying_exposures_and_markers_equal_a_recount(planted):
    lake, _, _ = planted
    study = frames.time_to_event_frame(lake, OUTCOME, exposures=["tasmax", "heat_wave"], markers=["2345-7"])
    rows = study.frame
    assert {"exposure_daily", "measurement"} <= set(study.versions)
    daily = lake.sql("SELECT person_id, date, tasmax, heat_wave FROM exposure_daily")
    daily["date"] = pd.to_datetime(daily["date"])
    labs = lake.sql("SELECT person_id, measurement_datetime, value_si FROM measurement WHERE loinc_code = '2345-7'")
    for row in rows.sample(25, random_state=0).itertuples():
        start = row.time_zero + pd.Timedelta(days=row.start)
        before = daily[(daily.person_id == row.person_id) & (daily.date >= start - pd.Timedelta(days=30)) & (daily.date < start)]
        assert row.tasmax_previous == pytest.approx(before.tasmax.mean())
        assert row.heat_wave_previous == before.heat_wave.sum()
        mine = labs[(labs.person_id == row.person_id) & (pd.to_datetime(labs.measurement_datetime).dt.normalize() <= start)]
        latest = mine.sort_values("measurement_datetime").value_si.iloc[-1] if len(mine) else np.nan
        assert row.marker_2345_7 == pytest.approx(latest, nan_ok=True)
    with pytest.raises(Exception, match="exposure_daily columns"):
        frames.time_to_event_frame(lake, OUTCOME, exposures=["humidity"])
