"""``explorer exposure``: the exposure metric registry, heat waves at a place from the lake's
grids, the worked exposure-outcome association, and a standalone HTML view of the exposures."""

from __future__ import annotations

import textwrap

import pandas as pd

from explorer.catalog.metrics import registry_frame
from explorer.command.common import EPILOG_LAKE, HELP_FORMATTER, open_lake, require_tables, save_page
from explorer.errors import ExplorerError
from explorer.exposure import METRICS, heat_waves_at, resting_hr_on_anomaly
from explorer.lake import Lake
from explorer.progress import table_text


def add_parser(commands) -> None:
    """Declare ``exposure`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("exposure", help="exposure metrics, heat waves at a place, the worked association, views",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
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


def cmd_exposure(args) -> int:
    """List the metrics, print heat waves at a place or the association, or save the view."""
    if args.action == "metrics":
        print(table_text(registry_frame(METRICS)))
        print("\nPer person and day: table exposure_daily; per event and window (0-7, 0-30, 0-365 days): "
              "table event_exposure. Both are filled by `explorer refresh`.")
        return 0
    lake = open_lake(args)
    if args.action == "association":
        require_tables(lake, ("wearable_daily", "exposure_daily"), read=True)
        print(resting_hr_on_anomaly(lake.connection()))
        return 0
    if args.action == "view":
        return _save_view(lake, args)
    if args.lat is None or args.lon is None:
        raise ExplorerError("heat-waves needs --lat and --lon (degrees), the place to compute them at")
    table = heat_waves_at(lake, args.lat, args.lon, tasmin=args.tasmin, tasmax=args.tasmax, window=args.window,
                          freq=args.freq)
    table.index = table.index.strftime("%Y-%m-%d")
    print(f"heat waves at {args.lat}, {args.lon} (tasmin > {args.tasmin} degC and tasmax > {args.tasmax} degC "
          f"for >= {args.window} days; xclim):")
    print(table_text(table.reset_index().rename(columns={"time": "period"})))
    return 0


def _save_view(lake: Lake, args) -> int:
    """The exposure map of a day, the heat-wave calendar and, with wearables, the exposure-outcome
    relation, on one standalone HTML page."""
    # Panel and the views load HoloViews and Bokeh: seconds, only for the command that draws
    import panel as pn

    from explorer.views import ExposureMap, ExposureResponse, HeatWaveCalendar

    date = pd.Timestamp(args.date).to_pydatetime() if args.date else None
    parts = [ExposureMap(lake=lake, variable=args.variable, date=date).panel(),
             HeatWaveCalendar(lake=lake).panel()]
    if lake.has_table("wearable_daily"):
        parts.append(ExposureResponse(lake=lake).panel())
    save_page(pn.Column(*parts, sizing_mode="stretch_width"), args.out or "exposure.html")
    return 0
