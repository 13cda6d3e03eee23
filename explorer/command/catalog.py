"""``explorer catalog``, ``verify``, ``versions`` and ``lineage``: what the lake holds, where each
table version came from, and whether its files are still the bytes that were written."""

from __future__ import annotations

import textwrap

import pandas as pd

from explorer.command.common import HELP_FORMATTER, open_lake
from explorer.errors import ExplorerError, did_you_mean
from explorer.lake import Lake
from explorer.progress import Progress, table_text


def add_parser(commands) -> None:
    """Declare ``catalog``, ``verify``, ``versions`` and ``lineage`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("catalog", help="list datasets with version, rows, last commit and lineage",
                            formatter_class=HELP_FORMATTER, description=textwrap.dedent("""\
        List every dataset: its catalog entry (kind, sensitivity tier) and, once written, its
        current version, row count, last commit and what it was made from. With NAME, show one
        dataset in full: description, schema with units, every version, and lineage both ways."""),
                            epilog="examples:\n  explorer catalog\n  explorer catalog measurement")
    p.add_argument("name", nargs="?", help="one dataset to show in full")
    p.set_defaults(func=cmd_catalog)

    p = commands.add_parser("verify", help="re-hash raw files and table files against recorded checksums",
                            formatter_class=HELP_FORMATTER, description=textwrap.dedent("""\
        Re-hash every raw file (its name is its SHA-256) and every data and commit file of the
        current table versions against the checksums recorded when they were written. A changed
        byte in a Parquet page can be read back silently wrong by every engine: only this
        check catches it. Exit status 1 when a file was modified or is missing."""))
    p.add_argument("--all-versions", action="store_true", help="check the files of every version, not just the current ones")
    p.set_defaults(func=cmd_verify)

    p = commands.add_parser("versions", help="history of one table", description="One row per version: time, operation, mode, rows added, inputs, user.")
    p.add_argument("name")
    p.set_defaults(func=cmd_versions)

    p = commands.add_parser("lineage", help="what a table version was made from, and what was made from it",
                            formatter_class=HELP_FORMATTER, description="REF is TABLE, TABLE@VERSION or raw:SHA256.",
                            epilog="examples:\n  explorer lineage measurement\n  explorer lineage measurement@2\n  explorer lineage raw:9f86d0…")
    p.add_argument("ref")
    p.add_argument("--edges", action="store_true", help="print the graph as source,target CSV")
    p.set_defaults(func=cmd_lineage)


def cmd_catalog(args) -> int:
    """List every dataset, or show the one ``args.name`` in full."""
    lake = open_lake(args)
    catalog = lake.catalog
    names = sorted(set(catalog.names()) | set(lake.tables()))
    if args.name:
        return _show_dataset(lake, catalog, args.name)
    rows = []
    for name in names:
        entry = catalog.get(name)
        row = {"name": name, "kind": entry.kind if entry else "table", "tier": entry.sensitivity if entry else "?",
               "version": "", "rows": "", "last commit": "", "made from": ""}
        if lake.has_table(name):
            history = lake.versions(name)
            last = history.iloc[-1]
            inputs = lake.lineage(name).inputs
            row.update(version=int(last["version"]), rows=f"{lake.row_count(name):,}",
                       **{"last commit": f"{last['timestamp']:%Y-%m-%d %H:%M} {last['operation']}",
                          "made from": _summarise_refs(inputs)})
        elif entry is not None:
            row["version"] = "-"
            row["last commit"] = "(not written yet)"
        if entry is None:
            row["made from"] = (row["made from"] + " [no catalog entry]").strip()
        rows.append(row)
    print(table_text(pd.DataFrame(rows)))
    print(f"\n{len(lake.tables())} table(s) in {lake.location}; {len(catalog)} catalog entries in {catalog.directory}")
    return 0


def _summarise_refs(refs) -> str:
    """A lineage's inputs in a table cell: the first three tables, then how many more and how
    many raw files (a raw file's name is a 64-character digest nobody reads in a listing)."""
    if not refs:
        return ""
    raw = [r for r in refs if r.startswith("raw:")]
    tables = [r for r in refs if not r.startswith("raw:")]
    parts = tables[:3] + ([f"+{len(tables) - 3} more"] if len(tables) > 3 else [])
    if raw:
        parts.append(f"{len(raw)} raw file{'s' if len(raw) != 1 else ''}")
    return ", ".join(parts)


def _show_dataset(lake: Lake, catalog, name: str) -> int:
    """One dataset in full: its catalog entry and schema, every version and its lineage."""
    entry = catalog.get(name)
    if entry is None and not lake.has_table(name):
        raise ExplorerError(f"no dataset '{name}'{did_you_mean(name, catalog.names() + lake.tables())}; "
                            "`explorer catalog` lists them all")
    if entry is not None:
        print(f"{entry.name} ({entry.kind}, {entry.layer or 'dataset'}) - tier: {entry.sensitivity}, owner: {entry.owner}")
        print(textwrap.fill(entry.description, 100))
        keys = [f"{k}: {v}" for k, v in (("entity", entry.entity), ("time", entry.time)) if v]
        if entry.primary_key:
            keys.append("primary key: " + ", ".join(entry.primary_key))
        if keys:
            print("; ".join(keys))
        for ref in entry.references:
            print(f"reference: {ref}")
        print(f"entry: {entry.source_file}\n")
        schema = pd.DataFrame([{"column": c.name, "type": c.type, "unit": c.unit or "",
                                "required": "yes" if not c.nullable else "", "description": c.description}
                               for c in entry.schema])
        print(table_text(schema))
    else:
        print(f"{name}: [no catalog entry] add data_catalog/{name}.yaml to describe it")
    if lake.has_table(name):
        print(f"\nversions ({lake.row_count(name):,} rows now):")
        history = lake.versions(name)
        history["inputs"] = history["inputs"].map(_summarise_refs)
        history["timestamp"] = history["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
        print(table_text(history))
        print("\nlineage of the current version:")
        print(textwrap.indent(str(lake.lineage(name)), "  "))
    else:
        print("\n(not written to the lake yet)")
    return 0


def cmd_verify(args) -> int:
    """Re-hash the lake's files; exit status 1 when one was modified or is missing."""
    report = open_lake(args).verify(all_versions=args.all_versions, progress=Progress("hashing"))
    print(report)
    return 0 if report.ok else 1


def cmd_versions(args) -> int:
    """The history of one table, a row per version."""
    history = open_lake(args).versions(args.name)
    history["inputs"] = history["inputs"].map(lambda refs: ", ".join(refs))
    print(table_text(history))
    return 0


def cmd_lineage(args) -> int:
    """What a table version was made from and what was made from it (``--edges``: as CSV)."""
    lineage = open_lake(args).lineage(args.ref)
    print(lineage.to_frame().to_csv(index=False) if args.edges else lineage)
    return 0
