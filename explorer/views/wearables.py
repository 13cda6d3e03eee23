"""Wearable views: one person's minutes over weeks (downsampled on the server), a double-plotted
actogram, and cohort distributions of daily steps, resting heart rate and circadian metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from explorer.catalog.metrics import METRICS
from explorer.errors import ExplorerError
from explorer.views.base import LakeView, hidden_bins, hidden_caption, holoviews_with_bokeh, shared_data

#: points per line sent to the browser: a screen is about this many pixels wide
MAX_POINTS = 2000


def downsample(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``n_out`` points of (x, y) that keep its shape: MinMaxLTTB
    (tsdownsample; Van Der Donckt et al. 2023), which keeps every bin's extremes first and
    then picks by largest triangle, so a spike of one minute still shows over weeks. Missing
    values are left out; a series already short enough is returned whole."""
    from tsdownsample import MinMaxLTTBDownsampler

    keep = np.flatnonzero(~np.isnan(np.asarray(y, dtype="float64")))
    if len(keep) <= n_out:
        return keep
    x_kept = np.asarray(x)[keep]
    if np.issubdtype(x_kept.dtype, np.datetime64):
        x_kept = x_kept.astype("datetime64[ns]").astype("int64")
    chosen = MinMaxLTTBDownsampler().downsample(x_kept, np.asarray(y, dtype="float64")[keep], n_out=n_out)
    return keep[np.asarray(chosen, dtype=np.int64)]


def _break_at_gaps(frame: pd.DataFrame, chosen: np.ndarray, column: str, gap_minutes: int) -> pd.DataFrame:
    """The ``chosen`` rows of ``frame``, with a missing value inserted wherever the original data
    had a gap of more than ``gap_minutes`` between two chosen points, so the line breaks there."""
    kept = frame.iloc[chosen].reset_index(drop=True)
    if len(kept) < 2:
        return kept
    times = frame["datetime"].to_numpy()
    gaps_before = np.r_[0, np.cumsum(np.diff(times) > np.timedelta64(gap_minutes, "m"))]
    broken = np.flatnonzero(np.diff(gaps_before[chosen]) > 0)  # a gap between chosen k and k + 1
    if not len(broken):
        return kept
    breaks = pd.DataFrame({"datetime": kept["datetime"].to_numpy()[broken] + np.timedelta64(1, "m"),
                           column: np.nan})
    return pd.concat([kept, breaks]).sort_values("datetime", kind="stable", ignore_index=True)


class _PersonView(LakeView):
    """A view of one person's rows: researcher-tier."""

    access = "person_rows"

    def _person_day(self, table: str, which: str) -> pd.Timestamp:
        """Midnight of the person's first (``which="min"``) or last (``"max"``) day in ``table``."""
        self._require(table)
        found = self._sql(f"SELECT {which}(datetime) AS day FROM {table} WHERE person_id = ?", [self.person_id])["day"].iloc[0]
        if pd.isna(found):
            what = {"heart_rate_minute": "heart-rate minutes", "steps_minute": "step minutes"}.get(table, f"rows in {table}")
            raise ExplorerError(f"no {what} for person_id {self.person_id!r}: check the id "
                                f"(`explorer sql \"SELECT DISTINCT person_id FROM {table} LIMIT 5\"`)")
        return pd.Timestamp(found).normalize()


