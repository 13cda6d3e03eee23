"""Settings of a synthetic cohort, and the effects it plants (the truth analyses must recover)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np

#: days of the incident outcome's blocks: steps are averaged over a block, the hazard of the next one follows them
INCIDENT_BLOCK_DAYS = 30
#: the incident outcome the synth plants (ICD-10-CM): a symptom that low activity plausibly precedes
INCIDENT_CONDITION = ("http://hl7.org/fhir/sid/icd-10-cm", "R06.00", "Dyspnea, unspecified")


@dataclass(frozen=True)
class Region:
    """Bounding box of the cohort's homes and of the environmental grids (degrees)."""

    lat_min: float = 31.0
    lat_max: float = 41.0
    lon_min: float = -114.0
    lon_max: float = -96.0
    grid_step: float = 0.5


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the output; same config, same bytes.

    Effects (``heat_effect_bpm_per_k``, ``age_effect_bpm_per_year``, marker slopes and the
    ageotype groups) are the planted truth written to ``truth/``.
    """

    participants: int = 100
    days: int = 30
    seed: int = 0
    start: date = date(2024, 8, 15)
    json_fraction: float = 0.05  # share of people whose wearable data arrives as Fitbit personal exports
    apple_health_fraction: float = 0.0  # share of the All of Us CSV people delivered as Apple Health export.xml instead
    garmin_fit_fraction: float = 0.0  # share of the (other) CSV people delivered as Garmin FIT monitoring files instead
    lab_csv_fraction: float = 0.3  # share of people with extra visits at an outside lab (CSV)
    lab_years: int = 10  # years of yearly lab visits before the wearable window
    artefact_rate: float = 0.001  # share of worn heart-rate minutes turned into device artefacts
    faults: bool = False
    shard_size: int = 25  # participants per part file of the All of Us-style tables
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    heat_effect_bpm_per_k: float = 0.35  # resting heart rate change per K of temperature anomaly
    age_effect_bpm_per_year: float = 0.08  # resting heart rate change per year of age
    # The analyses' planted effects (issue 25); off by default so earlier cohorts keep their bytes.
    heat_lag_effects_bpm_per_k: tuple = ()  # further resting heart rate change per K of the anomaly 1, 2, ... days before
    incident_hazard_ratio_per_1000_steps: float | None = None  # an incident condition whose hazard falls with steps
    incident_rate_per_year: float = 4.0  # its hazard at 8,000 recorded steps a day (per person-year)
    region: Region = field(default_factory=Region)

    def __post_init__(self):
        problems = []
        if self.participants < 1:
            problems.append(f"participants: got {self.participants}, expected at least 1")
        if self.days < 1:
            problems.append(f"days: got {self.days}, expected at least 1")
        for name in ("json_fraction", "lab_csv_fraction", "artefact_rate", "apple_health_fraction", "garmin_fit_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                problems.append(f"{name}: got {value}, expected a fraction between 0 and 1")
        if any(not np.isfinite(v) for v in self.heat_lag_effects_bpm_per_k):
            problems.append(f"heat_lag_effects_bpm_per_k: got {self.heat_lag_effects_bpm_per_k}, expected finite numbers")
        if self.incident_hazard_ratio_per_1000_steps is not None and not self.incident_hazard_ratio_per_1000_steps > 0:
            problems.append(f"incident_hazard_ratio_per_1000_steps: got {self.incident_hazard_ratio_per_1000_steps}, expected > 0")
        if self.incident_hazard_ratio_per_1000_steps is not None and self.days < 2 * INCIDENT_BLOCK_DAYS:
            problems.append(f"incident outcome: {self.days} days; expected at least {2 * INCIDENT_BLOCK_DAYS} "
                            f"(a {INCIDENT_BLOCK_DAYS}-day baseline, then follow-up)")
        if self.incident_rate_per_year <= 0:
            problems.append(f"incident_rate_per_year: got {self.incident_rate_per_year}, expected > 0")
        if self.shard_size < 1 or self.workers < 1:
            problems.append("shard_size and workers must be at least 1")
        if problems:
            raise ValueError("invalid synthetic cohort settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["heat_lag_effects_bpm_per_k"] = list(self.heat_lag_effects_bpm_per_k)
        out.pop("workers")  # how fast, not what: it never changes the output
        return out
