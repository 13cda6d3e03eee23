#!/usr/bin/env python
"""Ingest into, or refresh, a lake on Kubernetes: dask-kubernetes' operator starts a DaskCluster
(a scheduler pod and worker pods of the suite's image), and `explorer ingest|refresh --scheduler`
runs on it; the pods share nothing but the lake's object storage.

    kubectl create secret generic explorer-store --from-literal=AWS_ENDPOINT_URL=https://s3.site.example \\
        --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...
    python deploy/kubernetes.py --lake s3://cohort/site-a --image registry.site/cohort-explorer:1.0 \\
        --workers 8 --secret explorer-store refresh
    python deploy/kubernetes.py ... --dry-run refresh     # print the DaskCluster manifest only

Needs the Dask Kubernetes operator installed in the cluster (``helm install dask-kubernetes-operator
dask/dask-kubernetes-operator``), ``pip install 'cohort-explorer[cluster]'`` here, and an image
with the suite at the same version as here. Credentials reach the pods from the Secret, never from
the manifest. Run it where the scheduler's address is reachable (inside the cluster, or with
``--port-forward``, which dask-kubernetes sets up for a client outside it).
"""

from __future__ import annotations

import argparse
import json
import sys

from _launch import explorer_argv, parse_with_command  # beside this script


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="the lake: s3://bucket/prefix")
    parser.add_argument("--image", required=True, help="container image with cohort-explorer installed")
    parser.add_argument("--workers", type=int, default=4, help="worker pods (default 4)")
    parser.add_argument("--cpu", default="2", help="CPU limit per worker pod (default 2)")
    parser.add_argument("--memory", default="8G", help="memory limit per worker pod (default 8G)")
    parser.add_argument("--secret", default="explorer-store",
                        help="Secret whose keys become the pods' environment (AWS_*; EXPLORER_PSEUDONYM_KEY for ingest)")
    parser.add_argument("--name", default="explorer", help="the DaskCluster's name (default explorer)")
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (default: the context's)")
    parser.add_argument("--dry-run", action="store_true", help="print the DaskCluster manifest; create nothing")
    return parse_with_command(parser, argv)


def manifest(args) -> dict:
    """The DaskCluster resource: worker pods of ``--image`` with one thread each, their
    environment from ``--secret``."""
    from dask_kubernetes.operator import make_cluster_spec

    spec = make_cluster_spec(name=args.name, image=args.image, n_workers=args.workers,
                             resources={"limits": {"cpu": args.cpu, "memory": args.memory}},
                             worker_command=["dask-worker", "--nthreads", "1"])
    for role in ("worker", "scheduler"):
        for container in spec["spec"][role]["spec"]["containers"]:
            if container.get("env") is None:
                container.pop("env", None)  # (an empty field the API would have to accept as null)
            if role == "worker":  # only workers touch the store
                container["envFrom"] = [{"secretRef": {"name": args.secret}}]
    return spec


def main(argv=None) -> int:
    args = parse(argv)
    spec = manifest(args)
    if args.dry_run:
        print(json.dumps(spec, indent=2))
        return 0
    from dask_kubernetes.operator import KubeCluster
    from distributed import Client

    from explorer.command import main as explorer

    with KubeCluster(custom_cluster_spec=spec, namespace=args.namespace, shutdown_on_close=True) as cluster:
        with Client(cluster) as client:
            print(f"waiting for {args.workers} worker pod(s)", flush=True)
            client.wait_for_workers(args.workers, timeout=900)
        return explorer(explorer_argv(args, cluster.scheduler_address))


if __name__ == "__main__":
    sys.exit(main())
