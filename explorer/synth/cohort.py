"""People: demographics, homes and moves, time zones, and their planted parameters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from explorer.synth.config import SynthConfig

AGEOTYPES = ("metabolic", "immune", "hepatic", "nephrotic")

#: The nine PhenoAge markers (Levine 2018): LOINC, name, SI unit, population mean and SD at
#: age 50, within-person SD between visits, typical slope per year, slope per year in the
#: ageotype group whose marker it is (None: no group), scale ("log" for CRP).
MARKERS = (
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/L", 43.0, 2.5, 1.2, -0.08, "hepatic", -0.45, "linear"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "umol/L", 80.0, 12.0, 5.0, 0.6, "nephrotic", 3.2, "linear"),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mmol/L", 5.3, 0.5, 0.35, 0.02, "metabolic", 0.16, "linear"),
    ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 2.0, 0.7, 0.45, 0.01, "immune", 0.09, "log"),
    ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", "%", 30.0, 6.0, 3.0, -0.1, "immune", -0.6, "linear"),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 90.0, 4.0, 1.5, 0.05, None, None, "linear"),
    ("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%", 13.2, 0.8, 0.3, 0.03, None, None, "linear"),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 70.0, 15.0, 6.0, 0.4, "hepatic", 2.6, "linear"),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 6.5, 1.3, 0.7, 0.0, "immune", 0.12, "linear"),
)
MARKER_COLUMNS = ("loinc", "name", "unit", "mean", "sd", "within_sd", "slope", "group", "group_slope", "scale")

TIME_ZONES = ("America/Phoenix", "America/Denver", "America/Chicago")
STATE_FIPS = {"America/Phoenix": "04", "America/Denver": "08", "America/Chicago": "48"}


def time_zone_at(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Simplified US zones over the region: Arizona (no daylight saving), Mountain, Central."""
    lat, lon = np.asarray(lat), np.asarray(lon)
    return np.where((lon < -109.05) & (lat < 37.0), TIME_ZONES[0], np.where(lon < -103.0, TIME_ZONES[1], TIME_ZONES[2]))


