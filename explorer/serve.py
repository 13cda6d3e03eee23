"""`explorer serve`: the dashboards behind a login, one role per user, checked on every request.

Login
-----
The embedded default is a credentials file (``--auth FILE``, JSON)::

    {"users": {"ana": {"role": "researcher", "password": "scrypt$16384$8$1$<salt>$<hash>"}}}

Passwords are stored only as scrypt hashes (RFC 7914, n=2**14, r=8, p=1, 16-byte salt), made by
``explorer users add FILE NAME --role ROLE``. Panel's basic login page asks for the name and
password; this module's handler checks them against the file, and Tornado keeps the user name in
a cookie signed with the cookie secret (``--cookie-secret`` or ``$EXPLORER_COOKIE_SECRET``, else
a random one per start, which logs everyone out on restart). For a deployment with single
sign-on, Panel's OAuth providers (``--oauth-provider github|azure|okta|...`` with its
``PANEL_OAUTH_*`` settings) authenticate instead and ``--auth`` then maps the user names they
return to roles (a user not in the file is refused).

Roles are enforced on the server: every page asks :func:`session_role` before it builds a view,
and every view checks its role again where it reads (``explorer.views.base.LakeView``). Aggregates
shared across sessions are keyed by role as well as by the request
(``explorer.views.base.shared_data``), so a result computed for a researcher is never served to a
public session. Websocket connections are accepted only from the
allow-listed origins (``--allow-websocket-origin``; Bokeh >= 3.8.2 checks them exactly, the fix
of CVE-2026-21883).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from explorer.errors import ExplorerError, TableNotFoundError
from explorer.privacy import ROLES, PermissionDenied

AUTH_FILE_ENV = "EXPLORER_AUTH_FILE"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"


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
        if len(password) < 8:
            raise ExplorerError("a password needs at least 8 characters")
        path = Path(path)
        document = json.loads(path.read_text()) if path.exists() else {"users": {}}
        document["users"][user] = {"role": role, "password": hash_password(password)}
        path.write_text(json.dumps(document, indent=1) + "\n")
        os.chmod(path, 0o600)


# ---------------------------------------------------------------------------------- sessions
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


def session_role() -> str:
    """The role of the user of the current Panel session, from the signed login cookie."""
    import panel as pn

    return credentials().role(pn.state.user)


def login_handler_class():
    """Panel's login page, checking passwords against the credentials file's hashes."""
    from panel.auth import BasicLoginHandler

    class HashedLoginHandler(BasicLoginHandler):
        def _validate(self, username, password):
            return credentials().check(username, password)

    return HashedLoginHandler


def auth_provider():
    from panel.auth import BasicAuthProvider

    class HashedAuthProvider(BasicAuthProvider):
        @property
        def login_handler(self):
            handler = login_handler_class()
            handler._login_endpoint = self._login_endpoint
            handler._login_template = self._login_template
            return handler

    return HashedAuthProvider(login_template=str(DASHBOARDS / "_login.html"),
                              logout_template=str(DASHBOARDS / "_logout.html"))


def dashboard_files() -> dict[str, Path]:
    """The served pages: ``dashboards/*.py`` by name (``index`` is the landing page)."""
    return {path.stem: path for path in sorted(DASHBOARDS.glob("*.py")) if not path.stem.startswith("_")}


def serve(lake_root, auth_file, *, port: int = 5006, address: str = "127.0.0.1", origins=(), num_procs: int = 1,
          cookie_secret: str | None = None, show: bool = False, oauth_provider: str | None = None,
          session_lifetime_ms: int | None = None):
    """Serve every dashboard (blocks). See the module notes for login and roles."""
    import panel as pn

    Credentials(auth_file)  # refuse a bad file before anything starts
    os.environ[AUTH_FILE_ENV] = str(Path(auth_file).resolve())
    os.environ["EXPLORER_HOME"] = str(Path(lake_root).resolve())
    secret = cookie_secret or os.environ.get("EXPLORER_COOKIE_SECRET") or secrets.token_hex(32)
    origins = list(origins) or [f"localhost:{port}", f"127.0.0.1:{port}"]
    options = dict(port=port, address=address, websocket_origin=origins, show=show, num_procs=num_procs,
                   cookie_secret=secret, title="Cohort Explorer", index=str(DASHBOARDS / "_root.html"),
                   # one process runs each page once at start; several (forked) get the libraries loaded
                   # before the fork instead, since Bokeh refuses to fork after running a page
                   warm=num_procs == 1)
    from explorer.views.base import _holoviews

    _holoviews()  # HoloViews with its Bokeh backend: seconds of imports the first user would wait for
    if session_lifetime_ms:  # how long a session nobody connected to is kept (Bokeh's default: 15 s)
        options.update(unused_session_lifetime_milliseconds=session_lifetime_ms,
                       check_unused_sessions_milliseconds=max(500, session_lifetime_ms // 2))
    if oauth_provider:
        options["oauth_provider"] = oauth_provider
    else:
        options["auth_provider"] = auth_provider()
    if num_procs > 1:
        _accept_one_connection_at_a_time()
        # each forked process ends with the parent (else a stopped server leaves its processes
        # serving), then warms itself before it takes its first connection (the parent must
        # not: DuckDB and deltalake keep threads that a fork does not copy)
        server, forker = os.getpid(), []

        def after_fork():
            if forker[-1] == server:  # a server process, not something a server process forks later
                _end_with_parent(server)
                warm_shared_views()

        os.register_at_fork(before=lambda: forker.append(os.getpid()), after_in_child=after_fork)
    else:
        warm_shared_views()
    files = dashboard_files()
    pn.serve({name: str(path) for name, path in files.items()}, **options)


def _end_with_parent(parent: int) -> None:
    """Have the kernel send this (forked) process SIGTERM when its parent ends (Linux), and end
    now if the parent has ended already."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):  # not Linux: the parent's end is not passed on
        return
    if os.getppid() != parent:
        os._exit(0)


def warm_shared_views(roles=("public", "researcher")) -> int:
    """Compute, for each role, every shared aggregate view at its default settings, and draw one
    figure: what a process's first sessions would otherwise wait for (a cold process built its
    first overview pages in 0.25 s instead of 0.11 s). Views whose table this lake has not got
    are left out. Returns how many were computed."""
    import explorer
    from explorer import views

    done = 0
    try:
        lake = explorer.open()
        for name in views.__all__:
            view_class = getattr(views, name)
            if not hasattr(getattr(view_class, "data", None), "shared_tables"):  # shared_data views only
                continue
            for role in roles:
                try:
                    view_class(lake=lake, role=role).data()
                    done += 1
                except ExplorerError:
                    pass
        import panel as pn
        from bokeh.document import Document

        pn.panel(views.DemographicCounts(lake=lake, role=roles[0]).panel()).get_root(Document())
    except ExplorerError:
        pass
    return done


def _accept_one_connection_at_a_time():
    """Let each forked server process take one waiting connection per wake-up instead of up to
    128, so a burst of sessions is shared between the processes.

    The processes share one listening socket. Tornado's accept handler takes every connection
    waiting when it wakes (up to its listen backlog), and a page is built synchronously, so the
    first process awake took most of a burst and built its pages one after another while the
    other sat idle (measured: 10 sessions at once on 2 processes, one did 3-4 s of work, the
    other 0.3-0.8 s). Taken one at a time, a process busy building a page leaves the next
    connection to an idle one. The listen backlog itself is unchanged (it was bound with 128)."""
    import tornado.netutil

    if isinstance(getattr(tornado.netutil, "_DEFAULT_BACKLOG", None), int):
        tornado.netutil._DEFAULT_BACKLOG = 1


# ---------------------------------------------------------------------------------- pages
PAGES = [("index", "Home"), ("overview", "Cohort overview"), ("wearables", "Wearables"), ("environment", "Environment"),
         ("ageing", "Ageing"), ("cohorts", "Cohorts"), ("catalog", "Catalog and jobs")]


def page(title: str, build):
    """A served page: the navigation, who is signed in, and ``build(lake, role)``'s content.

    The role comes from the login (:func:`session_role`) and is checked before anything is
    built; a view refused to this role shows why instead of its content."""
    import panel as pn

    import explorer

    pn.extension("tabulator", loading_indicator=True, notifications=False)
    nav = " · ".join(f"[{label}](./{name})" for name, label in PAGES)
    try:
        role = session_role()
        header = pn.pane.Markdown(f"## {title}\n{nav} · signed in as **{pn.state.user}** ({role}) · [log out](./logout)",
                                  sizing_mode="stretch_width")
        body = build(explorer.open(), role)
    except PermissionDenied as exc:
        header = pn.pane.Markdown(f"## {title}\n{nav} · [log out](./logout)", sizing_mode="stretch_width")
        body = [pn.pane.Alert(f"**Not available to you.** {exc}", alert_type="warning", css_classes=["refused"])]
    except ExplorerError as exc:
        header = pn.pane.Markdown(f"## {title}\n{nav}", sizing_mode="stretch_width")
        body = [pn.pane.Alert(str(exc), alert_type="danger")]
    return pn.Column(header, *body, sizing_mode="stretch_width")


def guarded(view_factory):
    """A view's content, or why this role may not see it (the view checks its own role)."""
    import panel as pn

    try:
        view = view_factory()
        return pn.panel(view.panel)
    except PermissionDenied as exc:
        return pn.pane.Alert(f"**Not available to you.** {exc}", alert_type="warning", css_classes=["refused"])
    except TableNotFoundError as exc:  # this lake has not got that aggregate (yet): not a fault of the page
        return pn.pane.Alert(f"**Not in this lake yet.** {exc}", alert_type="info")
    except ExplorerError as exc:
        return pn.pane.Alert(str(exc), alert_type="danger")


def url_synced(view, parameters: list[str]):
    """Widgets for ``parameters`` of ``view``, kept in the page URL (a link reproduces the view)."""
    import panel as pn

    if pn.state.location is not None:
        pn.state.location.sync(view, {name: name for name in parameters})
    return pn.Param(view, parameters=parameters, show_name=False, default_layout=pn.Row)


def csv_download(view, filename: str):
    """A button that downloads the table on screen as CSV: ``view.data()``, which for a public
    view is already the protected page (hidden counts are blank, their text says why)."""
    import io

    import pandas as pd
    import panel as pn

    def table():
        frame = view.data()
        frame = frame if isinstance(frame, pd.DataFrame) else next(iter(frame.values()))
        return io.StringIO(frame.to_csv(index=False))

    return pn.widgets.FileDownload(callback=table, filename=filename, label="download CSV", width=150)
