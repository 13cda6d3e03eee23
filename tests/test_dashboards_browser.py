"""The served dashboards in a real browser: Debian's Chromium driven by Playwright, against a
real `explorer serve` process with a credentials file, on a refreshed synthetic lake.

Screenshots of every page are kept under test-artifacts/screenshots/. Without Chromium the
tests are skipped, except in CI (``CI`` set), where a missing browser fails the run."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from explorer import cohorts
from explorer.serve import Credentials, pages

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORDS = {"public": "public-pass-123", "researcher": "researcher-pass-123"}
PAGES = list(pages())  # every page the server declares, the suite's and any installed plugin's
SAVED_COHORT = "name: adults-wearing\nindex_date: {rule: first_valid_wear_day}\ninclusion:\n  - {kind: demographics, age: {gte: 18}}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(cohort_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(cohort_lake.root, root / "lake")
    import explorer

    cohorts.save(explorer.open(root / "lake"), cohorts.loads(SAVED_COHORT))
    # a federated study run from this lake, for the Studies page (a real run's result; tests/data/README)
    from explorer.federation import save_to_lake

    save_to_lake(explorer.open(root / "lake"), json.loads((ROOT / "tests" / "data" / "federation" / "study-result.json").read_text()))
    users = root / "users.json"
    for role, password in PASSWORDS.items():
        Credentials.add(users, role, role, password)
    port = free_port()
    # the server's log goes to a file: a pipe nobody reads fills up and stops the server
    SHOTS.parent.mkdir(parents=True, exist_ok=True)
    log = (SHOTS.parent / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", str(root / "lake"), "serve", "--auth",
                                str(users), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "EXPLORER_COOKIE_SECRET": "test-cookie-secret-0123456789",
                                                     "EXPLORER_SESSION_CHECK_SECONDS": "2"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urlopen(base + "/login", timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                raise AssertionError((SHOTS.parent / "serve.log").read_text())
            time.sleep(0.5)
    else:
        process.kill()
        raise AssertionError("explorer serve did not start in 90 s")
    yield base, root / "lake"
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the browser tests (.ci/run installs it)")
        pytest.skip("no chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield chromium
        chromium.close()


def demo_logins(process, seconds: float) -> dict[str, str]:
    """The login per role `explorer demo` prints, read from its output within ``seconds``."""
    import re

    lines, logins = [], {}
    deadline = time.time() + seconds
    while len(logins) < 3 and time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.match(r"\s+log in as (\w+)\s+password (\S+)", line)
        if found:
            logins[found.group(1)] = found.group(2)
    assert set(logins) == {"public", "researcher", "steward"}, "".join(lines[-30:])
    return logins


def wait_for(url: str, process=None, log=None) -> None:
    """Wait until ``url`` answers; fail with the server's log if ``process`` ends first."""
    for _ in range(240):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server ended: {Path(log).read_text()[-3000:] if log else ''}")
        try:
            urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer" + (f": {Path(log).read_text()[-3000:]}" if log else ""))


def http_login(opener, base, user, password):
    """Log in as a browser would: the login form's CSRF token, then the POST (``opener`` keeps
    the cookies)."""
    import re
    import urllib.parse

    form = opener.open(base + "/login").read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    return opener.open(base + "/login", urllib.parse.urlencode({"csrf": token, "username": user,
                                                               "password": password}).encode())


def logged_in(browser, base, role, context=None):
    """A page logged in as ``role`` (in ``context`` if given: tabs of one browser window)."""
    page = context.new_page() if context else browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(base + "/index")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", PASSWORDS[role])
    page.click("button[type=submit]")
    page.locator("text=signed in as").wait_for(timeout=30_000)
    return page


def open_page(page, url):
    page.goto(url)
    page.locator("text=signed in as").wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")


def test_a_page_without_login_goes_to_the_login(server, browser):
    base, _ = server
    page = browser.new_page()
    page.goto(base + "/wearables")
    assert "/login" in page.url
    page.fill("input[name=username]", "public")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator("#error").inner_text() == "Invalid username or password!"
    page.close()


