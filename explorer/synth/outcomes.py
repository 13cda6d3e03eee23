"""The incident outcome planted for time-to-event analyses: its hazard falls with recorded steps.

Follow-up starts after a baseline block of :data:`~explorer.synth.config.INCIDENT_BLOCK_DAYS` days
from the first day of wearable data. In each later block :math:`k` the daily hazard is

.. math:: h_k = \\frac{r}{365.25}\\, \\mathrm{HR}^{(\\bar s_{k-1} - 8000)/1000}

where :math:`r` is ``incident_rate_per_year``, HR is ``incident_hazard_ratio_per_1000_steps`` and
:math:`\\bar s_{k-1}` the mean recorded steps of the previous block's valid days (600 or more worn
minutes, the suite's valid-day rule); a person without a valid day in that block has no hazard
there. The event day is the first day an exponential clock rings. This is the model a Cox fit on
start/stop rows with the previous block's steps recovers (Master et al., Nat Med 2022, analysed
monthly steps the same way).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from explorer.synth.config import INCIDENT_BLOCK_DAYS, INCIDENT_CONDITION, SynthConfig

VALID_WORN_MINUTES = 600
REFERENCE_STEPS = 8000.0


def incident_outcomes(config: SynthConfig, daily: pd.DataFrame) -> pd.DataFrame:
    """Each person's blocks with their steps, hazard and event (``truth_incident.parquet``).

    Parameters
    ----------
    config : SynthConfig
    daily : pandas.DataFrame
        The daily truth of every person: ``source_id``, ``date``, ``worn_minutes``, ``recorded_steps``.

    Returns
    -------
    pandas.DataFrame
        One row per person and follow-up block: ``source_id``, ``block``, ``start_day`` and ``stop_day``
        (days from the first wearable day; the block is days ``start_day <= d < stop_day``, ending the
        day after the event if there is one), ``previous_steps`` (mean recorded steps a valid day,
        the block before), ``hazard_per_day``, ``event`` and ``event_date`` (the onset, on the block
        where it happened; follow-up ends there).
    """
    ratio = config.incident_hazard_ratio_per_1000_steps
    rows = []
    for source_id, person in daily.sort_values(["source_id", "date"]).groupby("source_id", sort=True):
        rng = np.random.default_rng([config.seed, 7, int(source_id)])
        steps = person["recorded_steps"].to_numpy(dtype=float)
        valid = person["worn_minutes"].to_numpy() >= VALID_WORN_MINUTES
        for block in range(1, (config.days - 1) // INCIDENT_BLOCK_DAYS + 1):
            start, stop = block * INCIDENT_BLOCK_DAYS, min((block + 1) * INCIDENT_BLOCK_DAYS, config.days)
            before = slice(start - INCIDENT_BLOCK_DAYS, start)
            previous = float(steps[before][valid[before]].mean()) if valid[before].any() else np.nan
            hazard = (config.incident_rate_per_year / 365.25 * ratio ** ((previous - REFERENCE_STEPS) / 1000)
                      if np.isfinite(previous) else 0.0)
            wait = rng.exponential(1 / hazard) if hazard > 0 else np.inf
            event = wait < stop - start
            event_day = start + int(np.floor(wait)) if event else None
            rows.append({"source_id": source_id, "block": block, "start_day": start,
                         "stop_day": event_day + 1 if event else stop, "previous_steps": previous,
                         "hazard_per_day": hazard, "event": bool(event),
                         "event_date": config.start + timedelta(days=event_day) if event else None})
            if event:
                break
    return pd.DataFrame(rows, columns=["source_id", "block", "start_day", "stop_day", "previous_steps", "hazard_per_day",
                                       "event", "event_date"])


def incident_conditions(blocks: pd.DataFrame) -> dict:
    """``{source_id: [(onset, system, code, display)]}`` for the FHIR bundles."""
    system, code, display = INCIDENT_CONDITION
    events = blocks[blocks["event"]]
    return {sid: [(onset, system, code, display)] for sid, onset in zip(events["source_id"], events["event_date"])}
