"""A site package extends the suite through entry points alone: a small plugin written here (an
installed distribution: a package plus its ``.dist-info`` with ``entry_points.txt``, on the path)
adds a dataset, a reader, a refresh step, a metric and a page, and each shows up where the suite's
own do: ingest, refresh (a LocalCluster and real ``dask worker`` processes), the metric registry
and cohort criteria, and the served landing page. No file of the suite is edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import explorer
from explorer import cohorts
from explorer.catalog.metrics import METRICS
from explorer.jobs import refresh
from explorer.jobs.steps import STEPS
from test_dashboards_browser import PASSWORDS, browser, free_port, logged_in, open_page, wait_for  # noqa: F401

DASK = Path(sys.executable).parent / "dask"

PLUGIN = {
    "site_air/__init__.py": '"""Personal air monitors: a site\'s own data, reader, step, metric and page."""\n',
    "site_air/catalog/__init__.py": "",
    "site_air/catalog/air_personal.yaml": """
        name: air_personal
        description: Personal PM2.5 monitor readings, one row per person and reading.
        kind: table
        layer: unified
        sensitivity: researcher
        owner: site-air
        entity: person_id
        time: datetime
        schema:
        - {name: person_id, type: string, nullable: false, description: Pseudonym of the participant.}
        - {name: datetime, type: timestamp, nullable: false, description: Local time of the reading.}
        - {name: pm25_personal, type: float64, unit: ug/m3, description: PM2.5 at the monitor., checks: {range: [0, 1000]}}
        - {name: source_file, type: string, description: SHA-256 of the raw file.}
        """,
    "site_air/catalog/air_personal_daily.yaml": """
        name: air_personal_daily
        description: Per person and day, the mean of the personal PM2.5 readings.
        kind: table
        layer: aggregate
        sensitivity: researcher
        owner: site-air
        entity: person_id
        time: date
        schema:
        - {name: person_id, type: string, nullable: false, description: Pseudonym of the participant.}
        - {name: date, type: date, nullable: false, description: Local day.}
        - {name: pm25_personal, type: float64, unit: ug/m3, description: Daily mean PM2.5 at the monitor.}
        - {name: person_bucket, type: int32, nullable: false, description: Refresh partition.}
        """,
    "site_air/reader.py": '''
        """The site's monitor export: CSV with the header ``site_air,person,datetime,pm25``, one reading a row."""
        import pandas as pd

        from explorer.ingest.readers import Reader, ReadResult


        class AirMonitorReader(Reader):
            format = "site_air_csv"
            order = 90
            description = "personal air monitor export (site_air,person,datetime,pm25)"

            def sniff(self, path, head):
                return None if head.startswith(b"site_air,") else "no site_air header"

            def read(self, path, context):
                frame = pd.read_csv(path)
                rows = pd.DataFrame({"_row": range(1, len(frame) + 1),
                                     "person_id": context.pseudonymize(frame["person"].astype(str)),
                                     "datetime": pd.to_datetime(frame["datetime"]),
                                     "pm25_personal": frame["pm25"].astype(float)})
                return ReadResult(rows_read=len(frame), tables={"air_personal": rows})
        ''',
    "site_air/steps.py": '''
        """The site's aggregate: daily mean of each person's monitor."""
        from explorer.jobs.steps import RefreshStep, bucket_sql


        class AirPersonalDaily(RefreshStep):
            name = "air_personal_daily"
            description = "per person and day: mean personal PM2.5"
            inputs = ("air_personal",)
            output = "air_personal_daily"
            partition = "person_bucket"

            def compute(self, con, partition):
                return con.execute(f"""
                    SELECT person_id, CAST(datetime AS DATE) AS date, avg(pm25_personal) AS pm25_personal,
                           {bucket_sql()} AS person_bucket
                    FROM air_personal WHERE {partition.where()} GROUP BY ALL ORDER BY ALL""").df()
        ''',
    "site_air/metrics.py": '''
        from explorer.catalog.metrics import Metric


        def daily_mean(readings):
            """Mean of a person's readings of one local day (ug/m3)."""
            return readings.mean()


        PERSONAL_PM25 = Metric("personal_pm25", "Daily mean PM2.5 at a personal monitor", "air_personal_daily",
                               "pm25_personal", function=daily_mean, reference="site SOP 12", domain="exposure")
        ''',
    "site_air/page.py": '''
        """Air: the site's own page."""
        import panel as pn

        from explorer.serve import page

        PAGE = {"title": "Personal air", "order": 35, "roles": ["researcher", "steward"],
                "summary": "personal PM2.5 monitors of the site's participants"}


        def build(lake, role):
            return [pn.pane.Markdown("Monitors of the site.")]


        page(PAGE, build).servable(title=PAGE["title"])
        ''',
    "site_air-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: site-air\nVersion: 0.1\n",
    "site_air-0.1.dist-info/entry_points.txt": """
        [explorer.catalog]
        site_air = site_air.catalog

        [explorer.readers]
        site_air_csv = site_air.reader:AirMonitorReader

        [explorer.steps]
        site_air = site_air.steps

        [explorer.metrics]
        personal_pm25 = site_air.metrics:PERSONAL_PM25

        [explorer.pages]
        air = site_air.page
        """,
}