def test_public_sees_small_groups_hidden_and_no_person_drill_down(server, browser):
    base, lake_root = server
    page = logged_in(browser, base, "public")
    open_page(page, base + "/overview?by=race")
    table = page.locator(".counts-table")
    table.locator("text=<=20").first.wait_for(timeout=30_000)
    assert table.locator("text=<=20").count() >= 1
    import explorer

    person = explorer.open(lake_root).sql("SELECT min(person_id) AS p FROM wearable_daily")["p"].iloc[0]
    open_page(page, f"{base}/wearables?person_id={person}")
    page.locator("text=Not available to you").wait_for(timeout=30_000)
    assert page.locator("text=needs the researcher role").count() >= 1
    assert page.locator("text=Person id").count() == 0
    page.screenshot(path=str(SHOTS / "public-person-refused.png"), full_page=True)
    page.close()


def test_a_researcher_opens_one_persons_minutes(server, browser):
    base, _ = server
    page = logged_in(browser, base, "researcher")
    open_page(page, base + "/wearables")
    page.locator("text=Person id").first.wait_for(timeout=30_000)  # the drill-down's own widget
    page.wait_for_timeout(1000)
    assert page.locator("text=Not available").count() == 0
    # the figure itself is drawn on canvases: the cohort histograms and the person's two streams
    assert page.locator("canvas").count() >= public_canvases(browser, base) + 1
    page.screenshot(path=str(SHOTS / "researcher-person-minutes.png"), full_page=True)
    page.close()


def public_canvases(browser, base) -> int:
    page = logged_in(browser, base, "public")
    open_page(page, base + "/wearables")
    page.wait_for_timeout(1000)
    count = page.locator("canvas").count()
    page.close()
    return count


def test_changing_a_filter_changes_the_figure_and_the_url(server, browser):
    base, _ = server
    page = logged_in(browser, base, "researcher")
    open_page(page, base + "/overview")
    table = page.locator(".counts-table")
    table.locator("text=40-49").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the bar chart is drawn after the table's text arrives
    figure = page.locator("canvas").first
    before = figure.screenshot()
    page.locator("select").first.select_option(label="sex at birth")  # the URL keeps the column name
    table.locator("text=female").first.wait_for(timeout=30_000)
    assert table.locator("text=40-49").count() == 0
    page.wait_for_timeout(500)
    after = figure.screenshot()
    assert after != before, "the bar chart did not change with the filter"
    (SHOTS / "researcher-overview-by-sex.png").write_bytes(after)
    assert "by=sex_at_birth" in page.url
    open_page(page, page.url)  # the link reproduces the view
    page.locator(".counts-table").locator("text=female").first.wait_for(timeout=30_000)
    page.close()


def test_public_sees_saved_cohorts_only_and_a_researcher_the_builder(server, browser):
    base, _ = server
    page = logged_in(browser, base, "public")
    open_page(page, base + "/cohorts")
    page.locator("text=persons in the lake").first.wait_for(timeout=30_000)  # the saved cohort's attrition
    assert page.locator("text=Saved cohorts").count() == 1
    assert page.locator("text=Cohort builder").count() == 0  # a definition of one's own could be subtracted
    page.close()
    page = logged_in(browser, base, "researcher")
    open_page(page, base + "/cohorts")
    page.locator("text=Cohort builder").first.wait_for(timeout=30_000)
    page.close()


@pytest.mark.parametrize("role", ["public", "researcher"])
def test_every_dashboard_renders_without_a_console_error(server, browser, role):
    base, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = logged_in(browser, base, role)
    for name in PAGES:
        open_page(page, f"{base}/{name}")
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"{role}-{name}.png"), full_page=True)
        assert page.locator(".bk-alert-danger, .alert-danger").count() == 0, name
    assert page.errors == []
    page.close()


def test_a_websocket_from_a_foreign_origin_is_refused(server):
    """A logged-in user's cookie and session token open the page's websocket from the served
    origin; the same request from another origin (including one that merely starts with the
    allowed host, CVE-2026-21883) is refused."""
    import asyncio
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    base, _ = server
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    http_login(opener, base, "public", PASSWORDS["public"])
    token = re.search(r'"token":\s*"([^"]+)"', opener.open(base + "/overview").read().decode()).group(1)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)

    async def connect(origin):
        request = HTTPRequest(base.replace("http", "ws") + "/overview/ws", headers={"Origin": origin, "Cookie": cookie})
        try:
            connection = await websocket_connect(request, subprotocols=["bokeh", token])
        except HTTPClientError as error:
            return error.code
        connection.close()
        return "open"

    def attempt(origin):  # its own thread: Playwright's loop runs in this one
        return asyncio.run(connect(origin))

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(attempt, base).result() == "open"
        assert pool.submit(attempt, "http://evil.example").result() == 403
        assert pool.submit(attempt, base + ".attacker.example").result() == 403


