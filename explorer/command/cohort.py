"""``explorer cohort``: cohort definitions (YAML or JSON documents) validated, compiled to their
one DuckDB query, counted step by step (attrition), saved with their members, listed, shown,
characterised against the whole lake, and deleted.
"""

from __future__ import annotations

import json
import time
import textwrap
from pathlib import Path

from explorer import cohorts
from explorer.command.common import DISCLOSURE_PROFILES, EPILOG_LAKE, HELP_FORMATTER, acting_role, open_lake, record_audit, save_page
from explorer.errors import ExplorerError
from explorer.lake import Lake
from explorer.privacy import DisclosureControl
from explorer.privacy.disclosure import HIDDEN
from explorer.progress import table_text

DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")


def add_parser(commands) -> None:
    """Declare ``cohort`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("cohort", help="cohort definitions: validate, count (attrition), save, characterise",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        A cohort is a YAML or JSON document: an index date rule, inclusion and exclusion criteria
        over demographics, conditions (code sets), lab values (LOINC, units, bounds), wearable
        compliance and metrics, and exposures at home, combined with all/any/not, with time
        windows in days relative to the index date (README, "Cohorts", has the full format).

        validate FILE        check a definition; every problem is listed with where it is
        sql FILE|NAME        the one DuckDB query it compiles to, with its bound parameters
        count FILE|NAME      attrition: persons left after each criterion, from one query
                             (a public user sees it under disclosure control, --profile)
        save FILE            save it in the lake and materialise its members (cohort_member),
                             recorded with the table versions they came from; `explorer
                             refresh` keeps them up to date
        list | show NAME     saved cohorts; one saved definition (--format yaml|json)
        members NAME         its members (--version V: as an earlier cohort_member version held them)
        characterise NAME    against the whole lake (or --against NAME): demographics, data per
                             modality, wearables, exposure, ageing, with standardised differences
        delete NAME          remove a saved cohort

        examples:
          explorer cohort validate t2d.yaml
          explorer cohort count t2d.yaml
          explorer --role public cohort count t2d.yaml --profile cms --out attrition.html
          explorer cohort save t2d.yaml && explorer cohort characterise t2d --out t2d.html
          explorer cohort members t2d --version 3 --out t2d.csv"""))
    p.add_argument("action", choices=["validate", "sql", "count", "save", "list", "show", "members", "characterise",
                                      "delete"])
    p.add_argument("cohort", nargs="?", help="definition file (.yaml, .yml, .json) or saved cohort name")
    p.add_argument("--profile", choices=DISCLOSURE_PROFILES, default="aou",
                   help="disclosure-control profile for a public user (default aou)")
    p.add_argument("--against", default=None, help="characterise against this saved cohort (default: the whole lake)")
    p.add_argument("--version", type=int, default=None, help="table version to read (members: cohort_member; show: cohort_definition)")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml", help="show: document format")
    p.add_argument("--out", default=None, help="members: .csv or .parquet file; count, characterise: .html page")
    p.set_defaults(func=cmd_cohort)


def cmd_cohort(args) -> int:
    """Run one ``explorer cohort`` action (see the parser's description)."""
    if args.action != "list" and not args.cohort:
        raise ExplorerError(f"`explorer cohort {args.action}` needs a definition file or a saved cohort's name")
    if args.action == "validate":
        return _validate(args)
    lake = open_lake(args)
    actions = {"sql": _sql, "count": _count, "list": _list, "show": _show, "save": _save, "delete": _delete,
               "members": _members, "characterise": _characterise}
    if args.action not in actions:
        raise ExplorerError(f"unknown action {args.action!r}")
    return actions[args.action](lake, args)


def _definition(lake: Lake, text: str):
    """A definition from a file, or a saved cohort's name."""
    if Path(text).suffix.lower() in DEFINITION_SUFFIXES or Path(text).exists():
        return cohorts.load(text)
    return cohorts.get(lake, text)


def _validate(args) -> int:
    definition = cohorts.load(args.cohort)
    print(f"{args.cohort}: valid cohort definition {definition.name!r} version {definition.version} "
          f"(sha256 {definition.sha256[:12]}); reads {', '.join(sorted(definition.tables()))}")
    print(f"  index date: {definition.index_date.describe()}")
    for label, _, _ in definition.steps():
        print(f"  {label}")
    return 0


def _sql(lake: Lake, args) -> int:
    if not Path(args.cohort).exists():  # a saved definition is read as a researcher reads it
        acting_role(args, "person_rows", "reading a saved cohort definition")
    compiled = cohorts.compile_definition(_definition(lake, args.cohort))
    print(compiled.counts_sql() + ";")
    print("-- parameters: " + json.dumps(compiled.params, default=str))
    return 0


