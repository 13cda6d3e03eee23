"""Environment views: the exposure map of a day, the heat-wave calendar of the cohort, and the
exposure-outcome relation (resting heart rate against the temperature anomaly at home).

The map shows the grid only, never where people live. Built for ``public``, the calendar's daily
counts and the response's bins pass disclosure control: a day or a bin with few persons shows
no share and no mean.
"""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError
from explorer.views.base import LakeView, holoviews_with_bokeh, message, shared_data
from explorer.privacy.counts import published_total
from explorer.privacy.disclosure import LinkedPage


def as_day(value):
    """``value`` as a calendar day: a ``datetime.date`` as it is; ``"2024-08-15"``, a datetime, a
    Timestamp or a numpy datetime64 as its day (the time of day dropped); None as None."""
    if value is None or (isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)):
        return value
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{str(value)[:40]!r} is not a day: write it as YYYY-MM-DD") from exc
    if pd.isna(day):
        return None
    return day.date()


class Day(param.CalendarDate):
    """A calendar day (Panel draws a date picker, a URL holds it as YYYY-MM-DD) that also takes
    ``"2024-08-15"``, a datetime or a Timestamp (see :func:`as_day`)."""

    def __set__(self, obj, val):
        super().__set__(obj, as_day(val))


class DayNotInGrid(ExplorerError):
    """The day asked for is not in the grid (the message names the days it covers)."""


class ExposureMap(LakeView):
    """One day of a gridded variable (tasmax, tasmin or pm25) over the whole grid."""

    variable = param.Selector(default="tasmax", objects=["tasmax", "tasmin", "pm25"], doc="Gridded variable.")
    date = Day(default=None, allow_None=True, doc="Day shown, as YYYY-MM-DD (default: the grid's last day).")

    def __init__(self, **params):
        super().__init__(**params)
        if self.date is None and self.lake is not None:  # the picker shows the day the map shows
            try:
                self.date = self.grid_days()[1]
            except ExplorerError:
                pass  # no grid: data() says so where the map would be

    def grid_days(self) -> tuple:
        """The first and last day of ``variable``'s grid (what the date picker offers)."""
        times = pd.DatetimeIndex(self._grid()["time"].values)
        return times[0].date(), times[-1].date()

    def widget_options(self) -> dict:
        """The date picker limited to the grid's days (a URL may still ask for another day:
        the page then says which days there are)."""
        try:
            first, last = self.grid_days()
        except ExplorerError:
            return {}
        import panel as pn

        return {"date": {"type": pn.widgets.DatePicker, "start": first, "end": last}}

    def _grid(self):
        """``variable``'s grid, opened once per view and variable: the picker's first default, its
        bounds and the map read the same one (it was opened three times per page)."""
        opened = self.__dict__.setdefault("_opened", {})
        if self.variable not in opened:
            opened[self.variable] = self._open_grid()
        return opened[self.variable]

    def _open_grid(self):
        from explorer.exposure import open_grids

        if not self.lake.has_table("array_store"):
            raise ExplorerError("no grid in this lake: ingest NetCDF or Zarr grids first (`explorer ingest PATH`)")
        grids = open_grids(self._sql("SELECT * FROM array_store"), self.lake.storage, (self.variable,))
        if self.variable not in grids:
            raise ExplorerError(f"the lake has no {self.variable} grid; array_store lists "
                                f"{', '.join(sorted(set(self._sql('SELECT variable FROM array_store')['variable'])))}")
        return grids[self.variable]

    def data(self):
        """The day's grid as an xarray DataArray (lat, lon), with its units."""
        grid = self._grid()
        day = pd.Timestamp(self.date) if self.date else pd.Timestamp(grid["time"].values[-1])
        times = pd.DatetimeIndex(grid["time"].values).normalize()
        if day.normalize() not in times:
            raise DayNotInGrid(f"{self.variable} has no day {day.date()}; the grid covers {times[0].date()} to "
                               f"{times[-1].date()}: choose a day between them")
        return grid.isel(time=times.get_loc(day.normalize())).load()

    def panel(self):
        hv = holoviews_with_bokeh()
        try:
            field = self.data()
        except DayNotInGrid as exc:  # a day typed or put in the URL: say which days there are, keep the page
            return message(exc, "warning", "No map for that day.")
        from explorer.catalog.units import unit_label

        units = unit_label(field.attrs.get("units", ""))
        day = pd.Timestamp(field["time"].values).date()
        return hv.Image(field.sortby("lat"), kdims=["lon", "lat"], vdims=[f"{self.variable}"]).opts(
            cmap="inferno" if self.variable != "pm25" else "viridis", colorbar=True, responsive=True, height=380,
            tools=["hover"], clabel=units, title=f"{self.variable} ({units}) on {day}")


