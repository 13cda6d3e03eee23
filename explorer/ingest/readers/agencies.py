"""Readers of station and area files as the agencies publish them: EPA AQS daily summaries,
NOAA GHCN-Daily by-station CSV with its station list, NCEI daily summaries, the CDC/ATSDR Social
Vulnerability Index and the Neighborhood Atlas Area Deprivation Index.

Each source record is accounted for: a value that lands; a quarantined record, with the reason,
when the agency marks it as bad (a GHCN quality flag) or it cannot be read; or an ignored record,
counted by kind in ``ingest_file.ignored``, when the agency writes it by design and the suite does
not store it (a row repeated per pollutant standard, an element not kept, a missing or
suppression code). Nothing the agency marks as missing is stored as a value.

References
----------
- US EPA, *AirData Download Files Documentation*, "Daily Summary Data" (aqs.epa.gov/aqsweb/airdata).
- Menne MJ et al., *GHCN-Daily readme.txt* and *readme-by_station.txt*, NOAA NCEI (v3.3x).
- NOAA NCEI, *Global Historical Climatology Network - Daily (GHCN-Daily) documentation* of the
  Climate Data Online "Daily Summaries" CSV.
- CDC/ATSDR, *Social Vulnerability Index Documentation* (2018, 2020, 2022).
- Kind AJH, Buckingham WR. Making Neighborhood-Disadvantage Metrics Accessible: The Neighborhood
  Atlas. N Engl J Med. 2018;378:2456-2458; University of Wisconsin, *Neighborhood Atlas* ADI
  download documentation.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from explorer.errors import shorten
from explorer.ingest.context import Context
from explorer.ingest.readers.base import Reader, ReaderError, ReadResult
from explorer.ingest.readers.csv_tables import HEAD, CsvTableReader, Problems, _header, read_text_table

STATION_TABLE = "weather_station_daily"
AREA_TABLE = "area_exposure"
#: how a file's units are declared where the file does not say (NCEI daily summaries); set by
#: ``explorer ingest --station-units``
STATION_UNITS_VARIABLE = "EXPLORER_STATION_UNITS"
#: the year of an area index whose file name does not carry it; set by ``explorer ingest --area-year``
AREA_YEAR_VARIABLE = "EXPLORER_AREA_YEAR"


def _records(source: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """The original values of quarantined records as JSON objects, one a record, written by
    pandas in C: agency files quarantine many records by design (an AQS day repeated per
    pollutant standard), and a Python loop over arrow strings cost 27 s per 300,000 of them."""
    picked = source.loc[mask, [c for c in source.columns if c != "_row"]]
    return picked.to_json(orient="records", lines=True).splitlines() if len(picked) else []


def _result(table: str, rows: pd.DataFrame, reasons: pd.Series, source: pd.DataFrame,
            ignored: pd.Series | None = None) -> ReadResult:
    """Accepted, quarantined and ignored records of a frame whose rows are the source records.

    ``reasons`` holds, per row, why it is quarantined (bad data); ``ignored``, the kind of a
    record the agency writes by design but the suite does not store (a repeat, an element not
    kept, a missing or suppression code), counted by kind in ``ingest_file.ignored``. A row
    with a kind is ignored whatever else it holds.
    """
    skipped = ignored.notna().to_numpy() if ignored is not None else np.zeros(len(rows), dtype=bool)
    bad = reasons.notna().to_numpy() & ~skipped
    quarantined = pd.DataFrame({"_row": source.loc[bad, "_row"].to_numpy(), "table": table,
                                "reason": reasons[bad].to_numpy(), "record": _records(source, bad)})
    kinds = Counter(ignored[skipped].tolist()) if ignored is not None else Counter()
    return ReadResult(rows_read=len(source), tables={table: rows[~bad & ~skipped].reset_index(drop=True)},
                      quarantined=quarantined, ignored=kinds)


# -- EPA AQS -----------------------------------------------------------------------------------


class AqsDailyReader(CsvTableReader):
    """EPA AQS "Daily Summary Data" files of AirData (``daily_88101_2023.csv`` ...), one row per
    monitor, day, sample duration, pollutant standard and event type, as station series.

    A monitor is station ``SS-CCC-NNNN-PPPPP-Q``, the monitor ID as the documentation writes it
    (state, county, site number, parameter code, parameter occurrence code). Kept: PM2.5 (parameter 88101 FRM/FEM, 88502 non-regulatory) as element ``PM25``,
    the day's arithmetic mean in ug/m3; ozone (44201) as ``O3_MDA8``, the daily maximum 8-hour
    average (``1st Max Value`` of the 8-HR RUN AVG rows) in ppb, and ``O3_MAX1H``, the daily
    maximum hourly value (1 HOUR rows), in ppb. ``Date Local`` is the local standard day.

    The format repeats a monitor-day by design: once per pollutant standard (PM25 24-hour 2012,
    PM25 Annual 2012, ...) with the same values, and, on days with an exceptional event (a
    wildfire), once with the event's data included and once excluded. The day is stored once,
    as measured (events included: what people breathed); each repeat, like a parameter or
    ozone summary not kept, is counted as ignored by kind (``ingest_file.ignored``); two
    different values for the same monitor, day and element are quarantined.
    """

    format = "epa_aqs_daily_csv"
    order = 56
    description = ("EPA AQS daily summary CSV (AirData daily_<param>_<year>.csv): PM2.5 88101/88502 and ozone 44201 "
                   "per monitor and local day")
    required = ("State Code", "County Code", "Site Num", "Parameter Code", "POC", "Latitude", "Longitude",
                "Sample Duration", "Date Local", "Units of Measure", "Arithmetic Mean", "1st Max Value")
    table = STATION_TABLE
    remedy = ("keep AirData's own column names, as in daily_<parameter>_<year>.csv of the Daily Summary Data "
              "download (a file re-saved with columns renamed or dropped needs them back)")
    #: parameter codes kept, with their names
    PARAMETERS = {"88101": "PM2.5 FRM/FEM", "88502": "PM2.5 non-regulatory", "44201": "ozone"}
    UNITS = {"Micrograms/cubic meter (LC)": ("ug/m3", 1.0), "Micrograms/cubic meter (25 C)": ("ug/m3", 1.0),
             "Parts per million": ("ppb", 1000.0), "Parts per billion": ("ppb", 1.0)}
    # the documentation's words ("No Events", "Events Included", ...) and the files' short forms
    MEASURED_EVENTS = ("None", "No Events", "Included", "Events Included")
    EXCLUDED_EVENTS = ("Excluded", "Events Excluded", "Concurred", "Concurred Excluded", "Concurred Events Excluded")

    def read(self, path: Path, context: Context) -> ReadResult:
        frame = read_text_table(path)
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise ReaderError(f"column(s) {', '.join(missing)} missing")
        rows, reasons, ignored = self.convert(frame, context)
        return _result(self.table, rows, reasons, frame, ignored)

    def convert(self, frame, context):
        p, skip = Problems(len(frame)), Problems(len(frame))  # why quarantined; what kind of record is ignored
        text = {c: frame[c].str.strip() for c in ("State Code", "County Code", "Site Num", "Parameter Code", "POC",
                                                  "Sample Duration", "Units of Measure")}
        parameter = text["Parameter Code"]
        skip.flag(~parameter.isin(list(self.PARAMETERS)) & parameter.notna(),
                  "AQS parameter " + parameter.fillna("") + " (" + frame.get("Parameter Name", pd.Series("", index=frame.index)).fillna("")
                  + "), not kept")
        p.flag(parameter.isna(), "Parameter Code: empty")
        # an empty Event Type (a file saved again by a spreadsheet or pandas, which read "None" as missing) is no event
        events = (frame["Event Type"].str.strip() if "Event Type" in frame else pd.Series(None, index=frame.index, dtype=object)).fillna("None")
        skip.flag(events.isin(self.EXCLUDED_EVENTS),
                  "AQS monitor-day with exceptional events excluded (stored as measured, events included)")
        p.flag(~events.isin(self.MEASURED_EVENTS), "Event Type " + events.fillna("(empty)") + ": expected one of "
               + ", ".join(self.MEASURED_EVENTS + self.EXCLUDED_EVENTS))
        duration = text["Sample Duration"].fillna("").str.upper()
        ozone = parameter == "44201"
        eight_hour, one_hour = duration.str.startswith("8-HR"), duration == "1 HOUR"
        skip.flag(ozone & ~eight_hour & ~one_hour, "AQS ozone summary of sample duration " + duration + ", not kept")
        element = pd.Series("PM25", index=frame.index, dtype=object)
        element[ozone & eight_hour] = "O3_MDA8"
        element[ozone & one_hour] = "O3_MAX1H"
        # PM2.5: the day's mean; ozone: the day's maximum (the form its standards and studies use)
        value = p.number(frame, "1st Max Value").where(ozone, p.number(frame, "Arithmetic Mean"))
        unit = text["Units of Measure"]
        known = unit.isin(list(self.UNITS))
        p.flag(~known, "Units of Measure " + unit.fillna("(empty)") + ": expected one of " + ", ".join(self.UNITS))
        factor = unit.map({k: f for k, (_, f) in self.UNITS.items()}).astype(float)
        latitude, longitude = p.number(frame, "Latitude"), p.number(frame, "Longitude")
        p.flag((latitude.abs() > 90) | (longitude.abs() > 180), "Latitude/Longitude: outside -90..90 / -180..180")
        day = pd.to_datetime(frame["Date Local"].str.strip(), errors="coerce", format="%Y-%m-%d")
        p.flag(day.isna(), "Date Local: not a date (expected YYYY-MM-DD)")
        for column in ("State Code", "County Code", "Site Num", "POC"):
            p.flag(text[column].isna(), f"{column}: empty")
        station = (text["State Code"].fillna("").str.zfill(2) + "-" + text["County Code"].fillna("").str.zfill(3) + "-"
                   + text["Site Num"].fillna("").str.zfill(4) + "-" + parameter.fillna("") + "-" + text["POC"].fillna(""))
        rows = pd.DataFrame({"_row": frame["_row"], "station_id": station, "latitude": latitude, "longitude": longitude,
                             "date": day.dt.date, "element": element, "value": value * factor,
                             "unit": unit.map({k: u for k, (u, _) in self.UNITS.items()}),
                             "source_value": value, "source_unit": unit})
        # a monitor-day repeated under another pollutant standard: stored once, the repeats counted
        key = ["station_id", "date", "element"]
        fine = rows[(p.reasons.isna() & skip.reasons.isna()).to_numpy()]
        repeat = fine[fine.duplicated(key)]
        if len(repeat):
            first = fine.drop_duplicates(key).set_index(key)[["_row", "value"]]
            kept = first.reindex(pd.MultiIndex.from_frame(repeat[key]))
            same = pd.Series(np.isclose(repeat["value"].to_numpy(float), kept["value"].to_numpy(float)), index=repeat.index)
            skip.flag(same.reindex(rows.index, fill_value=False), "AQS monitor-day repeated under another pollutant standard")
            p.flag(rows.index.isin(repeat.index) & ~same.reindex(rows.index, fill_value=True).to_numpy(),
                   "conflicts with row " + pd.Series(kept["_row"].astype(str).to_numpy(), index=repeat.index).reindex(rows.index)
                   + ": another value for the same monitor, day and element")
        return rows, p.reasons, skip.reasons


# -- GHCN-Daily --------------------------------------------------------------------------------

#: GHCN-Daily readme, section III: units of the elements this suite keeps, and their SI form
GHCN_ELEMENTS = {"TMAX": ("tenths of degC", 0.1, "degC"), "TMIN": ("tenths of degC", 0.1, "degC"),
                 "TAVG": ("tenths of degC", 0.1, "degC"), "PRCP": ("tenths of mm", 0.1, "mm")}
#: GHCN-Daily readme, section III, Q-FLAG: the quality check a value failed
GHCN_QUALITY_FLAGS = {"D": "failed duplicate check", "G": "failed gap check", "I": "failed internal consistency check",
                      "K": "failed streak/frequent-value check", "L": "failed check on length of multiday period",
                      "M": "failed megaconsistency check", "N": "failed naught check", "O": "failed climatological outlier check",
                      "R": "failed lagged range check", "S": "failed spatial consistency check",
                      "T": "failed temporal consistency check", "W": "temperature too warm for snow",
                      "X": "failed bounds check", "Z": "flagged as a result of an official Datzilla investigation"}
GHCN_MISSING = -9999
GHCN_COLUMNS = ("ID", "DATE", "ELEMENT", "DATA_VALUE", "M_FLAG", "Q_FLAG", "S_FLAG", "OBS_TIME")
GHCN_LINE = re.compile(rb"^[A-Z]{2}[A-Z0-9]{9},\d{8},[A-Z0-9]{4},-?\d+,")
STATIONS_LINE = re.compile(r"^([A-Z]{2}[A-Z0-9]{9}) +(-?\d+\.\d+) +(-?\d+\.\d+) +(-?\d+\.\d+)")


def _ghcn_quality(flags: pd.Series, element: pd.Series) -> pd.Series:
    """Why a value with a GHCN-Daily quality flag is not stored (None where it has none)."""
    flag = flags.fillna("").str.strip()
    named = flag.map(lambda f: GHCN_QUALITY_FLAGS.get(f, "unknown flag"))
    reason = "Q_FLAG " + flag + " (" + named + "): GHCN-Daily marks this " + element.fillna("") + " value as failing quality assurance"
    return reason.where(flag != "", None)


class GhcnStationsReader(Reader):
    """NOAA's GHCN-Daily station list ``ghcnd-stations.txt``: fixed-width, one station a line
    (ID columns 1-11, LATITUDE 13-20, LONGITUDE 22-30, ELEVATION 32-37, STATE 39-40, NAME 42-71,
    per the GHCN-Daily readme, section IV). A reference file: read first, so that by-station
    observation files of the same ingest, which carry no coordinates, find them."""

    format = "ghcnd_stations_txt"
    order = 8
    description = "GHCN-Daily station list (ghcnd-stations.txt, fixed width): ID, latitude, longitude, elevation, state, name"
    table = "weather_station"

    def sniff(self, path: Path, head: bytes) -> str | None:
        first = head.split(b"\n", 1)[0].decode("latin-1")
        if not STATIONS_LINE.match(first) or len(first.rstrip("\r")) < 41:
            return "not a GHCN-Daily station list (fixed-width 'ID LATITUDE LONGITUDE ELEVATION ...' lines)"
        return None

    def read(self, path: Path, context: Context) -> ReadResult:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        rows, bad = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                bad.append((number, "empty line", line))
                continue
            found = STATIONS_LINE.match(line)
            if not found:
                bad.append((number, "not a station line (ID in columns 1-11, LATITUDE 13-20, LONGITUDE 22-30)", line))
                continue
            latitude, longitude, elevation = (float(found.group(k)) for k in (2, 3, 4))
            if abs(latitude) > 90 or abs(longitude) > 180:
                bad.append((number, "LATITUDE/LONGITUDE outside -90..90 / -180..180", line))
                continue
            rows.append({"_row": number, "station_id": found.group(1), "latitude": latitude, "longitude": longitude,
                         # -999.9 is the readme's missing elevation
                         "elevation": None if elevation == -999.9 else elevation,
                         "state": line[38:40].strip() or None, "name": line[41:71].strip() or None})
        quarantined = pd.DataFrame({"_row": [b[0] for b in bad], "table": self.table, "reason": [b[1] for b in bad],
                                    "record": [b[2] for b in bad]})
        table = pd.DataFrame(rows, columns=["_row", "station_id", "latitude", "longitude", "elevation", "state", "name"])
        return ReadResult(rows_read=len(lines), tables={self.table: table}, quarantined=quarantined)


class GhcnDailyByStationReader(Reader):
    """GHCN-Daily by-station CSV (``by_station/<ID>.csv``): ID, YYYYMMDD, ELEMENT, DATA_VALUE,
    M_FLAG, Q_FLAG, S_FLAG, OBS_TIME, without a header as NOAA writes it, or with the header
    ``ID,DATE,ELEMENT,DATA_VALUE,M_FLAG,Q_FLAG,S_FLAG,OBS_TIME``.

    TMAX, TMIN, TAVG in tenths of degC and PRCP in tenths of mm (readme section III) are stored
    in degC and mm. A value of -9999 (missing), a value with a quality flag (Q_FLAG not blank:
    it failed one of GHCN's checks) and the elements this suite does not keep (SNOW, SNWD,
    AWND, WT**, ...) are accounted for: the first two quarantined with that reason, the elements
    counted as ignored by kind. A PRCP of 0 flagged ``T`` (trace) is
    stored as 0 mm, as GHCN writes it. The files carry no coordinates: they come from NOAA's
    station list ``ghcnd-stations.txt`` in the same or an earlier ingest.
    """

    format = "ghcn_daily_by_station_csv"
    order = 57
    description = "GHCN-Daily by-station CSV: ID,YYYYMMDD,ELEMENT,DATA_VALUE,M_FLAG,Q_FLAG,S_FLAG,OBS_TIME (coordinates from ghcnd-stations.txt)"
    table = STATION_TABLE

    def sniff(self, path: Path, head: bytes) -> str | None:
        first = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")
        if GHCN_LINE.match(first):
            return None
        if [c.strip().strip('"') for c in first.decode("utf-8", "replace").split(",", 4)[:4]] == list(GHCN_COLUMNS[:4]):
            return None
        return "not GHCN-Daily by-station CSV (ID,YYYYMMDD,ELEMENT,DATA_VALUE,M_FLAG,Q_FLAG,S_FLAG,OBS_TIME)"

    def read(self, path: Path, context: Context) -> ReadResult:
        with path.open("rb") as handle:
            headed = not GHCN_LINE.match(handle.read(HEAD).removeprefix(b"\xef\xbb\xbf"))
        try:
            table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=None if headed else list(GHCN_COLUMNS),
                                                                        block_size=1 << 24),
                                   convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in GHCN_COLUMNS},
                                                                        strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            raise ReaderError(f"not a well-formed GHCN-Daily CSV: {str(exc).splitlines()[0]}") from None
        frame = table.to_pandas()
        frame.insert(0, "_row", np.arange(1, len(frame) + 1))
        stations = context.reference.weather_stations()
        ids = frame["ID"].str.strip()
        unknown = sorted(set(ids.dropna()) - set(stations))
        if unknown:
            raise ReaderError(f"station(s) {shorten(', '.join(unknown), 120)} have no coordinates: GHCN-Daily by-station files "
                              "carry none. Ingest NOAA's station list ghcnd-stations.txt (fixed width, from the GHCN-Daily "
                              "folder) with this file, or ingest it and then run again with --retry-quarantined")
        p, skip = Problems(len(frame)), Problems(len(frame))
        element = frame["ELEMENT"].str.strip().str.upper()
        skip.flag(~element.isin(list(GHCN_ELEMENTS)) & element.notna(), "GHCN element " + element.fillna("") + ", not kept")
        p.flag(element.isna(), "ELEMENT: empty")
        raw = p.number(frame, "DATA_VALUE")
        p.flag(raw == GHCN_MISSING, "DATA_VALUE -9999: GHCN-Daily's missing-value code")
        p.flag(pd.Series(True, index=frame.index), _ghcn_quality(frame["Q_FLAG"], element))
        day = pd.to_datetime(frame["DATE"].str.strip(), errors="coerce", format="%Y%m%d")
        day = day.fillna(pd.to_datetime(frame["DATE"].str.strip(), errors="coerce", format="%Y-%m-%d"))
        p.flag(day.isna(), "DATE: not a date (expected YYYYMMDD)")
        scale = element.map({k: f for k, (_, f, _) in GHCN_ELEMENTS.items()}).astype(float)
        where = pd.DataFrame([stations.get(i, (np.nan, np.nan)) for i in ids], columns=["latitude", "longitude"], index=frame.index)
        rows = pd.DataFrame({"_row": frame["_row"], "station_id": ids, "latitude": where["latitude"], "longitude": where["longitude"],
                             "date": day.dt.date, "element": element, "value": (raw * scale).round(6),
                             "unit": element.map({k: u for k, (_, _, u) in GHCN_ELEMENTS.items()}),
                             "source_value": raw, "source_unit": element.map({k: u for k, (u, _, _) in GHCN_ELEMENTS.items()})})
        return _result(self.table, rows, p.reasons, frame, skip.reasons)


class NoaaDailySummariesReader(CsvTableReader):
    """NCEI Climate Data Online "Daily Summaries" CSV: STATION, NAME, LATITUDE, LONGITUDE,
    ELEVATION, DATE, then one column per element (PRCP, TMAX, TMIN, TAVG, SNOW, ...), each
    optionally followed by ``<ELEMENT>_ATTRIBUTES`` ("M-flag,Q-flag,S-flag,time").

    Each filled element cell is one source record. The file does not say its units: they were
    chosen when it was ordered, "standard" (degF, inches) or "metric" (degC, mm). They are
    declared with ``explorer ingest --station-units standard|metric``; without it the file is
    refused, never guessed. A cell with a quality flag is quarantined with the flag's meaning.
    """

    format = "noaa_daily_summaries_csv"
    order = 58
    description = "NCEI daily summaries CSV: STATION, NAME, LATITUDE, LONGITUDE, ELEVATION, DATE, TMAX, TMIN, PRCP[, *_ATTRIBUTES]"
    required = ("STATION", "LATITUDE", "LONGITUDE", "DATE")
    remedy = "order the CSV output of Climate Data Online's Daily Summaries with station name and geographic location"
    table = STATION_TABLE
    UNITS = {"standard": {"TMAX": "degF", "TMIN": "degF", "TAVG": "degF", "PRCP": "in"},
             "metric": {"TMAX": "degC", "TMIN": "degC", "TAVG": "degC", "PRCP": "mm"}}
    TO_SI = {"degF": (lambda v: (v - 32.0) * 5.0 / 9.0, "degC"), "degC": (lambda v: v, "degC"),
             "in": (lambda v: v * 25.4, "mm"), "mm": (lambda v: v, "mm")}
    IDENTITY = ("STATION", "NAME", "LATITUDE", "LONGITUDE", "ELEVATION", "DATE")

    def sniff(self, path, head):
        why = super().sniff(path, head)
        if why is None and not any(e in _header(head) for e in ("TMAX", "TMIN", "TAVG", "PRCP")):
            return "no TMAX, TMIN, TAVG or PRCP column"
        return why

    def read(self, path: Path, context: Context) -> ReadResult:
        declared = os.environ.get(STATION_UNITS_VARIABLE, "").strip().lower()
        if declared not in self.UNITS:
            raise ReaderError("NCEI daily summaries do not state their units (standard: degF and inches, or metric: degC "
                              "and mm, chosen when the data was ordered); declare them with --station-units standard or "
                              f"--station-units metric (${STATION_UNITS_VARIABLE})"
                              + (f"; {declared!r} is neither" if declared else ""))
        frame = read_text_table(path)
        elements = [c for c in frame.columns if c not in ("_row", *self.IDENTITY) and not c.endswith("_ATTRIBUTES")]
        cells = frame.rename(columns={"_row": "source_row"}).melt(
            id_vars=["source_row", *[c for c in self.IDENTITY if c in frame]], value_vars=elements,
            var_name="element", value_name="cell")
        attributes = [frame[f"{e}_ATTRIBUTES"] if f"{e}_ATTRIBUTES" in frame else pd.Series([None] * len(frame)) for e in elements]
        cells["attributes"] = pd.concat(attributes, ignore_index=True).to_numpy() if elements else []
        cells = cells[cells["cell"].notna()].sort_values(["source_row", "element"], kind="stable", ignore_index=True)
        cells.insert(0, "_row", np.arange(1, len(cells) + 1))
        p, skip = Problems(len(cells)), Problems(len(cells))
        kept = self.UNITS[declared]
        skip.flag(~cells["element"].isin(list(kept)), "element " + cells["element"] + ", not kept")
        value = pd.to_numeric(cells["cell"], errors="coerce")
        p.flag(value.isna(), cells["element"] + ": " + cells["cell"].astype(str) + " is not a number")
        quality = cells["attributes"].fillna("").str.split(",").str[1].fillna("")
        p.flag(pd.Series(True, index=cells.index), _ghcn_quality(quality, cells["element"]))
        latitude, longitude = p.number(cells, "LATITUDE"), p.number(cells, "LONGITUDE")
        p.flag((latitude.abs() > 90) | (longitude.abs() > 180), "LATITUDE/LONGITUDE: outside -90..90 / -180..180")
        day = pd.to_datetime(cells["DATE"].str.strip(), errors="coerce", format="%Y-%m-%d")
        p.flag(day.isna(), "DATE: not a date (expected YYYY-MM-DD)")
        source_unit = cells["element"].map(kept)
        si = pd.Series(np.nan, index=cells.index)
        for unit, (convert, _) in self.TO_SI.items():
            mask = (source_unit == unit).to_numpy()
            si[mask] = convert(value[mask])
        rows = pd.DataFrame({"_row": cells["_row"], "station_id": cells["STATION"].str.strip(), "latitude": latitude,
                             "longitude": longitude, "date": day.dt.date, "element": cells["element"], "value": si.round(6),
                             "unit": source_unit.map({u: si_unit for u, (_, si_unit) in self.TO_SI.items()}),
                             "source_value": value, "source_unit": source_unit})
        return _result(self.table, rows, p.reasons, cells.drop(columns=["source_row"]).assign(source_row=cells["source_row"]),
                       skip.reasons)


# -- area indices ------------------------------------------------------------------------------


def _index_year(source_name: str, pattern: str, what: str) -> int:
    """The index's year, from the file name as the publisher names it, else as declared."""
    found = re.search(pattern, Path(source_name).name, flags=re.IGNORECASE)
    if found:
        return int(next(g for g in found.groups() if g))
    declared = os.environ.get(AREA_YEAR_VARIABLE, "").strip()
    if declared.isdigit() and len(declared) == 4:
        return int(declared)
    raise ReaderError(f"the {what} year is not in the file name {Path(source_name).name!r} (as the publisher names it) and "
                      f"not declared: keep the download's name, or pass --area-year YYYY (${AREA_YEAR_VARIABLE})")


