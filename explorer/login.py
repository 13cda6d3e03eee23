"""The login of `explorer serve`: credentials, server-side sessions, throttling and the pages that
log in and out.

What this module defends against (README, "Threat model"):

- **Stolen or copied session cookies outliving a logout.** A login opens a server-side session: the
  cookie holds only a random 256-bit identifier, and the server keeps its SHA-256 digest, the user,
  and when it was opened and last used (SQLite beside the credentials file, shared by every server
  process). Logging out deletes the session, so a copy of the cookie is worth nothing afterwards;
  sessions end after :data:`IDLE_HOURS` without a request and :data:`ABSOLUTE_HOURS` after login.
- **Cross-site requests.** Cookies are ``HttpOnly`` and ``SameSite=Lax`` (the login form's CSRF cookie
  ``Strict``), and ``Secure`` behind TLS. Logging in and out are POSTs that carry a CSRF token equal to
  a cookie the page set (double submit: another site can neither read the cookie nor make the
  browser send it), and a request whose ``Origin`` names another host is refused (OWASP CSRF
  Prevention Cheat Sheet).
- **Open redirects.** Where to go after login (``next``) is accepted only as a path on this server
  (:func:`same_origin_path`).
- **Password guessing.** :data:`ACCOUNT_FAILURES` wrong passwords for one account, or
  :data:`ADDRESS_FAILURES` from one address, within :data:`FAILURE_WINDOW_MINUTES` refuse further
  attempts (the right password included) until the window has passed (NIST SP 800-63B 5.2.2).
- **Guest identities.** There is no guest: the name ``guest`` is refused in a credentials file, and
  Panel's ``is_guest`` cookie is never read.

Passwords are stored only as scrypt hashes (RFC 7914, n=2**14, r=8, p=1, 16-byte salt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
import urllib.parse
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.privacy import ROLES, PermissionDenied

AUTH_FILE_ENV = "EXPLORER_AUTH_FILE"
SECURE_COOKIES_ENV = "EXPLORER_SECURE_COOKIES"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SESSION_COOKIE = "explorer_session"
CSRF_COOKIE = "explorer_csrf"
#: a session unused this long has ended (each page load, widget round trip and websocket opening uses it)
IDLE_HOURS = 2
#: and every session ends this long after its login, used or not
ABSOLUTE_HOURS = 12
#: wrong passwords allowed per account, and per client address, within the window
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
FAILURE_WINDOW_MINUTES = 15
#: user names that can never log in: Panel calls an unauthenticated visitor "guest"
RESERVED_NAMES = frozenset({"guest"})


# ---------------------------------------------------------------------------------- passwords
def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``password`` (salt and hash in base64)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT["n"], r=SCRYPT["r"], p=SCRYPT["p"], dklen=32)
    return "$".join(["scrypt", str(SCRYPT["n"]), str(SCRYPT["r"]), str(SCRYPT["p"]),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                               dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, base64.b64decode(digest))


_DUMMY_HASH = hash_password("no such user")


class Credentials:
    """The users of a credentials file: name -> role and password hash."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ExplorerError(f"{self.path}: no such credentials file; make one with "
                                f"`explorer users add {self.path} NAME --role public`") from None
        except json.JSONDecodeError as exc:
            raise ExplorerError(f"{self.path}: not JSON ({exc}); expected {{\"users\": {{NAME: {{\"role\": ..., "
                                "\"password\": ...}}}}}}") from None
        users = document.get("users") if isinstance(document, dict) else None
        if not isinstance(users, dict):
            raise ExplorerError(f"{self.path}: expected a \"users\" mapping of name to role and password hash")
        for name, entry in users.items():
            _check_name(name, f"{self.path}: user {name!r}")
            if not isinstance(entry, dict) or entry.get("role") not in ROLES or not str(entry.get("password", "")).startswith("scrypt$"):
                raise ExplorerError(f"{self.path}: user {name!r} needs a role ({', '.join(ROLES)}) and a scrypt password "
                                    "hash (`explorer users add` makes both); plain-text passwords are refused")
        self.users = users

    def role(self, user: str | None) -> str:
        if not user or user not in self.users:
            raise PermissionDenied(f"user {user!r} is not in {self.path}: ask a steward for an account")
        return self.users[user]["role"]

    def check(self, user: str, password: str) -> bool:
        entry = self.users.get(user)
        if entry is None:
            verify_password(password, _DUMMY_HASH)  # the same work whether or not the user exists
            return False
        return verify_password(password, entry["password"])

    @staticmethod
    def add(path, user: str, role: str, password: str) -> None:
        """Add or replace ``user`` in the credentials file at ``path`` (created if missing)."""
        if role not in ROLES:
            raise ExplorerError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        _check_name(user, f"user name {user!r}")
        if len(password) < 8:
            raise ExplorerError("a password needs at least 8 characters")
        path = Path(path)
        document = json.loads(path.read_text()) if path.exists() else {"users": {}}
        document["users"][user] = {"role": role, "password": hash_password(password)}
        path.write_text(json.dumps(document, indent=1) + "\n")
        os.chmod(path, 0o600)


