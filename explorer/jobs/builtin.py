"""Refresh steps shipped with the suite: who is in the cohort, and what data each person has.

These exercise the refresh machinery end to end on every partitioning; the wearables, exposure
and ageing modules register their aggregates the same way.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from explorer.cohorts.store import COHORT_INPUTS, compute_members
from explorer.jobs.steps import Partition, RefreshStep, bucket_sql, person_bucket
from explorer.wearables.daily import VALID_WEAR_MINUTES

#: age bands of the cohort summary (years, lower bound inclusive), as used in All of Us data browser tables
AGE_BANDS = ((0, "0-17"), (18, "18-29"), (30, "30-39"), (40, "40-49"), (50, "50-59"), (60, "60-69"), (70, "70-79"), (80, "80+"))


def age_band_sql(age: str) -> str:
    cases = " ".join(f"WHEN {age} >= {low} THEN '{label}'" for low, label in reversed(AGE_BANDS))
    return f"CASE {cases} ELSE 'unknown' END"


class CohortSummary(RefreshStep):
    """Persons by age band, sex at birth and 3-digit ZIP, with the age reached this calendar year.

    Counts here are exact; disclosure control is applied where the table leaves the researcher
    tier (explorer.privacy), not here, so that every profile can be applied to the same numbers.
    """

    name = "cohort_summary"
    description = "persons by age band (age reached this year), sex at birth and zip3"
    inputs = ("person",)
    output = "cohort_summary"
    partition = "whole"

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        year = date.today().year
        return con.execute(f"""
            SELECT {age_band_sql('age')} AS age_band, sex_at_birth, zip3, CAST(count(*) AS BIGINT) AS n_persons,
                   CAST($year AS INTEGER) AS as_of_year
            FROM (SELECT $year - year_of_birth AS age, coalesce(sex_at_birth, 'unknown') AS sex_at_birth,
                         coalesce(zip3, 'unknown') AS zip3 FROM person)
            GROUP BY ALL ORDER BY ALL""", {"year": year}).df()


class DataAvailability(RefreshStep):
    """One row per person and local day with data of any modality: minutes of heart rate and of
    steps, steps taken, minutes asleep, lab results. Partitioned by person bucket and day, so a
    new day of data recomputes that day only."""

    name = "data_availability"
    description = "per person and local day: heart-rate minutes, step minutes, steps, minutes asleep, lab results"
    inputs = ("heart_rate_minute", "steps_minute", "sleep_level", "measurement")
    optional_inputs = ("heart_rate_minute", "steps_minute", "sleep_level", "measurement")
    output = "data_availability"
    partition = "person_bucket_day"
    time_columns = {"heart_rate_minute": "datetime", "steps_minute": "datetime", "sleep_level": "start_datetime",
                    "measurement": "measurement_datetime"}

    #: per input: output column -> aggregate over that table's rows of the person-day
    MODALITIES = {
        "heart_rate_minute": {"heart_rate_minutes": "count(*)"},
        "steps_minute": {"step_minutes": "count(*)", "steps": "sum(steps)"},
        "sleep_level": {"sleep_minutes": "sum(duration_minutes) FILTER (WHERE level NOT IN ('wake', 'awake'))"},
        "measurement": {"lab_results": "count(*)"},
    }

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        present = [t for t in self.MODALITIES if self.available(con, t)]
        columns = [c for aggregates in self.MODALITIES.values() for c in aggregates]
        if not present:
            return pd.DataFrame(columns=["person_id", "date", *columns, "person_bucket"])
        ctes = []
        for table in present:
            time = self.time_columns[table]
            aggregates = ", ".join(f"{expr} AS {column}" for column, expr in self.MODALITIES[table].items())
            ctes.append(f"""{table} AS (SELECT person_id, CAST({time} AS DATE) AS date, {aggregates} FROM {table}
                                       WHERE {time} IS NOT NULL AND {partition.where(time)} GROUP BY ALL)""")
        have = {c for t in present for c in self.MODALITIES[t]}
        values = ", ".join(f"CAST({f'coalesce({c}, 0)' if c in have else '0'} AS BIGINT) AS {c}" for c in columns)
        joins = "".join(f" FULL JOIN {t} USING (person_id, date)" for t in present[1:])
        return con.execute(f"""WITH {', '.join(ctes)}
            SELECT person_id, date, {values}, {bucket_sql()} AS person_bucket FROM {present[0]}{joins}
            ORDER BY person_id, date""").df()


class ModalityCoverage(RefreshStep):
    """Per modality: persons with any data, person-days, median days per person, first and last
    day. Reads data_availability, so it runs after it."""

    name = "modality_coverage"
    description = "per modality: persons with data, person-days, median days per person, first and last day"
    inputs = ("data_availability",)
    output = "modality_coverage"
    partition = "whole"

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        selects = []
        for modality, column in (("heart_rate", "heart_rate_minutes"), ("steps", "step_minutes"),
                                 ("sleep", "sleep_minutes"), ("labs", "lab_results")):
            selects.append(f"""
                SELECT '{modality}' AS modality, CAST(count(*) AS BIGINT) AS persons_with_data,
                       CAST(sum(days) AS BIGINT) AS person_days, CAST(median(days) AS DOUBLE) AS median_days_per_person,
                       min(first_day) AS first_day, max(last_day) AS last_day
                FROM (SELECT person_id, count(*) AS days, min(date) AS first_day, max(date) AS last_day
                      FROM data_availability WHERE {column} > 0 GROUP BY person_id)""")
        return con.execute(" UNION ALL ".join(selects) + " ORDER BY modality").df()


class WearableDaily(RefreshStep):
    """The daily wearable summary (explorer.wearables.daily): steps, wear minutes, valid day,
    mean and resting heart rate, main-sleep minutes and efficiency, per person and local day.

    A change on one day can change the next one too (the resting-heart-rate window looks 12
    minutes back across midnight; a night's sleep counts for the morning it ends), so changed
    days are recomputed with the day after them.
    """

    name = "wearable_daily"
    description = "per person and local day: steps, wear minutes, valid day, mean and resting heart rate, sleep"
    inputs = ("heart_rate_minute", "steps_minute", "sleep_level")
    optional_inputs = ("sleep_level",)
    output = "wearable_daily"
    partition = "person_bucket_day"
    time_columns = {"heart_rate_minute": "datetime", "steps_minute": "datetime", "sleep_level": "start_datetime"}
    days_affected_after = 1
    #: wear minutes of a valid day; a site with another rule registers a subclass that sets it
    #: (a module named in $EXPLORER_STEP_MODULES), so the rule is code under review, not a flag
    valid_wear_minutes = VALID_WEAR_MINUTES

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        from explorer.wearables.daily import daily_summary

        return daily_summary(con, person_filter=partition.where(None), days=partition.days,
                             has_sleep=self.available(con, "sleep_level"), bucket_column=bucket_sql(),
                             valid_wear_minutes=self.valid_wear_minutes)


class WearableCircadian(RefreshStep):
    """Non-parametric circadian metrics (IS, IV, RA, L5, M10 with their onsets) and the sleep
    regularity index per person and calendar month, from minute steps
    (explorer.wearables.periods). Partitioned by person bucket and month: a changed minute
    recomputes its person's month (and the next, for a sleep crossing the month's end)."""

    name = "wearable_circadian"
    description = "per person and month: interdaily stability, intradaily variability, RA, L5, M10, sleep regularity"
    inputs = ("steps_minute", "sleep_level")
    optional_inputs = ("sleep_level",)
    output = "wearable_circadian"
    # a new day recomputes its month only (a segment starting late on a month's last day counts
    # for the next month's sleep regularity too)
    partition = "person_bucket_day"
    time_columns = {"steps_minute": "datetime", "sleep_level": "start_datetime"}
    days_affected_after = 1
    period = "month"
    output_day_column = "period_start"
    #: recorded step minutes of a valid day, as wearable_daily's rule
    valid_wear_minutes = WearableDaily.valid_wear_minutes

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        from explorer.wearables.periods import circadian_by_month

        found = circadian_by_month(con, partition.where(None), has_sleep=self.available(con, "sleep_level"),
                                   valid_minutes=self.valid_wear_minutes, months=partition.days)
        return found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})


class ExposureDaily(RefreshStep):
    """Per person and day of the grids: tasmax, tasmin, PM2.5 at home, the temperature anomaly
    and heat-wave days (explorer.exposure.daily). Partitioned by person bucket: a person's days
    are recomputed when their residence changes, everyone's when a grid arrives."""

    name = "exposure_daily"
    description = "per person and day: tasmax, tasmin, PM2.5 at home, temperature anomaly, heat-wave day"
    inputs = ("residence", "array_store")
    output = "exposure_daily"
    partition = "person_bucket"
    #: nearest cell or bilinear; a site wanting the other registers a subclass that sets it
    method = "nearest"
    #: anomaly baseline (first year, last year); None: every complete calendar year of the grids
    baseline = None
    #: heat-wave definition for the daily flag (degC, days, ">" or ">="), as heat_wave_days takes it
    heat_wave = {"thresh_tasmin": 22.0, "thresh_tasmax": 30.0, "window": 3, "op": ">"}

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        from explorer.exposure.daily import COLUMNS, exposure_daily, open_grids

        residence = con.execute(f"SELECT * FROM residence WHERE {partition.where(None)}").df()
        grids = open_grids(con.execute("SELECT * FROM array_store").df(), self.lake_root)
        if residence.empty or not grids:
            return pd.DataFrame({c: [] for c in [*COLUMNS, "person_bucket"]})
        found = exposure_daily(residence, grids, method=self.method, baseline=self.baseline, heat_wave=self.heat_wave)
        return found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})


