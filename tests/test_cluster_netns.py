"""A cluster whose machines share nothing but the object store (issue 24): a `dask scheduler` and
two `dask worker` processes, each in its own network namespace joined to this machine by a veth
pair, and each in its own mount namespace where the test's whole temporary tree (the cohort
received, the client's staging) is hidden under an empty tmpfs. The object store (SeaweedFS)
listens on this machine's end of the bridge. Ingest and refresh of a synthetic cohort there equal
a local single-process run, table for table; a store that stops mid-ingest leaves no partial
version and a retryable error, and the rerun completes; a worker killed mid-refresh costs
nothing but its tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import explorer
from conftest import run_cli
from explorer.testing import netns
from explorer.testing.cohorts import TEST_KEY, pseudonym_key
from explorer.testing.seaweed import restart, start_object_store
from test_object_lake import _content

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).parent / "dask"
PORT = 8786


@pytest.fixture(scope="module")
def hosts():
    why = netns.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the cluster test: {why}")
        pytest.skip(why)
    with netns.Hosts(("scheduler", "worker-a", "worker-b")) as made:
        yield made


@pytest.fixture(scope="module")
def store(hosts, tmp_path_factory):
    server = start_object_store(tmp_path_factory.mktemp("store"), ip=hosts.gateway)
    yield server
    server.stop()


def isolated(hosts: netns.Hosts, name: str, argv: list[str], hidden: Path, env: dict) -> subprocess.Popen:
    """``argv`` on host ``name``: its own network namespace, and a mount namespace where
    ``hidden`` (the test's temporary tree) is an empty tmpfs holding only the process's home."""
    home = hidden / name
    script = f'mount -t tmpfs tmpfs "{hidden}" && mkdir -p "{home}" && cd "{home}" && exec "$@"'
    return subprocess.Popen(hosts.command(name, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                                 "sh", *argv]),
                            env={**env, "TMPDIR": str(home), "HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(hosts, store, tmp_path_factory):
    hidden = tmp_path_factory.getbasetemp()
    env = {**os.environ, **store.storage_options}
    address = f"tcp://{hosts.address('scheduler')}:{PORT}"
    processes = {"scheduler": isolated(hosts, "scheduler", [str(DASK), "scheduler", "--host", hosts.address("scheduler"),
                                                            "--port", str(PORT), "--no-dashboard"], hidden, env)}
    for name in ("worker-a", "worker-b"):
        processes[name] = isolated(hosts, name, [str(DASK), "worker", address, "--host", hosts.address(name),
                                                 "--nthreads", "1", "--no-dashboard", "--name", name,
                                                 "--local-directory", str(hidden / name / "dask")], hidden, env)
    from distributed import Client

    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
            seen = client.run(lambda: (os.path.exists(str(hidden / "cohort")), os.environ.get("TMPDIR")))
        assert all(not visible for visible, _ in seen.values()), seen  # the cohort is not there for them
    except Exception:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGKILL)
        raise
    yield address, processes, hidden
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def cohort_and_local(tmp_path_factory):
    """The cohort (under the temporary tree the cluster cannot see) and a local single-process run."""
    from explorer.jobs import refresh
    from explorer.synth import SynthConfig, generate

    root = tmp_path_factory.getbasetemp() / "cohort"
    generate(root, SynthConfig(participants=8, days=3, seed=23, start=date(2024, 7, 8), faults=True, workers=1))
    with pseudonym_key():
        local = explorer.open(tmp_path_factory.mktemp("local-run") / "lake")
        local.ingest(root, quality=False, workers=1)
        report = refresh(local, workers=1)
    assert not report.failed, str(report)
    return root, local


def client_env(store) -> dict:
    return {**store.storage_options, "EXPLORER_PSEUDONYM_KEY": TEST_KEY}


def assert_equal_lakes(lake, local, tables=None):
    for table in tables or local.tables():
        if table.startswith("job_"):
            continue
        fitted = table in ("marker_ageing", "person_ageing_rate", "biological_age", "ageotype")
        pd.testing.assert_frame_equal(_content(lake, table), _content(local, table), check_dtype=False,
                                      check_exact=False, rtol=2e-2 if fitted else 1e-9, obj=table)


def test_ingest_and_refresh_on_a_cluster_sharing_only_the_store_equal_a_local_run(cluster, store, cohort_and_local):
    address, _, _ = cluster
    cohort, local = cohort_and_local
    root = f"s3://{store.bucket}/site"
    ingested = run_cli("ingest", "--no-quality", "--scheduler", address, cohort, lake_root=root, env=client_env(store))
    assert ingested.returncode == 0, ingested.stdout[-2000:] + ingested.stderr[-3000:]
    refreshed = run_cli("refresh", "--scheduler", address, lake_root=root, env=client_env(store))
    assert refreshed.returncode == 0, refreshed.stdout[-3000:] + refreshed.stderr[-3000:]
    assert f"on {address}" in refreshed.stdout
    lake = explorer.open(root, storage_options=store.storage_options, create=False)
    assert lake.tables() == local.tables()
    assert_equal_lakes(lake, local)
    assert run_cli("verify", lake_root=root, env=client_env(store)).returncode == 0


def test_a_store_that_stops_mid_ingest_leaves_no_partial_version_and_the_rerun_completes(cluster, store, cohort_and_local):
    address, _, _ = cluster
    cohort, local = cohort_and_local
    root = f"s3://{store.bucket}/stopped"
    lake = explorer.open(root, storage_options=store.storage_options)
    command = [sys.executable, "-m", "explorer.command", "--lake", root, "ingest", "--no-quality", "--scheduler",
               address, str(cohort)]
    running = subprocess.Popen(command, env={**os.environ, **client_env(store)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # stop the store between two table commits: the run's unfinished marker is written before
    # the first, and some table has landed
    deadline = time.time() + 300
    while time.time() < deadline and running.poll() is None:
        try:
            if any(key.endswith(".unfinished") for key in lake.storage.keys("_staging")) and lake.storage.children("tables"):
                break
        except Exception:  # noqa: BLE001 (the listing itself may race the run's first writes)
            pass
        time.sleep(0.05)
    store.stop()
    out, err = running.communicate(timeout=600)
    server = restart(store)
    store.process, store.log = server.process, server.log  # the module's store runs again, same address and data
    assert running.returncode != 0, "the ingest finished before the store stopped: nothing was tested"
    assert "retried" in err or "retry" in err.lower() or "Retry" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    # every version a reader can see is whole: each commit's files are all there, and verify agrees
    lake = explorer.open(root, storage_options=store.storage_options)
    assert lake.tables(), "no table had landed when the store stopped"
    for table in lake.tables():
        assert lake.row_count(table) == len(lake.sql(f"SELECT * FROM {table}"))
    report = lake.verify()
    assert report.ok, str(report)
    again = run_cli("ingest", "--no-quality", "--scheduler", address, cohort, lake_root=root, env=client_env(store))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    lake = explorer.open(root, storage_options=store.storage_options, create=False)
    assert_equal_lakes(lake, local, [t for t in local.tables() if t in lake.tables() and t not in (
        "wearable_daily", "wearable_circadian", "exposure_daily", "event_exposure", "marker_ageing",
        "person_ageing_rate", "ageotype", "biological_age", "cohort_member", "cohort_summary", "data_availability",
        "modality_coverage", "refresh_run", "ingest_file", "raw_manifest")])
    assert not [key for key in lake.storage.keys("_staging") if key.endswith(".unfinished")]


def test_a_worker_killed_mid_refresh_costs_its_tasks_not_the_aggregates(cluster, store, cohort_and_local):
    address, processes, _ = cluster
    cohort, local = cohort_and_local
    root = f"s3://{store.bucket}/site"  # ingested and refreshed by the first test: refreshed again in full
    refreshing = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", root, "refresh", "--full",
                                   "--scheduler", address], env={**os.environ, **client_env(store)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    os.killpg(processes["worker-a"].pid, signal.SIGKILL)
    out, err = refreshing.communicate(timeout=600)
    if refreshing.returncode != 0:  # a step whose task died with the worker: the next run completes it
        again = run_cli("refresh", "--scheduler", address, lake_root=root, env=client_env(store))
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    lake = explorer.open(root, storage_options=store.storage_options, create=False)
    assert_equal_lakes(lake, local, [t for t in local.tables() if t in (
        "wearable_daily", "wearable_circadian", "exposure_daily", "event_exposure", "marker_ageing",
        "person_ageing_rate", "biological_age", "cohort_summary", "data_availability", "modality_coverage")])
    assert lake.verify().ok
