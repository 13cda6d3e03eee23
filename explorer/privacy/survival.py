"""Survival curves a ``public`` reader may see: a Kaplan-Meier curve is a table of small counts in
disguise (each step is one or a few events among the persons still at risk), so it is released as
steps of merged event times, each with counts clear of the disclosure profile's hidden range.

Rule, for each curve (a group) on its own, in time order:

1. consecutive event and censoring times are merged into one step until the step's events and its
   censored persons are both clear of the hidden range (for a rounding profile, the difference of
   the rounded cumulative counts is);
2. a step whose number at risk at its start would be hidden is merged into the step before;
3. the curve stops after the last step that leaves a clear number still at risk: the rest of
   follow-up is not shown (its count is that number, already clear);
4. the survival shown is computed from the released counts only,
   :math:`\\hat S_g = \\prod_{h \\le g}(1 - e_h / n_h)` (the actuarial product over the released steps),
   never the exact Kaplan-Meier at the step's end, whose value would tell how the events inside a
   step were spread over its times.

Counts of different groups are of different persons, so no count is the difference of two shown
ones; the curve of everyone together is not released beside them for that reason.

References
----------
OpenSAFELY. Kaplan-Meier curves: output checking guidance (rounded, redacted step counts). All of Us
Data and Statistics Dissemination Policy (no count of 1-20).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.privacy.disclosure import Profile, profile as get_profile


def released_survival(km: pd.DataFrame, rules: Profile | str, origin: float = 0.0) -> pd.DataFrame:
    """The public steps of Kaplan-Meier curves.

    Parameters
    ----------
    km : pandas.DataFrame
        ``time``, ``at_risk``, ``events``, ``censored`` (and ``group`` for several curves), one row per
        time, as :func:`explorer.analysis.survival.kaplan_meier` gives.
    rules : Profile or str
        The disclosure profile.
    origin : float, default 0
        Where follow-up starts: the first step's ``start``.

    Returns
    -------
    pandas.DataFrame
        Per group and released step: ``start`` (the previous step's end, ``origin`` for the first), ``time`` (the
        step's last time), ``at_risk`` (at its start), ``events``, ``censored`` and ``survival`` after
        it. A group whose whole follow-up cannot be shown has no rows.
    """
    rules = get_profile(rules)
    groups = km.groupby("group", sort=False) if "group" in km else [(None, km)]
    frames = []
    for name, part in groups:
        steps = _steps(part.sort_values("time"), rules, origin)
        if steps is not None and len(steps):
            if name is not None:
                steps.insert(0, "group", name)
            frames.append(steps)
    columns = (["group"] if "group" in km else []) + ["start", "time", "at_risk", "events", "censored", "survival"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _clear(rules: Profile, count: float) -> bool:
    return not rules.hides(count)


def _steps(part: pd.DataFrame, rules: Profile, origin: float) -> pd.DataFrame | None:
    total = rules.round(float(part.at_risk.iloc[0])) if len(part) else 0.0
    if not len(part) or not _clear(rules, total):
        return None
    times = part.time.to_numpy(dtype=float)
    events_so_far = rules_round(rules, np.cumsum(part.events.to_numpy(dtype=float)))
    censored_so_far = rules_round(rules, np.cumsum(part.censored.to_numpy(dtype=float)))

    def counts(before: int, end: int) -> tuple[float, float, float]:
        """At risk at the start, events and censored of the step after ``before`` up to ``end``."""
        done = events_so_far[before] + censored_so_far[before] if before >= 0 else 0.0
        events = events_so_far[end] - (events_so_far[before] if before >= 0 else 0.0)
        censored = censored_so_far[end] - (censored_so_far[before] if before >= 0 else 0.0)
        return total - done, events, censored

    # 1. close a step where its events and its censored are both clear (and something happened)
    ends = []
    for i in range(len(times)):
        _, events, censored = counts(ends[-1] if ends else -1, i)
        if events + censored > 0 and _clear(rules, events) and _clear(rules, censored):
            ends.append(i)
    # 2. a step starting with a hidden number at risk goes into the step before (sums of clear counts stay clear)
    kept: list[int] = []
    for end in ends:
        at_risk, _, _ = counts(kept[-1] if kept else -1, end)
        if kept and not _clear(rules, at_risk):
            kept[-1] = end
        else:
            kept.append(end)
    # 3. the curve ends where the persons still at risk after it are a clear count; what follows is not shown
    # (rounded counts can overshoot the rounded total: nobody is left then)
    while kept and not _clear(rules, max(total - events_so_far[kept[-1]] - censored_so_far[kept[-1]], 0.0)):
        kept.pop()
    if not kept:
        return None
    rows, survival, previous = [], 1.0, -1
    for end in kept:
        at_risk, events, censored = counts(previous, end)
        survival *= max(1 - events / at_risk, 0.0) if at_risk > 0 else 0.0
        rows.append((times[previous] if previous >= 0 else origin, times[end], at_risk, events, censored, survival))
        previous = end
    return pd.DataFrame(rows, columns=["start", "time", "at_risk", "events", "censored", "survival"])


def rules_round(rules: Profile, values: np.ndarray) -> np.ndarray:
    """Cumulative counts rounded as the profile rounds shown counts (unchanged without rounding)."""
    return np.array([rules.round(v) for v in values], dtype=float)
