"""Refresh steps of the ageing aggregates: marker slopes, person rates, ageotypes and biological age."""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.ageing import ageotypes, marker_ageing, marker_pathways, pathway_scores
from explorer.ageing.biological_age import PHENOAGE_INPUTS, acceleration, kdm_age, kdm_train, phenoage
from explorer.jobs.steps import Partition, RefreshStep


def _ageing_inputs(con) -> tuple[pd.DataFrame, pd.DataFrame]:

    codes = ", ".join(f"'{code}'" for code in marker_pathways().index)
    # a lake written before censored results were recorded has no value_comparator
    censored = ", value_comparator" if "value_comparator" in set(con.execute("SELECT * FROM measurement LIMIT 0").df().columns) else ""
    measurements = con.execute(f"""SELECT person_id, measurement_datetime, loinc_code, value_si{censored} FROM measurement
                                   WHERE loinc_code IN ({codes}) AND value_si IS NOT NULL""").df()
    persons = con.execute("SELECT person_id, year_of_birth FROM person").df()
    return measurements, persons


class MarkerAgeing(RefreshStep):
    """Per lab marker: the change per year of age, from value ~ age + (1 + age | person) by
    REML, with its standard error, p-value and Benjamini-Hochberg q-value across markers
    (explorer.ageing.markers). The whole cohort at once: every person informs every slope."""

    name = "marker_ageing"
    description = "per lab marker: change per year of age (mixed model), p- and q-values, variance components"
    inputs = ("measurement", "person")
    output = "marker_ageing"
    partition = "whole"
    #: which table of explorer.ageing.marker_ageing's (markers, persons) this step writes
    part = 0

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        return marker_ageing(*_ageing_inputs(con))[self.part]


class PersonAgeingRate(MarkerAgeing):
    """Per person and marker: the person's own slope and intercept (fixed plus random effects
    of the marker's mixed model), for persons with two results or more."""

    name = "person_ageing_rate"
    description = "per person and marker: personal change per year (best linear unbiased prediction)"
    output = "person_ageing_rate"
    part = 1


class Ageotype(RefreshStep):
    """Per person: fast, typical or slow ageing along each pathway (metabolic, immune, hepatic,
    nephrotic), the dominant pathway and a k-means cluster (explorer.ageing.markers)."""

    name = "ageotype"
    description = "per person: fast/typical/slow per pathway, dominant pathway, cluster of pathway scores"
    inputs = ("marker_ageing", "person_ageing_rate")
    output = "ageotype"
    partition = "whole"

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        markers = con.execute("SELECT * FROM marker_ageing").df()
        rates = con.execute("SELECT * FROM person_ageing_rate").df()
        columns = ["person_id", "metabolic", "immune", "hepatic", "nephrotic", "ageotype", "fast_pathways", "cluster"]
        scores = pathway_scores(rates, markers) if len(rates) else pd.DataFrame()
        if len(scores.dropna()) < 2:
            return pd.DataFrame({c: pd.Series([], dtype=str) for c in columns})
        found = ageotypes(scores).rename_axis("person_id").reset_index()
        return found.reindex(columns=columns)


class BiologicalAge(RefreshStep):
    """Per person and visit date with the nine PhenoAge markers: chronological age, PhenoAge
    (Levine 2018; the constant is recorded), its acceleration (residual on age across the cohort)
    and Klemera-Doubal age trained on the reference subset (explorer.ageing.biological_age)."""

    name = "biological_age"
    description = "per person and visit: PhenoAge, its acceleration, Klemera-Doubal age"
    inputs = ("measurement", "person")
    output = "biological_age"
    partition = "whole"
    #: PhenoAge's final constant: the published 0.090165 (a site may register a subclass with 0.09165)
    phenoage_constant = 0.090165
    #: the reference subset Klemera-Doubal is trained on: complete visits at these ages (years)
    reference_ages = (30.0, 75.0)

    def compute(self, con, partition: Partition) -> pd.DataFrame:

        codes = ", ".join(f"'{code}'" for code, _, _ in PHENOAGE_INPUTS.values())
        present = set(con.execute("SELECT * FROM measurement LIMIT 0").df().columns)
        # a lake written before censored results and SI notes were recorded has neither column
        extra = "".join(f", {c}" for c in ("value_comparator", "si_note") if c in present)
        measurements = con.execute(f"""SELECT person_id, measurement_datetime, loinc_code, value_as_number, unit{extra}
                                       FROM measurement WHERE loinc_code IN ({codes})""").df()
        persons = con.execute("SELECT person_id, year_of_birth FROM person").df()
        columns = ["person_id", "date", "chronological_age", "phenoage", "phenoage_accel", "kdm_age",
                   "phenoage_constant", "missing", "censored"]
        found = phenoage(measurements, persons, constant=self.phenoage_constant)
        if found.empty:
            return self.empty_output(columns)
        found["phenoage_accel"] = acceleration(found)
        markers = [*(name for name in PHENOAGE_INPUTS if name != "crp"), "ln_crp"]
        low, high = self.reference_ages
        reference = found[found["chronological_age"].between(low, high) & (found["missing"] == "")]
        found["kdm_age"] = np.nan
        if len(reference) >= len(markers) + 3:
            trained = kdm_train(reference, markers)
            complete = found["missing"] == ""
            found.loc[complete, "kdm_age"] = kdm_age(found[complete], trained)
        return found.rename(columns={"constant": "phenoage_constant"})[columns]
