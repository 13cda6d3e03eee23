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

import functools
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import ExplorerError, TableNotFoundError
from explorer.lake.storage import is_object_url
from explorer.login import (AUTH_FILE_ENV, SECURE_COOKIES_ENV, SESSION_COOKIE, Credentials, auth_provider, credentials,
                            current_user, session_store)
from explorer.privacy import PermissionDenied
from explorer.privacy.disclosure import PROFILE_ENV
from explorer.privacy.disclosure import profile as disclosure_profile

OAUTH_ENV = "EXPLORER_OAUTH_PROVIDER"
COOKIE_SECRET_ENV = "EXPLORER_COOKIE_SECRET"
#: the page scripts: inside the package in an installed wheel, else beside it in a checkout
_INSTALLED_DASHBOARDS = Path(__file__).resolve().parent / "_dashboards"
DASHBOARDS = _INSTALLED_DASHBOARDS if _INSTALLED_DASHBOARDS.is_dir() else Path(__file__).resolve().parent.parent / "dashboards"
#: entry-point group through which a site package adds pages (a module that is a page script)
PAGE_ENTRY_POINT_GROUP = "explorer.pages"


# ---------------------------------------------------------------------------------- sessions
def session_role() -> str:
    """The role of the user of the current Panel session.

    The user is looked up from the session cookie of the HTTP request that opened this Bokeh
    session, in the server's session store (a logout or an expiry ends it), never from the
    cookies copied into the page's session token: that token is readable by the page's
    scripts, so it carries no cookie at all (``include_cookies=[]`` in :func:`serve`)."""
    return credentials().role(session_user())


def _opening_request():
    """The Tornado request that opened the current Bokeh session (None outside a served one)."""
    import panel as pn

    context = getattr(pn.state.curdoc, "session_context", None)
    request = getattr(getattr(context, "request", None), "_request", None)
    return request if hasattr(request, "cookies") else None


def session_user() -> str | None:
    """The logged-in user of the current Panel session (None outside a served session)."""
    request = _opening_request()
    if request is None:
        return None
    if os.environ.get(OAUTH_ENV):  # Panel's OAuth login keeps the user in its signed "user" cookie
        from tornado.web import decode_signed_value

        cookie = request.cookies.get("user")
        secret = os.environ.get(COOKIE_SECRET_ENV, "")
        decoded = decode_signed_value(secret, "user", cookie.value) if cookie is not None and secret else None
        return decoded.decode() if decoded else None
    return current_user(request)


@dataclass(frozen=True)
class Page:
    """A served page, as its script declares it in a literal ``PAGE = {...}``: read without
    running the script, so the navigation and the landing page list every page (the suite's and
    a site package's) from one place."""

    name: str
    path: Path
    title: str
    order: int
    roles: tuple[str, ...]
    summary: str

    def shown_to(self, role: str) -> bool:
        return role in self.roles


_PAGE_KEYS = {"title": str, "order": int, "roles": list, "summary": str}


def read_page(name: str, path: Path) -> Page:
    """The ``PAGE`` declaration of the page script at ``path``; a missing or wrong one is named
    with the file and the keys expected."""
    import ast

    from explorer.privacy import ROLES

    expected = "PAGE = {'title': str, 'order': int, 'roles': [role, ...], 'summary': str}"
    try:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
        node = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "PAGE" for t in n.targets))
        declared = ast.literal_eval(node)
    except StopIteration:
        raise ExplorerError(f"page {path}: no PAGE declaration; expected {expected}") from None
    except (SyntaxError, ValueError, OSError) as exc:
        raise ExplorerError(f"page {path}: cannot read its PAGE declaration ({exc}); expected {expected}") from None
    wrong = [key for key, kind in _PAGE_KEYS.items() if not isinstance(declared.get(key), kind)]
    unknown_roles = [r for r in declared.get("roles") or [] if r not in ROLES]
    if not isinstance(declared, dict) or wrong or unknown_roles:
        raise ExplorerError(f"page {path}: PAGE {'keys ' + ', '.join(wrong) + ' missing or of the wrong type' if wrong else ''}"
                            f"{'unknown roles ' + ', '.join(unknown_roles) + ' (roles: ' + ', '.join(ROLES) + ')' if unknown_roles else ''}"
                            f"; expected {expected}")
    return Page(name, Path(path), declared["title"], declared["order"], tuple(declared["roles"]), declared["summary"])