def _check_name(name: str, what: str) -> None:
    if name.strip().lower() in RESERVED_NAMES:
        raise ExplorerError(f"{what}: {name!r} is reserved (Panel names anonymous visitors so); choose another name")
    if not name or len(name) > 64 or any(not c.isprintable() or c.isspace() for c in name):
        raise ExplorerError(f"{what}: a user name is 1 to 64 printable characters without spaces")


_LOADED: dict = {}


def credentials() -> Credentials:
    """The served credentials file, read again only when it changed (a user added or removed
    while serving counts from the next request)."""
    path = os.environ.get(AUTH_FILE_ENV)
    if not path:
        raise PermissionDenied("the dashboards run without a credentials file: start them with `explorer serve --auth FILE`")
    stamp = os.stat(path).st_mtime_ns
    if _LOADED.get(path, (None,))[0] != stamp:
        _LOADED[path] = (stamp, Credentials(path))
    return _LOADED[path][1]


# ---------------------------------------------------------------------------------- sessions
def _digest(token: str) -> str:
    """What the store keeps of a session token: a leaked store opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Server-side login sessions and failed logins, in SQLite (one file shared by every server
    process: ``--num-procs`` forks see the same logins and the same logouts).

    Parameters
    ----------
    path : path of the SQLite file (created with mode 0600).
    clock : seconds since the epoch (tests pass their own).
    """

    def __init__(self, path, clock=time.time):
        self.path = Path(path)
        self.clock = clock
        new = not self.path.exists()
        with self._connect() as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS session (digest TEXT PRIMARY KEY, user TEXT NOT NULL,
                    opened REAL NOT NULL, used REAL NOT NULL, address TEXT);
                CREATE TABLE IF NOT EXISTS failed_login (user TEXT, address TEXT, at REAL NOT NULL);
                CREATE INDEX IF NOT EXISTS failed_by_user ON failed_login (user, at);
                CREATE INDEX IF NOT EXISTS failed_by_address ON failed_login (address, at);""")
        if new:
            os.chmod(self.path, 0o600)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def open(self, user: str, address: str | None = None) -> str:
        """A new session for ``user``: the token to put in the cookie (never stored)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._connect() as db:
            db.execute("INSERT INTO session VALUES (?, ?, ?, ?, ?)", (_digest(token), user, now, now, address))
            db.execute("DELETE FROM session WHERE used < ? OR opened < ?",
                       (now - IDLE_HOURS * 3600, now - ABSOLUTE_HOURS * 3600))
        return token

    def user(self, token: str | None) -> str | None:
        """The user of a live session, or None (no such session, logged out, idle or too old).
        Counts as a use of the session."""
        if not token:
            return None
        now = self.clock()
        with self._connect() as db:
            row = db.execute("SELECT user, opened, used FROM session WHERE digest = ?", (_digest(token),)).fetchone()
            if row is None:
                return None
            user, opened, used = row
            if used < now - IDLE_HOURS * 3600 or opened < now - ABSOLUTE_HOURS * 3600:
                db.execute("DELETE FROM session WHERE digest = ?", (_digest(token),))
                return None
            if now - used > 30:  # a write per page load at most every 30 s
                db.execute("UPDATE session SET used = ? WHERE digest = ?", (now, _digest(token)))
        return user

    def close(self, token: str | None) -> bool:
        """End a session (logout). Whether there was one."""
        if not token:
            return False
        with self._connect() as db:
            return db.execute("DELETE FROM session WHERE digest = ?", (_digest(token),)).rowcount > 0

    def close_all(self, user: str) -> int:
        """End every session of ``user`` (an account removed or its password changed)."""
        with self._connect() as db:
            return db.execute("DELETE FROM session WHERE user = ?", (user,)).rowcount

    # -------------------------------------------------------------- throttling
    def refused_for(self, user: str, address: str | None) -> float:
        """Seconds until ``user`` may try a password again from ``address`` (0: now)."""
        now = self.clock()
        since = now - FAILURE_WINDOW_MINUTES * 60
        wait = 0.0
        with self._connect() as db:
            for column, value, allowed in (("user", user.lower(), ACCOUNT_FAILURES), ("address", address, ADDRESS_FAILURES)):
                if value is None:
                    continue
                times = [at for (at,) in db.execute(f"SELECT at FROM failed_login WHERE {column} = ? AND at >= ? "
                                                    "ORDER BY at DESC", (value, since))]
                if len(times) >= allowed:  # free again when the allowed-th latest failure leaves the window
                    wait = max(wait, times[allowed - 1] + FAILURE_WINDOW_MINUTES * 60 - now)
        return wait

    def failed(self, user: str, address: str | None) -> None:
        now = self.clock()
        with self._connect() as db:
            db.execute("INSERT INTO failed_login VALUES (?, ?, ?)", (user.lower(), address, now))
            db.execute("DELETE FROM failed_login WHERE at < ?", (now - FAILURE_WINDOW_MINUTES * 60,))

    def succeeded(self, user: str) -> None:
        """A right password clears the account's failures (not the address's: one known account
        must not reset the count of an address guessing others)."""
        with self._connect() as db:
            db.execute("DELETE FROM failed_login WHERE user = ?", (user.lower(),))


