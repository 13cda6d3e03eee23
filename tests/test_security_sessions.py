"""Issue 27, finding 4: the session attacks on the login, each reproduced and refused.

The login and logout handlers of `explorer serve` run here in a real Tornado server on loopback
(the same handler classes and the same authentication hook Bokeh calls for every page and
websocket), with a page standing for a dashboard. The served suite itself is exercised in
Chromium by tests/test_dashboards_browser.py (logout revoking a copied cookie, the token without
cookies, the Content-Security-Policy)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from explorer import login
from explorer.errors import ExplorerError
from explorer.login import Credentials, SessionStore, same_origin_path

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
PASSWORD = "right-password-1"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A login server on loopback: /login, /logout, and /page that needs a session."""
    import tornado.web
    from tornado.ioloop import IOLoop

    users = tmp_path / "users.json"
    Credentials.add(users, "ana", "researcher", PASSWORD)
    Credentials.add(users, "pat", "public", PASSWORD)
    monkeypatch.setenv(login.AUTH_FILE_ENV, str(users))
    provider = login.auth_provider(DASHBOARDS / "_login.html", DASHBOARDS / "_logout.html")

    class Page(tornado.web.RequestHandler):
        def get_current_user(self):
            return provider.get_user(self)

        def get_login_url(self):
            return provider.login_url

        @tornado.web.authenticated
        def get(self):
            self.write(f"page of {self.current_user}")

    ready, holder = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([("/login", provider.login_handler), ("/logout", provider.logout_handler),
                                       ("/page", Page)])
        server = app.listen(0, "127.0.0.1")
        holder.update(port=next(iter(server._sockets.values())).getsockname()[1], loop=IOLoop.current(), server=server)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{holder['port']}"
    holder["loop"].add_callback(holder["server"].stop)
    holder["loop"].add_callback(holder["loop"].stop)
    thread.join(5)


class Browser:
    """Cookies, and requests that show redirects instead of following them."""

    def __init__(self, base):
        self.base, self.jar = base, http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path, form=None, headers=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            response = self.opener.open(urllib.request.Request(self.base + path, data=data, headers=headers or {}))
            return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def cookie(self, name):
        return next((c.value for c in self.jar if c.name == name), None)

    def csrf(self, path="/login"):
        status, _, body = self.request(path)
        return re.search(r'name="csrf" value="([^"]+)"', body).group(1)

    def log_in(self, user="ana", password=PASSWORD, next_path=None, headers=None):
        form = {"csrf": self.csrf(), "username": user, "password": password}
        if next_path is not None:
            form["next"] = next_path
        return self.request("/login", form, headers)


def test_a_login_opens_a_server_side_session_that_logout_ends(site):
    browser = Browser(site)
    assert browser.request("/page")[0] == 302  # no session: to the login
    status, headers, _ = browser.log_in()
    assert status == 302 and headers["Location"] == "/"
    status, _, body = browser.request("/page")
    assert (status, body) == (200, "page of ana")
    copied = browser.cookie(login.SESSION_COOKIE)
    set_cookie = headers.get_all("Set-Cookie")
    assert any(c.startswith(login.SESSION_COOKIE) and "HttpOnly" in c and "SameSite=Lax" in c for c in set_cookie)
    # a GET of /logout changes nothing (a link or an image cannot log anyone out) ...
    assert browser.request("/logout")[0] == 200 and browser.request("/page")[0] == 200
    # ... the POST, with the form's token, ends the session on the server
    status, _, body = browser.request("/logout", {"csrf": browser.csrf("/logout")})
    assert status == 200 and "You are logged out" in body
    assert browser.request("/page")[0] == 302
    thief = Browser(site)  # the cookie copied before the logout opens nothing afterwards
    assert thief.request("/page", headers={"Cookie": f"{login.SESSION_COOKIE}={copied}"})[0] == 302


def test_the_session_store_keeps_only_digests_and_ends_idle_and_old_sessions(tmp_path):
    now = [1_000_000.0]
    store = SessionStore(tmp_path / "s.sqlite", clock=lambda: now[0])
    token = store.open("ana", "127.0.0.1")
    assert token.encode() not in (tmp_path / "s.sqlite").read_bytes()
    assert store.user(token) == "ana"
    now[0] += login.IDLE_HOURS * 3600 - 60
    assert store.user(token) == "ana"  # used: the idle clock starts again
    now[0] += login.IDLE_HOURS * 3600 + 1
    assert store.user(token) is None  # idle too long
    token = store.open("ana")
    for _ in range(login.ABSOLUTE_HOURS):
        now[0] += 3600
        store.user(token)
    now[0] += 1
    assert store.user(token) is None  # used every hour, still ended ABSOLUTE_HOURS after login
    assert store.user("forged") is None and store.user(None) is None


@pytest.mark.parametrize("target", ["///evil.example/x", "//evil.example", "/\\evil.example", "\\\\evil.example",
                                    "https://evil.example/", "http:evil.example", "javascript:alert(1)",
                                    "/\t/evil.example", "/\n/evil.example", " //evil.example", "evil.example"])