def test_a_cached_result_is_never_served_to_another_role(cohort_lake):
    """Aggregates are shared across sessions (views' data() through shared_data), keyed by role:
    what was computed for a researcher is never handed to a public view, and a new version of
    a table read is computed afresh."""
    import pandas as pd

    from explorer.views.base import LakeView, shared_data

    computed = []

    class Probe(LakeView):
        @shared_data("person")
        def data(self):
            computed.append(self.role)
            return pd.DataFrame({"made_for": [self.role]})

    assert Probe(lake=cohort_lake, role="researcher").data()["made_for"].tolist() == ["researcher"]
    assert Probe(lake=cohort_lake, role="public").data()["made_for"].tolist() == ["public"]
    shared = Probe(lake=cohort_lake, role="public").data()
    shared.loc[0, "made_for"] = "changed by one session"  # a session changing its copy changes no other
    assert Probe(lake=cohort_lake, role="public").data()["made_for"].tolist() == ["public"]
    assert computed == ["researcher", "public"]


@pytest.mark.slow
def test_stopping_a_server_of_several_processes_stops_them_all(server, tmp_path):
    """`explorer serve --num-procs 2` forks; a SIGTERM to the server (what a service manager or
    Ctrl-C sends) must end the forked processes too, not leave them serving the port."""
    import psutil

    _, lake_root = server
    users = tmp_path / "users.json"
    Credentials.add(users, "public", "public", PASSWORDS["public"])
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", str(lake_root), "serve", "--auth", str(users),
                                "--port", str(port), "--num-procs", "2"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while True:
        try:
            urlopen(f"http://127.0.0.1:{port}/login", timeout=2)
            break
        except OSError:
            assert time.time() < deadline and process.poll() is None, "explorer serve --num-procs 2 did not start"
            time.sleep(0.5)
    children = psutil.Process(process.pid).children()
    assert len(children) == 2
    process.terminate()
    process.wait(timeout=30)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"forked server processes left serving: {[p.pid for p in alive]}"
    with pytest.raises(OSError):
        urlopen(f"http://127.0.0.1:{port}/login", timeout=2)


def test_a_burst_of_connections_is_taken_one_at_a_time(monkeypatch):
    """With --num-procs N the processes share one listening socket; each takes one waiting
    connection per wake-up (not the 128 Tornado would), so a burst is shared between them."""
    import socket as sockets

    import tornado.ioloop
    import tornado.netutil

    from explorer.serve import _accept_one_connection_at_a_time

    def accepted_per_wake_up() -> int:
        listener = tornado.netutil.bind_sockets(0, "127.0.0.1")[0]
        clients = [sockets.create_connection(listener.getsockname()[:2]) for _ in range(3)]
        time.sleep(0.2)  # all three wait in the listen queue
        handlers, accepted = [], []

        class Loop:  # stands for the IOLoop: keeps the accept handler for this test to call once
            def add_handler(self, fd, handler, events):
                handlers.append(handler)

        monkeypatch.setattr(tornado.ioloop.IOLoop, "current", staticmethod(lambda *args, **kwargs: Loop()))
        tornado.netutil.add_accept_handler(listener, lambda connection, address: accepted.append(connection))
        handlers[0](listener, tornado.ioloop.IOLoop.READ)
        for connection in accepted + clients:
            connection.close()
        listener.close()
        return len(accepted)

    monkeypatch.setattr(tornado.netutil, "_DEFAULT_BACKLOG", tornado.netutil._DEFAULT_BACKLOG)  # restored after
    assert accepted_per_wake_up() == 3  # Tornado's own: every waiting connection at once
    _accept_one_connection_at_a_time()
    assert accepted_per_wake_up() == 1