def census_geoid(text: pd.Series, digits: int) -> pd.Series:
    """A census GEOID with leading zeros restored (a spreadsheet round trip drops them: Alabama
    01 becomes 1), missing where it is not ``digits`` digits (or one fewer)."""
    clean = text.fillna("").str.strip().str.strip('"')
    padded = clean.where(clean.str.len() != digits - 1, "0" + clean)
    return padded.where(padded.str.fullmatch(rf"\d{{{digits}}}"), None)


class AreaIndexCellsReader(CsvTableReader):
    """An area index published one row per area, one column per variable: each filled cell of a
    kept column is one source record, into ``area_exposure`` (long). Missing and suppression codes
    are never stored as values: each is counted as ignored under its code and meaning."""

    area_type: ClassVar[str] = ""
    id_column: ClassVar[str] = "FIPS"
    digits: ClassVar[int] = 11
    year_pattern: ClassVar[str] = ""
    what: ClassVar[str] = ""
    table = AREA_TABLE

    def variables(self, columns: list[str]) -> dict[str, tuple[str, str]]:
        """Source column -> (variable name, unit) of the columns kept."""
        raise NotImplementedError

    def missing_codes(self, cells: pd.DataFrame) -> pd.Series:
        """The code a cell holds instead of a value, with its meaning (None where it holds a value)."""
        raise NotImplementedError

    def check(self, cells: pd.DataFrame, value: pd.Series, p: Problems) -> None:
        """Range checks of the kept values."""

    def level(self, frame: pd.DataFrame) -> tuple[str, int]:
        """The file's area type and the digits of its GEOIDs."""
        return self.area_type, self.digits

    def read(self, path: Path, context: Context) -> ReadResult:
        year = _index_year(context.source_name, self.year_pattern, self.what)
        frame = read_text_table(path)
        kept = self.variables([c for c in frame.columns if c != "_row"])
        if not kept:
            raise ReaderError(f"no {self.what} value columns found")
        cells = frame.rename(columns={"_row": "source_row"}).melt(
            id_vars=["source_row", self.id_column], value_vars=list(kept), var_name="column", value_name="cell")
        cells = cells.sort_values(["source_row", "column"], kind="stable", ignore_index=True)
        cells.insert(0, "_row", np.arange(1, len(cells) + 1))
        p = Problems(len(cells))
        area_type, digits = self.level(frame)
        area = census_geoid(cells[self.id_column], digits)
        p.flag(area.isna(), f"{self.id_column}: expected a {digits}-digit {area_type.replace('_', ' ')} GEOID")
        codes = self.missing_codes(cells)
        value = pd.to_numeric(cells["cell"], errors="coerce")
        p.flag(value.isna(), cells["column"] + ": " + cells["cell"].astype(str) + f" is neither a number nor a missing code of {self.what}")
        self.check(cells, value, p)
        rows = pd.DataFrame({"_row": cells["_row"], "area_type": area_type, "area_id": area,
                             "year": pd.array([year] * len(cells), dtype="Int64"),
                             "variable": cells["column"].map({c: v for c, (v, _) in kept.items()}),
                             "value": value, "unit": cells["column"].map({c: u for c, (_, u) in kept.items()})})
        return _result(self.table, rows, p.reasons, cells, codes)


