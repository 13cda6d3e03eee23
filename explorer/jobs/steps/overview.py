"""Refresh steps of the overview: who is in the cohort, and what data each person has.

These exercise the refresh machinery end to end on every partitioning."""

from __future__ import annotations

from datetime import date

import pandas as pd

from explorer.jobs.steps import Partition, RefreshStep, bucket_sql


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
            return self.empty_output(["person_id", "date", *columns, "person_bucket"])
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