def test_passwords_are_kept_only_as_hashes(tmp_path):
    users = tmp_path / "users.json"
    Credentials.add(users, "ana", "researcher", "a-long-password")
    assert "a-long-password" not in users.read_text()
    credentials = Credentials(users)
    assert credentials.check("ana", "a-long-password") and not credentials.check("ana", "a-long-passwore")
    assert credentials.role("ana") == "researcher"
    users.write_text('{"users": {"bob": {"role": "public", "password": "plain"}}}')
    with pytest.raises(Exception, match="plain-text passwords are refused"):
        Credentials(users)


def test_serve_without_a_credentials_file_is_refused(tmp_path):
    from conftest import run_cli

    result = run_cli("serve", lake_root=tmp_path / "lake")
    assert result.returncode == 2 and "needs --auth FILE" in result.stderr
    assert cohorts  # the cohorts page is among the dashboards


def test_demo_builds_a_lake_and_serves_it_with_a_login_per_role(tmp_path):
    import re
    import urllib.parse
    import urllib.request

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "explorer.command", "--lake", str(tmp_path / "lake"), "demo",
                                "--participants", "4", "--days", "2", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        logins = demo_logins(process, seconds=300)
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/login", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        import http.cookiejar

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        landed = http_login(opener, base, "researcher", logins["researcher"])
        assert landed.status == 200 and "/login" not in landed.url
        home = opener.open(base + "/index").read().decode()
        assert "<title>Cohort Explorer</title>" in home and 'name="password"' not in home  # the page, not the login
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_login_page_escapes_what_the_url_says(server):
    base, _ = server
    body = urlopen(base + "/login?error=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E").read().decode()
    assert "<img src=x" not in body and "img src=x" not in body  # an error is never taken from the URL
    body = urlopen(base + "/login?next=/x%22%3E%3Cimg/src=x/onerror=alert(1)%3E").read().decode()
    assert "<img/src=x" not in body and 'value="/x&#34;&gt;&lt;img/src=x' in body


# ------------------------------------------------------------------------- issue 27, findings 1 and 4
XSS_PAYLOADS = ["<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>', "<script>alert(3)</script>",
                "[link](javascript:alert(4))", "x' onmouseover='alert(5)"]


def url_parameters() -> dict[str, list[str]]:
    """Every URL parameter each page reads: those it keeps in sync with its widgets
    (``url_synced(view, [...])``) and those it reads from the request (``session_args``), found
    in the pages' source so that a new page or parameter is attacked too."""
    import re

    found = {}
    for name in PAGES:
        source = (ROOT / "dashboards" / f"{name}.py").read_text()
        synced = [p for group in re.findall(r"url_synced\(\w+,\s*\[([^\]]*)\]", source)
                  for p in re.findall(r"[\"']([\w]+)[\"']", group)]
        asked = re.findall(r"session_args[^\n]*?\.get\([\"'](\w+)[\"']", source)
        found[name] = sorted(set(synced + asked)) + ["unknown_parameter"]
    return found


def test_the_pages_parameters_are_found():
    parameters = url_parameters()
    assert {"cohort", "against"} <= set(parameters["cohorts"]) and "person_id" in parameters["wearables"]
    assert "table" in parameters["catalog"] and "by" in parameters["overview"]


@pytest.mark.parametrize("role", ["public", "researcher"])
def test_no_url_parameter_of_any_page_runs_script(server, browser, role):
    """Finding 1: `/cohorts?against=<img src=x onerror=...>` (and ?cohort=, /wearables?person_id=,
    /catalog?table=) ran the attacker's script in a logged-in user's page. Every parameter of
    every page, with each payload, for both roles: no dialog opens, no element of the payload
    exists in the page (Playwright's selectors pierce the components' shadow roots), and the
    payload shows as text where a message quotes it."""
    import urllib.parse

    base, _ = server
    page = logged_in(browser, base, role)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    shown = 0
    for name, parameters in url_parameters().items():
        for payload in XSS_PAYLOADS:
            query = urllib.parse.urlencode({parameter: payload for parameter in parameters})
            open_page(page, f"{base}/{name}?{query}")
            page.wait_for_timeout(300)
            assert page.locator("img[src='x'], svg[onload], a[href^='javascript']").count() == 0, (name, payload)
            shown += page.locator(f"text={payload}").count()
    assert dialogs == [], f"script ran: {dialogs}"
    assert shown > 0  # the refusals quote the payload, as text
    page.screenshot(path=str(SHOTS / f"{role}-xss-refused.png"), full_page=True)
    page.close()


