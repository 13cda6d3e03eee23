"""``explorer export``, ``count``, ``budget``, ``erase`` and ``audit``: what leaves the lake and how
it is protected (Safe Harbor downloads, disclosure-controlled or differentially private counts and
their privacy budgets), a person's right to erasure, and the audit log that records it all.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from explorer.command.common import DISCLOSURE_PROFILES, EPILOG_LAKE, HELP_FORMATTER, acting_role, open_lake, record_audit
from explorer.errors import ExplorerError
from explorer.ingest.pseudonym import Pseudonymizer
from explorer.lake import Lake, default_root
from explorer.lake.engine import current_user
from explorer.lake.storage import is_object_url
from explorer.privacy import AuditLog, dp_person_counts, protected_person_counts
from explorer.privacy.dp import PrivacyBudget
from explorer.privacy.erasure import erase
from explorer.privacy.safe_harbor import export
from explorer.progress import Progress, table_text


def add_parser(commands) -> None:
    """Declare ``export``, ``count``, ``budget``, ``erase`` and ``audit`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("export", help="a researcher download, de-identified by HIPAA Safe Harbor", formatter_class=HELP_FORMATTER,
                            epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Write a table (or a query's rows) to CSV or Parquet under the Safe Harbor method
        (45 CFR 164.514(b)(2)): direct identifiers and places smaller than a state removed,
        person_id replaced by a code made for this file, dates kept to the year (or shifted per
        person with --dates shift), ages of 90 and over as "90+", ZIP3 of areas of 20,000 people
        or fewer as "000" (data_catalog/reference/zip3_population.csv). The export is recorded
        in the audit log. Needs the researcher role.

        With --sql, each column is judged by the lake columns its values come from, never by
        its name or alias: a lake column selected as it is (renamed, or cast without changing
        its values) gets that column's rule (person_id AS k becomes the export's code, zip3 AS
        area is masked, a date keeps its year); year(date) is kept; any other expression over
        a person key, an identifier (source_file, names, places), a date, an age or a ZIP3
        (upper(person_id), md5(...), strftime(date, ...), date_part('day', ...), substr(zip3,
        ...)) is removed and listed with its source. A query whose columns cannot be traced
        (table functions such as read_csv, recursive CTEs, lambdas, COLUMNS(...), #n) is
        refused, naming the column: select lake columns, or compute those values in the lake.

        examples:
          explorer export person --out person.csv
          explorer export --sql "SELECT * FROM measurement WHERE loinc_code = ?" -p 2345-7 --out glucose.parquet
          explorer export wearable_daily --dates shift --out daily.parquet"""))
    p.add_argument("table", nargs="?", help="table to export (or use --sql)")
    p.add_argument("--sql", dest="query", help="export the rows of this query instead (parameters bound)")
    p.add_argument("-p", "--param", action="append", help="value for the next ? placeholder (repeatable)")
    p.add_argument("--version", type=int, default=None, help="table version to export (default: current)")
    p.add_argument("--dates", choices=["year", "shift"], default="year",
                   help="keep the year of each date (default), or shift each person's dates by up to 180 days")
    p.add_argument("--out", required=True, help="file to write: .csv or .parquet")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("count", help="persons per group, under disclosure control or differential privacy",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Count persons in a table of one row per person (person, ageotype, ...) by one or two of
        its columns, as a public user may see them: under a disclosure-control profile (small
        counts hidden, and complementary ones so that no hidden count can be solved from the
        totals shown), or with --dp as differentially private counts (OpenDP's discrete Laplace
        noise), charged to a privacy budget that a steward sets with `explorer budget set`.
        Table and columns are checked against the catalog; the count is recorded in the audit log.

        examples:
          explorer --role public count person --by sex_at_birth,race
          explorer --role public count person --by zip3 --profile opensafely
          explorer --role public count person --by sex_at_birth --dp --epsilon 0.5 --release 2026-q4 \\
              --groups female,male"""))
    p.add_argument("table", nargs="?", default="person", help="table of one row per person (default person)")
    p.add_argument("--by", default="", help="column(s) to count by, comma-separated (at most two)")
    p.add_argument("--profile", choices=DISCLOSURE_PROFILES, default="aou",
                   help="disclosure-control profile (default aou: All of Us, no count 1-20)")
    p.add_argument("--dp", action="store_true", help="differentially private counts instead (needs --epsilon, --release)")
    p.add_argument("--epsilon", type=float, default=None, help="privacy loss of this release (with --dp)")
    p.add_argument("--release", default=None, help="the release whose budget pays for it (with --dp)")
    p.add_argument("--groups", default=None, help="with --dp: the values to release, comma-separated, fixed in advance")
    p.set_defaults(func=cmd_count)

    p = commands.add_parser("budget", help="privacy budgets for differentially private releases", formatter_class=HELP_FORMATTER,
                            epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Show the privacy-loss budgets (epsilon per dataset and release, what is spent and left),
        or, as a steward, set one. A differentially private count is refused when it would spend
        more than its budget has left.

        examples:
          explorer budget show
          explorer --role steward budget set --dataset person --release 2026-q4 --epsilon 1"""))
    p.add_argument("action", choices=["show", "set"])
    p.add_argument("--dataset", help="table the budget protects (set)")
    p.add_argument("--release", help="name of the release, e.g. 2026-q4 (set)")
    p.add_argument("--epsilon", type=float, help="total privacy loss allowed (set)")
    p.set_defaults(func=cmd_budget)

    p = commands.add_parser("erase", help="remove a person from everything (right to erasure); steward only",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Remove the person with this source identifier (the one in the files received) from the
        lake: raw files holding only them are deleted and shared ones rewritten without them;
        their rows leave every table; every aggregate is recomputed without them; the history of
        every table that held them is purged (earlier versions can no longer be read); caches
        are deleted; audit entries naming them are redacted. A receipt, naming them only by a
        keyed digest, goes to the audit log, with a final scan of every byte under the lake root.
        Needs the pseudonym key (as for ingest) and the steward role.

        examples:
          explorer erase --person 1000007
          explorer erase --person 1000007 --key-file /secure/pseudonym.key"""))
    p.add_argument("--person", required=True, metavar="SOURCE_ID", help="the person's source identifier")
    p.add_argument("--key-file", default=None, help="pseudonym key file (default: $EXPLORER_PSEUDONYM_KEY[_FILE])")
    p.add_argument("--workers", type=int, default=None, help="Dask workers for recomputing the aggregates")
    p.set_defaults(func=cmd_erase)

    p = commands.add_parser("audit", help="show the audit log and verify its keyed chain and head; steward only",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        The audit log (<lake>/audit/audit.jsonl) is append-only: each entry (who, role, action,
        dataset and version, parameters, rows returned, time) carries an HMAC, under the audit
        key, that covers the entry before it; after every entry a signed head (entry count and
        last MAC) is written outside the lake. This shows the latest entries and verifies the
        whole log: an edited, removed, inserted or moved entry, a log cut short, emptied or
        deleted, and a head rolled back are named. Needs the steward role.

        The audit key: $EXPLORER_AUDIT_KEY, else the file $EXPLORER_AUDIT_KEY_FILE, else
        <lake>.audit.key beside the lake directory (made on the first entry). The head:
        $EXPLORER_AUDIT_HEAD_FILE, else <lake>.audit-head.json beside the lake directory. Keep
        both outside the lake, readable only by the account the lake runs as, and a copy of the
        head elsewhere: a log rolled back together with its head shows only against that copy.

        exit status: 0 intact and proven with the key; 1 broken (the reason is printed);
        3 a log written before keyed entries (format < 3), whose integrity cannot be proved.

        examples:
          explorer audit
          explorer audit --limit 50
          explorer audit --verify
          explorer audit --verify --head-file /backup/lake.audit-head.json"""))
    p.add_argument("--limit", type=int, default=20, help="entries to show, newest last (default 20)")
    p.add_argument("--verify", action="store_true", help="only verify the chain and the head (no listing)")
    p.add_argument("--audit-key-file", default=None,
                   help="the audit key file (default: $EXPLORER_AUDIT_KEY[_FILE], else <lake>.audit.key)")
    p.add_argument("--head-file", default=None, help="the head to compare with, e.g. a copy kept elsewhere "
                                                     "(default: $EXPLORER_AUDIT_HEAD_FILE, else <lake>.audit-head.json)")
    p.set_defaults(func=cmd_audit)


def cmd_export(args) -> int:
    """Write a table or a query's rows de-identified by Safe Harbor, and say what was removed."""
    lake = open_lake(args)
    role = acting_role(args, "export", "`explorer export`")
    if bool(args.table) == bool(args.query):
        raise ExplorerError("give a TABLE to export, or --sql QUERY (not both)")
    exported = export(lake, args.out, table=args.table or None, query=args.query or None, params=list(args.param or []),
                      version=args.version, dates=args.dates, role=role)
    report = exported.attrs["safe_harbor"]
    print(f"wrote {len(exported):,} rows to {args.out} ({report['method']})")
    print("removed: " + (", ".join(map(str, report["removed"])) or "nothing"))
    for column in report["columns"]:  # why, and where from: an alias must not hide what a column was
        if column["action"] == "removed":
            print(f"  {column['column']} (from {', '.join(column['from'])}): {column['rule']}")
    for change in report["changed"]:
        print(f"changed: {change}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    return 0


def cmd_count(args) -> int:
    """Persons per group as a public user may see them: disclosure-controlled, or with ``--dp``
    differentially private and charged to a privacy budget."""
    lake = open_lake(args)
    role = acting_role(args, "aggregates", "`explorer count`")
    by = [c.strip() for c in (args.by or "").split(",") if c.strip()]
    if args.dp:
        shown, parameters = _dp_count(lake, args, by)
    else:
        shown, parameters = _protected_count(lake, args, by)
    record_audit(lake, role, "count", dataset=args.table, version=lake.version(args.table), parameters=parameters,
                 rows=len(shown))
    return 0


def _protected_count(lake: Lake, args, by: list[str]):
    """Print the disclosure-controlled counts; returns the table shown and the audit parameters."""
    page = protected_person_counts(lake, args.table, by, profile=args.profile)
    shown = page.table(*by)
    print(table_text(shown.drop(columns=["count"])))
    if by:
        print(f"total: {page.table()['shown'].iloc[0]}")
    print(f"disclosure control: {page.profile.title} ({page.profile.reference}); {page.hidden} count(s) hidden")
    return shown, {"by": by, "profile": args.profile}


def _dp_count(lake: Lake, args, by: list[str]):
    """Print the differentially private counts; returns the table shown and the audit parameters."""
    if not args.release or args.epsilon is None:
        raise ExplorerError("--dp needs --epsilon (privacy loss of this release) and --release (the budget it is charged to)")
    if len(by) != 1:
        raise ExplorerError("--dp counts one grouping at a time: give exactly one column in --by")
    if not args.groups:
        raise ExplorerError(f"--dp needs --groups: the values of {by[0]} to release, fixed before looking at the data "
                            "(taken from the data, the list itself would tell which values exist); persons in "
                            "other values are counted together as (other)")
    shown = dp_person_counts(lake, args.table, by[0], groups=[g.strip() for g in args.groups.split(",")],
                             epsilon=args.epsilon, release=args.release)
    left = PrivacyBudget(lake).remaining(args.table, args.release)
    print(table_text(shown))
    print(f"differentially private (discrete Laplace, epsilon {args.epsilon:g}); 95% of counts are within "
          f"{shown['accuracy'].iloc[0]:g} of the truth; budget {args.table}/{args.release}: {left:g} left")
    return shown, {"by": by, "dp": True, "epsilon": args.epsilon, "release": args.release}


def cmd_budget(args) -> int:
    """Show the privacy budgets, or set one (steward)."""
    lake = open_lake(args)
    budget = PrivacyBudget(lake)
    if args.action == "set":
        role = acting_role(args, "erase", "setting a privacy budget")  # a steward's decision
        if not (args.dataset and args.release and args.epsilon):
            raise ExplorerError("`explorer budget set` needs --dataset, --release and --epsilon")
        budget.set(args.dataset, args.release, args.epsilon, user=current_user())
        record_audit(lake, role, "budget_set", dataset=args.dataset,
                     parameters={"release": args.release, "epsilon": args.epsilon})
    frame = budget.frame()
    print(table_text(frame) if len(frame) else "no privacy budget set yet: `explorer budget set --dataset person "
                                               "--release 2026-q4 --epsilon 1`")
    return 0