class PersonMinutes(_PersonView):
    """One person's minute-level heart rate and steps over a span of days, each line downsampled
    on the server to at most ``max_points`` points (the extremes kept)."""

    person_id = param.String(default="", doc="Pseudonymised person_id.")
    start = param.Date(default=None, allow_None=True, doc="First local day shown (default: 28 days before the last).")
    end = param.Date(default=None, allow_None=True, doc="Last local day shown, inclusive (default: the last with data).")
    max_points = param.Integer(default=MAX_POINTS, bounds=(10, 100_000), doc="Points per line sent to the browser.")
    gap = param.Integer(default=15, bounds=(2, None), doc="Minutes without data after which the line breaks "
                                                          "(non-wear is drawn as a gap, not a straight line).")

    def widget_options(self) -> dict:
        """The person id as a search over the ids with wearable days (typing part of one lists
        them); an id from elsewhere (a URL) is still taken, and data() says when it has none."""
        import panel as pn

        try:
            ids = self._sql("SELECT DISTINCT person_id FROM wearable_daily ORDER BY person_id")["person_id"].tolist()
        except ExplorerError:
            return {}
        return {"person_id": {"type": pn.widgets.AutocompleteInput, "options": ids, "restrict": False,
                              "case_sensitive": False, "search_strategy": "includes", "min_characters": 2,
                              "placeholder": "type part of a person id", "width": 360}}

    def first_person_id(self) -> str:
        """The first pseudonym with a wearable day: what a researcher's page opens on."""
        return self._sql("SELECT min(person_id) AS p FROM wearable_daily")["p"].iloc[0]

    def _span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        end = pd.Timestamp(self.end) if self.end is not None else self._person_day("heart_rate_minute", "max")
        start = pd.Timestamp(self.start) if self.start is not None else end - pd.Timedelta(days=27)
        if start > end:
            raise ExplorerError(f"start {start.date()} is after end {end.date()}")
        return start, end + pd.Timedelta(days=1)

    def data(self) -> dict[str, pd.DataFrame]:
        """{"heart_rate": datetime, heart_rate_value; "steps": datetime, steps}, downsampled,
        each with ``attrs["rows"]``, the minutes there were before downsampling. A missing value
        marks each stretch of non-wear longer than ``gap`` minutes (one extra row per gap)."""
        start, stop = self._span()
        out = {}
        for key, table, column in (("heart_rate", "heart_rate_minute", "heart_rate_value"), ("steps", "steps_minute", "steps")):
            frame = self._sql(f"SELECT datetime, {column} FROM {table} WHERE person_id = ? AND datetime >= ? AND datetime < ? "
                              "ORDER BY datetime", [self.person_id, start.to_pydatetime(), stop.to_pydatetime()])
            chosen = downsample(frame["datetime"].to_numpy(), frame[column].to_numpy(float), self.max_points)
            kept = _break_at_gaps(frame, chosen, column, self.gap)
            kept.attrs["rows"] = len(frame)
            out[key] = kept
        return out

    def panel(self):
        hv = holoviews_with_bokeh()

        data = self.data()
        heart, steps = data["heart_rate"], data["steps"]
        shown = {key: int(frame.iloc[:, 1].notna().sum()) for key, frame in data.items()}  # not the gap markers
        note = (f"{shown['heart_rate']:,} of {heart.attrs['rows']:,} heart-rate minutes and {shown['steps']:,} of "
                f"{steps.attrs['rows']:,} step minutes shown (MinMaxLTTB)")
        hr = hv.Curve(heart, "datetime", ("heart_rate_value", "Heart rate (/min)")).opts(
            responsive=True, height=220, color="#c0392b", title=f"{self.person_id[:8]}…: {note}", tools=["hover"])
        # a count of steps: the axis starts at zero, not at Bokeh's padding below it
        st = hv.Curve(steps, "datetime", ("steps", "Steps (/min)")).opts(responsive=True, height=160, color="#2471a3",
                                                                          tools=["hover"], ylim=(0, None))
        return (hr + st).cols(1).opts(shared_axes=True)