class HeatWaveCalendar(LakeView):
    """Per day: the share of the cohort (persons with a known home that day) in a heat wave."""

    @shared_data("exposure_daily")
    def data(self) -> pd.DataFrame:
        """date, persons (with a known home and both temperatures), in_heat_wave, share."""
        frame = self._sql("""
            SELECT date, count(heat_wave) AS persons, count(*) FILTER (WHERE heat_wave) AS in_heat_wave
            FROM exposure_daily WHERE residence_status = 'ok' GROUP BY date ORDER BY date""")
        if self.public:
            frame = self._protect_days(frame)
        frame["share"] = frame["in_heat_wave"] / frame["persons"].where(frame["persons"] > 0)
        return frame

    def _protect_days(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The calendar as one page whose days are linked (see :func:`calendar_page`)."""
        rows = self._sql("""SELECT person_id, date, heat_wave FROM exposure_daily
                            WHERE residence_status = 'ok' AND heat_wave IS NOT NULL""")

        return protect_calendar(frame, rows, self.disclosure, published_total(self.lake, self.disclosure))

    def panel(self):
        hv = holoviews_with_bokeh()
        frame = self.data()
        dates = pd.to_datetime(frame["date"])
        # the hover shows the counts as published ("<=20" where hidden, never NaN); a hidden day is
        # drawn grey, apart from the white of a day with nobody counted
        counts = ((frame["in_heat_wave_shown"], frame["persons_shown"]) if self.public
                  else (frame["in_heat_wave"].map("{:,}".format), frame["persons"].map("{:,}".format)))
        cells = pd.DataFrame({"day": dates.dt.day, "month": dates.dt.strftime("%Y-%m"), "share": frame["share"],
                              "in heat wave": counts[0], "persons": counts[1]})
        cells = cells.astype({"in heat wave": object, "persons": object})  # HoloViews cannot reshape Arrow strings
        title = "Share of the cohort in a heat wave, per day" + (" (grey: small counts hidden)" if self.public else "")
        return hv.HeatMap(cells, kdims=["day", "month"], vdims=["share", "in heat wave", "persons"]).opts(
            cmap="Reds", colorbar=True, clim=(0, 1), responsive=True, height=max(200, 22 * cells["month"].nunique()),
            tools=["hover"], invert_yaxis=True, clipping_colors={"NaN": "#bdbdbd"}, title=title)


#: a person's state on a day of the calendar
IN_WAVE, OUT_OF_WAVE, ABSENT = 0, 1, 2


def day_states(frame: pd.DataFrame, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each person's state on each day of ``frame`` (in a heat wave, not, or not counted that
    day), as a persons x days array, and the persons (from ``rows``: person_id, date, heat_wave,
    one row per person counted on a day)."""
    dates = pd.to_datetime(frame["date"]).to_numpy()
    persons, person = np.unique(rows["person_id"].astype(str).to_numpy(), return_inverse=True)
    day = pd.Index(dates).get_indexer(pd.to_datetime(rows["date"]).to_numpy())
    states = np.full((len(persons), len(dates)), ABSENT, dtype=np.int8)
    keep = day >= 0
    states[person[keep], day[keep]] = np.where(rows["heat_wave"].to_numpy(bool)[keep], IN_WAVE, OUT_OF_WAVE)
    return states, persons


def protect_calendar(frame: pd.DataFrame, rows: pd.DataFrame, disclosure, total=None) -> pd.DataFrame:
    """The heat-wave calendar (``frame``: date, persons, in_heat_wave) as a public reader may see
    it: one page whose days are linked by the persons who move between them.

    Parameters
    ----------
    frame : DataFrame
        The exact calendar, one row per day.
    rows : DataFrame
        person_id, date, heat_wave: one row per person counted on a day (what the calendar counts).
    disclosure : DisclosureControl
    total : Fact, optional
        The lake's published total of persons (:func:`explorer.privacy.counts.published_total`):
        the persons not counted on a day are the total less those counted.

    Returns
    -------
    DataFrame
        date, persons, in_heat_wave (the values shown, NaN when hidden), persons_shown,
        in_heat_wave_shown (the text).

    Notes
    -----
    Adjacent days count almost the same persons, so two shown days give their difference: the
    persons who entered a heat wave less those who left it (and those who came or went). Heat
    waves are weather, which anyone can look up per area, so a reader often knows that nobody
    left on a day when one area entered a heat wave, and the difference is then the persons of
    that area: one person, say. Days protected one at a time miss this.

    Here each person is in one of three states on each day (in a heat wave, counted but not in
    one, not counted), and the calendar is a chain of linked tables (Hundepool et al. 2012,
    sec. 4.6): the cells are the persons in each state on each day and, between two days, the
    persons moving from each state to each other (``stock(d+1) = stock(d) + entered - left``,
    per state). Days between which nobody moves have the same counts and one status. A move
    that never happened is taken as known to be zero (the weather, and where nobody moved, are
    public), so the audit is the reader who knows most. Shown per day: persons counted and
    persons in a heat wave; derivable, and audited as counts a reader can solve for: the persons
    out of a heat wave that day, each kind of move between two days, and those who entered, left,
    came or went. A small move stays open to at least half the hidden range, by hiding the day
    before or after it (complementary suppression); the audit splits the chain into blocks at
    days shown exactly, so a long calendar costs little more than its busy days.

    References
    ----------
    Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
    2012 (ch. 4: tables, linked tables, audit by linear programming).
    """

    columns = ["date", "persons", "in_heat_wave", "persons_shown", "in_heat_wave_shown"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    states, persons = day_states(frame, rows)
    n_days = states.shape[1]
    # days between which nobody moves have the same counts: one segment, one status
    moved = (states[:, 1:] != states[:, :-1]).any(axis=0) if states.size else np.zeros(max(n_days - 1, 0), dtype=bool)
    segment = np.concatenate([[0], np.cumsum(moved)])
    starts = np.flatnonzero(np.concatenate([[True], moved]))
    everyone = len(persons) if total is None or total.value < len(persons) else int(total.value)
    page = LinkedPage()
    stocks = []
    for day in starts:
        counts = np.bincount(states[:, day], minlength=3).astype(float)
        counts[ABSENT] += everyone - len(persons)  # persons of the lake never counted
        stocks.append(page.cells(counts))
    shown = []
    for s, day in enumerate(starts):
        stock = stocks[s]
        shown.append((page.count([stock[IN_WAVE], stock[OUT_OF_WAVE]]), page.count([stock[IN_WAVE]])))
        page.count([stock[OUT_OF_WAVE]], published=False)
        if total is not None and total.value >= len(persons):
            page.count(stock, fact=total)
    for s in range(len(starts) - 1):
        day = starts[s + 1]
        moves = np.bincount(3 * states[:, day - 1] + states[:, day], minlength=9).reshape(3, 3).astype(float)
        cell = {}
        for i in range(3):
            for j in range(3):
                if i == j or moves[i, j] > 0:  # a move that never happened is known not to have
                    cell[i, j] = page.cell(moves[i, j] + (everyone - len(persons) if i == j == ABSENT else 0))
        for i in range(3):
            page.link([cell[i, j] for j in range(3) if (i, j) in cell], [stocks[s][i]])
            page.link([cell[j, i] for j in range(3) if (j, i) in cell], [stocks[s + 1][i]])
        for (i, j), c in cell.items():
            if i != j:
                page.count([c], published=False)
        for state in range(3):  # entered, left, came, went (and their like): counts of persons too
            page.count([c for (i, j), c in cell.items() if j == state and i != state], published=False)
            page.count([c for (i, j), c in cell.items() if i == state and j != state], published=False)
    release = disclosure.protect(page)
    out = pd.DataFrame({"date": frame["date"].to_numpy()})
    counted, in_wave = (np.array([entries[k] for entries in shown]) for k in (0, 1))
    out["persons"] = [release.value(k) for k in counted[segment]]
    out["in_heat_wave"] = [release.value(k) for k in in_wave[segment]]
    out["persons_shown"] = [release.text(k) for k in counted[segment]]
    out["in_heat_wave_shown"] = [release.text(k) for k in in_wave[segment]]
    return out[columns]


class ExposureResponse(LakeView):
    """Resting heart rate against the temperature anomaly at home: each person's deviation from
    their own mean, averaged in 1 K bins of the anomaly, with the mixed-model slope
    (explorer.exposure.association) drawn through it."""

    bin_width = param.Number(default=1.0, bounds=(0.1, 5), doc="Width of the anomaly bins (K); a public view keeps the default.")

    @shared_data("wearable_daily", "exposure_daily")
    def data(self) -> dict:
        """``bins`` (anomaly bin centre, mean deviation, n person-days) and ``fit`` (the
        Association)."""
        from explorer.exposure import association

        frame = self._sql("""
            SELECT w.person_id, w.resting_hr, e.tas_anomaly
            FROM wearable_daily w JOIN exposure_daily e USING (person_id, date)
            WHERE w.valid_day AND e.residence_status = 'ok' AND w.resting_hr IS NOT NULL
                  AND e.tas_anomaly IS NOT NULL""")
        fit = association(frame, "resting_hr", "tas_anomaly")
        frame["deviation"] = frame["resting_hr"] - frame.groupby("person_id")["resting_hr"].transform("mean")
        width = self._setting("bin_width")
        centre = np.floor(frame["tas_anomaly"] / width) * width + width / 2
        bins = frame.groupby(centre.rename("anomaly"))["deviation"].agg(mean="mean", n="size").reset_index()
        if self.public:  # a bin's mean is shown only where enough persons (not person-days) are in it
            persons = frame.assign(anomaly=centre).groupby("anomaly")["person_id"].nunique().rename("persons")
            page = self.disclosure.counts(persons.reset_index(), [("anomaly",)], weight="persons").table("anomaly")
            bins = bins.merge(page[["anomaly", "count", "status"]].rename(columns={"count": "persons"}), on="anomaly")
            bins.loc[~bins["status"].isin(["shown", "rounded"]), "mean"] = np.nan
            # person-days are not persons: a count of them would be a finer count beside the
            # protected one, so none leaves; the fit shows only over enough persons
            bins = bins.drop(columns=["status", "n"])
            if fit.n_persons < self.disclosure.rules.minimum_shown:
                fit = None
        return {"bins": bins, "fit": fit}

    def panel(self):
        hv = holoviews_with_bokeh()
        found = self.data()
        bins, fit = found["bins"], found["fit"]
        weight = "n" if "n" in bins else "persons"
        shown = bins.dropna(subset=["mean", weight])
        points = hv.Scatter(bins, kdims=["anomaly"], vdims=["mean", weight]).opts(size=8, tools=["hover"])
        if fit is None or shown.empty:
            return points.opts(responsive=True, height=320, xlabel="temperature anomaly at home (K)",
                               ylabel="resting heart rate, deviation from own mean (/min)",
                               title="Resting heart rate against the temperature anomaly (too few persons for a fit)")
        x = np.array([shown["anomaly"].min(), shown["anomaly"].max()])
        line = hv.Curve((x, fit.slope * (x - x.mean()) + np.average(shown["mean"], weights=shown[weight])),
                        "anomaly", "mean").opts(color="firebrick")
        size = "" if self.public else f", {fit.n_obs:,} person-days"
        return (points * line).opts(
            responsive=True, height=320, xlabel="temperature anomaly at home (K)",
            ylabel="resting heart rate, deviation from own mean (/min)",
            title=f"{fit.slope:+.2f} /min per K (95% CI {fit.ci_low:+.2f} to {fit.ci_high:+.2f}){size}")