def _count(lake: Lake, args) -> int:
    """Attrition: exact for a researcher, under disclosure control (``--profile``) for a public user."""
    role = acting_role(args, "aggregates", "`explorer cohort count`")
    definition = _definition(lake, args.cohort)
    control = DisclosureControl(profile=args.profile) if role == "public" else None
    started = time.perf_counter()
    if control is not None:
        from explorer.views.cohorts import public_attrition

        # a saved cohort's counts as the public cohorts page shows them: that page hides some to
        # protect its characterisation, and a count shown here would undo it
        frame = public_attrition(lake, control, definition)
    else:
        frame = cohorts.count(lake, definition)
    frame.attrs.setdefault("seconds", time.perf_counter() - started)
    if control is not None:
        shown = frame[["step", "label", "persons_shown", "removed_shown"]].rename(
            columns={"persons_shown": "persons", "removed_shown": "removed"})
        hidden = int(frame["persons_status"].isin(HIDDEN).sum() + frame["removed_status"].isin(HIDDEN).sum())
        note = f"disclosure control: {control.rules.title}; {hidden} count(s) hidden"
    else:
        shown = frame.astype({"removed": "object"}).fillna("")
        note = "exact counts (researcher tier)"
    print(table_text(shown))
    print(f"{definition.name} v{definition.version}: counted in {frame.attrs['seconds'] * 1000:.0f} ms; {note}")
    if args.out:
        from explorer.views.cohorts import attrition_panel

        save_page(attrition_panel(frame, control is not None, control.rules if control is not None else None), args.out)
    record_audit(lake, role, "cohort_count", parameters={"cohort": definition.name, "sha256": definition.sha256,
                                                         "profile": args.profile if control is not None else None})
    return 0


def _list(lake: Lake, args) -> int:
    """The saved cohorts, with how many members each has now."""
    acting_role(args, "person_rows", "`explorer cohort list`")
    frame = cohorts.saved(lake)
    if frame.empty:
        print("no saved cohort yet: `explorer cohort save FILE.yaml`")
        return 0
    if lake.has_table("cohort_member"):
        sizes = lake.sql("SELECT cohort, count(*) AS members FROM cohort_member GROUP BY cohort")
        frame = frame.merge(sizes, on="cohort", how="left").fillna({"members": 0})
    frame["definition_sha256"] = frame["definition_sha256"].str[:12]
    print(table_text(frame))
    return 0


def _show(lake: Lake, args) -> int:
    acting_role(args, "person_rows", "`explorer cohort show`")
    definition = cohorts.get(lake, args.cohort, version=args.version)
    print(definition.to_json() if args.format == "json" else definition.to_yaml(), end="")
    return 0


def _save(lake: Lake, args) -> int:
    role = acting_role(args, "person_rows", "`explorer cohort save`")
    definition = cohorts.load(args.cohort)
    version = cohorts.save(lake, definition)
    size = len(cohorts.members_of(lake, definition.name, version))
    print(f"saved {definition.name!r} v{definition.version}: {size} members in cohort_member@{version} "
          f"(`explorer lineage cohort_member@{version}` shows the table versions they were computed from)")
    record_audit(lake, role, "cohort_save", dataset="cohort_member", version=version,
                 parameters={"cohort": definition.name, "sha256": definition.sha256})
    return 0


def _delete(lake: Lake, args) -> int:
    role = acting_role(args, "person_rows", "`explorer cohort delete`")
    version = cohorts.delete(lake, args.cohort)
    print(f"deleted {args.cohort!r}; cohort_member@{version} no longer holds it (earlier versions still do)")
    record_audit(lake, role, "cohort_delete", parameters={"cohort": args.cohort})
    return 0


def _members(lake: Lake, args) -> int:
    role = acting_role(args, "person_rows", "`explorer cohort members`")
    frame = cohorts.members_of(lake, args.cohort, version=args.version)
    if args.out:
        frame.to_csv(args.out, index=False) if args.out.endswith(".csv") else frame.to_parquet(args.out, index=False)
        print(f"wrote {len(frame)} members of {args.cohort!r} (cohort_member@{frame.attrs['version']}) to {args.out}")
    else:
        print(table_text(frame))
        print(f"{len(frame)} members, cohort_member@{frame.attrs['version']}, computed from "
              f"{', '.join(frame.attrs['inputs'])}")
    record_audit(lake, role, "cohort_members", dataset="cohort_member", version=frame.attrs["version"],
                 parameters={"cohort": args.cohort}, rows=len(frame))
    return 0


def _characterise(lake: Lake, args) -> int:
    """The cohort against the whole lake (or ``--against``), with standardised differences."""
    from explorer.views import CohortCharacterisation

    role = acting_role(args, "aggregates", "`explorer cohort characterise`")
    view = CohortCharacterisation(lake=lake, role=role, cohort=args.cohort, against=args.against or "")
    table = view.data()
    print(table_text(view.display_table(table)))
    print(f"as of {table.attrs.get('as_of')} for the whole lake; smd: standardised mean difference (|smd| > 0.1: "
          "imbalance worth a look)")
    if args.out:
        save_page(view.panel(), args.out)
    record_audit(lake, role, "cohort_characterise", parameters={"cohort": args.cohort, "against": args.against})
    return 0
