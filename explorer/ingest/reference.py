"""Reference data: what later files of an ingest look things up in.

Where people lived (so the time zone of each local day), how a wide lab file's columns map to
LOINC codes and units, and which pseudonym a FHIR Patient reference stands for. Taken from the
lake plus the reference files of the ingest itself, which are read first, in the ingesting
process, before any other file (:data:`REFERENCE_ORDER`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import tzfpy

from explorer.ingest.checks import clock_change

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

#: readers at or before this order read reference files: they run first, in this process
REFERENCE_ORDER = 10

#: tables that later files of the same ingest look things up in, and the columns looked up
REFERENCE_COLUMNS = {
    "residence": ["person_id", "start_date", "end_date", "latitude", "longitude"],
    "lab_column_map": ["column_name", "loinc_code", "unit", "test_name"],
    "fhir_patient_link": ["patient_ref", "person_id"],
    "weather_station": ["station_id", "latitude", "longitude"],
}


class Reference:
    """What readers look up: where people lived (their time zones), how a wide lab file's columns
    map to LOINC codes and units, and which pseudonym a FHIR Patient reference stands for. Taken
    from the lake plus the reference files of this ingest, which are read first."""

    def __init__(self, frames: dict[str, list[pd.DataFrame]], default_zone: str | None):
        self.frames = {table: list(frames.get(table, [])) for table in REFERENCE_COLUMNS}
        self.default_zone = default_zone
        self._residence_cache: pd.DataFrame | None = None  # see _residence_zones

    @classmethod
    def from_lake(cls, lake: Lake, default_zone: str | None) -> Reference:
        """The reference rows the lake holds already, with ``default_zone`` for days no residence covers."""
        frames = {}
        for table, columns in REFERENCE_COLUMNS.items():
            if lake.has_table(table):
                frames[table] = [lake.sql(f"SELECT {', '.join(columns)}, source_file FROM {table}")]
        return cls(frames, default_zone)

    def add(self, tables: dict[str, pd.DataFrame]) -> None:
        """Take in the reference rows of a file just read (its accepted rows, by table)."""
        for table, columns in REFERENCE_COLUMNS.items():
            if table in tables and len(tables[table]):
                self.frames[table].append(tables[table][columns + ["source_file"]])
        self._residence_cache = None

    def exclude(self, source_files) -> None:
        """Forget the rows of files an accepted correction has just replaced (a garbled
        correction, quarantined, replaces nothing, so the rows it would have replaced stay)."""
        gone = set(source_files)
        if gone:
            for table, frames in self.frames.items():
                self.frames[table] = [f[~f["source_file"].astype(str).isin(gone)] for f in frames]
            self._residence_cache = None

    def lab_columns(self) -> dict[str, tuple]:
        """Wide lab column name -> (loinc_code, unit, test_name); a later mapping wins."""
        out = {}
        for frame in self.frames["lab_column_map"]:
            for row in frame.itertuples(index=False):
                out[row.column_name] = (row.loinc_code, row.unit, row.test_name)
        return out

    def fhir_patients(self) -> dict[str, str]:
        """Keyed hash of a FHIR Patient reference -> person_id."""
        out = {}
        for frame in self.frames["fhir_patient_link"]:
            out.update(zip(frame["patient_ref"], frame["person_id"]))
        return out

    def weather_stations(self) -> dict[str, tuple[float, float]]:
        """Station id -> (latitude, longitude) from station lists (GHCN-Daily ``ghcnd-stations.txt``);
        a later list wins."""
        out = {}
        for frame in self.frames["weather_station"]:
            out.update(zip(frame["station_id"], zip(frame["latitude"].astype(float), frame["longitude"].astype(float))))
        return out

    def _residence_zones(self) -> pd.DataFrame:
        """Every residence row as person, zone (from its coordinates) and the days it covers
        (``start`` inclusive, ``end`` exclusive), in the order received; worked out once for the
        rows held, not on every file's lookup."""
        if self._residence_cache is not None:
            return self._residence_cache
        rows = []
        for frame in self.frames["residence"]:
            for row in frame.itertuples(index=False):
                end = (pd.Timestamp(row.end_date) + pd.Timedelta(days=1)
                       if row.end_date is not None and row.end_date == row.end_date else pd.Timestamp.max)
                rows.append({"person_id": row.person_id, "time_zone": tzfpy.get_tz(float(row.longitude), float(row.latitude)),
                             "start": pd.Timestamp(row.start_date), "end": end})
        prepared = pd.DataFrame(rows, columns=["person_id", "time_zone", "start", "end"])
        self._residence_cache = prepared
        return prepared

    def local_days(self, person: pd.Series, when: pd.Series) -> tuple[np.ndarray, pd.DataFrame]:
        """Where each row's local day was lived: per distinct (person, day), the IANA zone from
        the residence that covers it (else the declared default) and that day's clock change,
        if any (:func:`explorer.ingest.checks.clock_change`). Returns ``(codes, days)``: row ``i`` is on
        ``days.iloc[codes[i]]``. Decided once per person-day, not per minute."""
        when = when if hasattr(when, "dt") else pd.to_datetime(when)
        person_codes, _ = pd.factorize(person, use_na_sentinel=True)
        day_number = when.to_numpy().astype("datetime64[D]").astype("int64")
        day_number = np.where(when.isna().to_numpy(), 1 << 31, day_number & 0x7FFFFFFF)  # a missing time is no day
        # one integer per (person, day): hashing two int64 columns is far cheaper than strings and dates
        combined = person_codes.astype("int64") * (1 << 32) + day_number
        if len(combined) > 1 and (combined[1:] >= combined[:-1]).all():  # rows sorted by person and day: runs
            codes = np.concatenate([[0], np.cumsum(combined[1:] != combined[:-1])])
        else:
            codes, _ = pd.factorize(combined)
        _, first = np.unique(codes, return_index=True)  # each code's first row (codes count up from 0)
        distinct = pd.DataFrame({"person_id": np.asarray(person)[first],
                                 "day": when.to_numpy()[first].astype("datetime64[D]").astype(when.dtype)})
        zone_of = np.full(len(distinct), self.default_zone, dtype=object)
        residences = self._residence_zones()
        if len(residences) and len(distinct):
            persons = distinct["person_id"].to_numpy()
            days_ = distinct["day"]
            for row in residences[residences["person_id"].isin(set(persons))].itertuples(index=False):
                match = ((persons == row.person_id) & (days_ >= row.start) & (days_ < row.end)).to_numpy()
                zone_of[match] = row.time_zone or self.default_zone  # a later residence row wins
        distinct["time_zone"] = pd.Series(zone_of, dtype=object)
        changes = {}
        for zone, day_ in distinct[["time_zone", "day"]].drop_duplicates().itertuples(index=False):
            changes[(zone, day_)] = _clock_change(zone, day_) if zone and pd.notna(day_) else (None, None, None, None)
        columns = list(zip(*[changes[(z, d)] for z, d in zip(distinct["time_zone"], distinct["day"])])) or [[]] * 4
        distinct["utc_offset_start_minutes"], distinct["utc_offset_end_minutes"], distinct["clock_change_local"], \
            distinct["clock_shift_minutes"] = (pd.array(columns[0], dtype="Int16"), pd.array(columns[1], dtype="Int16"),
                                               pd.to_datetime(pd.Series(columns[2], dtype=object)), pd.array(columns[3], dtype="Int16"))
        return codes, distinct


@lru_cache(maxsize=8192)
def _clock_change(zone: str, day) -> tuple:
    """:func:`clock_change`, remembered: every file of a delivery asks it of the same few zones
    and days."""
    return clock_change(zone, day)
