"""``explorer ingest``, ``quality`` and ``synth``: files into the lake (kept, detected, validated,
pseudonymised), the data-quality report of what came in, and a synthetic cohort to try it on."""

from __future__ import annotations

import os
import textwrap
from datetime import date

from explorer.command.common import HELP_FORMATTER, acting_role, open_lake, record_audit
from explorer.errors import ExplorerError
from explorer.ingest.quality import run_quality, summary
from explorer.progress import Progress

#: what ``explorer synth --plant-analyses`` plants (SynthConfig fields of the same meaning)
PLANTED_HEAT_LAGS = (0.15, 0.05)
PLANTED_HAZARD_RATIO = 0.8


def add_parser(commands) -> None:
    """Declare ``ingest``, ``quality`` and ``synth`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("ingest", help="keep, detect, parse, validate and unify files into the lake", formatter_class=HELP_FORMATTER,
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
        CSV tables, Fitbit account exports and Google Takeout Fitbit JSON, lab CSV long and wide, FHIR R4 Bundles and
        bulk NDJSON, Parquet of a unified table, CF NetCDF and Zarr grids, weather-station and area-index CSV,
        EPA AQS daily summaries, GHCN-Daily by-station CSV (with NOAA's ghcnd-stations.txt, read first),
        NCEI daily summaries, CDC/ATSDR SVI and Neighborhood Atlas ADI files
        (`explorer catalog` lists the tables they fill). A file no reader accepts is quarantined
        with the nearest reader, what it expected and what would make the file readable. A file at the same path as one
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
    p.add_argument("--station-units", choices=("standard", "metric"), default=None,
                   help="units of NCEI daily-summaries CSV, which do not state them: standard (degF, inches) or metric "
                        "(degC, mm), as chosen when the data was ordered (default $EXPLORER_STATION_UNITS; without it "
                        "such files are refused, never guessed)")
    p.add_argument("--area-year", type=int, default=None, metavar="YYYY",
                   help="release year of an SVI or ADI file whose name does not carry it (CDC and the Neighborhood "
                        "Atlas name their downloads with it, e.g. SVI_2020_US.csv; default $EXPLORER_AREA_YEAR)")
    p.add_argument("--date-format", default=None, metavar="FORMAT",
                   help="order of slash dates in lab files where no date settles it (02/01/2015): us (month first), "
                        "day-first, iso (ISO 8601 only), or a strftime pattern such as '%%d.%%m.%%Y %%H:%%M' (default "
                        "$EXPLORER_LAB_DATE_FORMAT; without it such files are refused, never guessed)")
    p.add_argument("--decimal-comma", action="store_true",
                   help="lab results write decimals with a comma (5,3); without it a comma in a result quarantines the row")
    p.add_argument("--missing-code", action="append", default=None, metavar="CODE",
                   help="a lab result meaning 'no result', counted as ignored and never stored; repeatable; replaces "
                        "the default codes: empty, NA, N/A, NaN, null, NULL, '.', '-', -999, -9999")
    p.add_argument("--participant", default=None, metavar="ID",
                   help="participant ID whose data PATH is, for layouts that name nobody (a Google Takeout folder, a "
                        "Fitbit account export not in a folder named by participant); it takes precedence over folder "
                        "names, so give it only for one person's delivery (default $EXPLORER_PARTICIPANT)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="read the files as Dask tasks on this cluster (tcp://host:8786; 'local' for a LocalCluster "
                        "of --workers); default $EXPLORER_DASK_SCHEDULER, else local processes. For a lake on "
                        "object storage the workers need share nothing but the store")
    p.add_argument("--workers", type=int, default=None,
                   help="processes reading a large delivery, or the LocalCluster's workers (default: cores, at most 4); "
                        "never changes the output")
    p.add_argument("--retry-quarantined", action="store_true",
                   help="read files quarantined whole before again (e.g. once a missing mapping or Patient file arrived)")
    p.set_defaults(func=cmd_ingest)

    p = commands.add_parser("quality", help="data-quality report of an ingest (OHDSI DQD style)", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        Run the data-quality checks on the rows an ingest added (default: the newest ingest)
        again; ingest runs them itself unless told --no-quality. Conformance (rows quarantined per
        reader, repeated local minutes, autumn clock changes whose repeated hour was dropped),
        completeness (wear time, sync gaps, missing SI values or birth years) and plausibility
        (heart-rate floors, stuck sensors, step cadence, time-zone jumps). Each check is stored in dq_result as a numerator and a
        denominator with its threshold, so thresholds can change later without re-running."""))
    p.add_argument("ingest_id", nargs="?", default=None, help="ingest to check (default: the newest)")
    p.set_defaults(func=cmd_quality)

    p = commands.add_parser("synth", help="write a realistic synthetic cohort (raw files + planted truth)", formatter_class=HELP_FORMATTER,
                            description=textwrap.dedent("""\
        Write a synthetic cohort as real sources deliver it: All of Us-style Fitbit tables (CSV),
        Fitbit account exports and Google Takeout folders (JSON, heart rate every 5-15 s), FHIR R4 bundles, outside-lab CSV with mixed units, residence
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
    p.add_argument("--apple-health-fraction", type=float, default=0.0,
                   help="share of the CSV people delivered as Apple Health export.xml instead (default 0)")
    p.add_argument("--garmin-fit-fraction", type=float, default=0.0,
                   help="share of the CSV people delivered as Garmin FIT monitoring files instead (default 0)")
    p.add_argument("--json-fraction", type=float, default=0.05, help="share of people delivered as Fitbit exports (default 0.05)")
    p.add_argument("--artefact-rate", type=float, default=0.001, help="share of worn minutes with device artefacts (default 0.001)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, at most 4); never changes the output")
    p.add_argument("--overwrite", action="store_true", help="replace a cohort this command wrote before")
    p.add_argument("--plant-analyses", action="store_true",
                   help="also plant the epidemiological analyses' effects (truth.json 'planted'): resting heart rate "
                        f"+{PLANTED_HEAT_LAGS[0]} and +{PLANTED_HEAT_LAGS[1]} bpm per K of the anomaly 1 and 2 days before "
                        f"(beside the same day's), and an incident condition (ICD-10-CM R06.00) whose hazard is "
                        f"x{PLANTED_HAZARD_RATIO} per 1,000 more daily steps (needs --days 60 or more)")
    p.set_defaults(func=cmd_synth)


def cmd_ingest(args) -> int:
    """Ingest a file, folder or .zip; exit status 1 only when a reader failed internally."""
    lake = open_lake(args, create=True)
    role = acting_role(args, "ingest", "`explorer ingest`")
    if args.fhir_server:
        os.environ["EXPLORER_FHIR_SERVER"] = args.fhir_server  # read by the readers, in this process and its workers
    if args.station_units:
        os.environ["EXPLORER_STATION_UNITS"] = args.station_units  # likewise
    if args.area_year:
        os.environ["EXPLORER_AREA_YEAR"] = str(args.area_year)
    if args.date_format and args.date_format not in ("iso", "us", "day-first") and "%" not in args.date_format:
        raise ExplorerError(f"--date-format {args.date_format!r}: expected us, day-first, iso or a strftime pattern "
                            "with % codes (e.g. '%d.%m.%Y')")
    if args.date_format:  # the lab readers' options, by the same route (lab_values.declared_options)
        os.environ["EXPLORER_LAB_DATE_FORMAT"] = args.date_format
    if args.decimal_comma:
        os.environ["EXPLORER_LAB_DECIMAL_COMMA"] = "1"
    if args.missing_code is not None:
        os.environ["EXPLORER_LAB_MISSING_CODES"] = "\n".join(args.missing_code)
    report = lake.ingest(args.path, key_file=args.key_file, default_time_zone=args.default_time_zone,
                         progress=Progress("ingest"), quality=not args.no_quality,
                         retry_quarantined=args.retry_quarantined, participant=args.participant,
                         scheduler=args.scheduler, workers=args.workers)
    record_audit(lake, role, "ingest", parameters={"path": str(args.path), "ingest_id": report.ingest_id,
                                                   "versions": report.versions}, rows=len(report.files))
    print(report)
    print("Per-file outcomes: `explorer --role steward sql \"SELECT * FROM ingest_file\"`; quarantined rows with their reasons "
          "and original values: table quarantine_row (steward tier); data-quality report: `explorer quality`.")
    return 1 if report.errors else 0  # bad data is reported, not an error; a failed reader is


def cmd_quality(args) -> int:
    """Run the data-quality checks of an ingest again and summarise them."""
    print(summary(run_quality(open_lake(args), args.ingest_id)))
    return 0  # a failing check describes the data; it is not an error of the command


def cmd_synth(args) -> int:
    """Write a synthetic cohort with its planted truth."""
    from explorer.synth import SynthConfig, generate  # here, not at the top: its SciPy takes most of a second

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise ExplorerError(f"--start {args.start!r}: expected a date as YYYY-MM-DD") from None
    try:
        config = SynthConfig(participants=args.participants, days=args.days, seed=args.seed, start=start,
                             faults=args.faults, json_fraction=args.json_fraction, apple_health_fraction=args.apple_health_fraction,
                             garmin_fit_fraction=args.garmin_fit_fraction, artefact_rate=args.artefact_rate,
                             **(dict(heat_lag_effects_bpm_per_k=PLANTED_HEAT_LAGS,
                                     incident_hazard_ratio_per_1000_steps=PLANTED_HAZARD_RATIO) if args.plant_analyses else {}),
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
