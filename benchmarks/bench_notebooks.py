"""Researcher notebooks (issue 12): each runs top to bottom on the demo lake in at most 2 minutes.

Each notebook is executed by a real kernel (nbclient) on a fresh copy of the lake `explorer demo
--no-serve` builds (20 participants x 7 days), as the test suite runs them. Baseline in the same
run: a notebook of one cell, `import explorer` (a kernel's start and the suite's import), the
floor every notebook pays.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from benchmarks.harness import DATA, Result, benchmark

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _execute(notebook, lake_root: Path, workdir: Path) -> float:
    from nbclient import NotebookClient

    os.environ["EXPLORER_HOME"] = str(lake_root)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return time.perf_counter() - started


@benchmark("notebooks")
def run(scale: float, repeats: int, progress) -> list[Result]:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    import explorer
    from explorer.demo import run_demo

    root = DATA / "notebooks"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    progress(0, len(NOTEBOOKS) + 1, "explorer demo --no-serve")
    demo = explorer.open(root / "demo" / "explorer-data")
    participants, days = (20, 7) if scale >= 1 else (6, 7)  # a week: the circadian metrics need 7 days
    run_demo(demo, participants=participants, days=days, say=lambda *args, **kwargs: None)
    previous = os.environ.get("EXPLORER_HOME")
    try:
        floor = new_notebook()
        floor.cells = [new_code_cell("import explorer")]
        baseline = _execute(floor, demo.root, root)
        results = [Result("notebooks", "kernel start + import explorer", baseline, "s", note="the floor of every notebook")]
        for k, path in enumerate(NOTEBOOKS, start=1):
            progress(k, len(NOTEBOOKS) + 1, path.stem)
            lake_root = root / path.stem / "explorer-data"
            shutil.copytree(demo.root, lake_root)
            seconds = _execute(nbformat.read(path, as_version=4), lake_root, root / path.stem)
            results.append(Result("notebooks", path.stem, seconds, "s", "kernel start + import explorer", baseline, None,
                                  f"top to bottom on a fresh demo lake {participants} x {days}",
                                  limit=120.0 if scale >= 1 else None))
    finally:
        if previous is None:
            os.environ.pop("EXPLORER_HOME", None)
        else:
            os.environ["EXPLORER_HOME"] = previous
    progress(len(NOTEBOOKS) + 1, len(NOTEBOOKS) + 1, "done")
    return results
