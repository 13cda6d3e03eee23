"""`explorer lab`: JupyterLab on the researcher notebooks, with the lake configured.

The notebooks call ``explorer.open()``, which reads ``$EXPLORER_HOME``; this module starts
JupyterLab with that variable set to the lake the command was given (``--lake`` or the default),
so every kernel started from the page opens the same lake. The notebooks folder is the
repository's ``notebooks/`` in a checkout; an installed wheel carries a copy, which is copied once
into a folder of the user's (``./explorer-notebooks``), since a notebook saved into
site-packages would be lost on the next upgrade.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from explorer.errors import ExplorerError

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

REPOSITORY_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PACKAGED_NOTEBOOKS = Path(__file__).resolve().parent / "_notebooks"
WORKING_COPY = Path("explorer-notebooks")


def notebooks_dir(directory: str | os.PathLike | None = None) -> Path:
    """The folder JupyterLab opens: ``directory`` if given; else the checkout's ``notebooks/``;
    else a working copy of the notebooks shipped in the wheel (made once, never overwritten)."""
    if directory is not None:
        path = Path(directory)
        if not path.is_dir():
            raise ExplorerError(f"--dir {path}: no such folder; give a folder of notebooks, or leave --dir out "
                                "to open the suite's own")
        return path
    if REPOSITORY_NOTEBOOKS.is_dir():
        return REPOSITORY_NOTEBOOKS
    if not PACKAGED_NOTEBOOKS.is_dir():
        raise ExplorerError("this installation carries no notebooks; give a folder with --dir")
    if not WORKING_COPY.exists():
        shutil.copytree(PACKAGED_NOTEBOOKS, WORKING_COPY)
    return WORKING_COPY


def lab_command(lake_root, directory: Path, *, port: int = 8888, address: str = "127.0.0.1", browser: bool = False,
                extra=()) -> tuple[list[str], dict]:
    """The command line and environment that start JupyterLab on ``directory`` for ``lake_root``."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(directory).resolve()}",
            f"--ServerApp.port={port}", f"--ServerApp.ip={address}", "--ServerApp.port_retries=0"]
    if not browser:
        argv.append("--no-browser")
    env = {**os.environ, "EXPLORER_HOME": str(Path(lake_root).resolve())}
    return argv + list(extra), env


def run_lab(lake: Lake, directory=None, *, port: int = 8888, address: str = "127.0.0.1", browser: bool = False,
            extra=(), say=print):
    """Become JupyterLab (this process is replaced, so a signal that stops it stops Jupyter, and
    no server is left running behind a stopped command)."""
    folder = notebooks_dir(directory)
    if not lake.tables():
        say(f"note: the lake at {lake.root} is empty; the notebooks need the demo lake: run "
            f"`explorer --lake {lake.root} demo --no-serve` first")
    argv, env = lab_command(lake.root, folder, port=port, address=address, browser=browser, extra=extra)
    say(f"JupyterLab on {folder.resolve()} with EXPLORER_HOME={env['EXPLORER_HOME']} "
        f"(open the address with its token that Jupyter prints below; Ctrl-C stops)")
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
