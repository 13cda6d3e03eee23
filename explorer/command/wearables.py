"""``explorer wearables``: the wearable metric registry, the person x minute cube for cohort-wide
work on Dask, and standalone HTML views of one person or of the whole cohort."""

from __future__ import annotations

import textwrap

from explorer.catalog.metrics import registry_frame
from explorer.command.common import EPILOG_LAKE, HELP_FORMATTER, open_lake, require_tables, save_page
from explorer.progress import Progress, table_text
from explorer.wearables import METRICS, RESTING_WINDOW_MINUTES, VALID_WEAR_MINUTES


def add_parser(commands) -> None:
    """Declare ``wearables`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("wearables", help="wearable metrics: list them, build the minute cube, save views",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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


def cmd_wearables(args) -> int:
    """List the metrics, write the minute cube, or save a person's or the cohort's view."""
    if args.action == "metrics":
        print(table_text(registry_frame(METRICS)))
        print(f"\nDaily summary (table wearable_daily): valid day >= {VALID_WEAR_MINUTES} wear minutes; resting heart "
              f"rate over awake minutes after {RESTING_WINDOW_MINUTES} zero-step minutes (Mishra et al. 2020). "
              "Per person and month: table wearable_circadian. Both are filled by `explorer refresh`.")
        return 0
    lake = open_lake(args)
    if args.action == "cube":
        from explorer.wearables.cube import open_minute_cube, write_minute_cube  # imports xarray, too slow for --help

        path = write_minute_cube(lake, progress=Progress("cube"))
        cube = open_minute_cube(lake, build=False)
        print(f"minute cube: {path}\n  {cube.sizes['person']} persons x {cube.sizes['minute']:,} minutes, "
              f"chunks {cube['steps'].data.chunksize}; open with explorer.wearables.cube.open_minute_cube(lake)")
        return 0
    # Panel and the views load HoloViews and Bokeh: seconds, only for the command that draws
    import panel as pn

    from explorer.views import Actogram, CohortWearableDistributions, PersonMinutes

    if args.person:
        view = pn.Column(PersonMinutes(lake=lake, person_id=args.person).panel(),
                         Actogram(lake=lake, person_id=args.person, days=args.days).panel(), sizing_mode="stretch_width")
    else:
        require_tables(lake, ("wearable_daily", "wearable_circadian"))
        view = CohortWearableDistributions(lake=lake).panel()
    save_page(view, args.out or ("person.html" if args.person else "cohort.html"))
    return 0
