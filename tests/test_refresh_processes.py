"""Refresh with real parts: a `dask scheduler` and `dask worker` processes on loopback, SIGKILL to a
worker and to the client mid-run, two refreshes started together, and `--every`."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import explorer
from conftest import run_cli as _run_cli
from test_refresh import OUTPUTS, small_lake, table

DASK = Path(sys.executable).parent / "dask"
PLUGIN = {"EXPLORER_STEP_MODULES": "explorer.testing.steps"}


def run_cli(*args, lake_root, env=None):
    return _run_cli(*args, lake_root=lake_root, env={**PLUGIN, **(env or {})})


def start(command, env=None, **kwargs):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **PLUGIN, **(env or {})}, start_new_session=True, **kwargs)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    """A real scheduler and two single-threaded workers on loopback, as separate processes."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {"EXPLORER_TESTING_STEP_DELAY": "1.5"}
    scheduler = start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                       "--scheduler-file", str(scheduler_file)], env)
    deadline = time.time() + 60
    while not scheduler_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert scheduler_file.exists(), scheduler.stdout.read() if scheduler.poll() is not None else "no scheduler file"
    workers = [start([str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-nanny",
                      "--no-dashboard", "--name", f"w{k}"], env) for k in range(2)]
    import json

    from distributed import Client

    address = json.loads(scheduler_file.read_text())["address"]
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield address, workers
    for process in workers + [scheduler]:
        stop(process)


@pytest.fixture
def lakes(tmp_path):
    """The same small lake twice: one for the run under test, one for the reference run."""
    small_lake(tmp_path / "a", n=24, days=4)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    return explorer.open(tmp_path / "a"), explorer.open(tmp_path / "b")


def assert_same_outputs(one, other, names=OUTPUTS):
    for name in names:
        pd.testing.assert_frame_equal(table(one, name), table(other, name))


def test_refresh_on_a_real_scheduler_and_two_workers_equals_the_local_cluster(cluster, lakes):
    address, _ = cluster
    remote, local = lakes
    steps = [arg for name in OUTPUTS for arg in ("--step", name)]
    result = run_cli("refresh", "--scheduler", address, *steps, lake_root=remote.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on {address}" in result.stdout
    assert run_cli("refresh", "--workers", "2", *steps, lake_root=local.root).returncode == 0
    assert_same_outputs(explorer.open(remote.root), explorer.open(local.root))
    runs = run_cli("jobs", lake_root=remote.root)
    assert runs.returncode == 0 and address in runs.stdout


def test_a_worker_killed_mid_refresh_costs_its_tasks_not_the_result(cluster, lakes):
    address, workers = cluster
    remote, local = lakes
    refresh = start([sys.executable, "-m", "explorer.command", "--lake", str(remote.root), "refresh", "--scheduler", address,
                     "--step", "slow_availability"])
    time.sleep(2.5)  # tasks of 1.5 s each are running on both workers
    assert refresh.poll() is None
    os.kill(workers[0].pid, signal.SIGKILL)
    output, _ = refresh.communicate(timeout=240)
    assert refresh.returncode == 0, output
    assert run_cli("refresh", "--workers", "1", "--step", "slow_availability", "--full", lake_root=local.root,
                   env={"EXPLORER_TESTING_STEP_DELAY": "0"}).returncode == 0
    pd.testing.assert_frame_equal(explorer.open(remote.root).sql("SELECT * FROM slow_availability ORDER BY person_id, date"),
                                  explorer.open(local.root).sql("SELECT * FROM slow_availability ORDER BY person_id, date"))


@pytest.mark.parametrize("after", [1.0, 4.0, 7.0])
def test_a_client_killed_at_any_moment_leaves_readable_outputs_and_the_next_run_finishes(lakes, after):
    remote, local = lakes
    steps = ["--step", "data_availability", "--step", "slow_availability", "--step", "modality_coverage"]
    env = {"EXPLORER_TESTING_STEP_DELAY": "0.7"}
    victim = start([sys.executable, "-m", "explorer.command", "--lake", str(remote.root), "refresh", "--workers", "2", *steps], env)
    time.sleep(after)
    stop(victim)  # SIGKILL to the client and its local cluster, wherever it was
    lake = explorer.open(remote.root)
    for name in ("data_availability", "slow_availability", "modality_coverage"):
        if lake.has_table(name):
            lake.sql(f"SELECT count(*) FROM {name}")  # readable at its last commit
    assert lake.verify().ok
    finish = run_cli("refresh", "--workers", "2", *steps, lake_root=remote.root, env=env)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert run_cli("refresh", "--workers", "2", *steps, lake_root=local.root, env={"EXPLORER_TESTING_STEP_DELAY": "0"}).returncode == 0
    one, other = explorer.open(remote.root), explorer.open(local.root)
    assert_same_outputs(one, other, names=("data_availability", "modality_coverage"))


def test_two_refreshes_started_together_one_exits_with_a_clear_message(lakes):
    lake, _ = lakes
    command = [sys.executable, "-m", "explorer.command", "--lake", str(lake.root), "refresh", "--workers", "1",
               "--step", "slow_availability"]
    env = {"EXPLORER_TESTING_STEP_DELAY": "1.0"}
    first, second = start(command, env), start(command, env)
    outputs = [p.communicate(timeout=240)[0] for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], outputs
    assert any("another refresh is running" in out and "--wait" in out for out in outputs)
    waited = [start(command + ["--wait", "--full"], env) for _ in range(2)]
    for process in waited:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output  # the second queued behind the first
    lake = explorer.open(lake.root)
    assert lake.verify().ok
    runs = lake.sql("SELECT run_id, status FROM job_run WHERE step = 'slow_availability'")
    assert (runs["status"] == "succeeded").sum() == 3


def test_refresh_every_runs_on_a_schedule_and_stops_on_sigterm(lakes):
    lake, _ = lakes
    loop = start([sys.executable, "-m", "explorer.command", "--lake", str(lake.root), "refresh", "--every", "2s",
                  "--workers", "1", "--step", "cohort_summary"])
    deadline = time.time() + 90
    while time.time() < deadline:
        time.sleep(1)
        if explorer.open(lake.root).has_table("job_run") and \
                len(explorer.open(lake.root).sql("SELECT DISTINCT run_id FROM job_run")) >= 2:
            break
    loop.send_signal(signal.SIGTERM)
    output, _ = loop.communicate(timeout=60)
    assert loop.returncode == 0, output
    statuses = explorer.open(lake.root).sql("SELECT status FROM job_run ORDER BY started_at")["status"].tolist()
    assert statuses[:2] == ["succeeded", "up_to_date"], output
