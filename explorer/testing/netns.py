"""Separate hosts on one machine for tests: Linux network namespaces joined by veth pairs to a
bridge, so that processes in them reach one another (and the machine's own end of the bridge)
only over that private network, as machines of a cluster would.

Needs root and iproute2 (``ip``). Each :class:`Hosts` has its own bridge and subnet, named from
the process id, and removes them when closed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip` (apt-get install -y iproute2)"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Hosts:
    """A bridge ``10.<net>.0.1/24`` on this machine and one namespace per host name, each with
    its address on the bridge's subnet (``address(name)``)."""

    names: tuple[str, ...]
    net: int = field(default_factory=lambda: 60 + os.getpid() % 150)
    tag: str = field(default_factory=lambda: f"ex{os.getpid() % 100000}")

    def __post_init__(self):
        self.bridge = f"{self.tag}br"
        self.gateway = f"10.{self.net}.0.1"
        self.made: list[str] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for k, name in enumerate(self.names, 2):
                namespace, outside = self.namespace(name), f"{self.tag}v{k}"
                _ip("netns", "add", namespace)
                self.made.append(namespace)
                _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("link", "set", outside, "master", self.bridge)
                _ip("link", "set", outside, "up")
                _ip("-n", namespace, "addr", "add", f"10.{self.net}.0.{k}/24", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "eth0", "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def namespace(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def address(self, name: str) -> str:
        return f"10.{self.net}.0.{self.names.index(name) + 2}"

    def command(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``name``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    def close(self) -> None:
        for namespace in self.made:
            subprocess.run(["ip", "netns", "pids", namespace], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.made = []

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
