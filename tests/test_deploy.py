"""The site deployments of README's "Running it at a site" (issue 24): the SLURM launcher end to end
against a stand-in `sbatch` that runs the job script dask-jobqueue wrote (so the workers it starts
are the ones a SLURM site would get), refreshing a lake on a real object store; the Kubernetes
launcher's DaskCluster manifest, checked field by field (no Kubernetes here to apply it to)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

import explorer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

FAKE_SBATCH = """#!/usr/bin/env bash
# stands in for SLURM's sbatch: keeps the job script and runs it detached, as a node would
set -e
job="{folder}/job-$RANDOM.sh"
cp "$1" "$job"
setsid bash "$job" > "$job.log" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/usr/bin/env bash
for id in "$@"; do kill -- "-$id" 2>/dev/null || true; done
"""


@pytest.fixture(scope="module")
def object_store(tmp_path_factory):
    from explorer.testing.seaweed import start_object_store

    server = start_object_store(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


def test_the_slurm_launcher_refreshes_a_lake_on_workers_its_job_scripts_start(object_store, tmp_path):
    pytest.importorskip("dask_jobqueue")
    from explorer.jobs.steps import load_steps
    from explorer.synth import SynthConfig, generate
    from explorer.testing.cohorts import TEST_KEY, pseudonym_key

    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(folder=tmp_path)), ("scancel", FAKE_SCANCEL)):
        (bin_folder / name).write_text(text)
        (bin_folder / name).chmod(0o755)
    generate(tmp_path / "cohort", SynthConfig(participants=6, days=2, seed=5, start=date(2024, 5, 6), workers=1))
    root = f"s3://{object_store.bucket}/slurm-site"
    with pseudonym_key():
        explorer.open(root, storage_options=object_store.storage_options).ingest(tmp_path / "cohort", quality=False)
    env = {**os.environ, **object_store.storage_options, "EXPLORER_PSEUDONYM_KEY": TEST_KEY,
           "PATH": f"{bin_folder}:{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "slurm.py"), "--lake", root, "--jobs", "2",
                             "--cores", "1", "--memory", "2GB", "--scheduler-host", "127.0.0.1", "--timeout", "120",
                             "refresh"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "submitted 2 job(s) for 2 worker(s)" in result.stdout
    assert "on tcp://127.0.0.1:" in result.stdout  # the refresh ran on the launcher's cluster
    scripts = sorted(tmp_path.glob("job-*.sh"))
    assert len(scripts) == 2 and all("distributed.cli.dask_worker tcp://127.0.0.1:" in s.read_text() for s in scripts)
    assert not any("AWS_SECRET" in s.read_text() for s in scripts)  # credentials are not written to disk
    lake = explorer.open(root, storage_options=object_store.storage_options, create=False)
    outputs = {step_class.output for step_class in load_steps().values()}
    assert {"wearable_daily", "exposure_daily"} <= set(lake.tables()) & outputs
    assert lake.row_count("wearable_daily") > 0


def test_the_kubernetes_launcher_describes_workers_of_the_image_with_the_store_secret():
    pytest.importorskip("dask_kubernetes")
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "kubernetes.py"), "--lake", "s3://cohort/site",
                             "--image", "registry.site/cohort-explorer:1.0", "--workers", "5", "--cpu", "4",
                             "--memory", "16G", "--secret", "store-credentials", "--dry-run", "refresh", "--full"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cluster = json.loads(result.stdout)
    assert cluster["kind"] == "DaskCluster" and cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]
    assert worker["replicas"] == 5
    (container,) = worker["spec"]["containers"]
    assert container["image"] == "registry.site/cohort-explorer:1.0"
    assert container["args"][:3] == ["dask-worker", "--nthreads", "1"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16G"}
    assert container["envFrom"] == [{"secretRef": {"name": "store-credentials"}}]
    assert "AWS" not in result.stdout  # no credential in the manifest
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["image"] == "registry.site/cohort-explorer:1.0" and "envFrom" not in scheduler
    wrong = subprocess.run([sys.executable, str(ROOT / "deploy" / "kubernetes.py"), "--lake", "s3://c/s", "--image", "i",
                            "--dry-run"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "give the command to run on the cluster" in wrong.stderr
