"""Doctests of the library: ``pytest`` (no arguments) runs the examples in every docstring under
``explorer/`` beside ``tests/``.

``testpaths`` in ``pyproject.toml`` names this folder; this hook collects each of its modules as a
doctest module (what ``--doctest-modules`` would do), here only, so the test modules under
``tests/`` are not imported a second time for doctests they do not have (and
``tests/reference/``, a script for another environment, is not imported at all). With
``--doctest-modules`` given on the command line pytest's own collector does it instead, once.

Examples must run in well under a second on tiny inline data and print deterministic output;
one that needs a lake, a server or a browser is marked ``# doctest: +SKIP``.
"""

from __future__ import annotations

from _pytest.doctest import DoctestModule

#: modules not collected, with the reason: importing explorer.testing.steps registers test-only
#: refresh steps (one fails on purpose) in the process, and every later full refresh would run them
collect_ignore: list[str] = ["testing/steps.py"]


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".py" or file_path.name == "__main__.py" or parent.config.option.doctestmodules:
        return None
    return DoctestModule.from_parent(parent, path=file_path)
