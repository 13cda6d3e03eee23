#!/usr/bin/env python
"""Ingest into, or refresh, a lake on a SLURM cluster: dask-jobqueue submits the Dask workers as
batch jobs, and `explorer ingest|refresh --scheduler` runs on them; the workers share nothing with
this machine but the lake's object storage.

    python deploy/slurm.py --lake s3://cohort/site-a --jobs 4 --cores 16 --processes 4 \\
        --memory 64GB --walltime 02:00:00 --queue normal refresh
    python deploy/slurm.py --lake s3://cohort/site-a --jobs 2 ingest /data/delivery-2026-12
    python deploy/slurm.py ... --dry-run refresh       # print the job script, submit nothing

Run it on a login or submit node. The compute nodes need the same installation at the same path
(dask-jobqueue starts workers with this Python), and reach the object store; sbatch passes this
shell's environment on (``--export=ALL``, SLURM's default), so set ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``EXPLORER_PSEUDONYM_KEY[_FILE]`` for an
ingest) here, never in a job script on disk. Needs ``pip install 'cohort-explorer[cluster]'``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from _launch import explorer_argv, parse_with_command  # beside this script


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="the lake: s3://bucket/prefix (or a folder every node mounts)")
    parser.add_argument("--jobs", type=int, default=2, help="batch jobs of workers to submit (default 2)")
    parser.add_argument("--cores", type=int, default=8, help="cores per job (default 8)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes per job (default: one per core)")
    parser.add_argument("--memory", default="32GB", help="memory per job (default 32GB)")
    parser.add_argument("--walltime", default="01:00:00", help="each job's time limit (default 01:00:00)")
    parser.add_argument("--queue", default=None, help="partition (sbatch -p)")
    parser.add_argument("--account", default=None, help="account to charge (sbatch -A)")
    parser.add_argument("--scheduler-host", default=None,
                        help="address the workers reach the scheduler on (default: this node's hostname)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the workers (default 600)")
    parser.add_argument("--dry-run", action="store_true", help="print the job script and the command; submit nothing")
    return parse_with_command(parser, argv)


def make_cluster(args):
    from dask_jobqueue import SLURMCluster

    processes = args.processes or args.cores
    scheduler = {"dashboard_address": None, **({"host": args.scheduler_host} if args.scheduler_host else {})}
    return SLURMCluster(cores=args.cores, processes=processes, memory=args.memory, walltime=args.walltime,
                        queue=args.queue, account=args.account, job_name="explorer-workers",
                        scheduler_options=scheduler,
                        # one thread per worker process: DuckDB and the readers use their own threads
                        worker_extra_args=["--nthreads", "1"] if processes != args.cores else [])


def main(argv=None) -> int:
    args = parse(argv)
    cluster = make_cluster(args)
    try:
        command = explorer_argv(args, cluster.scheduler_address)
        if args.dry_run:
            print(cluster.job_script())
            print("# then, once the workers are up:\nexplorer " + " ".join(shlex.quote(part) for part in command))
            return 0
        from distributed import Client

        from explorer.command import main as explorer

        cluster.scale(jobs=args.jobs)
        workers = args.jobs * (args.processes or args.cores)
        print(f"submitted {args.jobs} job(s) for {workers} worker(s); waiting for them (up to {args.timeout:.0f} s)",
              flush=True)
        with Client(cluster) as client:
            client.wait_for_workers(workers, timeout=args.timeout)
        return explorer(command)
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