class EventExposure(RefreshStep):
    """Exposure in lag windows (0-7, 0-30, 0-365 days) before every measurement, condition and
    visit (explorer.exposure.events), from exposure_daily."""

    name = "event_exposure"
    description = "per clinical event and window: mean tasmax, tasmin, PM2.5, anomaly, heat-wave days before it"
    inputs = ("exposure_daily", "measurement", "condition_occurrence", "visit_occurrence")
    optional_inputs = ("measurement", "condition_occurrence", "visit_occurrence")
    output = "event_exposure"
    partition = "person_bucket"
    windows = (7, 30, 365)

    #: table -> (date expression, code expression)
    EVENT_SOURCES = {"measurement": ("CAST(measurement_datetime AS DATE)", "loinc_code"),
                     "condition_occurrence": ("condition_start_date", "concat_ws(':', code_system, code)"),
                     "visit_occurrence": ("CAST(visit_start_datetime AS DATE)", "visit_class")}

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        from explorer.exposure.events import event_windows

        where = partition.where(None)
        selects = [f"""SELECT DISTINCT person_id, '{table}' AS event_table, CAST({code} AS VARCHAR) AS event_code,
                              {day} AS event_date FROM {table} WHERE {where} AND {day} IS NOT NULL"""
                   for table, (day, code) in self.EVENT_SOURCES.items() if self.available(con, table)]
        columns = ["person_id", "event_id", "event_table", "event_code", "event_date", "window_days", "days_with_value",
                   "tasmax_mean", "tasmin_mean", "pm25_mean", "tas_anomaly_mean", "heat_wave_days", "person_bucket"]
        if not selects:
            return pd.DataFrame({c: [] for c in columns})
        events = con.execute(f"""
            SELECT *, substr(md5(concat_ws('|', event_table, person_id, CAST(event_date AS VARCHAR),
                                           coalesce(event_code, ''))), 1, 16) AS event_id
            FROM ({' UNION ALL '.join(selects)}) ORDER BY person_id, event_date""").df()
        exposure = con.execute(f"""SELECT person_id, date, tasmax, tasmin, pm25, tas_anomaly, heat_wave
                                   FROM exposure_daily WHERE {where}""").df()
        if events.empty:
            return pd.DataFrame({c: [] for c in columns})
        # a bucket without exposure still lists its events, with no value, as any other bucket would
        found = event_windows(events, exposure, windows=self.windows,
                              variables=("tasmax", "tasmin", "pm25", "tas_anomaly"), flag="heat_wave")
        found = found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})
        return found[columns]