def session_store() -> SessionStore:
    """The store of the served credentials file: ``<file>.sessions.sqlite`` beside it (where the
    steward keeps the accounts, outside the lake)."""
    path = os.environ.get(AUTH_FILE_ENV)
    if not path:
        raise PermissionDenied("the dashboards run without a credentials file: start them with `explorer serve --auth FILE`")
    store = _STORES.get(path)
    if store is None:
        store = _STORES[path] = SessionStore(Path(path).with_name(Path(path).name + ".sessions.sqlite"))
    return store


_STORES: dict = {}


def same_origin_path(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this server (``/overview?by=sex``), else ``default``.

    Refused: anything with a scheme or host (``https://x``, ``//x``, ``///x``), a backslash
    (browsers read ``/\\x`` as ``//x``), or a control character or space (browsers drop tabs and
    newlines from URLs, so ``/\\t/x`` becomes ``//x``)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return default
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return default
    return value


def current_user(request) -> str | None:
    """The user of the session that ``request``'s cookie names (a Tornado request), or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return session_store().user(cookie.value if cookie is not None else None)


# ---------------------------------------------------------------------------------- pages
def _cookie_options(handler, **extra) -> dict:
    secure = handler.request.protocol == "https" or os.environ.get(SECURE_COOKIES_ENV) == "1"
    return {"httponly": True, "samesite": "Lax", "secure": secure, "path": "/", **extra}


def _csrf_token(handler) -> str:
    """The CSRF cookie's value, set now if the browser has none (double-submit token)."""
    token = handler.get_cookie(CSRF_COOKIE)
    if not token or len(token) < 32:
        token = secrets.token_urlsafe(32)
        handler.set_cookie(CSRF_COOKIE, token, **_cookie_options(handler, samesite="Strict"))
    return token


def _cross_site(handler) -> str | None:
    """Why a state-changing request is refused as cross-site, or None when it is not."""
    origin = handler.request.headers.get("Origin")
    if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != handler.request.host:
        return f"a form of another site ({origin}) cannot log in or out here"
    sent, expected = handler.get_body_argument("csrf", ""), handler.get_cookie(CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return "the form has expired or came from another site; open the page again and retry"
    return None


def _template(path):
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(Path(path).read_text(encoding="utf-8"))


def handlers(login_template, logout_template):
    """The login and logout request handlers (Tornado), rendering the two templates."""
    from tornado.web import RequestHandler

    login_page, logout_page = _template(login_template), _template(logout_template)

    class LoginHandler(RequestHandler):
        def get(self):
            self._render()

        def _render(self, error: str = "", status: int = 200):
            self.set_status(status)
            self.set_header("Cache-Control", "no-store")
            self.write(login_page.render(login_endpoint="/login", errormessage=error, csrf=_csrf_token(self),
                                         next=same_origin_path(self.get_argument("next", "/"))))

        def post(self):
            refused = _cross_site(self)
            if refused:
                return self._render(f"Not logged in: {refused}.", status=403)
            user, password = self.get_body_argument("username", ""), self.get_body_argument("password", "")
            store, address = session_store(), self.request.remote_ip
            wait = store.refused_for(user, address)
            if wait > 0:
                return self._render(f"Too many wrong passwords for this account or from this address: try again in "
                                    f"{max(1, round(wait / 60))} minute(s), or ask a steward.", status=429)
            if user.strip().lower() in RESERVED_NAMES or not credentials().check(user, password):
                store.failed(user, address)
                return self._render("Invalid username or password!", status=401)
            store.succeeded(user)
            store.close(self.get_cookie(SESSION_COOKIE))  # a login replaces the browser's earlier session
            self.set_cookie(SESSION_COOKIE, store.open(user, address), **_cookie_options(self))
            for stale in ("user", "id_token", "is_guest"):  # left by Panel's own login, never read here
                self.clear_cookie(stale, path="/")
            self.redirect(same_origin_path(self.get_body_argument("next", "/")))

    class LogoutHandler(RequestHandler):
        def get(self):  # a link may show the button; only the POST logs out (a GET changes nothing)
            self._render(logged_out=False)

        def _render(self, logged_out: bool, error: str = "", status: int = 200):
            self.set_status(status)
            self.set_header("Cache-Control", "no-store")
            self.write(logout_page.render(logged_out=logged_out, error=error, csrf=_csrf_token(self),
                                          LOGIN_ENDPOINT="/login", logout_endpoint="/logout"))

        def post(self):
            refused = _cross_site(self)
            if refused:
                return self._render(False, f"Still logged in: {refused}.", status=403)
            session_store().close(self.get_cookie(SESSION_COOKIE))
            self.clear_cookie(SESSION_COOKIE, path="/")
            self._render(logged_out=True)

    return LoginHandler, LogoutHandler


def auth_provider(login_template, logout_template):
    """Bokeh's authentication hooks for `explorer serve`: every page, and every websocket, asks
    :func:`current_user` (the server-side session), never a cookie's own claim."""
    from bokeh.server.auth_provider import AuthProvider

    login, logout = handlers(login_template, logout_template)

    class SessionAuthProvider(AuthProvider):
        @property
        def get_user(self):
            return lambda handler: current_user(handler.request)

        @property
        def login_url(self):
            return "/login"

        @property
        def login_handler(self):
            return login

        @property
        def logout_url(self):
            return "/logout"

        @property
        def logout_handler(self):
            return logout

    return SessionAuthProvider()
