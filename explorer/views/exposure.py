"""Environment views: the exposure map of a day, the heat-wave calendar of the cohort, and the
exposure-outcome relation (resting heart rate against the temperature anomaly at home).

The map shows the grid only, never where people live. Built for ``public``, the calendar's daily
counts and the response's bins pass disclosure control: a day or a bin with few persons shows
no share and no mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError
from explorer.views.base import LakeView, _holoviews, shared_data


class ExposureMap(LakeView):
    """One day of a gridded variable (tasmax, tasmin or pm25) over the whole grid."""

    variable = param.Selector(default="tasmax", objects=["tasmax", "tasmin", "pm25"], doc="Gridded variable.")
    date = param.Date(default=None, allow_None=True, doc="Day shown (default: the grid's last day).")

    def data(self):
        """The day's grid as an xarray DataArray (lat, lon), with its units."""
        from explorer.exposure import open_grids

        if not self.lake.has_table("array_store"):
            raise ExplorerError("no grid in this lake: ingest NetCDF or Zarr grids first (`explorer ingest PATH`)")
        grids = open_grids(self._sql("SELECT * FROM array_store"), self.lake.root, (self.variable,))
        if self.variable not in grids:
            raise ExplorerError(f"the lake has no {self.variable} grid; array_store lists "
                                f"{', '.join(sorted(set(self._sql('SELECT variable FROM array_store')['variable'])))}")
        grid = grids[self.variable]
        day = pd.Timestamp(self.date) if self.date else pd.Timestamp(grid["time"].values[-1])
        times = pd.DatetimeIndex(grid["time"].values).normalize()
        if day.normalize() not in times:
            raise ExplorerError(f"{self.variable} has no day {day.date()}; the grid covers {times[0].date()} to {times[-1].date()}")
        return grid.isel(time=times.get_loc(day.normalize())).load()

    def panel(self):
        hv = _holoviews()
        field = self.data()
        units = field.attrs.get("units", "")
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
        """Each day is its own page (persons in and out of a heat wave, and the day's total):
        no total across days is shown, so days do not constrain each other."""
        out, pages = [], {}
        for day in frame.itertuples(index=False):
            counts = (int(day.in_heat_wave), int(day.persons - day.in_heat_wave))
            if counts not in pages:  # a page depends on its counts only: days alike are protected once
                finest = pd.DataFrame({"heat_wave": [True, False], "n": list(counts)})
                page = self.disclosure.counts(finest, [("heat_wave",), ()], weight="n")
                pages[counts] = (page.table("heat_wave").set_index("heat_wave").loc[True], page.table().iloc[0])
            in_wave, total = pages[counts]
            out.append({"date": day.date, "persons": total["count"], "in_heat_wave": in_wave["count"],
                        "persons_shown": total["shown"], "in_heat_wave_shown": in_wave["shown"]})
        return pd.DataFrame(out, columns=["date", "persons", "in_heat_wave", "persons_shown", "in_heat_wave_shown"])

    def panel(self):
        hv = _holoviews()
        frame = self.data()
        dates = pd.to_datetime(frame["date"])
        cells = pd.DataFrame({"day": dates.dt.day, "month": dates.dt.strftime("%Y-%m"), "share": frame["share"],
                              "in heat wave": frame["in_heat_wave"], "persons": frame["persons"]})
        return hv.HeatMap(cells, kdims=["day", "month"], vdims=["share", "in heat wave", "persons"]).opts(
            cmap="Reds", colorbar=True, clim=(0, 1), responsive=True, height=max(200, 22 * cells["month"].nunique()),
            tools=["hover"], invert_yaxis=True, title="Share of the cohort in a heat wave, per day")


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
        hv = _holoviews()
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
