"""Lineage: every commit records its inputs; the graph answers upstream and downstream.

A reference is ``raw:<sha256>`` (a file in the raw zone) or ``<table>@<version>``.

Appends accumulate: version *v* of a table holds the rows of every commit since the last
overwrite at or before *v*. So the inputs of ``t@v`` are the inputs of all those commits, and a
commit that cites ``x`` makes every later version up to the next overwrite derived from ``x``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

from explorer.errors import LineageError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake.lake import Lake

_RAW = re.compile(r"^raw:([0-9a-f]{64})$")
_TABLE = re.compile(r"^([a-z][a-z0-9_]*)@(\d+)$")


def parse_ref(ref: str) -> tuple[str, str, int | None]:
    """Split a reference into ``("raw", sha256, None)`` or ``("table", name, version)``."""
    if not isinstance(ref, str):
        raise LineageError(f"lineage reference {ref!r}: expected a string")
    if m := _RAW.match(ref):
        return "raw", m.group(1), None
    if m := _TABLE.match(ref):
        return "table", m.group(1), int(m.group(2))
    raise LineageError(f"lineage reference {ref!r}: expected 'raw:<64 hex sha256>' or '<table>@<version>'")


@dataclass(frozen=True)
class Lineage:
    """Where one dataset version came from and what was made from it."""

    node: str
    inputs: tuple[str, ...]
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    edges: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.edges, columns=["source", "target"])

    def __str__(self) -> str:
        lines = [self.node, "  made from:"]
        lines += [f"    {r}" for r in self.upstream] or ["    (nothing recorded)"]
        lines.append("  used by:")
        lines += [f"    {r}" for r in self.downstream] or ["    (nothing yet)"]
        return "\n".join(lines)


class LineageGraph:
    """All commits of all tables of a lake, indexed for lineage queries."""

    def __init__(self, commits: dict[str, list[tuple[int, str, list[str]]]]):
        # commits[table] = [(version, mode, inputs), ...] sorted by version
        self.commits = {t: sorted(c) for t, c in commits.items()}
        self.cited_by: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for table, rows in self.commits.items():
            for version, _mode, inputs in rows:
                for ref in inputs:
                    self.cited_by[ref].append((table, version))

    @classmethod
    def build(cls, lake: Lake) -> LineageGraph:
        from explorer.lake.lake import META_PREFIX

        commits = {}
        for table in lake.tables():
            rows = []
            for entry in lake.delta(table).history():
                mode = entry.get(f"{META_PREFIX}mode") or (entry.get("operationParameters") or {}).get("mode", "append")
                rows.append((int(entry["version"]), str(mode).lower(), json.loads(entry.get(f"{META_PREFIX}inputs", "[]"))))
            commits[table] = rows
        return cls(commits)

    def latest(self, table: str) -> int:
        return self.commits[table][-1][0]

    def inputs_of(self, table: str, version: int) -> list[str]:
        """Direct inputs of ``table@version``: those of every commit it still contains."""
        out: list[str] = []
        for v, mode, inputs in reversed(self.commits.get(table, [])):
            if v > version:
                continue
            out = inputs + out
            if mode == "overwrite":
                break
        return list(dict.fromkeys(out))

    def versions_containing(self, table: str, version: int) -> list[int]:
        """Versions of ``table`` that still hold the rows committed at ``version``."""
        out = []
        for v, mode, _ in self.commits.get(table, []):
            if v < version:
                continue
            if v > version and mode == "overwrite":
                break
            out.append(v)
        return out

    def lineage(self, name: str, version: int | None = None) -> Lineage:
        if name.startswith("raw:"):
            parse_ref(name)
            node = name
        else:
            if "@" in name:
                _, name, version = parse_ref(name)
            if name not in self.commits:
                raise LineageError(f"no table '{name}' in this lake")
            version = self.latest(name) if version is None else int(version)
            if version not in {v for v, _, _ in self.commits[name]}:
                raise LineageError(f"{name}@{version} does not exist: versions are 0..{self.latest(name)}")
            node = f"{name}@{version}"
        edges: set[tuple[str, str]] = set()

        upstream: list[str] = []
        seen, queue = {node}, deque([node])
        while queue:
            current = queue.popleft()
            kind, table, v = parse_ref(current)
            if kind == "raw":
                continue
            for ref in self.inputs_of(table, v):
                edges.add((ref, current))
                if ref not in seen:
                    seen.add(ref)
                    upstream.append(ref)
                    queue.append(ref)

        downstream: list[str] = []
        seen, queue = {node}, deque([node])
        while queue:
            current = queue.popleft()
            kind, table, v = parse_ref(current)
            cited = list(self.cited_by.get(current, []))
            if kind == "table":  # later appends of the same table still hold these rows
                cited += [(table, later) for later in self.versions_containing(table, v) if later > v]
            for table, v in cited:
                for derived in self.versions_containing(table, v):
                    ref = f"{table}@{derived}"
                    edges.add((current, ref))
                    if ref not in seen:
                        seen.add(ref)
                        downstream.append(ref)
                        queue.append(ref)
        direct = tuple(self.inputs_of(*parse_ref(node)[1:])) if not node.startswith("raw:") else ()
        return Lineage(node, direct, tuple(upstream), tuple(downstream), tuple(sorted(edges)))