def test_next_after_login_cannot_leave_the_site(site, target):
    """Finding 4: `next=///host/...` was accepted (an open redirect after a real login)."""
    status, headers, _ = Browser(site).log_in(next_path=target)
    assert status == 302 and headers["Location"] == "/"


def test_next_after_login_keeps_a_path_of_the_site(site):
    status, headers, _ = Browser(site).log_in(next_path="/overview?by=sex_at_birth")
    assert headers["Location"] == "/overview?by=sex_at_birth"
    status, _, body = Browser(site).request("/login?next=" + urllib.parse.quote('/x"><script>alert(1)</script>'))
    assert "<script>alert(1)" not in body


@given(st.text(max_size=40))
def test_a_same_origin_path_never_names_another_host(value):
    kept = same_origin_path(value)
    parts = urllib.parse.urlsplit(kept)
    assert kept == "/" or (kept == value and kept.startswith("/") and not kept.startswith("//"))
    assert not parts.scheme and not parts.netloc and "\\" not in kept
    assert all(ord(c) > 0x20 and ord(c) != 0x7F for c in kept)


def test_a_cross_site_login_form_is_refused(site):
    """Finding 4: login CSRF. Another site's form posts the attacker's name and password; the
    victim's browser sends no CSRF cookie (SameSite=Strict) and the form cannot know it."""
    victim = Browser(site)
    victim.log_in()  # the victim is logged in as a researcher
    before = victim.cookie(login.SESSION_COOKIE)
    status, headers, body = victim.request("/login", {"username": "pat", "password": PASSWORD})  # no token
    assert status == 403 and "another site" in body
    assert victim.cookie(login.SESSION_COOKIE) == before and victim.request("/page")[2] == "page of ana"
    # a token the attacker made on its own visit does not match the victim's cookie
    attacker = Browser(site)
    status, _, _ = victim.request("/login", {"csrf": attacker.csrf(), "username": "pat", "password": PASSWORD})
    assert status == 403 and victim.request("/page")[2] == "page of ana"
    # and a request that says it comes from another origin is refused even with a matching token
    status, _, _ = victim.log_in("pat", headers={"Origin": "http://evil.example"})
    assert status == 403 and victim.request("/page")[2] == "page of ana"


def test_a_cross_site_logout_is_refused(site):
    browser = Browser(site)
    browser.log_in()
    assert browser.request("/logout", {})[0] == 403  # no token: another site's form
    assert browser.request("/page")[0] == 200


def test_login_is_throttled_per_account(site):
    """Finding 4: 30 wrong passwords and then the right one were accepted."""
    browser = Browser(site)
    statuses = [browser.log_in(password=f"wrong-{i}")[0] for i in range(30)]
    assert statuses[:login.ACCOUNT_FAILURES] == [401] * login.ACCOUNT_FAILURES
    assert set(statuses[login.ACCOUNT_FAILURES:]) == {429}
    status, _, body = browser.log_in()  # the right password, during the lockout
    assert status == 429 and "try again in" in body and browser.cookie(login.SESSION_COOKIE) is None
    assert Browser(site).log_in("pat")[0] == 302  # another account from the same address still logs in


def test_login_is_throttled_per_address(site):
    browser = Browser(site)
    for i in range(login.ADDRESS_FAILURES):  # a few guesses at many accounts
        browser.log_in(f"user{i}", "wrong-password")
    assert browser.log_in("pat")[0] == 429


def test_throttling_ends_after_the_window(tmp_path):
    now = [0.0]
    store = SessionStore(tmp_path / "s.sqlite", clock=lambda: now[0])
    for _ in range(login.ACCOUNT_FAILURES):
        store.failed("Ana", "10.0.0.1")
    assert store.refused_for("ana", "10.0.0.2") > 0  # the account, whatever the case and address
    now[0] += login.FAILURE_WINDOW_MINUTES * 60 + 1
    assert store.refused_for("ana", "10.0.0.1") == 0


def test_guest_is_not_a_user_and_the_guest_cookie_is_ignored(site, tmp_path):
    """Finding 4: an unsigned `is_guest=1` cookie made any logged-in user the user named guest."""
    with pytest.raises(ExplorerError, match="reserved"):
        Credentials.add(tmp_path / "u.json", "guest", "researcher", PASSWORD)
    (tmp_path / "g.json").write_text('{"users": {"Guest": {"role": "researcher", "password": "scrypt$1$1$1$AA==$AA=="}}}')
    with pytest.raises(ExplorerError, match="reserved"):
        Credentials(tmp_path / "g.json")
    browser = Browser(site)
    assert browser.request("/page", headers={"Cookie": "is_guest=1"})[0] == 302  # no session, no guest
    browser.log_in("pat")
    session = browser.cookie(login.SESSION_COOKIE)
    status, _, body = browser.request("/page", headers={"Cookie": f"is_guest=1; {login.SESSION_COOKIE}={session}"})
    assert body == "page of pat"
    assert browser.log_in("guest", "anything-at-all")[0] == 401
