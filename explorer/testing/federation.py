"""Sites for tests and benchmarks of federated studies: each with its own certificate, its own
coordinator token and a policy, served by a real ``explorer federation serve`` process (in a
network namespace when a command prefix puts it there)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from explorer.federation.policy import new_token
from explorer.federation.service import self_signed_certificate

EXPLORER = [sys.executable, "-m", "explorer.command"]


@dataclass
class SiteFiles:
    """What a site's steward hands out (certificate, token) and keeps (policy, key)."""

    name: str
    lake: Path
    address: str
    port: int
    policy: Path
    certificate: Path
    key: Path
    token: str
    token_file: Path
    queue: Path

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def study_entry(self) -> dict:
        return {"name": self.name, "url": self.url, "token_file": str(self.token_file), "ca": str(self.certificate)}


def prepare_site(folder, name: str, lake: Path, *, address: str, port: int = 8443, profile: str = "aou",
                 studies: dict, coordinator: str = "coord-1", min_persons_per_parameter: int = 10) -> SiteFiles:
    """Certificate for ``address``, a fresh coordinator token and a policy answering ``studies``
    (name -> study policy mapping; ``coordinators`` defaults to ``[coordinator]``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed_certificate([address], folder)
    token, digest = new_token()
    token_file = folder / "coordinator.token"
    token_file.write_text(token)
    policy = {"schema": "explorer.federation-policy/1", "site": name, "profile": profile,
              "min_persons_per_parameter": min_persons_per_parameter,
              "coordinators": {coordinator: {"token_sha256": digest}},
              "studies": {study: {"coordinators": [coordinator], **entry} for study, entry in studies.items()}}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return SiteFiles(name, Path(lake), address, port, path, certificate, key, token, token_file, folder / "queue")


def start_site(site: SiteFiles, *, prefix=(), timeout: float = 60, log=None) -> subprocess.Popen:
    """``explorer federation serve`` for ``site`` (run under ``prefix``, e.g. ``ip netns exec``),
    returned once it answers."""
    argv = [*prefix, *EXPLORER, "--lake", str(site.lake), "federation", "serve", "--policy", str(site.policy),
            "--cert", str(site.certificate), "--key", str(site.key), "--port", str(site.port), "--address", site.address,
            "--queue", str(site.queue)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "EXPLORER_ROLE": "steward"})
    ready = threading.Event()
    lines: list[str] = []

    def read():
        for line in process.stdout:
            lines.append(line)
            if log is not None:
                log.write(line)
                log.flush()
            if "answering on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    started = time.monotonic()
    while not ready.is_set():
        if process.poll() is not None or time.monotonic() - started > timeout:
            process.kill()
            raise RuntimeError(f"site {site.name} did not start: {''.join(lines)[-2000:]}")
        time.sleep(0.1)
    process.output = lines
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
