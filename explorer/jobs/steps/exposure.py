"""Refresh steps of the exposure aggregates: exposure at home per person and day, and in windows before events."""

from __future__ import annotations

import pandas as pd

from explorer.exposure.daily import COLUMNS, exposure_daily, open_grids
from explorer.exposure.events import event_windows
from explorer.jobs.steps import Partition, RefreshStep, person_bucket


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

        residence = con.execute(f"SELECT * FROM residence WHERE {partition.where(None)}").df()
        grids = open_grids(con.execute("SELECT * FROM array_store").df(), self.lake_root)
        if residence.empty or not grids:
            return self.empty_output([*COLUMNS, "person_bucket"])
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

        where = partition.where(None)
        selects = [f"""SELECT DISTINCT person_id, '{table}' AS event_table, CAST({code} AS VARCHAR) AS event_code,
                              {day} AS event_date FROM {table} WHERE {where} AND {day} IS NOT NULL"""
                   for table, (day, code) in self.EVENT_SOURCES.items() if self.available(con, table)]
        columns = ["person_id", "event_id", "event_table", "event_code", "event_date", "window_days", "days_with_value",
                   "tasmax_mean", "tasmin_mean", "pm25_mean", "tas_anomaly_mean", "heat_wave_days", "person_bucket"]
        if not selects:
            return self.empty_output(columns)
        events = con.execute(f"""
            SELECT *, substr(md5(concat_ws('|', event_table, person_id, CAST(event_date AS VARCHAR),
                                           coalesce(event_code, ''))), 1, 16) AS event_id
            FROM ({' UNION ALL '.join(selects)}) ORDER BY person_id, event_date""").df()
        exposure = con.execute(f"""SELECT person_id, date, tasmax, tasmin, pm25, tas_anomaly, heat_wave
                                   FROM exposure_daily WHERE {where}""").df()
        if events.empty:
            return self.empty_output(columns)
        # a bucket without exposure still lists its events, with no value, as any other bucket would
        found = event_windows(events, exposure, windows=self.windows,
                              variables=("tasmax", "tasmin", "pm25", "tas_anomaly"), flag="heat_wave")
        found = found.assign(person_bucket=[person_bucket(p) for p in found["person_id"]]).astype({"person_bucket": "int32"})
        return found[columns]
