"""Refresh jobs: known answers, incremental = full, atomic under failure, recorded in job_run."""

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer
from explorer.jobs import RefreshBusy, person_bucket, refresh
from explorer.jobs.refresh import parse_interval, refresh_lock
from explorer.jobs.steps import N_BUCKETS, Partition, ordered
from explorer.testing.factories import make_heart_rate_minutes, make_measurements, make_persons, make_steps_minutes

OUTPUTS = ("cohort_summary", "data_availability", "modality_coverage")


@pytest.fixture(scope="module")
def client():
    """One in-process cluster for the module (the CLI and real-process tests start their own)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def small_lake(root, n=12, days=3, seed=0):
    lake = explorer.open(root)
    lake.write("person", make_persons(n, seed))
    lake.write("heart_rate_minute", make_heart_rate_minutes(n, days, seed).iloc[::3])  # every third minute
    lake.write("steps_minute", make_steps_minutes(n, days, seed))
    lake.write("measurement", make_measurements(n, 2, seed))
    return lake


def table(lake, name, version=None):
    keys = {"data_availability": ["person_id", "date"], "cohort_summary": ["age_band", "sex_at_birth", "zip3"],
            "modality_coverage": ["modality"]}[name]
    frame = lake.sql(f"SELECT * FROM {name}", versions={name: version} if version is not None else None)
    return frame.sort_values(keys, ignore_index=True)


def test_person_bucket_is_stable_uniform_and_matches_sql():
    import duckdb

    from explorer.jobs.steps import bucket_sql

    ids = [f"{i:032x}" for i in range(0, 2**32, 2**32 // 997)][:997]
    sql = duckdb.execute(f"SELECT {bucket_sql('p')} FROM (SELECT unnest(?) AS p)", [ids]).fetchall()
    assert [b for (b,) in sql] == [person_bucket(p) for p in ids]
    assert person_bucket("ffffffff" + "0" * 24) == N_BUCKETS - 1  # a fixed formula, not Python's salted hash
    assert person_bucket("08000000" + "0" * 24) == 1 and person_bucket("07ffffff" + "f" * 24) == 0
    counts = np.bincount([person_bucket(p) for p in make_persons(3200)["person_id"]], minlength=N_BUCKETS)
    assert counts.min() > 50 and counts.max() < 150  # HMAC-like ids spread evenly


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.lists(st.integers(0, N_BUCKETS - 1), min_size=1, max_size=6, unique=True))
def test_bucket_ranges_select_exactly_the_bucket(raw, buckets):
    import duckdb

    from explorer.jobs.steps import buckets_where

    pid = raw.hex()
    inside = duckdb.execute(f"SELECT {buckets_where(buckets, 'p')} FROM (SELECT ? AS p)", [pid]).fetchall()[0][0]
    assert inside == (person_bucket(pid) in buckets)


def test_steps_run_after_the_steps_whose_outputs_they_read():
    names = [s.name for s in ordered()]
    assert names.index("data_availability") < names.index("modality_coverage")
    assert [s.name for s in ordered(["modality_coverage"])] == ["data_availability", "modality_coverage"]


def test_data_availability_known_answers(tmp_path, client):
    lake = explorer.open(tmp_path / "lake")
    pid = "a" * 32
    lake.write("person", pd.DataFrame({"person_id": [pid], "year_of_birth": [1960], "sex_at_birth": ["female"],
                                       "race": [None], "ethnicity": [None], "zip3": ["021"]}))
    minutes = pd.date_range("2024-06-01 08:00", periods=90, freq="min")
    lake.write("heart_rate_minute", pd.DataFrame({"person_id": pid, "datetime": minutes, "heart_rate_value": 70}))
    lake.write("steps_minute", pd.DataFrame({"person_id": pid, "datetime": minutes[:30], "steps": 10}))
    lake.write("sleep_level", pd.DataFrame({"person_id": pid, "start_datetime": pd.to_datetime(
        ["2024-06-01 23:00", "2024-06-01 23:30", "2024-06-02 01:00"]), "level": ["light", "wake", "deep"],
        "duration_minutes": [30, 10, 45], "is_main_sleep": True}))
    lake.write("measurement", make_measurements(1).assign(person_id=pid, measurement_datetime=pd.Timestamp("2024-06-02 09:00")))
    report = refresh(lake, client=client)
    assert not report.failed, str(report)
    days = table(lake, "data_availability").set_index("date")
    first, second = days.loc[pd.Timestamp("2024-06-01")], days.loc[pd.Timestamp("2024-06-02")]
    assert (first.heart_rate_minutes, first.step_minutes, first.steps, first.sleep_minutes, first.lab_results) == (90, 30, 300, 30, 0)
    assert (second.heart_rate_minutes, second.sleep_minutes, second.lab_results) == (0, 45, 9)  # 3 visits x 3 markers
    assert (days["person_bucket"] == person_bucket(pid)).all()
    summary = table(lake, "cohort_summary")
    age = pd.Timestamp.now().year - 1960
    expected_band = next(label for low, label in reversed(__import__("explorer.jobs.steps.overview", fromlist=["AGE_BANDS"]).AGE_BANDS) if age >= low)
    assert summary[["age_band", "sex_at_birth", "zip3", "n_persons"]].values.tolist() == [[expected_band, "female", "021", 1]]
    coverage = table(lake, "modality_coverage").set_index("modality")
    assert coverage.loc["heart_rate", "persons_with_data"] == 1 and coverage.loc["sleep", "person_days"] == 2


def test_second_refresh_without_new_data_changes_nothing(tmp_path, client):
    lake = small_lake(tmp_path / "lake")
    refresh(lake, client=client)
    versions = {t: lake.version(t) for t in OUTPUTS}
    report = refresh(lake, client=client)
    # the exposure steps have no residence or grid in this lake: skipped both times
    no_input = {"exposure_daily", "event_exposure"}
    assert {s.status for s in report.steps if s.step not in no_input} == {"up_to_date"}
    assert {s.status for s in report.steps if s.step in no_input} == {"skipped"} and len(report.steps) == len(ordered())
    assert {t: lake.version(t) for t in OUTPUTS} == versions


def test_one_new_day_recomputes_that_day_only_and_equals_a_full_refresh(tmp_path, client):
    lake = small_lake(tmp_path / "lake")
    refresh(lake, client=client)
    before = lake.version("data_availability")
    old = table(lake, "data_availability")
    new_day = make_steps_minutes(12, 1, 0, start="2024-06-04").iloc[::7]
    lake.write("steps_minute", new_day)
    report = refresh(lake, client=client)
    step = {s.step: s for s in report.steps}["data_availability"]
    assert step.status == "succeeded" and "day 2024-06-04" in step.partitions
    assert step.rows == 12  # the new person-days, not the whole table
    incremental = table(lake, "data_availability")
    # the rest of the table is untouched, and the earlier version still reads as it was
    pd.testing.assert_frame_equal(incremental[incremental.date < "2024-06-04"].reset_index(drop=True), old)
    pd.testing.assert_frame_equal(table(lake, "data_availability", before), old)
    shutil.copytree(lake.root, tmp_path / "copy")
    full = explorer.open(tmp_path / "copy")
    refresh(full, client=client, full=True)
    for name in OUTPUTS:
        pd.testing.assert_frame_equal(table(lake, name), table(full, name))


def test_a_correction_of_an_old_day_recomputes_it(tmp_path, client):
    lake = small_lake(tmp_path / "lake")
    refresh(lake, client=client)
    pid = make_persons(12)["person_id"].iloc[4]
    kept = lake.sql("SELECT * FROM steps_minute WHERE person_id = ? AND datetime >= TIMESTAMP '2024-06-02'", [pid])
    lake.write("steps_minute", kept, mode="overwrite", replace_where=f"person_id = '{pid}'")  # a corrected delivery
    report = refresh(lake, client=client)
    step = {s.step: s for s in report.steps}["data_availability"]
    assert step.status == "succeeded" and "2024-06-01" in step.partitions
    row = lake.sql("SELECT step_minutes FROM data_availability WHERE person_id = ? AND date = DATE '2024-06-01'", [pid])
    assert row["step_minutes"].item() == 0  # heart rate is still there, steps are gone
    # the rewritten file carried other people's unchanged rows too: recomputed, and still equal to a full refresh
    shutil.copytree(lake.root, tmp_path / "copy")
    full = explorer.open(tmp_path / "copy")
    refresh(full, client=client, full=True)
    pd.testing.assert_frame_equal(table(lake, "data_availability"), table(full, "data_availability"))


def test_a_failing_step_names_its_partition_leaves_its_output_and_skips_its_readers(tmp_path, client, monkeypatch):
    monkeypatch.setenv("EXPLORER_STEP_MODULES", "explorer.testing.steps")
    lake = small_lake(tmp_path / "lake")
    lake.write("failing_output", pd.DataFrame({"person_bucket": [1], "n": [99]}))  # an earlier good output
    version = lake.version("failing_output")
    report = refresh(lake, client=client, steps=["failing_on_bucket_zero", "reads_failing", "cohort_summary"])
    status = {s.step: s for s in report.steps}
    assert status["failing_on_bucket_zero"].status == "failed"
    assert "partition buckets 0" in status["failing_on_bucket_zero"].error
    assert "planted failure for bucket 0" in status["failing_on_bucket_zero"].error
    assert status["reads_failing"].status == "skipped" and "failed in this run" in status["reads_failing"].error
    assert status["cohort_summary"].status == "succeeded"  # an independent step still runs
    assert lake.version("failing_output") == version
    assert lake.sql("SELECT n FROM failing_output")["n"].tolist() == [99]
    recorded = lake.sql("SELECT step, status, error FROM job_run WHERE run_id = ?", [report.run_id]).set_index("step")
    assert recorded.loc["failing_on_bucket_zero", "status"] == "failed"
    assert "bucket 0" in recorded.loc["failing_on_bucket_zero", "error"]
    # the module stays imported once the variable is gone, but a refresh of every step no longer runs it
    monkeypatch.delenv("EXPLORER_STEP_MODULES")
    assert not {"failing_on_bucket_zero", "reads_failing", "slow_availability"} & {s.name for s in ordered()}


def test_job_run_records_versions_rows_and_durations(tmp_path, client):
    lake = small_lake(tmp_path / "lake")
    report = refresh(lake, client=client)
    rows = lake.sql("SELECT * FROM job_run WHERE run_id = ?", [report.run_id]).set_index("step")
    availability = rows.loc["data_availability"]
    import json

    assert json.loads(availability["input_versions"]) == {t: lake.version(t) for t in
                                                          ("heart_rate_minute", "measurement", "steps_minute")}
    assert availability["output_version"] == lake.version("data_availability")
    assert availability["rows_written"] == len(lake.sql("SELECT * FROM data_availability"))
    assert (rows["duration_s"] >= 0).all() and (rows["ended_at"] >= rows["started_at"]).all()
    assert lake.lineage("data_availability").upstream  # lineage of the output names its inputs
    # steps end in any order, but each started after every step it reads had ended, and the
    # report lists them in plan order
    from explorer.jobs.refresh import _upstream

    assert [s.step for s in report.steps] == [s.name for s in ordered()]
    for step, earlier in _upstream(ordered()).items():
        for name in earlier:
            assert rows.loc[step, "started_at"] >= rows.loc[name, "ended_at"], (step, name)


def test_two_refreshes_never_run_together(tmp_path):
    lake = small_lake(tmp_path / "lake")
    with refresh_lock(lake):
        with pytest.raises(RefreshBusy, match=r"another refresh is running.*pid \d+"):
            refresh(lake, workers=1)


def test_partition_where_selects_its_days_and_buckets():
    import duckdb

    days = pd.date_range("2024-06-01", periods=5).date
    partition = Partition(buckets=(3, 4), days=(days[1], days[3]))
    ids = make_persons(200)["person_id"]
    frame = pd.DataFrame({"person_id": np.repeat(ids, 5), "t": np.tile(pd.date_range("2024-06-01 12:00", periods=5), 200)})
    selected = duckdb.execute(f"SELECT * FROM frame WHERE {partition.where('t')}").df()
    expected = frame[frame.person_id.map(person_bucket).isin([3, 4]) & frame.t.dt.date.isin([days[1], days[3]])]
    assert len(selected) == len(expected) > 0


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400), ("30", 30)])
def test_parse_interval(text, seconds):
    assert parse_interval(text) == seconds


def test_changes_from_log_statistics_cover_every_changed_row(tmp_path, monkeypatch):
    from explorer.jobs import changes as changes_module

    lake = small_lake(tmp_path / "lake", n=20, days=2)
    lake.write("steps_minute", make_steps_minutes(20, 1, 3, start="2024-06-05").iloc[::11])
    exact = None
    with monkeypatch.context() as patch:  # what reading the changed files themselves gives
        patch.setattr(changes_module, "_from_statistics", lambda *args: None)
        exact = changes_module.changes(lake.table_path("steps_minute"), 0, 1, time_column="datetime")
    fast = changes_module.changes(lake.table_path("steps_minute"), 0, 1, time_column="datetime")
    assert exact.bucket_days and exact.bucket_days <= fast.bucket_days  # a superset, never fewer
    assert {d for _, d in fast.bucket_days} == {pd.Timestamp("2024-06-05").date()}  # the one new day only


def test_an_output_missing_or_retyping_a_declared_column_is_rebuilt_extras_are_kept(tmp_path, client):
    lake = small_lake(tmp_path / "lake")
    refresh(lake, client=client, steps=["wearable_daily"])
    full = lake.sql("SELECT * FROM wearable_daily ORDER BY person_id, date")
    # an output written by an older release: no sleep_hr, steps as int32
    old = full.drop(columns=["sleep_hr"]).astype({"steps": "int32"})
    from deltalake import write_deltalake  # straight to the table: Lake.write would conform it to the catalog

    write_deltalake(lake.table_path("wearable_daily"), old, mode="overwrite", schema_mode="overwrite")
    report = refresh(lake, client=client, steps=["wearable_daily"])
    assert "columns changed" in report.steps[0].partitions
    rebuilt = lake.sql("SELECT * FROM wearable_daily ORDER BY person_id, date")
    pd.testing.assert_frame_equal(rebuilt, full)
    assert refresh(lake, client=client, steps=["wearable_daily"]).steps[0].status == "up_to_date"
    # a column beyond the declared ones (a site's own) does not make the step rebuild every run
    from explorer.jobs.refresh import _output_reshaped
    from explorer.jobs.steps import step

    assert not _output_reshaped(lake, step("wearable_daily"))
    write_deltalake(lake.table_path("wearable_daily"), lake.sql("SELECT * FROM wearable_daily").assign(site_flag=True),
                    mode="overwrite", schema_mode="merge")
    assert not _output_reshaped(lake, step("wearable_daily"))


def test_a_step_waits_for_exactly_the_earlier_steps_it_reads():
    from explorer.jobs.refresh import _upstream

    plan = ordered()
    upstream = _upstream(plan)
    assert set(upstream) == {s.name for s in plan}
    position = {s.name: k for k, s in enumerate(plan)}
    producer = {s.output: s.name for s in plan}
    for s in plan:
        assert upstream[s.name] == {producer[t] for t in s.inputs if t in producer}, s.name
        assert all(position[u] < position[s.name] for u in upstream[s.name]), s.name
    # the daily steps start at once; the monthly step waits for its day states only, not for the
    # daily summary, and the cohorts wait for both
    assert not upstream["wearable_daily"] and not upstream["wearable_circadian_day"]
    assert upstream["wearable_circadian"] == {"wearable_circadian_day"}
    assert {"wearable_daily", "wearable_circadian"} <= upstream["cohort_member"]