def pages() -> dict[str, Page]:
    """Every served page by name, in their declared order: ``dashboards/*.py`` (``index`` is the
    landing page) and the modules of the ``explorer.pages`` entry points (a site's own pages).

    Read again only when the search path or a page script changes: every page a session opens
    draws its navigation from here."""
    scripts = sorted(DASHBOARDS.glob("*.py"))
    return _pages(tuple(sys.path), tuple((str(p), p.stat().st_mtime_ns) for p in scripts))


@functools.lru_cache(maxsize=8)
def _pages(search_path: tuple[str, ...], scripts: tuple[tuple[str, int], ...]) -> dict[str, Page]:
    import importlib.util
    from importlib.metadata import entry_points

    found = {Path(path).stem: read_page(Path(path).stem, Path(path)) for path, _ in scripts
             if not Path(path).stem.startswith("_")}
    for point in entry_points(group=PAGE_ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(point.value.split(":")[0])
        if spec is None or not spec.origin:
            raise ExplorerError(f"entry point {point.name} = {point.value!r} (group {PAGE_ENTRY_POINT_GROUP}) names no "
                                "module that can be found; install the package that declares it, or uninstall it")
        if point.name in found:
            raise ExplorerError(f"entry point {point.name} = {point.value!r}: a page called {point.name!r} exists "
                                f"already ({found[point.name].path}); give the page another name")
        found[point.name] = read_page(point.name, Path(spec.origin))
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def dashboard_files() -> dict[str, Path]:
    """The served page scripts by name (see :func:`pages`)."""
    return {name: declared.path for name, declared in pages().items()}


def serve(lake_root, auth_file, *, port: int = 5006, address: str = "127.0.0.1", origins=(), num_procs: int = 1,
          cookie_secret: str | None = None, show: bool = False, oauth_provider: str | None = None,
          session_lifetime_ms: int | None = None, secure_cookies: bool = False, profile: str | None = None,
          storage_options: dict | None = None):
    """Serve every dashboard (blocks). See the module notes for login and roles.

    ``profile``: the disclosure-control profile of the public pages (one of
    ``explorer.privacy.PROFILES``; default ``$EXPLORER_DISCLOSURE_PROFILE``, else ``aou``).

    ``secure_cookies``: mark the cookies ``Secure`` (sent over HTTPS only), for a server behind
    a TLS proxy that reaches it over plain HTTP; a request that arrives over HTTPS gets them
    anyway.

    ``lake_root`` may be ``s3://bucket/prefix``; ``storage_options`` (``AWS_ENDPOINT_URL``...)
    are then set in the environment every page (and every forked process) opens it with.
    Nothing of the lake is opened before ``num_procs`` processes fork: deltalake and obstore keep
    runtime threads a fork does not copy."""
    import panel as pn

    Credentials(auth_file)  # refuse a bad file before anything starts
    if profile is not None:
        os.environ[PROFILE_ENV] = disclosure_profile(profile).name  # an unknown name fails here, with the choices
    pages()  # a page with a wrong PAGE declaration is named before the server starts
    os.environ[AUTH_FILE_ENV] = str(Path(auth_file).resolve())
    if is_object_url(str(lake_root)):
        os.environ["EXPLORER_HOME"] = str(lake_root)
        os.environ.update({str(k): str(v) for k, v in (storage_options or {}).items()})
    else:
        os.environ["EXPLORER_HOME"] = str(Path(lake_root).resolve())
    os.environ[SECURE_COOKIES_ENV] = "1" if secure_cookies else "0"
    secret = cookie_secret or os.environ.get(COOKIE_SECRET_ENV) or secrets.token_hex(32)
    os.environ[COOKIE_SECRET_ENV] = secret  # the OAuth login's cookie is decoded with it (session_user)
    origins = list(origins) or [f"localhost:{port}", f"127.0.0.1:{port}"]
    options = dict(port=port, address=address, websocket_origin=origins, show=show, num_procs=num_procs,
                   cookie_secret=secret, title="Cohort Explorer", index=str(DASHBOARDS / "_root.html"),
                   # one process runs each page once at start; several (forked) get the libraries loaded
                   # before the fork instead, since Bokeh refuses to fork after running a page
                   warm=num_procs == 1, start=False,
                   # what a browser sends: widget changes and uploads (a cohort definition is at most
                   # 256 KiB); Bokeh's default of 20 MB let one message hold a process for seconds
                   websocket_max_message_size=4 * 1024 * 1024,
                   # the session token is in the page, where any script of the page can read it: it
                   # carries no cookie (a login cookie in it was readable despite HttpOnly)
                   include_cookies=[], exclude_headers=["Cookie", "Authorization"])
    from explorer.views.base import holoviews_with_bokeh

    holoviews_with_bokeh()  # HoloViews with its Bokeh backend: seconds of imports the first user would wait for
    if session_lifetime_ms:  # how long a session nobody connected to is kept (Bokeh's default: 15 s)
        options.update(unused_session_lifetime_milliseconds=session_lifetime_ms,
                       check_unused_sessions_milliseconds=max(500, session_lifetime_ms // 2))
    if oauth_provider:
        options["oauth_provider"] = oauth_provider
        os.environ[OAUTH_ENV] = oauth_provider
    else:
        os.environ.pop(OAUTH_ENV, None)
        options["auth_provider"] = auth_provider(DASHBOARDS / "_login.html", DASHBOARDS / "_logout.html")
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
    running = pn.serve({name: str(path) for name, path in files.items()}, **options)
    running._tornado.add_transform(SecurityHeaders)
    running.start()
    running.io_loop.start()


CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'nonce-{nonce}' 'strict-dynamic' 'unsafe-eval'; "
                           "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
                           "form-action 'self'")


class SecurityHeaders:
    """A Tornado output transform: every response of the server gets a Content-Security-Policy
    and the headers that go with it, and the script elements of an HTML page get the nonce the
    policy names.

    The policy allows scripts only from this server or carrying this response's nonce (and
    those they load, ``'strict-dynamic'``): an inline event handler (``<img onerror=...>``) or a
    script element written into the page by markup never runs, even if some text reached the page
    unescaped (W3C CSP Level 3). ``'unsafe-eval'`` stays because Bokeh and Panel compile some of
    their own code at run time; it does not let markup run script. Styles may be inline (Panel
    sets them per component)."""

    _script = re.compile(rb"<script(?=[\s>])", re.IGNORECASE)

    def __init__(self, request):
        self.nonce = secrets.token_urlsafe(18)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(nonce=self.nonce)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "same-origin"
        self.html = headers.get("Content-Type", "").startswith("text/html")
        if self.html and "Content-Length" in headers:
            if not finishing:  # a page streamed in parts whose length is declared: left as it is
                self.html = False
                return status_code, headers, chunk
            chunk = self.transform_chunk(chunk, finishing)
            headers["Content-Length"] = str(len(chunk))
            return status_code, headers, chunk
        return status_code, headers, self.transform_chunk(chunk, finishing)

    def transform_chunk(self, chunk, finishing):
        if self.html and chunk:
            chunk = self._script.sub(b'<script nonce="' + self.nonce.encode() + b'"', chunk)
        return chunk


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
    from explorer import views
    from explorer.lake import open as open_lake

    done = 0
    try:
        lake = open_lake()
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
def page(declared: dict, build):
    """A served page: the navigation, who is signed in, and ``build(lake, role)``'s content.

    ``declared`` is the script's ``PAGE`` (title, order, roles, summary). The role comes from
    the login (:func:`session_role`) and is checked before anything is built: a role the page is
    not declared for, or a view refused to this role, shows why instead of the content. Every
    message is shown as text (``explorer.views.base.message``): it may quote a URL parameter."""
    import panel as pn

    from explorer.lake import open as open_lake
    from explorer.views.base import message, plain_text

    pn.extension("tabulator", loading_indicator=True, notifications=False)
    title = declared["title"]
    heading = f"## {plain_text(title)}"
    try:
        role = session_role()
        nav = " · ".join(f"[{plain_text(p.title)}](./{name})" for name, p in pages().items() if p.shown_to(role))
        heading += f"\n{nav}"
        header = pn.pane.Markdown(f"{heading} · signed in as **{plain_text(session_user())}** ({role}) · "
                                  "[log out](./logout)", sizing_mode="stretch_width")
        if role not in declared["roles"]:
            raise PermissionDenied(f"the page {title!r} is for the {', '.join(declared['roles'])} role(s); "
                                   f"you are signed in as {role}")
        body = build(open_lake(), role)
    except PermissionDenied as exc:
        header = pn.pane.Markdown(f"{heading} · [log out](./logout)", sizing_mode="stretch_width")
        body = [message(exc, "warning", "Not available to you.", css_classes=["refused"])]
    except ExplorerError as exc:
        header = pn.pane.Markdown(heading, sizing_mode="stretch_width")
        body = [message(exc)]
    column = pn.Column(header, *body, sizing_mode="stretch_width")
    _close_at_logout(column)
    return column


def _close_at_logout(column) -> None:
    """Empty an open page within a minute (``$EXPLORER_SESSION_CHECK_SECONDS``; 0: never) of its
    login session ending (a logout in another tab, or expiry): its websocket would otherwise go
    on serving the logged-out user.

    The check is a callback of the Bokeh document, started once the browser has connected, so it
    ends with the session (Panel's own periodic callbacks outlived sessions that were built but
    never connected: 100 such sessions kept 80 MB)."""
    import panel as pn
    from panel.io.state import set_curdoc

    every_ms = int(float(os.environ.get("EXPLORER_SESSION_CHECK_SECONDS", "60")) * 1000)
    request = _opening_request()
    cookie = request.cookies.get(SESSION_COOKIE) if request is not None and not os.environ.get(OAUTH_ENV) else None
    document = pn.state.curdoc
    if every_ms <= 0 or cookie is None or document is None:
        return
    token, started = cookie.value, []

    def check():
        if session_store().user(token) is None:
            from explorer.views.base import message

            with set_curdoc(document):
                column.objects = [message("Log in again to go on.", "warning", "Your session has ended.")]
            document.remove_periodic_callback(started[0])

    pn.state.onload(lambda: started.append(document.add_periodic_callback(check, every_ms)))


def guarded(view_factory):
    """A view's content, or why this role may not see it (the view checks its own role).

    The view is drawn again whenever one of its parameters changes (a widget, or the URL), and
    each drawing is guarded: a parameter a URL set to something the view refuses shows the
    refusal, as text, where the view would be."""
    import panel as pn

    from explorer.views.base import message

    def refusal(exc):
        if isinstance(exc, PermissionDenied):
            return message(exc, "warning", "Not available to you.", css_classes=["refused"])
        if isinstance(exc, TableNotFoundError):  # this lake has not got that aggregate (yet): not a fault of the page
            return message(exc, "info", "Not in this lake yet.")
        return message(exc)

    try:
        view = view_factory()
    except ExplorerError as exc:
        return refusal(exc)
    watched = [view.param[name] for name in view.param if name not in ("name", "lake", "role", "disclosure")]

    def drawn(*_):
        try:
            return pn.panel(view.panel())
        except ExplorerError as exc:
            return refusal(exc)

    return pn.panel(pn.bind(drawn, *watched)) if watched else drawn()


def url_synced(view, parameters: list[str]):
    """Widgets for ``parameters`` of ``view``, kept in the page URL (a link reproduces the view)."""
    import panel as pn

    if pn.state.location is not None:
        pn.state.location.sync(view, {name: name for name in parameters})
    options = getattr(view, "widget_options", dict)()
    return pn.Param(view, parameters=parameters, show_name=False, default_layout=pn.Row,
                    widgets={name: options[name] for name in parameters if name in options})


def csv_download(view, filename: str):
    """A button that downloads the table on screen as CSV: ``view.data()``, which for a public
    view is already the protected page, with each hidden count written as the page shows it
    ("<=20", :func:`~explorer.views.base.with_shown_counts`) and the headers the page shows."""
    import io

    import pandas as pd
    import panel as pn

    from explorer.views.base import with_shown_counts

    def table():
        frame = view.data()
        frame = with_shown_counts(frame if isinstance(frame, pd.DataFrame) else next(iter(frame.values())))
        headers = view.headers(frame, count="persons")
        return io.StringIO(frame.rename(columns=headers).to_csv(index=False))

    return pn.widgets.FileDownload(callback=table, filename=filename, label="download CSV", width=150)
