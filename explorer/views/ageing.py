"""Ageing views: a marker's trajectories (each person's results joined, with the population
line), the distribution of personal ageing rates, ageotype membership, and PhenoAge against
chronological age (rasterised by datashader when there are many points).

Person-level trajectories are researcher-tier. Built for ``public``, the other views pass their
counts through disclosure control: histogram bins with their total, ageotype membership as one
page, and PhenoAge against age as protected counts in 5-year bands instead of points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError
from explorer.views.base import HIDDEN_STYLE, LakeView, hidden_bars, hidden_bins, hidden_caption, hidden_marks, holoviews_with_bokeh, nice_edges, shared_data

#: points above which the PhenoAge scatter is rasterised on the server
RASTERISE_ABOVE = 50_000


class MarkerTrajectories(LakeView):
    """One marker's results per person against age (a line per person, at most ``persons`` of
    them, chosen at random), and the population line of ``marker_ageing``. Researcher-tier."""

    access = "person_rows"

    marker = param.String(default="2160-0", doc="LOINC code of the marker.")
    persons = param.Integer(default=100, bounds=(1, 5000), doc="Persons drawn (a line each).")
    seed = param.Integer(default=0, doc="Seed of the draw, so a page shows the same persons again.")

    def data(self) -> dict:
        """``results`` (person_id, age, value on the marker's scale) and ``line`` (the fixed
        intercept and slope, name, scale)."""
        from explorer.ageing import ages

        self._require("measurement", "person", "marker_ageing")
        line = self._sql("SELECT * FROM marker_ageing WHERE marker = ?", [self.marker])
        if line.empty:
            known = ", ".join(self._sql("SELECT marker FROM marker_ageing ORDER BY marker")["marker"])
            raise ExplorerError(f"no marker {self.marker!r} in marker_ageing; it has {known or 'none'}")
        chosen = self._sql("""SELECT person_id FROM (SELECT DISTINCT person_id FROM measurement WHERE loinc_code = ?)
                              ORDER BY hash(person_id || ?) LIMIT ?""", [self.marker, str(self.seed), self.persons])
        results = self._sql("""SELECT person_id, measurement_datetime, value_si FROM measurement
                               WHERE loinc_code = ? AND value_si IS NOT NULL AND person_id IN (SELECT unnest(?))""",
                            [self.marker, chosen["person_id"].tolist()])
        results["age"] = ages(results, self._sql("SELECT person_id, year_of_birth FROM person"))
        value = results["value_si"].astype(float)
        results["value"] = np.log(value.where(value > 0)) if line["scale"].iloc[0] == "log" else value
        return {"results": results.sort_values(["person_id", "age"])[["person_id", "age", "value"]],
                "line": line.iloc[0]}

    def panel(self):
        hv = holoviews_with_bokeh()
        found = self.data()
        results, line = found["results"], found["line"]
        paths = [frame[["age", "value"]].to_numpy() for _, frame in results.groupby("person_id")]
        ages = np.array([results["age"].min(), results["age"].max()])
        population = hv.Curve((ages, line["intercept"] + line["slope"] * ages), "age", "value").opts(
            color="firebrick", line_width=3)
        scale = " (log)" if line["scale"] == "log" else ""
        return (hv.Path(paths, kdims=["age", "value"]).opts(alpha=0.3, color="steelblue") * population).opts(
            responsive=True, height=340, xlabel="age (years)", ylabel=f"{line['name']}{scale}",
            title=f"{line['name']}: {line['slope']:+.3g} per year (q = {line['q_value']:.2g}), "
                  f"{len(paths)} persons drawn")


class AgeingRateDistribution(LakeView):
    """Histogram of the personal slopes of one marker (``person_ageing_rate``), with the
    cohort's fixed slope marked."""

    marker = param.String(default="2160-0", doc="LOINC code of the marker.")
    bins = param.Integer(default=30, bounds=(5, 200),
                         doc="Histogram bins, over the 1st to 99th percentile (the rest in the end bins); "
                             "a public view keeps the default.")

    @shared_data("person_ageing_rate", "marker_ageing")
    def data(self) -> dict:
        slopes = self._sql("SELECT slope FROM person_ageing_rate WHERE marker = ?", [self.marker])["slope"].to_numpy()
        if not len(slopes):
            raise ExplorerError(f"no personal slopes of marker {self.marker!r}: check the LOINC code "
                                "(`explorer ageing markers`)")
        bins = self._histogram(slopes, nice_edges(slopes, self._setting("bins")))
        line = self._sql("SELECT name, slope FROM marker_ageing WHERE marker = ?", [self.marker]).iloc[0]
        cohort_slope = float(line["slope"])
        if self.public and bins.attrs["total"] != bins.attrs["total"]:  # too few persons: nothing of them shows
            bins = bins.iloc[:0]
            cohort_slope = float("nan")
        return {"bins": bins, "cohort_slope": cohort_slope, "name": line["name"], "n": bins.attrs.get("total", np.nan)}

    def panel(self):
        hv = holoviews_with_bokeh()
        found = self.data()
        bins = found["bins"]
        edges = np.r_[bins["left"].to_numpy(), bins["right"].to_numpy()[-1:]]
        counts = bins["count"].to_numpy(float)
        histogram = hv.Histogram((edges, np.nan_to_num(counts)), kdims=["slope per year"], vdims=["persons"])
        rules = self.disclosure.rules
        hidden = hidden_bins(hv, bins, rules, "slope per year") if self.public else None
        if hidden is not None:
            histogram = histogram * hidden
        top = max(np.nanmax(counts, initial=0), rules.largest_hidden if hidden is not None else 0, 1)
        n = rules.label if found["n"] != found["n"] else f"{int(found['n']):,}"
        caption = hidden_caption(counts, rules, "bins") if self.public else ""
        return (histogram * hv.VLine(found["cohort_slope"]).opts(color="firebrick")).opts(
            responsive=True, height=280, ylim=(0, top * 1.15),
            title=f"{found['name']}: personal ageing rates (n = {n})" + (f"\n{caption}" if caption else ""))