#: readings of three persons: p1 breathes dirty air, p2 clean, p3 in between
READINGS = """site_air,person,datetime,pm25
reading,p1,2024-06-03 08:00,40
reading,p1,2024-06-03 20:00,30
reading,p1,2024-06-04 08:00,36
reading,p2,2024-06-03 08:00,5
reading,p2,2024-06-04 08:00,7
reading,p3,2024-06-03 09:00,18
reading,p3,2024-06-03 21:00,24
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin, installed (on the path with its metadata) for this process and its children."""
    site = tmp_path / "site-packages"
    for name, text in PLUGIN.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EXPLORER_PSEUDONYM_KEY", "a-test-key-of-more-than-16-bytes")
    monkeypatch.delenv("EXPLORER_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    from explorer.ingest.readers import reset_readers

    reset_readers()
    METRICS.reload()
    yield site
    for module in [m for m in sys.modules if m == "site_air" or m.startswith("site_air.")]:
        del sys.modules[module]
    STEPS.pop("air_personal_daily", None)
    METRICS.unregister("personal_pm25")
    monkeypatch.undo()
    reset_readers()
    METRICS.reload()


def ingested(tmp_path) -> explorer.Lake:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "monitors.csv").write_text(READINGS)
    lake = explorer.open(tmp_path / "lake")
    report = lake.ingest(incoming)
    assert report.count("accepted") == 1 and report.files[0].format == "site_air_csv", report
    assert report.files[0].rows_accepted == 7, report
    persons = lake.sql("SELECT DISTINCT person_id FROM air_personal ORDER BY person_id")
    lake.write("person", pd.DataFrame({"person_id": persons["person_id"], "year_of_birth": 1960}), mode="overwrite")
    return lake


def expected_daily(lake) -> pd.DataFrame:
    raw = lake.sql("SELECT person_id, CAST(datetime AS DATE) AS date, pm25_personal FROM air_personal")
    return raw.groupby(["person_id", "date"], as_index=False)["pm25_personal"].mean()


def daily(lake) -> pd.DataFrame:
    frame = lake.sql("SELECT person_id, date, pm25_personal FROM air_personal_daily ORDER BY person_id, date")
    return frame.astype({"date": "datetime64[us]"})


def test_a_plugin_adds_a_dataset_reader_step_and_metric_that_reach_ingest_refresh_and_cohorts(plugin, tmp_path):
    lake = ingested(tmp_path)
    assert lake.row_count("air_personal") == 7
    assert "air_personal" in lake.catalog and lake.catalog["air_personal_daily"].column("pm25_personal").unit == "ug/m3"

    report = refresh(lake, steps=["air_personal_daily"], workers=1)  # a LocalCluster
    assert not report.failed and report.steps[0].status == "succeeded", report
    expected = expected_daily(lake).astype({"date": "datetime64[us]"}).sort_values(["person_id", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(daily(lake), expected, check_dtype=False)

    metric = METRICS["personal_pm25"]
    assert metric.units == "ug/m3" and metric.unit_label == "µg/m³"
    assert "personal_pm25" in cohorts.EXPOSURE_VARIABLES and "personal_pm25" in explorer.exposure.METRICS
    definition = cohorts.loads("""
        name: dirty-air
        index_date: {rule: fixed, date: 2024-06-05}
        inclusion:
          - {kind: exposure, variable: personal_pm25, statistic: mean, value: {gte: 20}, window: {start: -7, end: 0}}
        """)
    members = set(cohorts.members(lake, definition)["person_id"])
    by_person = expected.groupby("person_id")["pm25_personal"].mean()
    assert members == set(by_person[by_person >= 20].index) and len(members) == 2  # p1 and p3, not p2


@pytest.mark.slow
def test_the_plugin_step_runs_on_real_dask_worker_processes(plugin, tmp_path):
    lake = ingested(tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    environment = {**os.environ}  # PYTHONPATH holds the plugin: installed where the workers run, nothing else set
    environment.pop("EXPLORER_STEP_MODULES", None)
    started = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(scheduler_file)], env=environment,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        started += [subprocess.Popen([str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                      "--no-nanny", "--no-dashboard", "--name", f"w{k}"], env=environment,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                    for k in range(2)]
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            # the workers import the step themselves, from the plugin's entry point
            found = client.run(lambda: __import__("explorer.jobs.steps", fromlist=["load_steps"]).load_steps()
                               .get("air_personal_daily").__module__)
        assert set(found.values()) == {"site_air.steps"}, found
        result = subprocess.run([sys.executable, "-m", "explorer.command", "--lake", str(lake.root), "refresh",
                                 "--scheduler", address, "--step", "air_personal_daily"],
                                capture_output=True, text=True, timeout=300, env=environment)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=30)
    lake = explorer.open(lake.root)
    expected = expected_daily(lake).astype({"date": "datetime64[us]"}).sort_values(["person_id", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(daily(lake), expected, check_dtype=False)


@pytest.mark.slow
def test_the_plugin_page_is_served_and_listed_on_the_landing_page_for_its_roles(plugin, tmp_path, browser):
    from explorer.serve import Credentials, pages

    assert pages()["air"].title == "Personal air" and list(pages()).index("air") == 4  # order 35: after environment
    lake = ingested(tmp_path)
    users = tmp_path / "users.json"
    for role, password in PASSWORDS.items():
        Credentials.add(users, role, role, password)
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", str(lake.root), "serve", "--auth",
                               str(users), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "EXPLORER_SESSION_CHECK_SECONDS": "0"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/login", server, tmp_path / "serve.log")
        researcher = logged_in(browser, base, "researcher")
        listing = researcher.locator("a", has_text="Personal air")
        assert listing.count() >= 2  # in the navigation and in the landing page's list
        assert researcher.locator("text=personal PM2.5 monitors").count() == 1
        open_page(researcher, base + "/air")
        researcher.locator("text=Monitors of the site.").wait_for(timeout=30_000)
        public = logged_in(browser, base, "public")
        assert public.locator("a", has_text="Personal air").count() == 0  # not declared for the public role
        open_page(public, base + "/air")
        public.locator("text=Not available to you.").wait_for(timeout=30_000)
        assert public.locator("text=Monitors of the site.").count() == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
