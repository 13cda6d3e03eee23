"""The layers of DESIGN.md, held by a test: every import between packages of ``explorer`` (and from
``dashboards/``) must be an edge the table below allows; no cycle between packages; no private
name imported from another package; no dashboard touches the lake or DuckDB.

The table is the design: storage (``errors``, ``catalog``, ``lake``) at the bottom with every
arrow pointing at it, then ingest and the analytics, jobs, privacy, views, and the applications
(serve, the command line, demo, lab) on top. Adding an edge means changing the design: say why in
the commit, or import something lower instead.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STORAGE = {"explorer.errors", "explorer.catalog", "explorer.lake"}
ANALYTICS = {"explorer.wearables", "explorer.exposure", "explorer.ageing", "explorer.cohorts"}
LIBRARY = STORAGE | ANALYTICS | {"explorer.analysis", "explorer.ingest", "explorer.jobs", "explorer.privacy", "explorer.progress"}

#: package -> the packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "explorer.errors": set(),
    "explorer.catalog": {"explorer.errors"},
    "explorer.lake": {"explorer.errors", "explorer.catalog"},
    "explorer.progress": set(),
    "explorer.synth": {"explorer.errors"},  # writes raw files only: a fair stand-in for an outside source
    "explorer.ingest": STORAGE | {"explorer.progress"},
    "explorer.wearables": STORAGE,
    "explorer.exposure": STORAGE,
    "explorer.ageing": STORAGE,
    "explorer.cohorts": STORAGE,
    # study frames read the lake, the cohorts and the analytics' tables; the models are pure
    "explorer.analysis": STORAGE | ANALYTICS,
    "explorer.jobs": STORAGE | ANALYTICS | {"explorer.progress"},
    # erasure recomputes the aggregates a person was in; pseudonyms are the ingest's keyed HMAC;
    # a released Table 1 reports the analysis' own statistics
    "explorer.privacy": STORAGE | {"explorer.jobs", "explorer.ingest", "explorer.analysis"},
    # a site answers declared analyses on its lake and releases them through privacy; the
    # coordinator pools with the analysis layer's models
    "explorer.federation": LIBRARY,
    "explorer.views": STORAGE | ANALYTICS | {"explorer.analysis", "explorer.jobs", "explorer.privacy"},
    "explorer.login": {"explorer.errors", "explorer.privacy"},
    "explorer.serve": STORAGE | {"explorer.login", "explorer.privacy", "explorer.views"},
    "explorer.testing": LIBRARY | {"explorer", "explorer.synth", "explorer.federation"},
    # the applications: everything below them
    "explorer.demo": LIBRARY | {"explorer", "explorer.synth", "explorer.serve", "explorer.login"},
    "explorer.lab": {"explorer.errors", "explorer.lake"},
    "explorer.command": LIBRARY | {"explorer", "explorer.synth", "explorer.views", "explorer.serve", "explorer.login",
                                  "explorer.demo", "explorer.lab", "explorer.federation"},
    # the public surface: explorer.open() and the ingest it registers on the lake
    "explorer": {"explorer.errors", "explorer.lake", "explorer.ingest"},
    # a dashboard is layout: it reaches data only through views (which check the role) and serve
    "dashboards": {"explorer.serve", "explorer.views"},
}


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "dashboards":
        return "dashboards"
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, imported name or None, line) of every import in the file, at any depth."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from explorer import cohorts`` imports the package explorer.cohorts, not the facade
                submodule = ROOT.joinpath(*source.split("."), alias.name)
                if source in ("explorer", "dashboards") and (submodule.is_dir() or submodule.with_suffix(".py").is_file()):
                    yield f"{source}.{alias.name}", None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def sources() -> list[Path]:
    return sorted([*ROOT.glob("explorer/**/*.py"), *ROOT.glob("dashboards/*.py")])


def edges_of(files) -> list[tuple[str, str, str, str | None, int]]:
    """(from package, to package, file, imported name, line) of every import between packages."""
    found = []
    for path in files:
        here = package_of(module_name(path))
        for source, name, line in imports(path):
            if not source.startswith(("explorer", "dashboards")) or source.split(".")[0] not in ("explorer", "dashboards"):
                continue
            there = package_of(source)
            if there != here:
                found.append((here, there, str(path.relative_to(ROOT)), name, line))
    return found


def layer_problems(files) -> list[str]:
    problems = []
    for here, there, where, name, line in edges_of(files):
        if here not in ALLOWED:
            problems.append(f"{where}: package {here} is not in the layer table of tests/test_layers.py; place it")
        elif there not in ALLOWED[here]:
            problems.append(f"{where}:{line}: {here} imports {there}, an edge the layers do not allow "
                            f"({here} may import {', '.join(sorted(ALLOWED[here])) or 'nothing of explorer'})")
        if name and name.startswith("_") and not name.startswith("__"):
            problems.append(f"{where}:{line}: imports the private name {name} from {there}")
    for path in files:
        if package_of(module_name(path)) == "dashboards":
            for source, _, line in imports(path):
                if source.split(".")[0] in ("duckdb", "deltalake") or package_of(source) in ("explorer.lake", "explorer"):
                    problems.append(f"{path.relative_to(ROOT)}:{line}: a dashboard imports {source}; "
                                    "it reaches data through explorer.views only")
    return problems


def package_cycles(edges) -> list[list[str]]:
    graph = defaultdict(set)
    for here, there, *_ in edges:
        graph[here].add(there)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_every_import_between_packages_is_an_allowed_edge():
    problems = layer_problems(sources())
    assert not problems, "\n".join(problems)


def test_no_cycle_between_packages():
    assert not package_cycles(edges_of(sources()))


def test_the_layer_table_itself_has_no_cycle():
    edges = [(here, there) for here, allowed in ALLOWED.items() for there in allowed]
    assert not package_cycles(edges)


def test_an_edge_that_breaks_a_layer_fails(tmp_path, monkeypatch):
    """The test can fail: the lake importing the ingest (the cycle this layout removed), a
    dashboard querying the lake, and a private helper imported across packages are all caught."""
    bad_lake = tmp_path / "explorer" / "lake" / "bad.py"
    bad_lake.parent.mkdir(parents=True)
    bad_lake.write_text("from explorer.ingest import ingest\n")
    bad_dashboard = tmp_path / "dashboards" / "bad.py"
    bad_dashboard.parent.mkdir()
    bad_dashboard.write_text("import explorer\nimport duckdb\n")
    bad_private = tmp_path / "explorer" / "cohorts" / "bad.py"
    bad_private.parent.mkdir()
    bad_private.write_text("from explorer.lake.lake import _first_uncastable\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = layer_problems([bad_lake, bad_dashboard, bad_private])
    assert any("explorer.lake imports explorer.ingest" in p for p in problems), problems
    assert any("dashboard imports duckdb" in p for p in problems) and any("dashboard imports explorer;" in p for p in problems)
    assert any("private name _first_uncastable" in p for p in problems)
    assert package_cycles([("explorer.lake", "explorer.ingest"), ("explorer.ingest", "explorer.lake")])


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_lake_parameter_is_annotated(path):
    """Every function that takes the lake says so in its signature (``lake: Lake``)."""
    tree = ast.parse(path.read_text())
    bare = [f"{node.name} (line {node.lineno})" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            if arg.arg == "lake" and arg.annotation is None]
    assert not bare, f"{path.relative_to(ROOT)}: annotate the lake parameter of " + ", ".join(bare)
