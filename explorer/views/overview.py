"""Who is in the lake: persons by age band, sex at birth, race, ethnicity and 3-digit ZIP code."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import param

from explorer.views.base import LakeView, hidden_caption, hidden_marks, shared_data, static_table
from explorer.privacy.counts import lake_persons, published_total

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

GROUPINGS = ["age_band", "sex_at_birth", "race", "ethnicity", "zip3"]
#: what the dropdown and the axis call each grouping (the URL keeps the column name)
GROUPING_LABELS = {"age_band": "age band", "sex_at_birth": "sex at birth", "race": "race", "ethnicity": "ethnicity",
                   "zip3": "3-digit ZIP code"}
AGE_BANDS = [(0, "0-17"), (18, "18-29"), (30, "30-39"), (40, "40-49"), (50, "50-59"), (60, "60-69"), (70, "70-79"), (80, "80+")]


def person_groups(rows: pd.DataFrame) -> pd.DataFrame:
    """Persons' rows (year_of_birth, sex_at_birth, race, ethnicity, zip3) with their age band, and
    every missing value as the group "unknown"."""
    age = date.today().year - rows["year_of_birth"]
    edges = [low for low, _ in AGE_BANDS]
    bands = np.array([label for _, label in AGE_BANDS], dtype=object)
    rows = rows.assign(age_band=np.where(age.notna(), bands[np.clip(np.searchsorted(edges, age.fillna(0), side="right") - 1, 0, None)],
                                         "unknown"))
    for column in GROUPINGS:
        rows[column] = rows[column].astype(object).where(rows[column].notna(), "unknown").astype(str)
    return rows


def demographic_page(lake: Lake, disclosure, by: str):
    """The public overview's protected page of ``by`` (see :meth:`DemographicCounts.page`),
    computed once per person-table version and disclosure profile and shared."""
    return DemographicCounts(lake=lake, role="public", disclosure=disclosure, by=by).page()


class DemographicCounts(LakeView):
    """Persons per group of one characteristic, among those of a chosen sex at birth.

    Built for ``public``, the counts and their total are one page under disclosure control, and
    the filter is a fixed list, so a page never narrows to a group smaller than the profile allows
    without the count being hidden. Every filter state of one characteristic is one page (see
    :meth:`page`), and the total is the lake's published total, the same on every public page."""

    by = param.Selector(default="age_band", objects={GROUPING_LABELS[g]: g for g in GROUPINGS},
                        doc="Characteristic the persons are counted by.")
    sex_at_birth = param.Selector(default="all", objects=["all", "female", "male"], doc="Only persons of this sex at birth.")

    @shared_data("person")
    def data(self) -> pd.DataFrame:
        """One row per group: ``count`` (NaN where hidden), and for a public view ``shown`` and
        ``status``; the total in ``attrs["total"]`` (as the page shows it). Computed once per
        filter state, role and person-table version, and shared across sessions.

        A public view takes its counts from :meth:`page`, the one protected page of every
        filter state of ``by``."""
        if self.public:
            page = demographic_page(self.lake, self.disclosure, self.by)
            if self.sex_at_birth == "all":
                groups, total = page.table(self.by), page.table().iloc[0]
            else:
                groups = page.table(self.by) if self.by == "sex_at_birth" else page.table(self.by, "sex_at_birth")
                groups = groups[groups["sex_at_birth"] == self.sex_at_birth]
                if self.by != "sex_at_birth":
                    groups = groups.drop(columns="sex_at_birth")
                sexes = page.table("sex_at_birth").set_index("sex_at_birth")
                total = sexes.loc[self.sex_at_birth] if self.sex_at_birth in sexes.index else \
                    pd.Series({"count": 0.0, "shown": "0", "status": "shown"})
            groups = groups.reset_index(drop=True)
            groups.attrs["total"] = total["count"]
            groups.attrs["total_shown"] = total["shown"]
            return groups
        rows = person_groups(self._sql("SELECT year_of_birth, sex_at_birth, race, ethnicity, zip3 FROM person"))
        if self.sex_at_birth != "all":
            rows = rows[rows["sex_at_birth"] == self.sex_at_birth]
        groups, total = self._counts(rows[[self.by]], [(self.by,), ()])
        groups.attrs["total"] = total["count"].iloc[0]
        groups.attrs["total_shown"] = total["shown"].iloc[0] if "shown" in total else str(int(total["count"].iloc[0]))
        return groups

    @shared_data("person")
    def page(self):
        """The protected page of ``by`` for every filter state at once (a public view): persons
        by ``by`` and sex at birth, with both margins and the total, as one
        :class:`~explorer.privacy.Release`. Use :func:`demographic_page`, which shares it.

        Notes
        -----
        The filter's states are nested groups: the persons of one sex are some of everyone, so
        each group's count over everyone less its counts over the sexes a reader can choose is
        the count of the sexes they cannot (few persons with an unknown or another sex at
        birth). Protected one state at a time, such a difference escapes every audit; here the
        finest cells are (group, sex at birth), the states a reader can choose are published
        counts over them and the cells of the other sexes are counts a reader derives, audited
        with the rest (Hundepool et al. 2012, sec. 4.6). The total is the lake's published total
        and the counts per sex are the page of ``by="sex_at_birth"``, taken as known, so every
        view of the overview shows them alike.

        References
        ----------
        Hundepool A, Domingo-Ferrer J, Franconi L, et al. Statistical Disclosure Control. Wiley,
        2012.
        """

        rows = person_groups(self._sql("SELECT year_of_birth, sex_at_birth, race, ethnicity, zip3 FROM person"))
        total = published_total(self.lake, self.disclosure)
        known = {(): {(): total}}
        if self.by == "sex_at_birth":
            return self.disclosure.counts(rows[["sex_at_birth"]], [("sex_at_birth",), ()], known=known)
        sexes = demographic_page(self.lake, self.disclosure, "sex_at_birth").facts("sex_at_birth")
        choosable = [s for s in self.param.sex_at_birth.objects if s != "all"]
        return self.disclosure.counts(
            rows[[self.by, "sex_at_birth"]], [(self.by, "sex_at_birth"), (self.by,), ("sex_at_birth",), ()],
            known={**known, ("sex_at_birth",): sexes},
            unpublished={(self.by, "sex_at_birth"): lambda frame: ~frame["sex_at_birth"].isin(choosable)})

    def title(self, frame: pd.DataFrame | None = None) -> str:
        """The chart's title, with the total as the page shows it (``frame``: ``data()``, if at hand)."""
        frame = self.data() if frame is None else frame
        where = "" if self.sex_at_birth == "all" else f", {self.sex_at_birth}"
        caption = hidden_caption(frame["count"], self.disclosure.rules) if self.public else ""
        return (f"Persons by {self.by.replace('_', ' ')}{where} (total {frame.attrs['total_shown']}"
                + (f"; {caption})" if caption else ")"))

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
                      x_axis_label=GROUPING_LABELS.get(self.by, self.by), y_axis_label="persons")
        plot.vbar(x="group", top="count", width=0.8, source=source, color="#30a2da")
        hidden = [g for g, n in zip(groups, frame["count"]) if pd.isna(n)]
        if hidden:  # drawn as an outline up to the most it can be, and labelled (hidden_marks)
            from bokeh.models import LabelSet

            marks = hidden_marks(frame["count"], shown, self.disclosure.rules, frame.attrs.get("total"))
            marks = ColumnDataSource({"group": hidden, "top": [top for top, _ in marks], "label": [text for _, text in marks]})
            plot.vbar(x="group", top="top", width=0.8, source=marks, fill_color=None, line_color="#888888",
                      line_dash="dashed", hatch_pattern="/", hatch_color="#bbbbbb")
            plot.add_layout(LabelSet(x="group", y="top", text="label", source=marks, text_align="center",
                                     text_font_size="11px", text_color="#555555", y_offset=3))
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
        protected page (modalities overlap, so they do not sum to a total) with the lake's
        published total: the persons without the modality (the total less those with it) are a
        count a reader derives, so a small one hides the count with data; and the days of a
        modality whose persons are hidden are hidden with it."""
        frame = self._sql("""SELECT modality, persons_with_data, person_days, median_days_per_person, first_day, last_day
                             FROM modality_coverage ORDER BY modality""")
        if not self.public:
            return frame

        everyone, total = lake_persons(self.lake), published_total(self.lake, self.disclosure)
        shown = []
        for persons in frame["persons_with_data"]:
            persons = int(persons)
            if total is not None and persons <= everyone:  # the persons with data are some of the lake's
                finest = pd.DataFrame({"data": ["with", "without"], "n": [persons, everyone - persons]})
                page = self.disclosure.counts(finest, [("data",), ()], weight="n", known={(): {(): total}},
                                              unpublished={("data",): lambda f: f["data"] == "without"})
                page = page.table("data").set_index("data").loc["with"]
            else:
                page = self.disclosure.counts(pd.DataFrame({"n": [persons]}), [()], weight="n").table().iloc[0]
            shown.append((page["count"], page["shown"], page["status"]))
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
        return static_table(frame, headers=self.headers(frame, "modality_coverage"))


class DataQualityReport(LakeView):
    """The data-quality checks of the latest ingest (OHDSI DQD style): numerator, denominator,
    percent failing and whether it passed its threshold."""

    @shared_data("dq_result")
    def data(self) -> pd.DataFrame:
        """One row per check of the latest ingest; for a public view a numerator in the hidden
        range shows the profile's label and no percent (it may count a few persons' records).

        A check of the person table counts persons in both numerator and denominator, so both
        are counts under disclosure control, on one page (failing, passing and all): the
        denominator, when it is everyone in the lake, is the lake's published total (the same
        text as the overview's), and the persons passing (the total less those failing) are a
        count a reader derives and the audit protects. A check of the year of birth counts the
        persons the overview shows in the age band "unknown", and takes that count as published
        there. A hidden numerator or denominator shows no percent and no pass or fail."""
        frame = self._sql("""SELECT check_id, category, table_name, description, numerator, denominator, pct, threshold_pct,
                                    passed FROM dq_result
                             WHERE ingest_id = (SELECT max(ingest_id) FROM dq_result) ORDER BY passed, category, check_id""")
        if self.public:
            rules = self.disclosure.rules
            numerators = frame["numerator"].copy()
            small = frame["numerator"].map(rules.hides)
            frame = frame.astype({"numerator": object, "denominator": object, "passed": object})
            frame.loc[small, "numerator"] = rules.label
            frame.loc[small, "pct"] = np.nan
            frame.loc[small, "passed"] = None  # with the threshold it would bound the hidden numerator
            for i in frame.index[frame["table_name"] == "person"]:
                numerator, denominator = self._persons_page(frame.at[i, "check_id"], int(numerators[i]),
                                                            int(frame.at[i, "denominator"]))
                frame.at[i, "numerator"], frame.at[i, "denominator"] = numerator["shown"], denominator["shown"]
                if numerator["status"] not in ("shown", "rounded") or denominator["status"] not in ("shown", "rounded"):
                    frame.at[i, "pct"], frame.at[i, "passed"] = np.nan, None
        return frame

    def _persons_page(self, check_id: str, failing: int, checked: int):
        """The protected numerator and denominator of a check that counts persons."""

        known = {}
        if lake_persons(self.lake) == checked and failing <= checked:
            known[()] = {(): published_total(self.lake, self.disclosure)}
            if check_id == "person_birth_missing":  # the overview's age band "unknown"
                ages = demographic_page(self.lake, self.disclosure, "age_band").facts("age_band")
                unknown = ages.get("unknown")
                if (unknown.value if unknown is not None else 0) == failing:
                    known[("result",)] = {"fail": unknown} if unknown is not None else {}
        finest = pd.DataFrame({"result": ["fail", "pass"], "n": [failing, checked - failing]})
        page = self.disclosure.counts(finest, [("result",), ()], weight="n", known=known,
                                      unpublished={("result",): lambda f: f["result"] == "pass"})
        return page.table("result").set_index("result").loc["fail"], page.table().iloc[0]

    def panel(self):
        import panel as pn

        frame = self.data()
        failing = int((frame["passed"] == False).sum())  # noqa: E712  (None: hidden for a public reader)
        return pn.Column(pn.pane.Markdown(f"### Data quality of the latest ingest: {failing} of {len(frame)} checks fail"),
                         static_table(frame, headers=self.headers(frame, "dq_result")),  # whole: no row cut by a scroll edge
                         sizing_mode="stretch_width")


class LakeSummary(LakeView):
    """What the lake holds, in a sentence a first-time reader can take in: persons (the published
    total for a public reader), the days each modality covers, and the disclosure profile in
    force on public pages."""

    def text(self) -> str:
        """The summary as Markdown; what is not in the lake yet says which command makes it."""
        lines = []
        if self.lake.has_table("person"):
            if self.public:
                total = published_total(self.lake, self.disclosure)
                persons = total.shown if total is not None else "no"
            else:
                persons = f"{int(self._sql('SELECT count(*) AS n FROM person')['n'].iloc[0]):,}"
            lines.append(f"**{persons} persons** in the lake.")
        else:
            lines.append("No persons yet: `explorer ingest FOLDER` (or `explorer demo`) fills the lake.")
        if self.lake.has_table("modality_coverage"):
            coverage = ModalityCoverage(lake=self.lake, role=self.role, disclosure=self.disclosure).data()
            spans = [f"{row.modality.replace('_', ' ')} ({row.first_day:%Y-%m-%d} to {row.last_day:%Y-%m-%d})"
                     for row in coverage.itertuples() if row.first_day is not None and pd.notna(row.first_day)]
            if spans:
                lines.append("Data: " + ", ".join(spans) + ".")
        else:
            lines.append("The days each modality covers show once `explorer refresh` has made modality_coverage.")
        rules = self.disclosure.rules
        if self.public:
            lines.append(f"Counts follow the **{rules.title}** rule: counts of {rules.smallest_hidden} to "
                         f"{rules.largest_hidden} persons are hidden and shown as \"{rules.label}\""
                         + (f", and shown counts are rounded to a multiple of {rules.rounding}" if rules.rounding > 1 else "")
                         + ".")
        return " ".join(lines)

    def panel(self):
        import panel as pn

        return pn.pane.Markdown(self.text(), sizing_mode="stretch_width")
