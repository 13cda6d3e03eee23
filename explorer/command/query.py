"""``explorer sql``: one DuckDB query over the lake's tables, values bound as parameters, tables
optionally read at pinned versions, in the role the user acts in, recorded in the audit log."""

from __future__ import annotations

import sys

from explorer.command.common import HELP_FORMATTER, acting_role, open_lake, record_audit
from explorer.errors import ExplorerError
from explorer.privacy.roles import query_as
from explorer.progress import table_text


def add_parser(commands) -> None:
    """Declare ``sql`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("sql", help="run a SQL query over the lake (parameters bound)", formatter_class=HELP_FORMATTER,
                            description="Run one DuckDB query over the lake's tables. Values go in as --param, "
                                        "bound in order to the ? placeholders, never pasted into the SQL.",
                            epilog="examples:\n  explorer sql \"SELECT count(*) FROM person\"\n"
                                   "  explorer sql \"SELECT * FROM measurement WHERE loinc_code = ?\" -p 2345-7\n"
                                   "  explorer sql \"SELECT count(*) FROM measurement\" --version measurement=0")
    p.add_argument("query")
    p.add_argument("-p", "--param", action="append", help="value for the next ? placeholder (repeatable)")
    p.add_argument("--version", action="append", metavar="TABLE=N", help="read TABLE at version N (repeatable)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_sql)


def cmd_sql(args) -> int:
    """Run the query in the acting role and print its rows as a table, CSV or JSON."""
    lake = open_lake(args)
    versions = _version_pins(args.version or [])
    params = list(args.param or [])  # bound as text: DuckDB casts to the column's type itself
    role = acting_role(args, "sql", "`explorer sql`")
    frame = query_as(lake, role, args.query, params, versions)
    record_audit(lake, role, "query", parameters={"sql": args.query, "params": params, "versions": versions},
                 rows=len(frame))
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(frame.to_json(orient="records", date_format="iso"))
    else:
        print(table_text(frame))
    return 0


def _version_pins(pins: list[str]) -> dict[str, int]:
    """``--version TABLE=N`` options as {table: version}."""
    versions = {}
    for pin in pins:
        name, _, number = pin.partition("=")
        if not number.isdigit():
            raise ExplorerError(f"--version {pin!r}: expected TABLE=NUMBER, e.g. measurement=3")
        versions[name] = int(number)
    return versions
