"""``explorer ageing``: the lab markers that change with age, how well the biological ages track
chronological age by subgroup, and a standalone HTML view of a marker and the ageotypes."""

from __future__ import annotations

import textwrap

from explorer.ageing import biological_age_performance
from explorer.command.common import EPILOG_LAKE, HELP_FORMATTER, open_lake, require_tables, save_page
from explorer.progress import table_text

#: the tables each action reads, all made by `explorer refresh` from the lab results
TABLES_READ = {"markers": ("marker_ageing",), "performance": ("biological_age", "person"),
               "view": ("marker_ageing", "person_ageing_rate", "ageotype", "biological_age")}


def add_parser(commands) -> None:
    """Declare ``ageing`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("ageing", help="ageing markers, biological-age performance by subgroup, views",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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


def cmd_ageing(args) -> int:
    """Print the ageing markers or the biological-age performance, or save the view."""
    lake = open_lake(args)
    require_tables(lake, TABLES_READ[args.action], first="ingest lab results and run `explorer refresh` first", read=True)
    if args.action == "markers":
        table = lake.sql("""SELECT marker, name, scale, n_persons, n_obs, slope, slope_se, p_value, q_value, slope_sd
                            FROM marker_ageing ORDER BY q_value""")
        print(table_text(table))
        print("\nslope: change per year of age (per year of the log for a log-scale marker), from value ~ age + "
              "(1 + age | person) by REML; q: Benjamini-Hochberg across markers. Personal rates: person_ageing_rate.")
        return 0
    if args.action == "performance":
        print(table_text(biological_age_performance(lake.connection()).round(3)))
        return 0
    # Panel and the views load HoloViews and Bokeh: seconds, only for the command that draws
    import panel as pn

    from explorer.views import AgeingRateDistribution, AgeotypeMembership, MarkerTrajectories, PhenoAgeVsAge

    view = pn.Column(MarkerTrajectories(lake=lake, marker=args.marker).panel(),
                     AgeingRateDistribution(lake=lake, marker=args.marker).panel(),
                     AgeotypeMembership(lake=lake).panel(), PhenoAgeVsAge(lake=lake).panel(), sizing_mode="stretch_width")
    save_page(view, args.out or "ageing.html")
    return 0
