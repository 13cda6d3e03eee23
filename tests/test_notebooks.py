"""The researcher notebooks: committed without outputs, executed top to bottom by a real kernel
on a fresh demo lake, and run cell by cell through a real Jupyter server started by
`explorer lab`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

import nbformat
import pytest

import explorer

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WORKFLOWS = ["01-quick-start", "02-wearables", "03-environment", "04-ageing", "05-cohorts", "06-scale-out", "07-analyses"]
#: notebooks that need a cohort with the analyses' effects planted (explorer synth --plant-analyses)
ON_PLANTED_LAKE = {"07-analyses"}
VIEW_OUTPUT = "application/vnd.holoviews_exec.v0+json"  # what a Panel/HoloViews object renders as in Jupyter


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    """The lake `explorer demo --no-serve --participants 20 --days 7` builds (smaller than the
    demo's default, to keep the suite fast; a week, since the circadian metrics need 7 days),
    built once; each notebook runs on a copy of it, since some write (a saved cohort, a refresh)."""
    from explorer.demo import run_demo

    lake = explorer.open(tmp_path_factory.mktemp("notebook-demo") / "explorer-data")
    run_demo(lake, participants=20, days=7, say=lambda *args, **kwargs: None)
    return lake


@pytest.fixture(scope="module")
def executed(demo_lake, tmp_path_factory, request):
    """Each notebook executed once by a real kernel (nbclient) on its own fresh copy of the demo
    lake; any error in any cell raises CellExecutionError, naming the cell and the traceback."""
    from nbclient import NotebookClient

    done = {}

    def run(path: Path):
        if path not in done:
            folder = tmp_path_factory.mktemp(path.stem)
            previous = os.environ.get("EXPLORER_HOME")
            lake = request.getfixturevalue("planted_analyses")[0] if path.stem in ON_PLANTED_LAKE else demo_lake
            os.environ["EXPLORER_HOME"] = str(fresh_copy(lake, folder))  # the kernel inherits it
            try:
                notebook = nbformat.read(path, as_version=4)
                NotebookClient(notebook, timeout=600, kernel_name="python3",
                               resources={"metadata": {"path": str(folder)}}).execute()
            finally:
                if previous is None:
                    del os.environ["EXPLORER_HOME"]
                else:
                    os.environ["EXPLORER_HOME"] = previous
            done[path] = notebook
        return done[path]

    return run


def fresh_copy(lake, folder: Path) -> Path:
    root = folder / "explorer-data"
    shutil.copytree(lake.root, root)
    return root


def test_the_notebooks_are_the_seven_workflows():
    assert [path.stem for path in NOTEBOOKS] == WORKFLOWS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [k for k, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them (`jupyter nbconvert --clear-output --inplace`)"
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name} carries widget state in its metadata"
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_top_to_bottom_on_a_fresh_demo_lake(path, executed):
    notebook = executed(path)
    view_cells = [cell for cell in notebook.cells if cell.cell_type == "code"
                  and (".panel()" in cell.source or "views." in cell.source.splitlines()[-1])]
    assert view_cells, f"{path.name} shows no view"
    for cell in view_cells:  # each view rendered as a live Panel/HoloViews object, not as text
        assert any(VIEW_OUTPUT in output.get("data", {}) for output in cell.outputs), cell.source


@pytest.mark.slow
def test_a_notebook_view_is_the_dashboard_object(demo_lake, executed):
    """The quick start's figure is the overview dashboard's: the same class, rendering the same
    title and counts in the kernel as on the server."""
    from explorer.views import DemographicCounts

    dashboard = (ROOT / "dashboards" / "overview.py").read_text()
    assert "DemographicCounts" in dashboard
    notebook = executed(ROOT / "notebooks" / "01-quick-start.ipynb")
    cell = next(c for c in notebook.cells if c.cell_type == "code" and 'DemographicCounts(lake=lake, by="age_band")' in c.source)
    rendered = json.dumps([output.get("data", {}) for output in cell.outputs])
    served = DemographicCounts(lake=demo_lake, by="age_band")
    assert json.dumps(served.title())[1:-1] in rendered
    for band, count in zip(served.data()["age_band"], served.data()["count"]):
        assert band in rendered and count > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute(ws, code: str, timeout: float = 300) -> list[dict]:
    """Run ``code`` on the kernel behind the websocket; return its iopub messages (Jupyter's
    messaging protocol, JSON over the server's kernel channels websocket)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": "test-session", "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True}}))
    messages, deadline = [], time.time() + timeout
    while time.time() < deadline:
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["channel"] == "shell" and message["msg_type"] == "execute_reply":
            assert message["content"]["status"] == "ok", (code, message["content"], messages)
            return messages
        if message["channel"] == "iopub":
            messages.append(message)
    raise AssertionError(f"no reply in {timeout} s to: {code[:200]}")


@pytest.mark.slow
def test_explorer_lab_serves_a_kernel_that_runs_the_quick_start(demo_lake, tmp_path):
    import websocket

    lake_root = fresh_copy(demo_lake, tmp_path)
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter"  # no user settings or runtime files from this machine
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "EXPLORER_HOME": "/nonexistent/not-this-lake"}
    server = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", str(lake_root), "lab", "--port", str(port),
                               "--", f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    try:
        deadline = time.time() + 120
        while True:
            try:
                urlopen(Request(base + "/api/status", headers=headers), timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    server.kill()
                    raise AssertionError(f"explorer lab did not start:\n{server.stdout.read()}")
                time.sleep(0.5)
        listing = json.load(urlopen(Request(base + "/api/contents", headers=headers)))
        assert {f"{name}.ipynb" for name in WORKFLOWS} <= {item["name"] for item in listing["content"]}
        kernel = json.load(urlopen(Request(base + "/api/kernels", data=b"{}", headers=headers, method="POST")))
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}",
                                         timeout=300)
        try:
            said = execute(ws, "import os; print(os.environ['EXPLORER_HOME'])")
            assert [m["content"]["text"].strip() for m in said if m["msg_type"] == "stream"] == [str(lake_root.resolve())]
            notebook = nbformat.read(ROOT / "notebooks" / "01-quick-start.ipynb", as_version=4)
            shown = 0
            for cell in notebook.cells:
                if cell.cell_type == "code":
                    outputs = execute(ws, cell.source)
                    assert not [m for m in outputs if m["msg_type"] == "error"], cell.source
                    shown += sum(VIEW_OUTPUT in m["content"].get("data", {}) for m in outputs
                                 if m["msg_type"] in ("display_data", "execute_result"))
            assert shown >= 2  # the researcher's and the public figure
        finally:
            ws.close()
            urlopen(Request(f"{base}/api/kernels/{kernel['id']}", headers=headers, method="DELETE"))
    finally:
        server.terminate()  # explorer lab became Jupyter: stopping it leaves no server behind
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    with pytest.raises(OSError):
        urlopen(Request(base + "/api/status", headers=headers), timeout=2)


def test_explorer_lab_refuses_a_missing_notebooks_folder_or_lake(tmp_path):
    explorer.open(tmp_path / "lake")
    done = subprocess.run([sys.executable, "-m", "explorer.command", "--lake", str(tmp_path / "lake"), "lab", "--dir",
                           str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "nowhere: no such folder" in done.stderr
    # notebooks on a folder without a lake would each fail on their first query: refused before Jupyter starts
    done = subprocess.run([sys.executable, "-m", "explorer.command", "--lake", str(tmp_path / "no-lake"), "lab", "--dir",
                           str(ROOT / "notebooks")], capture_output=True, text=True)
    assert done.returncode == 2 and "no lake at" in done.stderr and "explorer demo" in done.stderr
    assert not (tmp_path / "no-lake").exists()


def test_a_notebook_on_an_empty_lake_says_what_to_run(tmp_path):
    with pytest.raises(explorer.errors.TableNotFoundError, match="explorer demo --no-serve"):
        explorer.open(tmp_path / "empty").require("person", "wearable_daily")