class Actogram(_PersonView):
    """Double-plotted actogram: row ``d`` shows day ``d`` and day ``d + 1`` side by side (48 h),
    so a rhythm drifting later or a shifted night reads as a slanted band. Activity is steps per
    ``bin_minutes``; unworn time is blank, not zero."""

    person_id = param.String(default="", doc="Pseudonymised person_id.")
    start = param.Date(default=None, allow_None=True, doc="First local day (default: the first with data).")
    days = param.Integer(default=28, bounds=(2, 366), doc="Days (rows) shown.")
    bin_minutes = param.Integer(default=15, bounds=(1, 240), doc="Minutes per cell; must divide 1440.")

    def data(self) -> pd.DataFrame:
        """Days x 2-day bins: steps per bin (NaN where no minute was recorded), index the row's
        first day, columns hours 0 <= h < 48 at bin starts."""
        if 1440 % self.bin_minutes:
            raise ExplorerError(f"bin_minutes must divide a day (1440 minutes), got {self.bin_minutes}")
        start = pd.Timestamp(self.start) if self.start is not None else self._person_day("steps_minute", "min")
        stop = start + pd.Timedelta(days=self.days + 1)
        binned = self._sql(f"""
            SELECT CAST(floor(epoch(datetime - ?) / 60 / {self.bin_minutes}) AS BIGINT) AS cell, sum(steps) AS steps
            FROM steps_minute WHERE person_id = ? AND datetime >= ? AND datetime < ? GROUP BY ALL""",
                           [start.to_pydatetime(), self.person_id, start.to_pydatetime(), stop.to_pydatetime()])
        per_day = 1440 // self.bin_minutes
        cells = np.full((self.days + 1) * per_day, np.nan)
        cells[binned["cell"].to_numpy(int)] = binned["steps"].to_numpy(float)
        single = cells.reshape(self.days + 1, per_day)
        double = np.hstack([single[:-1], single[1:]])
        hours = np.arange(2 * per_day) * self.bin_minutes / 60
        return pd.DataFrame(double, index=pd.date_range(start, periods=self.days, freq="1D"), columns=hours)

    def panel(self):
        hv = holoviews_with_bokeh()

        grid = self.data()
        long = grid.rename_axis("day").reset_index().melt(id_vars="day", var_name="hour", value_name="steps")
        long["day"] = long["day"].dt.strftime("%Y-%m-%d")
        return hv.HeatMap(long, ["hour", "day"], "steps").opts(
            cmap="Greys", responsive=True, height=max(200, 14 * len(grid)), invert_yaxis=True, colorbar=True,
            title=f"Actogram (double-plotted, {self.bin_minutes}-min steps): {self.person_id[:8]}…", tools=["hover"],
            xlabel="hours from the row's midnight (0-48)")