class AgeotypeMembership(LakeView):
    """Persons per dominant ageotype, and per pathway how many age fast, typically or slowly."""

    @shared_data("ageotype")
    def data(self) -> dict:
        """``dominant`` (ageotype, persons) and ``speeds`` (pathway, speed, persons): one page,
        so under disclosure control a count hidden in one cannot be solved from the other."""
        rows = self._sql("SELECT ageotype, metabolic, immune, hepatic, nephrotic FROM ageotype")
        pathways = ["metabolic", "immune", "hepatic", "nephrotic"]
        tables = self._counts(rows, [("ageotype",)] + [(p,) for p in pathways] + [()])
        dominant = tables[0].rename(columns={"count": "persons"})
        speeds = pd.concat([t.rename(columns={p: "speed", "count": "persons"}).assign(pathway=p)
                            for p, t in zip(pathways, tables[1:-1])], ignore_index=True)
        columns = ["pathway", "speed", "persons"] + [c for c in ("shown", "status") if c in speeds]
        return {"dominant": dominant, "speeds": speeds[columns], "persons": tables[-1]["count"].iloc[0]}

    def panel(self):
        hv = holoviews_with_bokeh()
        found = self.data()
        rules = self.disclosure.rules
        dominant = hv.Bars(found["dominant"].fillna({"persons": 0}), kdims=["ageotype"], vdims=["persons"]).opts(tools=["hover"])
        hidden = hidden_bars(hv, found["dominant"], "ageotype", "persons", rules, found["persons"]) if self.public else None
        marks = hidden_marks(found["dominant"]["persons"], found["dominant"].get("shown", []), rules, found["persons"]) \
            if self.public else []
        top = max(found["dominant"]["persons"].max(skipna=True) if found["dominant"]["persons"].notna().any() else 0,
                  max((t for t, _ in marks), default=0), 1)
        dominant = (dominant * hidden if hidden is not None else dominant).opts(
            responsive=True, height=260, title="Dominant ageotype", ylim=(0, top * 1.15))
        speeds_frame = found["speeds"]
        hidden_speeds = speeds_frame["persons"].isna()
        if hidden_speeds.any():
            # a stacked segment cannot be drawn as a marked hidden count: side by side, each hidden
            # one is a grey bar up to the most it can be (hidden_marks)
            # each pathway's speeds sum to the persons counted: a hidden one is at most what is left
            marks = {}
            for _, group in speeds_frame.groupby("pathway", sort=False):
                for index, mark in zip(group.index[group["persons"].isna()],
                                       hidden_marks(group["persons"], group["shown"], rules, found["persons"])):
                    marks[index] = mark
            # the wording goes in the hover: in the factor's name it made each pathway's factors differ
            drawn = speeds_frame.assign(
                count=[marks[i][1] if i in marks else f"{n:,.0f}" for i, n in speeds_frame["persons"].items()],
                persons=[marks[i][0] if i in marks else n for i, n in speeds_frame["persons"].items()],
                colour=[HIDDEN_STYLE["fill_color"] if hidden else SPEED_COLOURS.get(speed, "#30a2da")
                        for speed, hidden in zip(speeds_frame["speed"], hidden_speeds)])
            caption = hidden_caption(speeds_frame["persons"], rules, "groups")
            speeds = hv.Bars(drawn, kdims=["pathway", "speed"], vdims=["persons", "count", "colour"]).opts(
                color="colour", line_color="#666666", responsive=True, height=260, tools=["hover"],
                title=f"Fast, typical and slow ageing per pathway\n{caption}; grey: at most")
        else:
            speeds = hv.Bars(speeds_frame, kdims=["pathway", "speed"], vdims=["persons"]).opts(
                responsive=True, height=260, title="Fast, typical and slow ageing per pathway", tools=["hover"],
                stacked=True)
        return (dominant + speeds).cols(2)


