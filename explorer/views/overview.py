"""Who is in the lake: persons by age band, sex at birth, race, ethnicity and 3-digit ZIP code."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import param

from explorer.views.base import LakeView, shared_data, static_table

GROUPINGS = ["age_band", "sex_at_birth", "race", "ethnicity", "zip3"]
AGE_BANDS = [(0, "0-17"), (18, "18-29"), (30, "30-39"), (40, "40-49"), (50, "50-59"), (60, "60-69"), (70, "70-79"), (80, "80+")]


class DemographicCounts(LakeView):
    """Persons per group of one characteristic, among those of a chosen sex at birth.

    Built for ``public``, the counts and their total are one page under disclosure control, and
    the filter is a fixed list, so a page never narrows to a group smaller than the profile allows
    without the count being hidden."""

    by = param.Selector(default="age_band", objects=GROUPINGS, doc="Characteristic the persons are counted by.")
    sex_at_birth = param.Selector(default="all", objects=["all", "female", "male"], doc="Only persons of this sex at birth.")

    @shared_data("person")
    def data(self) -> pd.DataFrame:
        """One row per group: ``count`` (NaN where hidden), and for a public view ``shown`` and
        ``status``; the total in ``attrs["total"]`` (as the page shows it). Computed once per
        filter state, role and person-table version, and shared across sessions."""
        rows = self._sql("SELECT year_of_birth, sex_at_birth, race, ethnicity, zip3 FROM person")
        if self.sex_at_birth != "all":
            rows = rows[rows["sex_at_birth"] == self.sex_at_birth]
        age = date.today().year - rows["year_of_birth"]
        edges = [low for low, _ in AGE_BANDS]
        bands = np.array([label for _, label in AGE_BANDS], dtype=object)
        rows = rows.assign(age_band=np.where(age.notna(), bands[np.clip(np.searchsorted(edges, age.fillna(0), side="right") - 1, 0, None)],
                                             "unknown"))
        rows[self.by] = rows[self.by].astype(object).where(rows[self.by].notna(), "unknown").astype(str)
        groups, total = self._counts(rows[[self.by]], [(self.by,), ()])
        groups.attrs["total"] = total["count"].iloc[0]
        groups.attrs["total_shown"] = total["shown"].iloc[0] if "shown" in total else str(int(total["count"].iloc[0]))
        return groups

    def title(self, frame: pd.DataFrame | None = None) -> str:
        """The chart's title, with the total as the page shows it (``frame``: ``data()``, if at hand)."""
        frame = self.data() if frame is None else frame
        where = "" if self.sex_at_birth == "all" else f", {self.sex_at_birth}"
        return (f"Persons by {self.by.replace('_', ' ')}{where} (total {frame.attrs['total_shown']}"
                + ("; small counts hidden)" if self.public else ")"))

    def panel(self):
        """The bar chart. Drawn with Bokeh itself rather than HoloViews: it is the landing page's
        figure, built for every session, and the same chart as a HoloViews plot cost the server
        87 ms against 34 ms for this one (measured in one process, alternating)."""
        import panel as pn
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure

        frame = self.data()
        groups = [str(g) for g in frame[self.by]]
        # the text of each count (<=20 where hidden) is in the hover and in the table beside it
        shown = frame["shown"] if "shown" in frame else frame["count"].map(lambda n: str(int(n)))
        source = ColumnDataSource({"group": groups, "count": frame["count"].fillna(0).to_numpy(float),
                                   "shown": [str(s) for s in shown]})
        plot = figure(x_range=groups, height=320, sizing_mode="stretch_width", title=self.title(frame),
                      tools="hover,save,reset", tooltips=[(self.by.replace("_", " "), "@group"), ("persons", "@shown")],
                      x_axis_label=self.by, y_axis_label="persons")
        plot.vbar(x="group", top="count", width=0.8, source=source, color="#30a2da")
        plot.y_range.start = 0
        plot.xaxis.major_label_orientation = 0.5 if self.by in ("race", "ethnicity") else 0
        plot.xgrid.grid_line_color = None
        return pn.pane.Bokeh(plot, sizing_mode="stretch_width")

    def table(self):
        """The counts on screen as a table (the text a reader gets: "<=20" where hidden)."""
        frame = self.data()
        shown = frame[[self.by, "shown"]].rename(columns={"shown": "persons"}) if "shown" in frame else \
            frame[[self.by, "count"]].rename(columns={"count": "persons"})
        return static_table(shown, css_classes=["counts-table"])


class ModalityCoverage(LakeView):
    """Per modality: persons with data, person-days, the median days per person, and the span of
    days covered (the refresh step modality_coverage)."""

    @shared_data("modality_coverage")
    def data(self) -> pd.DataFrame:
        """One row per modality. For a public view the persons count of each modality is its own
        protected page (modalities overlap, so they do not sum to a total), and the days of a
        modality whose persons are hidden are hidden with it."""
        frame = self._sql("""SELECT modality, persons_with_data, person_days, median_days_per_person, first_day, last_day
                             FROM modality_coverage ORDER BY modality""")
        if not self.public:
            return frame
        shown = []
        for persons in frame["persons_with_data"]:
            page = self.disclosure.counts(pd.DataFrame({"n": [int(persons)]}), [()], weight="n").table()
            shown.append((page["count"].iloc[0], page["shown"].iloc[0], page["status"].iloc[0]))
        frame["persons_with_data"] = [s[0] for s in shown]
        frame["persons_shown"] = [s[1] for s in shown]
        hidden = frame["persons_with_data"].isna()
        frame = frame.astype({"first_day": object, "last_day": object})
        frame.loc[hidden, ["person_days", "median_days_per_person", "first_day", "last_day"]] = None
        return frame

    def panel(self):
        frame = self.data()
        if self.public:
            frame = frame.assign(persons_with_data=frame.pop("persons_shown"))
        return static_table(frame)


class DataQualityReport(LakeView):
    """The data-quality checks of the latest ingest (OHDSI DQD style): numerator, denominator,
    percent failing and whether it passed its threshold."""

    @shared_data("dq_result")
    def data(self) -> pd.DataFrame:
        """One row per check of the latest ingest; for a public view a numerator in the hidden
        range shows the profile's label and no percent (it may count a few persons' records)."""
        frame = self._sql("""SELECT check_id, category, table_name, description, numerator, denominator, pct, threshold_pct,
                                    passed FROM dq_result
                             WHERE ingest_id = (SELECT max(ingest_id) FROM dq_result) ORDER BY passed, category, check_id""")
        if self.public:
            small = frame["numerator"].map(self.disclosure.rules.hides)
            frame = frame.astype({"numerator": object, "passed": object})
            frame.loc[small, "numerator"] = self.disclosure.rules.label
            frame.loc[small, "pct"] = np.nan
            frame.loc[small, "passed"] = None  # with the threshold it would bound the hidden numerator
        return frame

    def panel(self):
        import panel as pn

        frame = self.data()
        failing = int((frame["passed"] == False).sum())  # noqa: E712  (None: hidden for a public reader)
        return pn.Column(pn.pane.Markdown(f"### Data quality of the latest ingest: {failing} of {len(frame)} checks fail"),
                         static_table(frame, max_height=320), sizing_mode="stretch_width")