class CohortWearableDistributions(LakeView):
    """Cohort distributions from the aggregates: daily steps on valid days, each person's median
    resting heart rate, and interdaily stability and intradaily variability per person-month.

    Bins are fixed per metric (its plausible range; values beyond fall in the end bins), so no
    bin edge is any person's value. Built for ``public``, each histogram's bins pass disclosure
    control (with the total on the same page), and ``n`` is the protected total.
    """

    #: histogram -> (metric of the registry, SQL of one value per row); bins, labels and units come
    #: from the metric registry (:data:`explorer.catalog.metrics.METRICS`)
    HISTOGRAMS = {
        "daily_steps": ("steps", "SELECT steps AS value FROM wearable_daily WHERE valid_day"),
        "resting_hr": ("resting_hr",
                       "SELECT median(resting_hr) AS value FROM wearable_daily WHERE valid_day GROUP BY person_id"),
        "interdaily_stability": ("interdaily_stability", "SELECT interdaily_stability AS value FROM wearable_circadian"),
        "intradaily_variability": ("intradaily_variability",
                                   "SELECT intradaily_variability AS value FROM wearable_circadian"),
    }

    def _label(self, key: str, metric) -> str:
        scope = {"daily_steps": "valid days", "resting_hr": "per-person median"}.get(key, "per person-month")
        if self.public and key in self.PER_PERSON:
            scope = "per-person median"  # a public view counts persons
        unit = f" ({metric.unit_label})" if metric.unit_label else ""
        return f"{metric.long_name}, {scope}{unit}"

    #: for a public view, one value per person (their median), so that every count is persons:
    #: one person's many days must not fill a bin that then shows as if it were many people
    PER_PERSON = {
        "daily_steps": "SELECT median(steps) AS value FROM wearable_daily WHERE valid_day GROUP BY person_id",
        "interdaily_stability": "SELECT median(interdaily_stability) AS value FROM wearable_circadian GROUP BY person_id",
        "intradaily_variability": "SELECT median(intradaily_variability) AS value FROM wearable_circadian GROUP BY person_id",
    }

    @shared_data("wearable_daily", "wearable_circadian")
    def data(self) -> dict[str, pd.DataFrame]:
        """Per metric: bin edges (left, right) and counts, ``attrs`` with its label and the number
        of values. Only binned counts leave here, never the values themselves; a public view
        counts persons (each person's median), under disclosure control."""
        out = {}
        for key, (identifier, query) in self.HISTOGRAMS.items():
            metric = METRICS[identifier]
            if self.public:
                query = self.PER_PERSON.get(key, query)
            values = self._sql(query)["value"].dropna().to_numpy(float)
            frame = self._histogram(values, np.asarray(metric.bins, dtype=float))
            label = self._label(key, metric)
            frame.attrs.update(label=label, n=frame.attrs["total"])
            out[key] = frame
        return out

    def panel(self):
        hv = holoviews_with_bokeh()

        rules = self.disclosure.rules
        plots = []
        for f in self.data().values():
            counts = f["count"].to_numpy(float)
            plot = hv.Histogram((np.r_[f["left"].to_numpy(), f["right"].to_numpy()[-1:]], np.nan_to_num(counts)),
                                kdims=[f.attrs["label"]], vdims=["persons" if self.public else "count"]).opts(tools=["hover"])
            hidden = hidden_bins(hv, f, rules, f.attrs["label"]) if self.public else None
            top = max(np.nanmax(counts, initial=0), rules.largest_hidden if hidden is not None else 0, 1)
            caption = hidden_caption(counts, rules, "bins") if self.public else ""
            title = f"{f.attrs['label']} (n = {_count_text(f.attrs['n'])})" + (f"\n{caption}" if caption else "")
            plots.append((plot * hidden if hidden is not None else plot)
                         .opts(title=title, responsive=True, height=220, ylim=(0, top * 1.15)))
        return hv.Layout(plots).cols(2).opts(shared_axes=False)  # each metric on its own axes


def _count_text(n) -> str:
    return "hidden" if n != n else f"{int(n):,}"


class WearableTrends(LakeView):
    """Cohort trends by day: median daily steps, median resting heart rate and median sleep of the
    persons with a valid day, with how many persons that is."""

    @shared_data("wearable_daily")
    def data(self) -> pd.DataFrame:
        """One row per day: persons (with a valid day), and the medians. For a public view a day
        whose persons are in the hidden range shows no medians (and its count as the label)."""
        frame = self._sql("""SELECT date, count(*) AS persons, median(steps) AS steps, median(resting_hr) AS resting_hr,
                                    median(sleep_minutes) AS sleep_minutes
                             FROM wearable_daily WHERE valid_day GROUP BY date ORDER BY date""")
        if self.public:
            small = frame["persons"].map(self.disclosure.rules.hides)
            frame.loc[small, ["steps", "resting_hr", "sleep_minutes"]] = np.nan
            frame["persons_shown"] = [self.disclosure.rules.label if s else str(int(n)) for s, n in zip(small, frame["persons"])]
            frame.loc[small, "persons"] = np.nan
        return frame

    def panel(self):
        hv = holoviews_with_bokeh()
        frame = self.data()
        curves = [hv.Curve(frame, "date", column, label=METRICS[column].label)
                  .opts(responsive=True, height=200, tools=["hover"], ylabel=METRICS[column].unit_label or column,
                        title=f"{METRICS[column].label} by day (median of persons with a valid day)")
                  for column in ("steps", "resting_hr", "sleep_minutes")]
        return hv.Layout(curves).cols(1)