#: a speed's colour in the pathway chart drawn side by side (a hidden one is grey)
SPEED_COLOURS = {"fast": "#e5ae38", "typical": "#30a2da", "slow": "#6d904f"}

#: the public heatmap's count scale (light to dark blue, no white) and a hidden cell's colour
COUNT_COLOURS = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
HIDDEN_CELL = "#e8d9b5"


class PhenoAgeVsAge(LakeView):
    """PhenoAge (or Klemera-Doubal age) against chronological age, with the identity line;
    rasterised on the server (datashader) above :data:`RASTERISE_ABOVE` points."""

    model = param.Selector(default="phenoage", objects=["phenoage", "kdm_age"], doc="Biological age shown.")

    band_years = param.Integer(default=10, bounds=(1, 30),
                               doc="Width of the age bands a public view counts persons in (years); a public view "
                                   "keeps the default.")

    @shared_data("biological_age")
    def data(self) -> pd.DataFrame:
        """Researcher: one row per person and visit (chronological_age, biological_age). Public:
        persons (at their latest visit) per band of chronological age and band of biological
        age, under disclosure control with the margins on the same page."""
        if not self.public:
            return self._sql(f"""SELECT chronological_age, {self.model} AS biological_age FROM biological_age
                                 WHERE {self.model} IS NOT NULL AND chronological_age IS NOT NULL""")
        latest = self._sql(f"""SELECT arg_max(chronological_age, date) AS chronological_age,
                                      arg_max({self.model}, date) AS biological_age
                               FROM biological_age WHERE {self.model} IS NOT NULL AND chronological_age IS NOT NULL
                               GROUP BY person_id""")
        width = self._setting("band_years")
        for column in ("chronological_age", "biological_age"):
            start = (np.floor(latest[column] / width) * width).astype(int)
            latest[column] = start.map(lambda a: f"{a}-{a + width - 1}")
        tables = self._counts(latest, [("chronological_age", "biological_age"), ("chronological_age",),
                                       ("biological_age",), ()])
        return tables[0]

    def panel(self):
        hv = holoviews_with_bokeh()
        frame = self.data()
        label = {"phenoage": "PhenoAge", "kdm_age": "Klemera-Doubal age"}[self.model]
        if self.public:
            frame = frame.astype({"shown": object})  # HoloViews reshapes vdims: no Arrow-backed strings
            rules = self.disclosure.rules
            top = max(frame["count"].max(skipna=True) if frame["count"].notna().any() else 0, rules.largest_hidden)
            # bands in age order, not as text sorts them ("100-109" before "20-29")
            kdims = [hv.Dimension(name, values=sorted(frame[name].unique(), key=lambda band: int(band.split("-")[0])))
                     for name in ("chronological_age", "biological_age")]
            # every cell says its count as published: a hidden one is beige, a colour outside the blue
            # scale, and reads "<=20" (grey once read as the scale's palest blue, a low count); the
            # scale starts at a visible blue so that no count reads as a hidden cell either
            heat = hv.HeatMap(frame, kdims=kdims, vdims=["count", "shown"]).opts(
                cmap=COUNT_COLOURS, colorbar=True, clim=(0, float(top)), clipping_colors={"NaN": HIDDEN_CELL},
                tools=["hover"])
            text = hv.Labels(frame, kdims=kdims, vdims=["shown"]).opts(text_font_size="8pt", text_color="#333333")
            return (heat * text).opts(
                responsive=True, height=360, xlabel="chronological age band (years)", ylabel=f"{label} band (years)",
                title=f"Persons by {label} band and age band, latest visit"
                      + (f"\n{caption}; beige, {rules.label}" if (caption := hidden_caption(frame["count"], rules, "cells"))
                         else ""))
        points = hv.Points(frame, kdims=["chronological_age", "biological_age"])
        if len(frame) > RASTERISE_ABOVE:
            from holoviews.operation.datashader import rasterize

            points = rasterize(points).opts(cmap="Blues", cnorm="log")
        else:
            points = points.opts(alpha=0.4, size=4)
        span = [float(frame.min().min()), float(frame.max().max())] if len(frame) else [0, 1]
        return (points * hv.Curve((span, span)).opts(color="gray", line_dash="dashed")).opts(
            responsive=True, height=360, xlabel="chronological age (years)", ylabel=f"{label} (years)",
            title=f"{label} against age ({len(frame):,} visits)")


