"""Seeded factories of tiny, plausible tables in the lake's unified shapes.

They are for tests and examples: same arguments, same rows. The realistic generator with
planted truth and raw source formats is ``explorer synth``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def person_ids(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pseudonym-like identifiers (16 hex characters)."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        candidate = rng.bytes(8).hex()
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def make_persons(n: int = 10, seed: int = 0) -> pd.DataFrame:
    """A ``person`` table: ids, year of birth 1940-1990, sex, zip3."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person_id": person_ids(n, seed),
        "year_of_birth": rng.integers(1940, 1991, n).astype("int32"),
        "sex_at_birth": rng.choice(["female", "male"], n),  # the catalog vocabulary (person.yaml)
        "race": rng.choice(["White", "Black or African American", "Asian", "Other"], n),
        "ethnicity": rng.choice(["Hispanic or Latino", "Not Hispanic or Latino"], n, p=[0.2, 0.8]),
        "zip3": rng.choice(["021", "100", "606", "850"], n),
    })


def _minutes(n_persons: int, days: int, seed: int, start: str):
    ids = person_ids(n_persons, seed)
    minutes = pd.date_range(start, periods=days * 1440, freq="min")
    person = np.repeat(np.asarray(ids, dtype=object), len(minutes))
    when = np.tile(minutes.values, n_persons)
    hour = np.tile(minutes.hour.values, n_persons)
    return person, when, hour


def make_steps_minutes(n_persons: int = 3, days: int = 2, seed: int = 0, start: str = "2024-06-01") -> pd.DataFrame:
    """``steps_minute`` rows: zero at night, Poisson bursts by day."""
    rng = np.random.default_rng(seed + 1)
    person, when, hour = _minutes(n_persons, days, seed, start)
    awake = (hour >= 7) & (hour < 22)
    steps = np.where(awake, rng.poisson(12, len(when)) * (rng.random(len(when)) < 0.4), 0)
    return pd.DataFrame({"person_id": person, "datetime": when, "steps": steps.astype("int32")})


def make_heart_rate_minutes(n_persons: int = 3, days: int = 2, seed: int = 0, start: str = "2024-06-01") -> pd.DataFrame:
    """``heart_rate_minute`` rows: a daily rhythm around a per-person resting rate."""
    rng = np.random.default_rng(seed + 2)
    person, when, hour = _minutes(n_persons, days, seed, start)
    resting = np.repeat(rng.normal(62, 6, n_persons), days * 1440)
    rhythm = 8 * np.sin((hour - 9) / 24 * 2 * np.pi)
    value = np.clip(np.round(resting + rhythm + rng.normal(0, 4, len(when))), 35, 200).astype("int32")
    return pd.DataFrame({"person_id": person, "datetime": when, "heart_rate_value": value})


#: LOINC code, name, SI unit, mean, sd of the markers the factory draws.
MARKERS = [
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/L", 42.0, 3.0),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "umol/L", 80.0, 15.0),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mmol/L", 5.4, 0.8),
]


def make_measurements(n_persons: int = 10, visits: int = 3, seed: int = 0) -> pd.DataFrame:
    """``measurement`` rows: yearly visits, three markers, values in SI units."""
    rng = np.random.default_rng(seed + 3)
    rows = []
    for pid in person_ids(n_persons, seed):
        first = pd.Timestamp("2018-01-01") + pd.Timedelta(days=int(rng.integers(0, 365)))
        for visit in range(visits):
            when = first + pd.Timedelta(days=365 * visit + int(rng.integers(0, 30)), hours=int(rng.integers(7, 11)))
            for code, name, unit, mean, sd in MARKERS:
                value = round(float(rng.normal(mean, sd)), 2)
                rows.append({"person_id": pid, "measurement_datetime": when, "loinc_code": code,
                             "measurement_name": name, "value_as_number": value, "unit": unit,
                             "value_si": value, "unit_si": unit})
    return pd.DataFrame(rows)
