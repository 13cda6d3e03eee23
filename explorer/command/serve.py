"""``explorer serve``, ``users``, ``demo`` and ``lab``: the dashboards behind a login and their
users, a demo lake built end to end, and JupyterLab on the researcher notebooks.

The server and the login are imported inside the commands that use them: together they take
about a tenth of a second to import, which ``explorer --help`` need not wait for.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
import textwrap

from explorer.command.common import DISCLOSURE_PROFILES, EPILOG_LAKE, HELP_FORMATTER, ROLES, open_lake
from explorer.demo import DEMO_DAYS, DEMO_PARTICIPANTS, run_demo
from explorer.errors import ExplorerError
from explorer.lake import default_root
from explorer.lake.storage import is_object_url
from explorer.lab import run_lab

def add_parser(commands) -> None:
    """Declare ``serve``, ``users``, ``demo`` and ``lab`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("serve", help="serve the dashboards behind a login (roles per user)", formatter_class=HELP_FORMATTER,
                            epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Serve the dashboards in dashboards/ (landing page, cohort overview, wearables,
        environment, ageing, cohorts) with Panel. Every page asks for a login: users, their
        scrypt-hashed passwords and roles are in the --auth file (`explorer users add`). A public
        user sees counts under disclosure control only; person-level views need researcher.
        Filters are kept in the URL, so a link reproduces a view.

        Sessions are kept on the server (beside the --auth file) and end at logout, after 2 h
        unused or 12 h after login; 5 wrong passwords per account (20 per address) in 15 min
        refuse further tries. Serve over TLS: put a TLS proxy in front and pass --secure-cookies
        (README, "Threat model").

        examples:
          explorer users add users.json ana --role researcher
          explorer serve --auth users.json --port 5006
          explorer serve --auth users.json --profile cms        # public pages under CMS rules (no cell 1-10)
          explorer serve --auth users.json --address 0.0.0.0 --allow-websocket-origin dash.example.org \\
              --cookie-secret "$(cat /secure/cookie-secret)" --num-procs 2"""))
    p.add_argument("--auth", default=None, help="credentials file (JSON): users, roles, scrypt password hashes")
    p.add_argument("--port", type=int, default=5006)
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--allow-websocket-origin", action="append", metavar="HOST[:PORT]",
                   help="origins allowed to open the dashboards' websocket (default: localhost and 127.0.0.1 at --port)")
    p.add_argument("--num-procs", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--cookie-secret", default=None, help="signs the login cookie (default $EXPLORER_COOKIE_SECRET, else random)")
    p.add_argument("--oauth-provider", default=None, help="log in through Panel's OAuth provider instead (PANEL_OAUTH_* settings); "
                                                          "--auth then maps user names to roles")
    p.add_argument("--secure-cookies", action="store_true",
                   help="send cookies over HTTPS only: for a server behind a TLS proxy that reaches it over HTTP")
    p.add_argument("--profile", choices=DISCLOSURE_PROFILES, default=None,
                   help="disclosure-control profile of the public pages (default $EXPLORER_DISCLOSURE_PROFILE, else aou)")
    p.add_argument("--show", action="store_true", help="open a browser")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("users", help="add a dashboard user (name, role, scrypt-hashed password)", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        Add or replace a user of `explorer serve --auth FILE`. The password is asked for (or read
        from standard input with --password-stdin) and stored only as an scrypt hash.

        examples:
          explorer users add users.json ana --role researcher
          echo "$PASSWORD" | explorer users add users.json pat --role public --password-stdin"""))
    p.add_argument("action", choices=["add"])
    p.add_argument("file", help="credentials file (created if missing)")
    p.add_argument("name", help="user name")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_users)

    p = commands.add_parser("demo", help="build a small demo lake and show what it keeps", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        Write a small synthetic cohort (with its documented faults) beside the lake, ingest it
        (originals kept, formats detected, rows validated, identifiers pseudonymised with a demo
        key kept beside the lake, bad rows and files quarantined with reasons), refresh the
        aggregate tables on a local Dask cluster, run a person-day query with a bound parameter,
        count and save a cohort, trace lineage and verify every checksum; then serve the
        dashboards and print a demo login for each role (--no-serve to stop before)."""))
    p.add_argument("--participants", type=int, default=DEMO_PARTICIPANTS, help=f"participants (default {DEMO_PARTICIPANTS})")
    p.add_argument("--days", type=int, default=DEMO_DAYS, help=f"days of minute-level data (default {DEMO_DAYS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-serve", action="store_true", help="build the lake and stop, without serving the dashboards")
    p.add_argument("--port", type=int, default=5006, help="port of the dashboards (default 5006)")
    p.add_argument("--address", default="127.0.0.1", help="address of the dashboards (default 127.0.0.1)")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("lab", help="JupyterLab on the researcher notebooks, with the lake configured", formatter_class=HELP_FORMATTER,
                            epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Start JupyterLab on the notebooks folder (the checkout's notebooks/, or a working copy of
        the notebooks an installed wheel carries, made once in ./explorer-notebooks) with
        EXPLORER_HOME set to the lake, so `explorer.open()` in every notebook opens it. The
        notebooks are the researcher workflows: quick start, wearables, environment, ageing,
        cohorts and scale-out; they run top to bottom on the demo lake.

        Jupyter prints the address with its login token. Anything after -- goes to JupyterLab
        (as root, Jupyter asks for -- --allow-root).

        examples:
          explorer demo --no-serve && explorer lab
          explorer --lake /data/lake lab --port 8890
          explorer lab --address 0.0.0.0 -- --ServerApp.allow_remote_access=True"""))
    p.add_argument("--dir", default=None, help="folder of notebooks to open (default: the suite's own)")
    p.add_argument("--port", type=int, default=8888, help="port (default 8888; refused if taken)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--browser", action="store_true", help="open a browser too")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="after --: options for JupyterLab itself")
    p.set_defaults(func=cmd_lab)


def cmd_serve(args) -> int:
    """Serve the dashboards behind the login of ``--auth`` until stopped."""
    from explorer.serve import dashboard_files, serve

    if not args.auth:
        raise ExplorerError("`explorer serve` needs --auth FILE, the users and their roles (make one with "
                            "`explorer users add FILE NAME --role public`); dashboards are never served without a login")
    forks = args.num_procs > 1 and is_object_url(str(args.lake or default_root()))
    location, options = checked_in_a_child(args) if forks else _opened(args)
    pages = ", ".join(f"/{name}" for name in dashboard_files())
    print(f"serving {pages} of {location} at http://{args.address}:{args.port}/ (log in; Ctrl-C stops)", flush=True)
    serve(location, args.auth, port=args.port, address=args.address, origins=args.allow_websocket_origin or (),
          num_procs=args.num_procs, cookie_secret=args.cookie_secret, show=args.show, oauth_provider=args.oauth_provider,
          secure_cookies=args.secure_cookies, profile=args.profile, storage_options=options)
    return 0


def _opened(args) -> tuple[str, dict | None]:
    lake = open_lake(args)
    return lake.location, lake.storage.storage_options


def checked_in_a_child(args) -> tuple[str, dict | None]:
    """:func:`_opened` in a fresh interpreter: the server forks its processes later, and a
    process forked after deltalake or obstore ran hangs on their missing runtime threads."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_opened, args).result()


def cmd_users(args) -> int:
    """Add or replace a dashboard user, the password asked for (or read from standard input)."""
    from explorer.login import Credentials

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    Credentials.add(args.file, args.name, args.role, password)
    print(f"{args.file}: {args.name} can log in as {args.role} (password stored as an scrypt hash)")
    return 0


def cmd_demo(args) -> int:
    """Build the demo lake; then, unless ``--no-serve`` or a step failed, serve it with one
    made-up login per role. Exit status 1 when a step of the demo failed."""
    lake = open_lake(args, create=True)
    print(f"Demo lake: {lake.root}")
    figures = run_demo(lake, participants=args.participants, days=args.days, seed=args.seed)
    ok = figures["verified"] and not figures["ingest"].errors and not figures["refresh"].failed
    print("\nNext: `explorer catalog` lists every dataset; `explorer catalog heart_rate_minute` shows one;"
          " `explorer sql \"SELECT ...\"` queries them.")
    if args.no_serve or not ok:
        return 0 if ok else 1
    from explorer.login import Credentials
    from explorer.serve import serve

    users = lake.root.parent / f"{lake.root.name}.users.json"
    logins = {role: secrets.token_urlsafe(9) for role in ROLES}
    for role, password in logins.items():
        Credentials.add(users, role, role, password)
    print(f"\nDashboards: http://{args.address}:{args.port}/  (users in {users}; Ctrl-C stops)")
    for role, password in logins.items():
        print(f"  log in as {role:10s} password {password}")
    sys.stdout.flush()
    serve(lake.root, users, port=args.port, address=args.address)
    return 0


def cmd_lab(args) -> int:
    """Replace this process with JupyterLab on the notebooks, the lake configured."""
    extra = [a for a in (args.jupyter_args or []) if a != "--"]
    run_lab(open_lake(args), args.dir, port=args.port, address=args.address, browser=args.browser, extra=extra)
    return 0  # not reached: the process has become JupyterLab