class SviReader(AreaIndexCellsReader):
    """CDC/ATSDR Social Vulnerability Index, census-tract CSV (``SVI_2020_US.csv``,
    ``SVI2018_US.csv``; one row per tract, FIPS its 11-digit GEOID).

    Kept: the percentile rankings ``RPL_THEMES`` (overall) and ``RPL_THEME1..4`` (the four
    themes) as ``svi_rpl_*``, fractions 0-1 of the nation's tracts ranked at or below (unit
    "1"), and the estimated percentages ``EP_*`` as ``svi_ep_*`` (unit "%"). -999, SVI's code for
    a value that could not be computed (tracts without population), is counted as ignored under
    that code. The year is the release's, from the file's name (or ``--area-year``). The county
    database (``SVI2020_US_COUNTY.csv``, FIPS of 5 digits) is read alike, as area type county.
    """

    format = "cdc_svi_csv"
    order = 51
    description = "CDC/ATSDR Social Vulnerability Index tract CSV: FIPS, RPL_THEMES, RPL_THEME1..4, EP_* (-999 missing)"
    required = ("FIPS", "RPL_THEMES")
    remedy = "keep CDC's column names as downloaded (FIPS, RPL_THEMES, RPL_THEME1..4, EP_*)"
    area_type = "tract"
    digits = 11
    year_pattern = r"SVI[_ -]?(\d{4})"
    what = "SVI"
    MISSING = -999

    def level(self, frame):
        lengths = frame[self.id_column].dropna().str.strip().str.len()
        return ("county", 5) if len(lengths) and (lengths <= 5).all() else (self.area_type, self.digits)

    def variables(self, columns):
        kept = {c: (f"svi_{c.lower()}", "1") for c in columns if re.fullmatch(r"RPL_THEMES|RPL_THEME\d", c)}
        kept.update({c: (f"svi_{c.lower()}", "%") for c in columns if c.startswith("EP_")})
        return kept

    def missing_codes(self, cells):
        number = pd.to_numeric(cells["cell"], errors="coerce")
        return pd.Series(np.where(number == self.MISSING, "SVI -999 (a value that could not be computed)", None),
                         index=cells.index, dtype=object)

    def check(self, cells, value, p):
        rank = cells["column"].str.startswith("RPL_").to_numpy()
        p.flag(rank & ((value < 0) | (value > 1)).to_numpy(), cells["column"] + ": a percentile ranking outside 0-1")
        p.flag(~rank & ((value < 0) | (value > 100)).to_numpy(), cells["column"] + ": a percentage outside 0-100")


