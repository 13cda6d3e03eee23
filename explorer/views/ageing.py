"""Ageing views: a marker's trajectories (each person's results joined, with the population
line), the distribution of personal ageing rates, ageotype membership, and PhenoAge against
chronological age (rasterised by datashader when there are many points).

Person-level trajectories are researcher-tier. Counts are exact until the privacy layer applies
disclosure control to what leaves that tier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from explorer.errors import ExplorerError
from explorer.views.wearables import _holoviews, _LakeView

#: points above which the PhenoAge scatter is rasterised on the server
RASTERISE_ABOVE = 50_000


class _AgeingView(_LakeView):
    def _require(self, *tables):
        for table in tables:
            if not self.lake.has_table(table):
                raise ExplorerError(f"table {table} is not there yet: run `explorer refresh` first")


class MarkerTrajectories(_AgeingView):
    """One marker's results per person against age (a line per person, at most ``persons`` of
    them, chosen at random), and the population line of ``marker_ageing``."""

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
        hv = _holoviews()
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


class AgeingRateDistribution(_AgeingView):
    """Histogram of the personal slopes of one marker (``person_ageing_rate``), with the
    cohort's fixed slope marked."""

    marker = param.String(default="2160-0", doc="LOINC code of the marker.")
    bins = param.Integer(default=30, bounds=(5, 200), doc="Histogram bins.")

    def data(self) -> dict:
        self._require("person_ageing_rate", "marker_ageing")
        slopes = self._sql("SELECT slope FROM person_ageing_rate WHERE marker = ?", [self.marker])["slope"].to_numpy()
        if not len(slopes):
            raise ExplorerError(f"no personal slopes of marker {self.marker!r}: check the LOINC code "
                                "(`explorer ageing markers`)")
        counts, edges = np.histogram(slopes, bins=self.bins)
        line = self._sql("SELECT name, slope FROM marker_ageing WHERE marker = ?", [self.marker]).iloc[0]
        return {"edges": edges, "counts": counts, "cohort_slope": float(line["slope"]), "name": line["name"],
                "n": len(slopes)}

    def panel(self):
        hv = _holoviews()
        found = self.data()
        histogram = hv.Histogram((found["edges"], found["counts"]), kdims=["slope per year"], vdims=["persons"])
        return (histogram * hv.VLine(found["cohort_slope"]).opts(color="firebrick")).opts(
            responsive=True, height=280, title=f"{found['name']}: personal ageing rates (n = {found['n']:,})")


class AgeotypeMembership(_AgeingView):
    """Persons per dominant ageotype, and per pathway how many age fast, typically or slowly."""

    def data(self) -> dict:
        self._require("ageotype")
        dominant = self._sql("SELECT ageotype, count(*) AS persons FROM ageotype GROUP BY 1 ORDER BY 1")
        speeds = self._sql("""
            UNPIVOT (SELECT metabolic, immune, hepatic, nephrotic FROM ageotype)
            ON metabolic, immune, hepatic, nephrotic INTO NAME pathway VALUE speed""")
        table = speeds.groupby(["pathway", "speed"]).size().rename("persons").reset_index()
        return {"dominant": dominant, "speeds": table}

    def panel(self):
        hv = _holoviews()
        found = self.data()
        dominant = hv.Bars(found["dominant"], kdims=["ageotype"], vdims=["persons"]).opts(
            responsive=True, height=260, title="Dominant ageotype", tools=["hover"])
        speeds = hv.Bars(found["speeds"], kdims=["pathway", "speed"], vdims=["persons"]).opts(
            responsive=True, height=260, title="Fast, typical and slow ageing per pathway", tools=["hover"],
            stacked=True)
        return (dominant + speeds).cols(2)


class PhenoAgeVsAge(_AgeingView):
    """PhenoAge (or Klemera-Doubal age) against chronological age, with the identity line;
    rasterised on the server (datashader) above :data:`RASTERISE_ABOVE` points."""

    model = param.Selector(default="phenoage", objects=["phenoage", "kdm_age"], doc="Biological age shown.")

    def data(self) -> pd.DataFrame:
        self._require("biological_age")
        return self._sql(f"""SELECT chronological_age, {self.model} AS biological_age FROM biological_age
                             WHERE {self.model} IS NOT NULL AND chronological_age IS NOT NULL""")

    def panel(self):
        hv = _holoviews()
        frame = self.data()
        points = hv.Points(frame, kdims=["chronological_age", "biological_age"])
        if len(frame) > RASTERISE_ABOVE:
            from holoviews.operation.datashader import rasterize

            points = rasterize(points).opts(cmap="Blues", cnorm="log")
        else:
            points = points.opts(alpha=0.4, size=4)
        span = [float(frame.min().min()), float(frame.max().max())] if len(frame) else [0, 1]
        label = {"phenoage": "PhenoAge", "kdm_age": "Klemera-Doubal age"}[self.model]
        return (points * hv.Curve((span, span)).opts(color="gray", line_dash="dashed")).opts(
            responsive=True, height=360, xlabel="chronological age (years)", ylabel=f"{label} (years)",
            title=f"{label} against age ({len(frame):,} visits)")
