"""The ``explorer`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError

EPILOG_LAKE = "The lake is --lake PATH, else $EXPLORER_HOME, else ./explorer-data."


def _lake(args):
    import explorer

    return explorer.open(args.lake)


from explorer.progress import table_text as _table_text  # noqa: E402  (kept under its old name here)


# ---------------------------------------------------------------------------------------- catalog
def cmd_catalog(args) -> int:
    lake = _lake(args)
    catalog = lake.catalog
    names = sorted(set(catalog.names()) | set(lake.tables()))
    if args.name:
        return _catalog_one(lake, catalog, args.name)
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
    print(_table_text(pd.DataFrame(rows)))
    print(f"\n{len(lake.tables())} table(s) in {lake.root}; {len(catalog)} catalog entries in {catalog.directory}")
    return 0


def _summarise_refs(refs) -> str:
    if not refs:
        return ""
    raw = [r for r in refs if r.startswith("raw:")]
    tables = [r for r in refs if not r.startswith("raw:")]
    parts = tables[:3] + ([f"+{len(tables) - 3} more"] if len(tables) > 3 else [])
    if raw:
        parts.append(f"{len(raw)} raw file{'s' if len(raw) != 1 else ''}")
    return ", ".join(parts)


def _catalog_one(lake, catalog, name: str) -> int:
    entry = catalog.get(name)
    if entry is None and not lake.has_table(name):
        from explorer.errors import did_you_mean

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
        print(_table_text(schema))
    else:
        print(f"{name}: [no catalog entry] add data_catalog/{name}.yaml to describe it")
    if lake.has_table(name):
        print(f"\nversions ({lake.row_count(name):,} rows now):")
        history = lake.versions(name)
        history["inputs"] = history["inputs"].map(_summarise_refs)
        history["timestamp"] = history["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
        print(_table_text(history))
        print("\nlineage of the current version:")
        print(textwrap.indent(str(lake.lineage(name)), "  "))
    else:
        print("\n(not written to the lake yet)")
    return 0


# ---------------------------------------------------------------------------------------- others
def cmd_verify(args) -> int:
    from explorer.progress import Progress

    report = _lake(args).verify(all_versions=args.all_versions, progress=Progress("hashing"))
    print(report)
    return 0 if report.ok else 1


def cmd_audit(args) -> int:
    from explorer.privacy import AuditLog

    _role(args, "audit", "`explorer audit` (the whole log: who asked what of which data)")
    log = AuditLog(_lake(args).root, key_file=args.audit_key_file, head_file=args.head_file)
    check = log.verify()
    if not args.verify:
        entries = log.entries(limit=args.limit)
        if entries.empty:
            print(f"the audit log is empty ({log.path})")
        else:
            shown = entries.drop(columns=["prev_hash"]).assign(hash=entries["hash"].str[:12],
                                                               parameters=entries["parameters"].map(json.dumps))
            print(_table_text(shown))
    print(check)
    if not check.ok:
        print(f"Keep a copy of {log.path} and of its head {log.head_path} as evidence"
              + (f"; entries from line {check.bad_line} on cannot be trusted." if check.bad_line else "."))
    # 3, not 0, for a log no key covers: a script that checks for success must not pass a log
    # that anyone could have rewritten
    return 1 if not check.ok else 0 if check.proven else 3


def cmd_versions(args) -> int:
    history = _lake(args).versions(args.name)
    history["inputs"] = history["inputs"].map(lambda refs: ", ".join(refs))
    print(_table_text(history))
    return 0


def cmd_lineage(args) -> int:
    lineage = _lake(args).lineage(args.ref)
    print(lineage.to_frame().to_csv(index=False) if args.edges else lineage)
    return 0


def _audit(lake, role: str, action: str, **details) -> None:
    """One audit entry for a command line user (roles are checked with the privacy layer's
    login; on the command line the user is the account that runs it)."""
    from explorer.lake.engine import current_user
    from explorer.privacy import AuditLog

    AuditLog(lake.root).record(user=current_user(), role=role, action=action, **details)


def _role(args, access: str, what: str) -> str:
    """The role a command acts in: --role, else $EXPLORER_ROLE, else the least role the command
    needs (someone with a shell on the lake's files has that anyway); refused if too little."""
    from explorer.privacy import ACCESS, require

    role = getattr(args, "role", None) or os.environ.get("EXPLORER_ROLE") or ACCESS[access]
    require(role, access, what)
    return role


def cmd_sql(args) -> int:
    lake = _lake(args)
    versions = {}
    for pin in args.version or []:
        name, _, number = pin.partition("=")
        if not number.isdigit():
            raise ExplorerError(f"--version {pin!r}: expected TABLE=NUMBER, e.g. measurement=3")
        versions[name] = int(number)
    params = list(args.param or [])  # bound as text: DuckDB casts to the column's type itself
    role = _role(args, "sql", "`explorer sql`")
    from explorer.privacy.roles import query_as

    frame = query_as(lake, role, args.query, params, versions)
    _audit(lake, role, "query", parameters={"sql": args.query, "params": params, "versions": versions},
           rows=len(frame))
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(frame.to_json(orient="records", date_format="iso"))
    else:
        print(_table_text(frame))
    return 0


def cmd_ingest(args) -> int:
    from explorer.progress import Progress

    lake = _lake(args)
    role = _role(args, "ingest", "`explorer ingest`")
    if args.fhir_server:
        os.environ["EXPLORER_FHIR_SERVER"] = args.fhir_server  # read by the readers, in this process and its workers
    report = lake.ingest(args.path, key_file=args.key_file, default_time_zone=args.default_time_zone,
                         progress=Progress("ingest"), quality=not args.no_quality,
                         retry_quarantined=args.retry_quarantined)
    _audit(lake, role, "ingest", parameters={"path": str(args.path), "ingest_id": report.ingest_id,
                                                  "versions": report.versions}, rows=len(report.files))
    print(report)
    print("Per-file outcomes: `explorer --role steward sql \"SELECT * FROM ingest_file\"`; quarantined rows with their reasons "
          "and original values: table quarantine_row (steward tier); data-quality report: `explorer quality`.")
    return 1 if report.errors else 0  # bad data is reported, not an error; a failed reader is


def cmd_export(args) -> int:
    from explorer.privacy.safe_harbor import export

    lake = _lake(args)
    role = _role(args, "export", "`explorer export`")
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
    from explorer.lake.engine import current_user
    from explorer.privacy import DisclosureControl
    from explorer.privacy.counts import person_counts
    from explorer.privacy.dp import PrivacyBudget, dp_counts

    lake = _lake(args)
    role = _role(args, "aggregates", "`explorer count`")
    by = [c.strip() for c in (args.by or "").split(",") if c.strip()]
    finest = person_counts(lake, args.table, by)
    version = lake.version(args.table)
    if args.dp:
        if not args.release or args.epsilon is None:
            raise ExplorerError("--dp needs --epsilon (privacy loss of this release) and --release (the budget it is charged to)")
        if len(by) != 1:
            raise ExplorerError("--dp counts one grouping at a time: give exactly one column in --by")
        if not args.groups:
            raise ExplorerError(f"--dp needs --groups: the values of {by[0]} to release, fixed before looking at the data "
                                "(taken from the data, the list itself would tell which values exist); persons in "
                                "other values are counted together as (other)")
        counts = finest.set_index(by[0])["n"].rename_axis(by[0])
        shown = dp_counts(counts, epsilon=args.epsilon, budget=PrivacyBudget(lake.root), dataset=args.table,
                          release=args.release, user=current_user(), groups=[g.strip() for g in args.groups.split(",")])
        left = PrivacyBudget(lake.root).remaining(args.table, args.release)
        print(_table_text(shown))
        print(f"differentially private (discrete Laplace, epsilon {args.epsilon:g}); 95% of counts are within "
              f"{shown['accuracy'].iloc[0]:g} of the truth; budget {args.table}/{args.release}: {left:g} left")
        parameters = {"by": by, "dp": True, "epsilon": args.epsilon, "release": args.release}
    else:
        control = DisclosureControl(profile=args.profile)
        groupings = [tuple(by), ()] if by else [()]
        if len(by) == 2:
            groupings = [tuple(by), (by[0],), (by[1],), ()]
        page = control.counts(finest, groupings, weight="n")
        shown = page.table(*by)
        print(_table_text(shown.drop(columns=["count"])))
        if by:
            print(f"total: {page.table()['shown'].iloc[0]}")
        print(f"disclosure control: {control.rules.title} ({control.rules.reference}); {page.hidden} count(s) hidden")
        parameters = {"by": by, "profile": args.profile}
    _audit(lake, role, "count", dataset=args.table, version=version, parameters=parameters, rows=len(shown))
    return 0


def cmd_budget(args) -> int:
    from explorer.lake.engine import current_user
    from explorer.privacy.dp import PrivacyBudget

    lake = _lake(args)
    budget = PrivacyBudget(lake.root)
    if args.action == "set":
        role = _role(args, "erase", "setting a privacy budget")  # a steward's decision
        if not (args.dataset and args.release and args.epsilon):
            raise ExplorerError("`explorer budget set` needs --dataset, --release and --epsilon")
        budget.set(args.dataset, args.release, args.epsilon, user=current_user())
        _audit(lake, role, "budget_set", dataset=args.dataset,
               parameters={"release": args.release, "epsilon": args.epsilon})
    frame = budget.frame()
    print(_table_text(frame) if len(frame) else "no privacy budget set yet: `explorer budget set --dataset person "
                                                "--release 2026-q4 --epsilon 1`")
    return 0


def cmd_erase(args) -> int:
    from explorer.ingest.pseudonym import Pseudonymizer
    from explorer.lake.engine import current_user
    from explorer.privacy.erasure import erase
    from explorer.progress import Progress

    lake = _lake(args)
    role = _role(args, "erase", "`explorer erase`")
    pseudonymizer = Pseudonymizer.from_environment(lake.root, key_file=args.key_file)
    receipt = erase(lake, args.person, pseudonymizer=pseudonymizer, user=current_user(), role=role,
                    workers=args.workers, progress=Progress("erase"))
    print(receipt)
    print("The receipt is in the audit log (`explorer audit`); it names the person only by a keyed digest.")
    return 0


def cmd_quality(args) -> int:
    from explorer.ingest.quality import run_quality, summary

    print(summary(run_quality(_lake(args), args.ingest_id)))
    return 0  # a failing check describes the data; it is not an error of the command


def cmd_synth(args) -> int:
    from datetime import date

    from explorer.progress import Progress
    from explorer.synth import SynthConfig, generate

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise ExplorerError(f"--start {args.start!r}: expected a date as YYYY-MM-DD") from None
    try:
        config = SynthConfig(participants=args.participants, days=args.days, seed=args.seed, start=start,
                             faults=args.faults, json_fraction=args.json_fraction, artefact_rate=args.artefact_rate,
                             **({"workers": args.workers} if args.workers else {}))
    except ValueError as exc:
        raise ExplorerError(str(exc)) from None
    try:
        summary = generate(args.out, config, overwrite=args.overwrite, progress=Progress("synth"))
    except FileExistsError as exc:
        raise ExplorerError(str(exc)) from None
    print(summary)
    print(f"Planted truth: {summary.out / 'truth' / 'truth.json'}; file guide: {summary.out / 'README.md'}")
    return 0


def cmd_refresh(args) -> int:
    from explorer.jobs.refresh import every, parse_interval, refresh
    from explorer.progress import Progress

    lake = _lake(args)
    options = dict(scheduler=args.scheduler, workers=args.workers, steps=args.step or None, full=args.full, wait=args.wait)
    if args.every:
        import signal

        interval = parse_interval(args.every)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        print(f"refreshing {lake.root} now and every {args.every} (Ctrl-C or SIGTERM stops after the current run)", flush=True)
        try:
            every(lake, interval, on_report=lambda r: print(r, flush=True), stop=lambda: bool(stopping),
                                 progress=Progress("refresh"), **options)
        except KeyboardInterrupt:
            pass
        return 0
    report = refresh(lake, progress=Progress("refresh"), **options)
    print(report)
    print("History: `explorer jobs`; one run's steps: `explorer jobs RUN_ID`.")
    return 1 if report.failed else 0


def cmd_jobs(args) -> int:
    from explorer.jobs import runs

    if args.steps:
        from explorer.jobs.steps import ordered

        print(_table_text(pd.DataFrame([{"step": s.name, "inputs": ", ".join(s.inputs), "output": s.output,
                                         "partition": s.partition, "description": s.description} for s in ordered()])))
        return 0
    lake = _lake(args)
    if args.run_id:
        if not lake.has_table("job_run"):
            raise ExplorerError("no refresh has run on this lake yet: run `explorer refresh`")
        steps = lake.sql("SELECT step, status, started_at, duration_s, input_versions, output_table, output_version, "
                         "rows_written, tasks, partitions, error FROM job_run WHERE run_id = ? ORDER BY started_at", [args.run_id])
        if steps.empty:
            known = runs(lake, 5)["run_id"].tolist()
            raise ExplorerError(f"no refresh run {args.run_id!r}; latest: {', '.join(known) or 'none'}")
        print(_table_text(steps))
        return 0
    history = runs(lake, args.limit)
    print(_table_text(history) if len(history) else "no refresh has run on this lake yet: run `explorer refresh`")
    return 0


def cmd_wearables(args) -> int:
    from explorer.progress import Progress

    if args.action == "metrics":
        from explorer.catalog.metrics import registry_frame
        from explorer.wearables import (
            METRICS,
            RESTING_WINDOW_MINUTES,
            VALID_WEAR_MINUTES,
        )

        print(_table_text(registry_frame(METRICS)))
        print(f"\nDaily summary (table wearable_daily): valid day >= {VALID_WEAR_MINUTES} wear minutes; resting heart "
              f"rate over awake minutes after {RESTING_WINDOW_MINUTES} zero-step minutes (Mishra et al. 2020). "
              "Per person and month: table wearable_circadian. Both are filled by `explorer refresh`.")
        return 0
    lake = _lake(args)
    if args.action == "cube":
        from explorer.wearables.cube import open_minute_cube, write_minute_cube

        path = write_minute_cube(lake, progress=Progress("cube"))
        cube = open_minute_cube(lake, build=False)
        print(f"minute cube: {path}\n  {cube.sizes['person']} persons x {cube.sizes['minute']:,} minutes, "
              f"chunks {cube['steps'].data.chunksize}; open with explorer.wearables.cube.open_minute_cube(lake)")
        return 0
    import panel as pn

    from explorer.views import Actogram, CohortWearableDistributions, PersonMinutes

    if args.person:
        view = pn.Column(PersonMinutes(lake=lake, person_id=args.person).panel(),
                         Actogram(lake=lake, person_id=args.person, days=args.days).panel(), sizing_mode="stretch_width")
    else:
        for table in ("wearable_daily", "wearable_circadian"):
            if not lake.has_table(table):
                raise ExplorerError(f"table {table} is not there yet: run `explorer refresh` first")
        view = CohortWearableDistributions(lake=lake).panel()
    out = args.out or ("person.html" if args.person else "cohort.html")
    pn.panel(view).save(out, embed=False, resources="inline")
    print(f"wrote {out}: open it in a browser")
    return 0


def cmd_exposure(args) -> int:
    if args.action == "metrics":
        from explorer.catalog.metrics import registry_frame
        from explorer.exposure import METRICS

        print(_table_text(registry_frame(METRICS)))
        print("\nPer person and day: table exposure_daily; per event and window (0-7, 0-30, 0-365 days): "
              "table event_exposure. Both are filled by `explorer refresh`.")
        return 0
    lake = _lake(args)
    if args.action == "association":
        from explorer.exposure import resting_hr_on_anomaly

        for table in ("wearable_daily", "exposure_daily"):
            if not lake.has_table(table):
                raise ExplorerError(f"table {table} is not there yet: run `explorer refresh` first")
        lake.sql("SELECT 1 FROM wearable_daily LIMIT 0")
        lake.sql("SELECT 1 FROM exposure_daily LIMIT 0")
        print(resting_hr_on_anomaly(lake.connection()))
        return 0
    if args.action == "view":
        import panel as pn

        from explorer.views import ExposureMap, ExposureResponse, HeatWaveCalendar

        date = pd.Timestamp(args.date).to_pydatetime() if args.date else None
        parts = [ExposureMap(lake=lake, variable=args.variable, date=date).panel(),
                 HeatWaveCalendar(lake=lake).panel()]
        if lake.has_table("wearable_daily"):
            parts.append(ExposureResponse(lake=lake).panel())
        out = args.out or "exposure.html"
        pn.panel(pn.Column(*parts, sizing_mode="stretch_width")).save(out, embed=False, resources="inline")
        print(f"wrote {out}: open it in a browser")
        return 0
    # heat-waves: xclim's indices at a place, from the lake's grids
    from explorer.exposure import heat_waves, location_series, open_grids

    if args.lat is None or args.lon is None:
        raise ExplorerError("heat-waves needs --lat and --lon (degrees), the place to compute them at")
    if not lake.has_table("array_store"):
        raise ExplorerError("no grid in this lake: ingest NetCDF or Zarr grids of tasmax and tasmin first")
    grids = open_grids(lake.sql("SELECT * FROM array_store"), lake.root, ("tasmax", "tasmin"))
    if set(grids) != {"tasmax", "tasmin"}:
        raise ExplorerError(f"heat waves need tasmax and tasmin grids; the lake has {', '.join(grids) or 'neither'}")
    # missing days stay in (xclim counts them as not hot): dropping them would join runs across them
    series = {name: location_series(grid, [args.lat], [args.lon]).isel(location=0) for name, grid in grids.items()}
    if any(bool(s.isnull().all()) for s in series.values()):
        grid = grids["tasmax"]
        raise ExplorerError(f"no temperature at {args.lat}, {args.lon}: the grid covers latitudes "
                            f"{float(grid.lat.min()):g} to {float(grid.lat.max()):g} and longitudes "
                            f"{float(grid.lon.min()):g} to {float(grid.lon.max()):g}")
    found = heat_waves(series["tasmin"].assign_attrs(units="degC"), series["tasmax"].assign_attrs(units="degC"),
                       thresh_tasmin=f"{args.tasmin} degC", thresh_tasmax=f"{args.tasmax} degC", window=args.window,
                       freq=args.freq)
    table = found.to_dataframe()[["frequency", "max_length", "total_length"]]
    table.index = table.index.strftime("%Y-%m-%d")
    print(f"heat waves at {args.lat}, {args.lon} (tasmin > {args.tasmin} degC and tasmax > {args.tasmax} degC "
          f"for >= {args.window} days; xclim):")
    print(_table_text(table.reset_index().rename(columns={"time": "period"})))
    return 0


def cmd_ageing(args) -> int:
    lake = _lake(args)
    needs = {"markers": ("marker_ageing",), "performance": ("biological_age", "person"),
             "view": ("marker_ageing", "person_ageing_rate", "ageotype", "biological_age")}[args.action]
    for table in needs:
        if not lake.has_table(table):
            raise ExplorerError(f"table {table} is not there yet: ingest lab results and run `explorer refresh` first")
        lake.sql(f"SELECT 1 FROM {table} LIMIT 0")
    if args.action == "markers":
        table = lake.sql("""SELECT marker, name, scale, n_persons, n_obs, slope, slope_se, p_value, q_value, slope_sd
                            FROM marker_ageing ORDER BY q_value""")
        print(_table_text(table))
        print("\nslope: change per year of age (per year of the log for a log-scale marker), from value ~ age + "
              "(1 + age | person) by REML; q: Benjamini-Hochberg across markers. Personal rates: person_ageing_rate.")
        return 0
    if args.action == "performance":
        from explorer.ageing import biological_age_performance

        print(_table_text(biological_age_performance(lake.connection()).round(3)))
        return 0
    import panel as pn

    from explorer.views import (
        AgeingRateDistribution,
        AgeotypeMembership,
        MarkerTrajectories,
        PhenoAgeVsAge,
    )

    view = pn.Column(MarkerTrajectories(lake=lake, marker=args.marker).panel(),
                     AgeingRateDistribution(lake=lake, marker=args.marker).panel(),
                     AgeotypeMembership(lake=lake).panel(), PhenoAgeVsAge(lake=lake).panel(), sizing_mode="stretch_width")
    out = args.out or "ageing.html"
    pn.panel(view).save(out, embed=False, resources="inline")
    print(f"wrote {out}: open it in a browser")
    return 0


# ---------------------------------------------------------------------------------------- cohorts
def _cohort_argument(lake, text: str):
    """A definition from a file, or a saved cohort's name."""
    from explorer import cohorts

    if Path(text).suffix.lower() in (".yaml", ".yml", ".json") or Path(text).exists():
        return cohorts.load(text)
    return cohorts.get(lake, text)


def cmd_cohort(args) -> int:
    from explorer import cohorts

    if args.action != "list" and not args.cohort:
        raise ExplorerError(f"`explorer cohort {args.action}` needs a definition file or a saved cohort's name")
    if args.action == "validate":
        definition = cohorts.load(args.cohort)
        print(f"{args.cohort}: valid cohort definition {definition.name!r} version {definition.version} "
              f"(sha256 {definition.sha256[:12]}); reads {', '.join(sorted(definition.tables()))}")
        print(f"  index date: {definition.index_date.describe()}")
        for label, _, _ in definition.steps():
            print(f"  {label}")
        return 0
    lake = _lake(args)
    if args.action == "sql":
        if not Path(args.cohort).exists():  # a saved definition is read as a researcher reads it
            _role(args, "person_rows", "reading a saved cohort definition")
        definition = _cohort_argument(lake, args.cohort)
        compiled = cohorts.compile_definition(definition)
        print(compiled.counts_sql() + ";")
        print("-- parameters: " + json.dumps(compiled.params, default=str))
        return 0
    if args.action == "count":
        from explorer.privacy import DisclosureControl

        role = _role(args, "aggregates", "`explorer cohort count`")
        definition = _cohort_argument(lake, args.cohort)
        control = DisclosureControl(profile=args.profile) if role == "public" else None
        frame = cohorts.count(lake, definition, disclosure=control)
        if control is not None:
            shown = frame[["step", "label", "persons_shown", "removed_shown"]].rename(
                columns={"persons_shown": "persons", "removed_shown": "removed"})
        else:
            shown = frame.astype({"removed": "object"}).fillna("")
        print(_table_text(shown))
        note = (f"disclosure control: {control.rules.title}; {int(frame['persons_status'].isin(['primary', 'complementary']).sum() + frame['removed_status'].isin(['primary', 'complementary']).sum())} count(s) hidden"
                if control is not None else "exact counts (researcher tier)")
        print(f"{definition.name} v{definition.version}: one query in {frame.attrs['seconds'] * 1000:.0f} ms; {note}")
        if args.out:
            import panel as pn

            from explorer.views.cohorts import attrition_panel

            pn.panel(attrition_panel(frame, control is not None)).save(args.out, embed=False, resources="inline")
            print(f"wrote {args.out}: open it in a browser")
        _audit(lake, role, "cohort_count", parameters={"cohort": definition.name, "sha256": definition.sha256,
                                                      "profile": args.profile if control is not None else None})
        return 0
    if args.action == "list":
        role = _role(args, "person_rows", "`explorer cohort list`")
        frame = cohorts.saved(lake)
        if frame.empty:
            print("no saved cohort yet: `explorer cohort save FILE.yaml`")
            return 0
        if lake.has_table("cohort_member"):
            sizes = lake.sql("SELECT cohort, count(*) AS members FROM cohort_member GROUP BY cohort")
            frame = frame.merge(sizes, on="cohort", how="left").fillna({"members": 0})
        frame["definition_sha256"] = frame["definition_sha256"].str[:12]
        print(_table_text(frame))
        return 0
    if args.action == "show":
        _role(args, "person_rows", "`explorer cohort show`")
        definition = cohorts.get(lake, args.cohort, version=args.version)
        print(definition.to_json() if args.format == "json" else definition.to_yaml(), end="")
        return 0
    if args.action == "save":
        role = _role(args, "person_rows", "`explorer cohort save`")
        definition = cohorts.load(args.cohort)
        version = cohorts.save(lake, definition)
        size = len(cohorts.members_of(lake, definition.name, version))
        print(f"saved {definition.name!r} v{definition.version}: {size} members in cohort_member@{version} "
              f"(`explorer lineage cohort_member@{version}` shows the table versions they were computed from)")
        _audit(lake, role, "cohort_save", dataset="cohort_member", version=version,
               parameters={"cohort": definition.name, "sha256": definition.sha256})
        return 0
    if args.action == "delete":
        role = _role(args, "person_rows", "`explorer cohort delete`")
        version = cohorts.delete(lake, args.cohort)
        print(f"deleted {args.cohort!r}; cohort_member@{version} no longer holds it (earlier versions still do)")
        _audit(lake, role, "cohort_delete", parameters={"cohort": args.cohort})
        return 0
    if args.action == "members":
        role = _role(args, "person_rows", "`explorer cohort members`")
        frame = cohorts.members_of(lake, args.cohort, version=args.version)
        if args.out:
            frame.to_csv(args.out, index=False) if args.out.endswith(".csv") else frame.to_parquet(args.out, index=False)
            print(f"wrote {len(frame)} members of {args.cohort!r} (cohort_member@{frame.attrs['version']}) to {args.out}")
        else:
            print(_table_text(frame))
            print(f"{len(frame)} members, cohort_member@{frame.attrs['version']}, computed from "
                  f"{', '.join(frame.attrs['inputs'])}")
        _audit(lake, role, "cohort_members", dataset="cohort_member", version=frame.attrs["version"],
               parameters={"cohort": args.cohort}, rows=len(frame))
        return 0
    if args.action == "characterise":
        from explorer.views import CohortCharacterisation

        role = _role(args, "aggregates", "`explorer cohort characterise`")
        view = CohortCharacterisation(lake=lake, role=role, cohort=args.cohort, against=args.against or "")
        table = view.data()
        print(_table_text(view.display_table(table)))
        print(f"as of {table.attrs.get('as_of')} for the whole lake; smd: standardised mean difference (|smd| > 0.1: "
              "imbalance worth a look)")
        if args.out:
            import panel as pn

            pn.panel(view.panel()).save(args.out, embed=False, resources="inline")
            print(f"wrote {args.out}: open it in a browser")
        _audit(lake, role, "cohort_characterise", parameters={"cohort": args.cohort, "against": args.against})
        return 0
    raise ExplorerError(f"unknown action {args.action!r}")


# ---------------------------------------------------------------------------------------- serving
def cmd_serve(args) -> int:
    from explorer.serve import dashboard_files, serve

    lake = _lake(args)
    if not args.auth:
        raise ExplorerError("`explorer serve` needs --auth FILE, the users and their roles (make one with "
                            "`explorer users add FILE NAME --role public`); dashboards are never served without a login")
    pages = ", ".join(f"/{name}" for name in dashboard_files())
    print(f"serving {pages} of {lake.root} at http://{args.address}:{args.port}/ (log in; Ctrl-C stops)", flush=True)
    serve(lake.root, args.auth, port=args.port, address=args.address, origins=args.allow_websocket_origin or (),
          num_procs=args.num_procs, cookie_secret=args.cookie_secret, show=args.show, oauth_provider=args.oauth_provider,
          secure_cookies=args.secure_cookies)
    return 0


def cmd_users(args) -> int:
    import getpass

    from explorer.login import Credentials

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    Credentials.add(args.file, args.name, args.role, password)
    print(f"{args.file}: {args.name} can log in as {args.role} (password stored as an scrypt hash)")
    return 0


def cmd_demo(args) -> int:
    from explorer.demo import run_demo

    lake = _lake(args)
    print(f"Demo lake: {lake.root}")
    figures = run_demo(lake, participants=args.participants, days=args.days, seed=args.seed)
    ok = figures["verified"] and not figures["ingest"].errors and not figures["refresh"].failed
    print("\nNext: `explorer catalog` lists every dataset; `explorer catalog heart_rate_minute` shows one;"
          " `explorer sql \"SELECT ...\"` queries them.")
    if args.no_serve or not ok:
        return 0 if ok else 1
    import secrets

    from explorer.login import Credentials
    from explorer.serve import serve

    users = lake.root.parent / f"{lake.root.name}.users.json"
    logins = {role: secrets.token_urlsafe(9) for role in ("public", "researcher", "steward")}
    for role, password in logins.items():
        Credentials.add(users, role, role, password)
    print(f"\nDashboards: http://{args.address}:{args.port}/  (users in {users}; Ctrl-C stops)")
    for role, password in logins.items():
        print(f"  log in as {role:10s} password {password}")
    sys.stdout.flush()
    serve(lake.root, users, port=args.port, address=args.address)
    return 0


def cmd_lab(args) -> int:
    from explorer.lab import run_lab

    extra = [a for a in (args.jupyter_args or []) if a != "--"]
    run_lab(_lake(args), args.dir, port=args.port, address=args.address, browser=args.browser, extra=extra)
    return 0  # not reached: the process has become JupyterLab


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="explorer",
        description="Cohort Explorer: a versioned lake of wearable, exposure and lab data, "
                    "with analytics, dashboards and notebooks on top.",
        epilog=EPILOG_LAKE + " Run `explorer COMMAND --help` for each command.",
    )
    parser.add_argument("--lake", metavar="PATH", default=None, help="lake folder (default: $EXPLORER_HOME or ./explorer-data)")
    parser.add_argument("--role", choices=["public", "researcher", "steward"], default=None,
                        help="role to act in (default: $EXPLORER_ROLE, else the least role the command needs); "
                             "recorded in the audit log")
    from explorer import __version__

    parser.add_argument("--version", action="version", version=f"cohort-explorer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = commands.add_parser("catalog", help="list datasets with version, rows, last commit and lineage",
                            formatter_class=fmt, description=textwrap.dedent("""\
        List every dataset: its catalog entry (kind, sensitivity tier) and, once written, its
        current version, row count, last commit and what it was made from. With NAME, show one
        dataset in full: description, schema with units, every version, and lineage both ways."""),
                            epilog="examples:\n  explorer catalog\n  explorer catalog measurement")
    p.add_argument("name", nargs="?", help="one dataset to show in full")
    p.set_defaults(func=cmd_catalog)

    p = commands.add_parser("verify", help="re-hash raw files and table files against recorded checksums",
                            formatter_class=fmt, description=textwrap.dedent("""\
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
                            formatter_class=fmt, description="REF is TABLE, TABLE@VERSION or raw:SHA256.",
                            epilog="examples:\n  explorer lineage measurement\n  explorer lineage measurement@2\n  explorer lineage raw:9f86d0…")
    p.add_argument("ref")
    p.add_argument("--edges", action="store_true", help="print the graph as source,target CSV")
    p.set_defaults(func=cmd_lineage)

    p = commands.add_parser("sql", help="run a SQL query over the lake (parameters bound)", formatter_class=fmt,
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

    p = commands.add_parser("ingest", help="keep, detect, parse, validate and unify files into the lake", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Ingest a file, a folder (recursively) or a .zip. Every file is kept byte for byte in the raw
        zone under its SHA-256 (a file already ingested is recognised and skipped), its format is
        detected by content, rows are validated and unified into the lake's tables with source
        identifiers replaced by keyed pseudonyms. Rows that fail a check go to quarantine_row with
        the reason; files no reader accepts are quarantined whole. Nothing is dropped silently:
        for every file, rows read = rows accepted + rows quarantined. Exit status 0 even when
        data was quarantined; 1 only when a reader failed internally.

        Formats (tried in this order, by content): residence history CSV, wide-lab mapping CSV,
        FHIR bulk NDJSON Patient files (these reference files are read first), All of Us Fitbit
        CSV tables, Fitbit personal-export JSON, lab CSV long and wide, FHIR R4 Bundles and
        bulk NDJSON, Parquet of a unified table, CF NetCDF and Zarr grids, weather-station and area-index CSV
        (`explorer catalog` lists the tables they fill). A file at the same path as one
        ingested before but with new content is a correction: its rows replace the earlier
        file's in one new table version; the earlier version stays readable.

        After the commits, the data-quality report of the new rows is stored in dq_result and
        summarised (see `explorer quality`); --no-quality skips it.

        The pseudonym key comes from --key-file, $EXPLORER_PSEUDONYM_KEY or
        $EXPLORER_PSEUDONYM_KEY_FILE and must live outside the lake. Files matching patterns in a
        .explorerignore at the top of the folder are skipped."""),
                            epilog="examples:\n  EXPLORER_PSEUDONYM_KEY_FILE=~/.cohort.key explorer ingest synth-cohort/\n"
                                   "  explorer ingest incoming/labs.zip --key-file /secure/pseudonym.key")
    p.add_argument("path", help="file, folder or .zip")
    p.add_argument("--key-file", default=None, help="file holding the pseudonym key (outside the lake)")
    p.add_argument("--default-time-zone", default=None, metavar="ZONE",
                   help="IANA zone for people without a residence history (e.g. America/Denver)")
    p.add_argument("--no-quality", action="store_true", help="skip the data-quality report (run `explorer quality` later)")
    p.add_argument("--fhir-server", default=None, metavar="URL",
                   help="base URL of the FHIR server a bulk export came from; Patient ids are unique per server "
                        "(default $EXPLORER_FHIR_SERVER, else one server for the whole lake)")
    p.add_argument("--retry-quarantined", action="store_true",
                   help="read files quarantined whole before again (e.g. once a missing mapping or Patient file arrived)")
    p.set_defaults(func=cmd_ingest)

    p = commands.add_parser("quality", help="data-quality report of an ingest (OHDSI DQD style)", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Run the data-quality checks on the rows an ingest added (default: the newest ingest)
        again; ingest runs them itself unless told --no-quality. Conformance (rows quarantined per
        reader, repeated local minutes, autumn clock changes whose repeated hour was dropped),
        completeness (wear time, sync gaps, missing SI values or birth years) and plausibility
        (heart-rate floors, stuck sensors, step cadence, time-zone jumps). Each check is stored in dq_result as a numerator and a
        denominator with its threshold, so thresholds can change later without re-running."""))
    p.add_argument("ingest_id", nargs="?", default=None, help="ingest to check (default: the newest)")
    p.set_defaults(func=cmd_quality)

    p = commands.add_parser("synth", help="write a realistic synthetic cohort (raw files + planted truth)", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Write a synthetic cohort as real sources deliver it: All of Us-style Fitbit tables (CSV),
        Fitbit personal-export JSON, FHIR R4 bundles, outside-lab CSV with mixed units, residence
        history, CF NetCDF climate and PM2.5 grids, station and area CSV. truth/ records every
        planted parameter (heat and age effects on resting heart rate, ageing slopes, ageotypes,
        heat waves, artefact records). The same settings give byte-identical files."""),
                            epilog="examples:\n  explorer synth --participants 400 --days 90 --seed 1 --out cohort/\n"
                                   "  explorer synth --participants 20 --days 7 --out small/ --faults")
    p.add_argument("--participants", type=int, default=100, help="participants (default 100)")
    p.add_argument("--days", type=int, default=30, help="days of minute-level wearable data (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="synth-cohort", help="output folder, new or empty (default ./synth-cohort)")
    p.add_argument("--start", default="2024-08-15", help="first local day of wearable data (default 2024-08-15: "
                   "includes late-summer heat waves and the November daylight-saving change at 90 days)")
    p.add_argument("--faults", action="store_true", help="also write the documented damaged files (truth.json 'faults')")
    p.add_argument("--json-fraction", type=float, default=0.05, help="share of people delivered as Fitbit exports (default 0.05)")
    p.add_argument("--artefact-rate", type=float, default=0.001, help="share of worn minutes with device artefacts (default 0.001)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, at most 4); never changes the output")
    p.add_argument("--overwrite", action="store_true", help="replace a cohort this command wrote before")
    p.set_defaults(func=cmd_synth)

    p = commands.add_parser("refresh", help="bring the aggregate tables up to date, on Dask", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Bring every aggregate table up to date with the tables it is made from. Each refresh
        step declares its inputs, its output and how it partitions (by person bucket, by bucket
        and day, or whole); only the partitions whose inputs changed since the output was last
        made are recomputed, decided from the Delta log. Work runs as Dask tasks: on a local
        cluster by default, or on a running cluster named by --scheduler or
        $EXPLORER_DASK_SCHEDULER (its workers must see the lake at the same path). Each output
        switches in one commit; a refresh killed at any moment leaves the previous aggregates
        readable and the next run finishes the work. Every step is recorded in job_run.
        Exit status 1 if a step failed (its output stays as it was), 2 if another refresh holds
        the lake (use --wait to queue)."""),
                            epilog="examples:\n  explorer refresh\n  explorer refresh --scheduler tcp://10.0.0.5:8786\n"
                                   "  explorer refresh --every 1h          # a long-running scheduler process\n"
                                   "  explorer refresh --step data_availability --full")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 "
                   "(default: $EXPLORER_DASK_SCHEDULER, else a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="local cluster size (default: CPU count, at most 8)")
    p.add_argument("--step", action="append", metavar="NAME", help="run only this step (repeatable); see `explorer jobs --steps`")
    p.add_argument("--full", action="store_true", help="recompute every partition, changed or not")
    p.add_argument("--wait", action="store_true", help="queue behind a refresh already running instead of exiting")
    p.add_argument("--every", default=None, metavar="INTERVAL", help="keep running: refresh now and every 90s/15m/1h/1d")
    p.set_defaults(func=cmd_refresh)

    p = commands.add_parser("jobs", help="list refresh runs (job_run) or the steps of one run", formatter_class=fmt,
                            description=textwrap.dedent("""\
        List the latest refresh runs, newest first, with how many steps succeeded, were up to
        date, failed or were skipped; with RUN_ID, that run's steps: input versions read, output
        version written, rows, tasks, partitions and, for a failed step, the partition and the
        error. --steps lists the registered refresh steps."""))
    p.add_argument("run_id", nargs="?", default=None, help="one run to show step by step")
    p.add_argument("--limit", type=int, default=20, help="runs to list (default 20)")
    p.add_argument("--steps", action="store_true", help="list the registered refresh steps, in run order")
    p.set_defaults(func=cmd_jobs)

    p = commands.add_parser("wearables", help="wearable metrics: list them, build the minute cube, save views",
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        metrics: the metric registry (identifier, units, reference) and the daily-summary rules.
        cube:    write the person x minute cube (Zarr, chunked for Dask) of the current minute
                 tables; cohort-wide metrics run on it lazily (explorer.wearables.cube).
        view:    save a view as a standalone HTML page: with --person, that person's minute-level
                 heart rate and steps (downsampled to about 2,000 points a line) and a
                 double-plotted actogram (researcher tier); without, the cohort distributions of
                 daily steps, resting heart rate, IS and IV (needs `explorer refresh` first).

        examples:
          explorer wearables metrics
          explorer wearables cube
          explorer wearables view --person 3f2a... --out person.html"""))
    p.add_argument("action", choices=["metrics", "cube", "view"])
    p.add_argument("--person", default=None, help="pseudonymised person_id (view)")
    p.add_argument("--days", type=int, default=28, help="actogram rows (default 28)")
    p.add_argument("--out", default=None, help="HTML file to write (view; default person.html or cohort.html)")
    p.set_defaults(func=cmd_wearables)

    p = commands.add_parser("exposure", help="exposure metrics, heat waves at a place, the worked association, views",
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        metrics:     the exposure registry (identifier, units, reference, where it is stored).
        heat-waves:  heat-wave frequency, longest and total days per period at a place, computed
                     by xclim from the lake's tasmax and tasmin grids (nearest cell).
        association: the worked example, daily resting heart rate on the temperature anomaly at
                     home with a random intercept per person (REML); needs `explorer refresh`.
        view:        save the exposure map of a day (--variable, --date), the heat-wave calendar
                     and the exposure-outcome relation as a standalone HTML page.

        examples:
          explorer exposure metrics
          explorer exposure heat-waves --lat 31.2 --lon -100.4 --tasmax 32
          explorer exposure association
          explorer exposure view --variable pm25 --date 2024-06-15 --out exposure.html"""))
    p.add_argument("action", choices=["metrics", "heat-waves", "association", "view"])
    p.add_argument("--variable", default="tasmax", choices=["tasmax", "tasmin", "pm25"], help="map variable (view)")
    p.add_argument("--date", default=None, help="map day, YYYY-MM-DD (view; default the grid's last day)")
    p.add_argument("--out", default=None, help="HTML file to write (view; default exposure.html)")
    p.add_argument("--lat", type=float, default=None, help="latitude, degrees north (heat-waves)")
    p.add_argument("--lon", type=float, default=None, help="longitude, degrees east (heat-waves)")
    p.add_argument("--tasmin", type=float, default=22.0, help="tasmin threshold, degC (default 22)")
    p.add_argument("--tasmax", type=float, default=30.0, help="tasmax threshold, degC (default 30)")
    p.add_argument("--window", type=int, default=3, help="minimum heat-wave length, days (default 3)")
    p.add_argument("--freq", default="YS", help="period: YS (years, default), MS (months), QS-DEC (seasons)")
    p.set_defaults(func=cmd_exposure)

    p = commands.add_parser("ageing", help="ageing markers, biological-age performance by subgroup, views",
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        markers:     which lab markers change with age (marker_ageing): slope per year, its SE,
                     p- and q-values, the spread of personal slopes.
        performance: PhenoAge and Klemera-Doubal age against chronological age, by sex at birth,
                     race, ethnicity and age band (n, correlation, bias, mean absolute difference).
        view:        save a marker's trajectories and personal rates (--marker LOINC), ageotype
                     membership and PhenoAge against age as a standalone HTML page.
        All need `explorer refresh` after lab results were ingested.

        examples:
          explorer ageing markers
          explorer ageing performance
          explorer ageing view --marker 2160-0 --out ageing.html"""))
    p.add_argument("action", choices=["markers", "performance", "view"])
    p.add_argument("--marker", default="2160-0", help="LOINC code of the marker to draw (view; default creatinine)")
    p.add_argument("--out", default=None, help="HTML file to write (view; default ageing.html)")
    p.set_defaults(func=cmd_ageing)

    p = commands.add_parser("export", help="a researcher download, de-identified by HIPAA Safe Harbor", formatter_class=fmt,
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
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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
    p.add_argument("--profile", choices=["aou", "cms", "opensafely", "ukbiobank"], default="aou",
                   help="disclosure-control profile (default aou: All of Us, no count 1-20)")
    p.add_argument("--dp", action="store_true", help="differentially private counts instead (needs --epsilon, --release)")
    p.add_argument("--epsilon", type=float, default=None, help="privacy loss of this release (with --dp)")
    p.add_argument("--release", default=None, help="the release whose budget pays for it (with --dp)")
    p.add_argument("--groups", default=None, help="with --dp: the values to release, comma-separated, fixed in advance")
    p.set_defaults(func=cmd_count)

    p = commands.add_parser("budget", help="privacy budgets for differentially private releases", formatter_class=fmt,
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
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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

    p = commands.add_parser("cohort", help="cohort definitions: validate, count (attrition), save, characterise",
                            formatter_class=fmt, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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
    p.add_argument("--profile", choices=["aou", "cms", "opensafely", "ukbiobank"], default="aou",
                   help="disclosure-control profile for a public user (default aou)")
    p.add_argument("--against", default=None, help="characterise against this saved cohort (default: the whole lake)")
    p.add_argument("--version", type=int, default=None, help="table version to read (members: cohort_member; show: cohort_definition)")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml", help="show: document format")
    p.add_argument("--out", default=None, help="members: .csv or .parquet file; count, characterise: .html page")
    p.set_defaults(func=cmd_cohort)

    p = commands.add_parser("serve", help="serve the dashboards behind a login (roles per user)", formatter_class=fmt,
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
    p.add_argument("--show", action="store_true", help="open a browser")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("users", help="add a dashboard user (name, role, scrypt-hashed password)", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Add or replace a user of `explorer serve --auth FILE`. The password is asked for (or read
        from standard input with --password-stdin) and stored only as an scrypt hash.

        examples:
          explorer users add users.json ana --role researcher
          echo "$PASSWORD" | explorer users add users.json pat --role public --password-stdin"""))
    p.add_argument("action", choices=["add"])
    p.add_argument("file", help="credentials file (created if missing)")
    p.add_argument("name", help="user name")
    p.add_argument("--role", choices=["public", "researcher", "steward"], required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_users)

    p = commands.add_parser("demo", help="build a small demo lake and show what it keeps", formatter_class=fmt,
                            description=textwrap.dedent("""\
        Write a small synthetic cohort (with its documented faults) beside the lake, ingest it
        (originals kept, formats detected, rows validated, identifiers pseudonymised with a demo
        key kept beside the lake, bad rows and files quarantined with reasons), refresh the
        aggregate tables on a local Dask cluster, run a person-day query with a bound parameter,
        count and save a cohort, trace lineage and verify every checksum; then serve the
        dashboards and print a demo login for each role (--no-serve to stop before)."""))
    p.add_argument("--participants", type=int, default=20, help="participants (default 20)")
    p.add_argument("--days", type=int, default=7, help="days of minute-level data (default 7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-serve", action="store_true", help="build the lake and stop, without serving the dashboards")
    p.add_argument("--port", type=int, default=5006, help="port of the dashboards (default 5006)")
    p.add_argument("--address", default="127.0.0.1", help="address of the dashboards (default 127.0.0.1)")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("lab", help="JupyterLab on the researcher notebooks, with the lake configured", formatter_class=fmt,
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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except Exception as exc:
        import duckdb

        if isinstance(exc, duckdb.Error):
            print(f"error: the query failed: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