def place_codes(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZIP3 and 11-digit census tract GEOID of a point: stable functions of a 0.1-degree cell."""
    lat, lon = np.asarray(lat), np.asarray(lon)
    zones = time_zone_at(lat, lon)
    i = np.floor((lat - 30.0) / 0.1).astype(int)
    j = np.floor((lon + 115.0) / 0.1).astype(int)
    zip3 = np.char.zfill((800 + (i // 10) * 19 + j // 10).astype(str), 3)
    county = np.char.zfill((1 + 2 * ((i // 5) * 37 + j // 5) % 999).astype(str), 3)
    tract = np.char.zfill((100 + (i % 5) * 5 + j % 5).astype(str), 4)
    state = np.array([STATE_FIPS[z] for z in zones])
    return zip3, np.char.add(np.char.add(np.char.add(state, county), tract), "00")


@dataclass
class Cohort:
    persons: pd.DataFrame  # one row per person, planted parameters included
    residences: pd.DataFrame  # person, start_date, end_date, latitude, longitude, zip3, tract_geoid, time_zone
    markers: pd.DataFrame  # person x marker: intercept (at age 50), slope per year, planted


def make_cohort(config: SynthConfig) -> Cohort:
    rng = np.random.default_rng([config.seed, 1])
    n = config.participants
    region = config.region
    source_id = np.array([str(1_000_001 + i) for i in range(n)])
    year_of_birth = rng.integers(1945, 1996, n)
    age_at_start = config.start.year - year_of_birth
    ageotype = np.array(AGEOTYPES)[rng.integers(0, len(AGEOTYPES), n)]
    n_json = int(round(config.json_fraction * n))
    if config.json_fraction > 0 and n >= 2:
        n_json = max(n_json, 1)  # even a small cohort exercises both wearable routes
    wearable_source = np.array(["fitbit_export"] * n_json + ["aou_csv"] * (n - n_json))
    rng.shuffle(wearable_source)
    base_resting = rng.normal(60.0, 5.5, n)
    resting_at_start = base_resting + config.age_effect_bpm_per_year * (age_at_start - 50)
    persons = pd.DataFrame({
        "source_id": source_id,
        "year_of_birth": year_of_birth,
        "birth_date": [date(int(y), int(m), int(d)) for y, m, d in
                       zip(year_of_birth, rng.integers(1, 13, n), rng.integers(1, 29, n))],
        "sex_at_birth": rng.choice(["female", "male"], n),
        "race": rng.choice(["White", "Black or African American", "Asian", "American Indian or Alaska Native", "Other"],
                           n, p=[0.55, 0.15, 0.1, 0.05, 0.15]),
        "ethnicity": rng.choice(["Hispanic or Latino", "Not Hispanic or Latino"], n, p=[0.3, 0.7]),
        "ageotype": ageotype,
        "wearable_source": wearable_source,
        "has_lab_csv": rng.random(n) < config.lab_csv_fraction,
        "resting_hr_base": base_resting,
        "resting_hr_at_start": resting_at_start,
        "activity_level": rng.lognormal(0.0, 0.35, n),
        "bedtime_hour": rng.normal(23.0, 0.7, n),
        "sleep_hours": np.clip(rng.normal(7.3, 0.6, n), 5.5, 9.0),
        "wear_compliance": np.clip(rng.beta(8, 1.5, n), 0.5, 1.0),
    })
    residences = _residences(config, persons, rng)
    persons = persons.merge(residences.groupby("source_id").size().rename("n_residences"), on="source_id")
    return Cohort(persons, residences, _marker_parameters(persons, rng))


def _residences(config: SynthConfig, persons: pd.DataFrame, rng) -> pd.DataFrame:
    region = config.region
    history_start = date(config.start.year - config.lab_years - 2, 1, 1)
    window_end = config.start + timedelta(days=config.days - 1)
    rows = []
    for pid in persons["source_id"]:
        moves = [history_start]
        if rng.random() < 0.35:  # moved once in past years
            moves.append(history_start + timedelta(days=int(rng.integers(365, (config.start - history_start).days - 30))))
        if rng.random() < 0.2 and config.days > 10:  # moves during the wearable window
            moves.append(config.start + timedelta(days=int(rng.integers(3, config.days - 3))))
        moves = sorted(set(moves))
        for k, first in enumerate(moves):
            last = moves[k + 1] - timedelta(days=1) if k + 1 < len(moves) else None
            lat = rng.uniform(region.lat_min + 0.3, region.lat_max - 0.3)
            lon = rng.uniform(region.lon_min + 0.3, region.lon_max - 0.3)
            rows.append((pid, first, last, round(lat, 5), round(lon, 5)))
    frame = pd.DataFrame(rows, columns=["source_id", "start_date", "end_date", "latitude", "longitude"])
    frame["zip3"], frame["tract_geoid"] = place_codes(frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
    frame["time_zone"] = time_zone_at(frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
    return frame


def _marker_parameters(persons: pd.DataFrame, rng) -> pd.DataFrame:
    rows = []
    for pid, group in zip(persons["source_id"], persons["ageotype"]):
        for loinc, name, unit, mean, sd, within, slope, marker_group, group_slope, scale in MARKERS:
            planted = group_slope if marker_group == group else slope
            spread = abs(slope) * 0.25 + abs(mean) * (0.01 if scale == "linear" else 0.02) * 0.1
            centre = np.log(mean) if scale == "log" else mean
            rows.append({"source_id": pid, "loinc_code": loinc, "unit_si": unit, "scale": scale,
                         "intercept_at_50": float(rng.normal(centre, sd)),
                         "slope_per_year": float(planted + rng.normal(0.0, spread)),
                         "fast_group": marker_group == group, "within_sd": within})
    return pd.DataFrame(rows)


def residence_on(residences: pd.DataFrame, source_id: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    """The residence row in force on each of ``days`` for one person."""
    own = residences[residences["source_id"] == source_id].sort_values("start_date")
    starts = pd.to_datetime(own["start_date"]).to_numpy()
    index = np.searchsorted(starts, days.to_numpy(), side="right") - 1
    return own.iloc[np.clip(index, 0, len(own) - 1)].reset_index(drop=True)
