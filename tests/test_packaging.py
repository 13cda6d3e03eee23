"""The wheel a site installs: built from this checkout, installed into a fresh virtual environment
(not the editable install the tests run in), it serves every page of the suite from there."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from explorer.serve import pages
from test_dashboards_browser import browser, demo_logins, free_port, wait_for  # noqa: F401  (browser: a fixture)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # build isolation fetches the build backend (hatchling) from the package index, as pip does for a user
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return next(dist.glob("cohort_explorer-*.whl"))


def test_the_wheel_carries_the_pages_the_catalog_and_the_notebooks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in pages():
        if (ROOT / "dashboards" / f"{name}.py").is_file():
            assert f"explorer/_dashboards/{name}.py" in names, name
    assert {"explorer/_dashboards/_login.html", "explorer/_dashboards/_logout.html", "explorer/_dashboards/_root.html"} <= names
    assert "explorer/_data_catalog/measurement.yaml" in names
    assert any(n.startswith("explorer/_notebooks/") and n.endswith(".ipynb") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[explorer.steps]" in declared and "[explorer.metrics]" in declared


@pytest.mark.slow
def test_an_installed_wheel_serves_every_page(wheel, tmp_path, browser):
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies come from this test environment (appended after the fresh environment's own
    # packages; a .pth line adds a folder but runs none of its .pth files, so the editable install of
    # this checkout stays out): the wheel itself is what the fresh environment imports.
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import explorer, explorer.serve as s; print(explorer.__file__); "
                                               "print(s.DASHBOARDS); print(sorted(s.pages()))"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr[-3000:]
    module, dashboards, served = where.stdout.splitlines()[-3:]
    assert module.startswith(str(site)) and dashboards.startswith(str(site)), where.stdout
    assert ast.literal_eval(served) == sorted(pages())

    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("EXPLORER_HOME", "EXPLORER_CATALOG", "PYTHONPATH")}
    server = subprocess.Popen([str(env / "bin" / "explorer"), "--lake", str(tmp_path / "lake"), "demo", "--participants", "4",
                               "--days", "2", "--port", str(port)], cwd=tmp_path, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        logins = demo_logins(server, seconds=400)
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/login", server)
        for role in ("public", "researcher"):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/index")
            page.fill("input[name=username]", role)
            page.fill("input[name=password]", logins[role])
            page.click("button[type=submit]")
            for name, declared in pages().items():
                page.goto(f"{base}/{name}")
                # the page was built by the installed package: its heading and the signed-in line
                try:
                    page.locator("text=signed in as").wait_for(timeout=60_000)
                except Exception:
                    pytest.fail(f"{role}: page {name} shows no 'signed in as' after 60 s; it shows "
                                f"{page.inner_text('body')[:1500]!r}")
                assert page.locator("h2", has_text=declared.title).count() == 1, (role, name)
            page.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_what_the_demo_writes_beside_the_lake_is_ignored_by_git():
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not in a git checkout")
    paths = ["explorer-data/tables/person", "explorer-data.users.json", "explorer-data.pseudonym.key",
             "explorer-data-synth-cohort/README.md", "lake.users.json", "lake-synth-cohort/fhir/p.json",
             "explorer-data.audit.key", "explorer-data.audit-head.json"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=root, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(paths), result.stderr