class MarkerAgeingTable(LakeView):
    """Which lab markers change with age (marker_ageing): change per year, its SE, q-value."""

    @shared_data("marker_ageing")
    def data(self) -> pd.DataFrame:
        """One row per marker; for a public view a marker fitted on few persons (in the profile's
        hidden range) shows neither its count nor its estimates."""
        frame = self._sql("""SELECT marker, name, scale, n_persons, n_obs, slope, slope_se, q_value
                             FROM marker_ageing ORDER BY q_value""")
        if self.public:
            small = frame["n_persons"].map(self.disclosure.rules.hides)
            frame = frame.astype({"n_persons": object, "n_obs": object})
            frame.loc[small, ["n_persons", "n_obs"]] = self.disclosure.rules.label
            frame.loc[small, ["slope", "slope_se", "q_value"]] = np.nan
        return frame

    def panel(self):
        import panel as pn

        from explorer.views.base import data_table

        frame = self.data()
        shown = marker_changes(frame)
        return pn.Column(pn.pane.Markdown("### Markers that change with age (change per year of age, REML mixed model; "
                                          "a log-scale marker's change as % per year)"),
                         data_table(shown, self.headers(shown, "marker_ageing", marker="marker (LOINC)")),
                         sizing_mode="stretch_width")


def marker_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """The marker table as a reader takes it in: each change per year with its unit, the
    marker's SI unit per year (``+3.08 µmol/L per year``), or for a marker fitted on the log
    scale the percent change per year, 100 (e^slope - 1) (``+8.53 % per year``), with its
    standard error on the same scale (delta method: 100 e^slope SE); the marker as its name
    and LOINC code. A hidden estimate (a public marker fitted on few persons) stays missing."""
    from explorer.catalog.units import MARKER_UNITS, unit_label

    changes, errors = [], []
    for loinc, scale, slope, se in zip(frame["marker"], frame["scale"], frame["slope"], frame["slope_se"]):
        if pd.isna(slope):
            changes.append(None)
            errors.append(None)
            continue
        if scale == "log":
            change, error, unit = 100 * np.expm1(slope), 100 * np.exp(slope) * se, "%"
        else:
            change, error, unit = slope, se, unit_label(MARKER_UNITS.get(loinc, ("",))[0])
        per = f" {unit} per year" if unit else " per year"
        changes.append(f"{change:+.3g}{per}")
        errors.append(f"{error:.2g}{per}" if pd.notna(error) else None)
    return pd.DataFrame({"marker": [f"{name} ({loinc})" for name, loinc in zip(frame["name"], frame["marker"])],
                         "n_persons": frame["n_persons"], "n_obs": frame["n_obs"], "slope": changes,
                         "slope_se": errors, "q_value": frame["q_value"]})