def _ageing_inputs(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    from explorer.ageing import marker_pathways

    codes = ", ".join(f"'{code}'" for code in marker_pathways().index)
    measurements = con.execute(f"""SELECT person_id, measurement_datetime, loinc_code, value_si FROM measurement
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
        from explorer.ageing import marker_ageing

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
        from explorer.ageing import ageotypes, pathway_scores

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
        import numpy as np

        from explorer.ageing.biological_age import PHENOAGE_INPUTS, acceleration, kdm_age, kdm_train, phenoage

        codes = ", ".join(f"'{code}'" for code, _, _ in PHENOAGE_INPUTS.values())
        measurements = con.execute(f"""SELECT person_id, measurement_datetime, loinc_code, value_as_number, unit
                                       FROM measurement WHERE loinc_code IN ({codes})""").df()
        persons = con.execute("SELECT person_id, year_of_birth FROM person").df()
        columns = ["person_id", "date", "chronological_age", "phenoage", "phenoage_accel", "kdm_age",
                   "phenoage_constant", "missing"]
        found = phenoage(measurements, persons, constant=self.phenoage_constant)
        if found.empty:
            return pd.DataFrame({c: [] for c in columns})
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


class CohortMember(RefreshStep):
    """Members and index dates of every saved cohort definition (explorer.cohorts), recomputed
    whenever a table the cohorts read has a new version, or a definition is saved."""

    name = "cohort_member"
    description = "per saved cohort: its members and their index dates"
    inputs = COHORT_INPUTS
    optional_inputs = tuple(t for t in COHORT_INPUTS if t != "person")  # no saved cohort yet: an empty table
    output = "cohort_member"
    partition = "whole"

    def compute(self, con, partition: Partition) -> pd.DataFrame:
        return compute_members(con)