def _token_payloads(html: str) -> list[dict]:
    import json
    import re

    from bokeh.util.token import get_token_payload

    tokens = re.findall(r'"token":\s*"([^"]+)"', html)
    assert tokens, "no session token in the page"
    return [json.loads(json.dumps(get_token_payload(token))) for token in tokens]


def test_every_page_has_a_content_security_policy_and_a_token_without_cookies(server, browser):
    """Finding 1: the page's Bokeh session token carried every cookie (the HttpOnly login cookie
    included), so a script in the page could read it. The token now carries no cookie and no
    Cookie header; every page and the login page send a Content-Security-Policy that allows
    scripts only from the server or with the response's nonce (no inline event handler)."""
    base, _ = server
    page = logged_in(browser, base, "researcher")
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "explorer_session")
    for name in PAGES:
        response = page.goto(f"{base}/{name}")
        policy = response.headers.get("content-security-policy", "")
        script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src")).split()
        assert "'unsafe-inline'" not in script_src and any(s.startswith("'nonce-") for s in script_src), policy
        assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
        html = response.text()
        nonce = next(s for s in script_src if s.startswith("'nonce-"))[7:-1]
        assert html.count("<script") == html.count(f'<script nonce="{nonce}"'), "an inline script without the nonce"
        for payload in _token_payloads(html):
            assert payload.get("cookies") in ({}, None), payload.get("cookies")
            assert not {k.lower() for k in payload.get("headers", {})} & {"cookie", "authorization"}
            assert session not in json_text(payload)
    # the policy is enforced: markup that reached the page anyway runs no inline handler
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_page(page, f"{base}/overview")
    page.evaluate("""document.body.insertAdjacentHTML('beforeend', '<img src=x onerror="alert(9)">')""")
    page.wait_for_timeout(500)
    assert dialogs == []
    assert "content-security-policy" in page.goto(f"{base}/login").headers
    page.close()


def json_text(value) -> str:
    import json

    return json.dumps(value)


def test_logout_ends_the_session_and_a_copied_cookie_opens_nothing(server, browser):
    """Finding 4: logout was a GET that left the (stateless) cookie valid for a day. Logging out
    now takes a POST from the page's own form, and ends the session on the server."""
    base, _ = server
    window = browser.new_context(viewport={"width": 1280, "height": 900})
    page = logged_in(browser, base, "researcher", window)
    copied = [c for c in window.cookies() if c["name"] == "explorer_session"]
    other_tab = window.new_page()
    open_page(other_tab, f"{base}/overview")
    page.goto(f"{base}/logout")
    assert page.locator("text=Log out of Cohort Explorer").count() == 1  # the GET only asks
    open_page(page, f"{base}/overview")  # still logged in
    page.goto(f"{base}/logout")
    page.click("#logout")
    page.locator("text=You are logged out").wait_for(timeout=10_000)
    page.screenshot(path=str(SHOTS / "logged-out.png"), full_page=True)
    page.close()
    # a tab left open on a page is emptied (the server checks every 2 s here, every minute by default)
    other_tab.locator("text=Your session has ended").wait_for(timeout=15_000)
    assert other_tab.locator(".counts-table").count() == 0
    window.close()
    thief = browser.new_context()
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto(f"{base}/wearables")
    assert "/login" in stolen.url and stolen.locator("text=signed in as").count() == 0
    thief.close()


def test_the_guest_cookie_changes_nobody_into_a_guest(server, browser):
    """Finding 4: an unsigned `is_guest=1` cookie made a logged-in user the user named guest."""
    base, _ = server
    page = logged_in(browser, base, "public")
    page.context.add_cookies([{"name": "is_guest", "value": "1", "url": base}])
    open_page(page, f"{base}/overview")
    assert page.locator("text=signed in as").first.inner_text().count("public") >= 1
    assert page.locator("text=guest").count() == 0
    page.close()