def cmd_erase(args) -> int:
    """Remove a person from everything and print the receipt (steward)."""
    lake = open_lake(args)
    role = acting_role(args, "erase", "`explorer erase`")
    pseudonymizer = Pseudonymizer.from_environment(lake.root if lake.is_local else None, key_file=args.key_file)
    receipt = erase(lake, args.person, pseudonymizer=pseudonymizer, user=current_user(), role=role,
                    workers=args.workers, progress=Progress("erase"))
    print(receipt)
    print("The receipt is in the audit log (`explorer audit`); it names the person only by a keyed digest.")
    return 0


def cmd_audit(args) -> int:
    """Show the latest audit entries and verify the log (steward). Exit status 0 intact and
    proven, 1 broken, 3 a log no key covers."""
    acting_role(args, "audit", "`explorer audit` (the whole log: who asked what of which data)")
    named = args.lake or default_root()
    if is_object_url(str(named)):
        root = open_lake(args).storage
    else:
        folder = Path(named)
        # a folder with an audit log but no tables is still read: the log of a lake whose tables
        # were removed is evidence, and refusing it would hide what happened
        root = folder if (folder / "audit").is_dir() else open_lake(args).root
    log = AuditLog(root, key_file=args.audit_key_file, head_file=args.head_file)
    check = log.verify()
    if not args.verify:
        entries = log.entries(limit=args.limit)
        if entries.empty:
            print(f"the audit log is empty ({log.path})")
        else:
            shown = entries.drop(columns=["prev_hash"]).assign(hash=entries["hash"].str[:12],
                                                               parameters=entries["parameters"].map(json.dumps))
            print(table_text(shown))
    print(check)
    if not check.ok:
        print(f"Keep a copy of {log.path} and of its head {log.head_path} as evidence"
              + (f"; entries from line {check.bad_line} on cannot be trusted." if check.bad_line else "."))
    # 3, not 0, for a log no key covers: a script that checks for success must not pass a log
    # that anyone could have rewritten
    return 1 if not check.ok else 0 if check.proven else 3