class AdiReader(AreaIndexCellsReader):
    """Area Deprivation Index of the Neighborhood Atlas, census block-group CSV
    (``US_2021_ADI_Census_Block_Group_v4_0_1.csv``; FIPS the 12-digit block-group GEOID).

    Kept: ``ADI_NATRANK``, the national percentile 1-100 (unit ``{percentile}``), and
    ``ADI_STATERNK``, the within-state decile 1-10 (unit ``{decile}``). The suppression codes
    the Atlas writes instead of a rank are counted as ignored under the code and its meaning: ``GQ`` (more than 33%
    of the population in group quarters), ``PH`` (population under 100 or fewer than 30 housing
    units), ``PH-GQ`` (both; ``GQ-PH`` read alike) and ``QDI`` (questionable data integrity), as the
    Atlas's FAQ lists them. The year is the ADI
    release's, from the file's name (or ``--area-year``).
    """

    format = "neighborhood_atlas_adi_csv"
    order = 52
    description = "Neighborhood Atlas Area Deprivation Index block-group CSV: FIPS, ADI_NATRANK, ADI_STATERNK (GQ, PH, QDI codes)"
    required = ("FIPS", "ADI_NATRANK", "ADI_STATERNK")
    remedy = "keep the Neighborhood Atlas's column names as downloaded (FIPS, ADI_NATRANK, ADI_STATERNK)"
    area_type = "block_group"
    digits = 12
    year_pattern = r"(?:^|_)(\d{4})_ADI|ADI_(?:\w+_)?(\d{4})"
    what = "ADI"
    CODES = {"GQ": "more than 33% of the population lives in group quarters",
             "PH": "population under 100 or fewer than 30 housing units",
             "PH-GQ": "low population or housing and group quarters",
             "GQ-PH": "group quarters and low population or housing",
             "QDI": "questionable data integrity"}

    def variables(self, columns):
        return {c: v for c, v in {"ADI_NATRANK": ("adi_national_rank", "{percentile}"),
                                  "ADI_STATERNK": ("adi_state_decile", "{decile}")}.items() if c in columns}

    def missing_codes(self, cells):
        code = cells["cell"].fillna("").str.strip().str.upper()
        meaning = code.map(self.CODES)
        return ("ADI " + code + " (" + meaning + ")").where(meaning.notna(), None)

    def check(self, cells, value, p):
        national = (cells["column"] == "ADI_NATRANK").to_numpy()
        whole = (value == value.round()).to_numpy()
        p.flag(national & ~(((value >= 1) & (value <= 100)).to_numpy() & whole), "ADI_NATRANK: expected a whole percentile 1-100")
        p.flag(~national & ~(((value >= 1) & (value <= 10)).to_numpy() & whole), "ADI_STATERNK: expected a whole decile 1-10")