def test_the_environment_and_catalog_pages_forgive_their_inputs(server, browser):
    """Issue 23: ?date=YYYY-MM-DD is read back, a day the grid lacks says which days there are,
    and ?table=nope says which tables there are; each page keeps the rest, with no traceback."""
    import re

    base, _ = server
    page = logged_in(browser, base, "researcher")
    open_page(page, base + "/environment?date=1900-01-01")
    page.locator("text=No map for that day").wait_for(timeout=30_000)
    covers = re.search(r"covers (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", page.locator("text=the grid covers").first.inner_text())
    assert covers, "the message names the grid's first and last day"
    assert page.locator("text=Share of the cohort in a heat wave").count() + page.locator("canvas").count() > 0
    open_page(page, f"{base}/environment?date={covers.group(1)}")
    page.wait_for_timeout(1000)
    assert page.locator("text=No map for that day").count() == 0
    assert f"date={covers.group(1)}" in page.url
    open_page(page, base + "/catalog?table=nope")
    page.locator("text=no table 'nope'; tables:").first.wait_for(timeout=30_000)
    assert page.locator("text=Datasets").count() >= 1
    page.close()
    public = logged_in(browser, base, "public")
    open_page(public, base + "/cohorts?attrition=nope&cohort=nope&against=nope")  # names nobody saved
    public.locator("text=Attrition").first.wait_for(timeout=30_000)
    assert public.locator("select").first.input_value() == "adults-wearing"  # the attrition's chooser kept a saved one
    public.locator("text=no saved cohort 'nope'").first.wait_for(timeout=30_000)  # said where the characterisation would be
    public.close()
    log = (SHOTS.parent / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]


#: per Bokeh figure of a page: its title, y-axis label and start, the rows its renderers draw,
#: and the texts its data sources hold (the labels of hidden counts among them)
FIGURES_JS = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) {
    for (const m of doc._all_models.values()) {
      if (!(m.properties && m.properties.y_range && m.properties.renderers)) continue;
      let rows = 0; const texts = [];
      for (const r of m.renderers) {
        const src = r.data_source; if (!src) continue;
        const cols = src.data instanceof Map ? [...src.data.values()] : Object.values(src.data);
        if (cols.length) rows += cols[0].length;
        for (const c of cols) for (const v of c) if (typeof v === "string") texts.push(v);
      }
      const title = m.title ? String(m.title.text ?? m.title) : "";
      out.push({title, ylabel: (m.left || []).map(a => a.axis_label).join("|"), ystart: m.y_range.start, rows, texts});
    }
  }
  return out;
}"""
#: what a table cell must never read: raw missing markers, long floats, whole numbers with .0
RAW_CELL = re.compile(r"^(None|NaN|nan|NaT|<NA>)$|\d\.\d{7,}|^-?[\d,]+\.0$")


@pytest.mark.parametrize("role", ["public", "researcher"])
def test_every_page_draws_counts_as_a_reader_should(server, browser, role):
    """Issue 23: on every page, no figure is drawn empty, a count axis never goes below zero, a
    figure whose caption says N groups are hidden draws them with the rule's label, and no table
    cell reads None, NaN, a 16-digit float or 36,626.0."""
    from explorer.privacy import PROFILES

    base, _ = server
    label = PROFILES["aou"].label
    page = logged_in(browser, base, role)
    figures = cells = 0
    for name in PAGES:
        open_page(page, f"{base}/{name}")
        page.wait_for_timeout(1500)  # figures drawn after the page's first paint
        for figure in page.evaluate(FIGURES_JS):
            figures += 1
            where = f"{role} /{name}: {figure['title']!r}"
            assert figure["rows"] > 0, f"{where} draws nothing"
            if figure["ylabel"] in ("persons", "count") and figure["ystart"] is not None:
                assert figure["ystart"] >= 0, f"{where}: count axis starts at {figure['ystart']}"
            if role == "public" and re.search(r"\d+ of \d+ \w+ hidden", figure["title"]):
                assert any(label in text or "suppressed" in text for text in figure["texts"]), \
                    f"{where}: hidden counts drawn without {label!r} or suppressed"
        texts = page.locator("td, .tabulator-cell").all_inner_texts()
        cells += len(texts)
        raw = [cell for cell in texts if RAW_CELL.search(cell.strip())]
        assert not raw, f"{role} /{name}: table cells {raw[:5]}"
    page.close()
    assert figures >= 8 and cells >= 50, (figures, cells)  # the checks above looked at something
    log = (SHOTS.parent / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]
