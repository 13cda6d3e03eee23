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
#: ageotype group whose marker it is (None: no group), scale ("log" for CRP). The ageotype
#: slopes are steep on purpose: a fast ager's marker must climb well clear of the spread of
#: personal slopes (SLOPE_SPREAD) for the ageotype to be recoverable from ten yearly visits.
MARKERS = (
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/L", 43.0, 2.5, 1.2, -0.08, "hepatic", -1.4, "linear"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "umol/L", 80.0, 12.0, 5.0, 0.6, "nephrotic", 9.7, "linear"),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mmol/L", 5.3, 0.5, 0.35, 0.02, "metabolic", 0.5, "linear"),
    ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 2.0, 0.7, 0.45, 0.01, "immune", 0.29, "log"),
    ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", "%", 30.0, 6.0, 3.0, -0.1, "immune", -1.2, "linear"),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 90.0, 4.0, 1.5, 0.05, None, None, "linear"),
    ("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%", 13.2, 0.8, 0.3, 0.03, None, None, "linear"),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 70.0, 15.0, 6.0, 0.4, "hepatic", 8.1, "linear"),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 6.5, 1.3, 0.7, 0.0, "immune", 0.42, "linear"),
)
MARKER_COLUMNS = ("loinc", "name", "unit", "mean", "sd", "within_sd", "slope", "group", "group_slope", "scale")

#: SD of the personal slopes around their ageotype's slope, as a fraction of the marker's
#: within-person SD per year. Ten yearly visits (about nine kept) estimate a slope with an SD
#: of about within_sd / 8.5, so 0.3 within_sd makes the planted slopes recoverable (reliability
#: about 0.87) and stays in the range of published personal slope SDs (creatinine 1.5 umol/L,
#: albumin 0.4 g/L a year), while the ageotype slopes stand 3 to 4 spreads clear of it. A
#: marker outside every pathway has no ageotype contrast to blur, so its spread is wider.
SLOPE_SPREAD = 0.3
SLOPE_SPREAD_OUTSIDE_PATHWAYS = 0.5

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
    zip3 = np.char.zfill((800 + ((i // 10) * 19 + j // 10) % 200).astype(str), 3)  # 800-999: three digits
    county = np.char.zfill((1 + 2 * ((i // 5) * 37 + j // 5) % 999).astype(str), 3)
    tract = np.char.zfill((100 + (i % 5) * 5 + j % 5).astype(str), 4)
    state = np.array([STATE_FIPS[z] for z in zones])
    return zip3, np.char.add(np.char.add(np.char.add(state, county), tract), "00")


@dataclass
class Cohort:
    persons: pd.DataFrame  # one row per person, planted parameters included
    residences: pd.DataFrame  # person, start_date, end_date, latitude, longitude, zip3, tract_geoid, time_zone
    markers: pd.DataFrame  # person x marker: level at the reference age, slope per year, planted


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
    wearable_source = np.array(["fitbit_export"] * n_json + ["aou_csv"] * (n - n_json), dtype="<U16")
    rng.shuffle(wearable_source)
    # how an exporting person's files are laid out: every third (from the second, so that two
    # exporters show both) as Google Takeout writes them, the rest as Fitbit's account export
    export_layout = np.where(wearable_source == "fitbit_export", "account", "")
    export_layout[np.flatnonzero(wearable_source == "fitbit_export")[1::3]] = "takeout"
    if config.apple_health_fraction > 0:  # its own random stream: the rest of the cohort is as without it
        csv_people = np.flatnonzero(wearable_source == "aou_csv")
        chosen = np.random.default_rng([config.seed, 11]).permutation(csv_people)
        wearable_source[chosen[:int(round(config.apple_health_fraction * len(csv_people)))]] = "apple_health"
    if config.garmin_fit_fraction > 0:  # of the people still on CSV, by its own stream too
        csv_people = np.flatnonzero(wearable_source == "aou_csv")
        chosen = np.random.default_rng([config.seed, 13]).permutation(csv_people)
        wearable_source[chosen[:int(round(config.garmin_fit_fraction * len(csv_people)))]] = "garmin_fit"
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
        "export_layout": export_layout,
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
    return Cohort(persons, residences, _marker_parameters(persons, config, rng))


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


def _marker_parameters(persons: pd.DataFrame, config: SynthConfig, rng) -> pd.DataFrame:
    """Each person's planted trajectory of each marker: ``level_at_reference`` at
    ``reference_age`` (their age when the lab history starts), drawn around the population's
    cross-sectional curve (mean at 50 plus the typical slope times the distance from 50), then
    ``slope_per_year`` from there on. Anchoring the personal slope at the start of the history
    keeps a fast ager's levels plausible: the slope acts over the years observed, not over
    decades extrapolated back to age 50."""
    history_start = pd.Timestamp(config.start) - pd.DateOffset(years=config.lab_years)
    rows = []
    for pid, group, birth in zip(persons["source_id"], persons["ageotype"], persons["birth_date"]):
        reference_age = (history_start - pd.Timestamp(birth)).days / 365.25
        for loinc, name, unit, mean, sd, within, slope, marker_group, group_slope, scale in MARKERS:
            planted = group_slope if marker_group == group else slope
            spread = SLOPE_SPREAD if marker_group else SLOPE_SPREAD_OUTSIDE_PATHWAYS
            centre = (np.log(mean) if scale == "log" else mean) + slope * (reference_age - 50)
            rows.append({"source_id": pid, "loinc_code": loinc, "unit_si": unit, "scale": scale,
                         "reference_age": reference_age, "level_at_reference": float(rng.normal(centre, sd)),
                         "slope_per_year": float(planted + rng.normal(0.0, spread * within)),
                         "fast_group": marker_group == group, "within_sd": within})
    return pd.DataFrame(rows)


def residence_on(residences: pd.DataFrame, source_id: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    """The residence row in force on each of ``days`` for one person."""
    own = residences[residences["source_id"] == source_id].sort_values("start_date")
    starts = pd.to_datetime(own["start_date"]).to_numpy()
    index = np.searchsorted(starts, days.to_numpy(), side="right") - 1
    return own.iloc[np.clip(index, 0, len(own) - 1)].reset_index(drop=True)
