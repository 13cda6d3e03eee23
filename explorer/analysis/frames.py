"""Study frames from the lake: the start/stop rows of a time-to-event analysis and the person-days of a
distributed-lag model, built by stated rules from versions that are recorded, so a frame can be
rebuilt exactly (``versions=frame.versions``).

Rules of :func:`time_to_event_frame` (the design of Master et al., Nat Med 2022, on monthly steps):

1. **Time zero** is each person's first day of wearable data (on or after the cohort's index date
   when a saved cohort is given).
2. **Baseline:** the first ``interval_days`` days measure the exposure only; follow-up starts after
   them, so no one is counted at risk before their exposure is known (no immortal time).
3. **Washout:** a person whose outcome happened on or before the start of follow-up is left out
   (a prevalent case), and counted.
4. **Intervals** of ``interval_days`` follow, each with the mean daily steps (and the valid days)
   of the interval before it; exposure always precedes the time it is used for, so an event
   cannot change its own exposure.
5. **Censoring** at the end of data: the day after the person's last valid wear day. An interval
   whose previous interval has no valid day carries no exposure and is left out of the risk set
   (counted); the person comes back when their wear does.
6. The **event** is the first outcome after follow-up starts; the person leaves the risk set then.

Times are days since time zero; an interval covers days ``start <= d < stop`` (the Cox model's
``(start, stop]`` on the scale of "days completed"), and an event on day ``d`` ends its interval
at ``stop = d + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError
from explorer.lake import Lake


#: wearable_daily columns an outcome or a person-day frame may name
WEARABLE_COLUMNS = ("resting_hr", "mean_hr", "steps", "sleep_minutes", "sleep_efficiency", "sleep_hr", "wear_minutes")
#: exposure_daily columns a frame may take (``heat_wave`` is a flag: its days are counted)
EXPOSURE_COLUMNS = ("tasmax", "tasmin", "pm25", "tas_anomaly", "heat_wave")


@dataclass(frozen=True)
class ConditionOutcome:
    """An outcome that is the first diagnosis of any of ``codes`` in ``condition_occurrence``."""

    codes: tuple
    code_system: str | None = None
    name: str = "condition"
    table = "condition_occurrence"

    def first_dates(self, lake: Lake, versions: dict) -> pd.DataFrame:
        codes = list(self.codes)
        if not codes:
            raise ExplorerError("condition outcome: no codes given; name at least one (e.g. ICD-10-CM 'I10')")
        system = "AND code_system = ?" if self.code_system else ""
        params = [codes] + ([self.code_system] if self.code_system else [])
        return lake.sql(f"SELECT person_id, min(condition_start_date) AS outcome_date FROM condition_occurrence "
                        f"WHERE list_contains(?, code) {system} GROUP BY person_id", params, versions=versions)


@dataclass(frozen=True)
class LabOutcome:
    """An outcome that is the first result of ``loinc`` at or above ``above`` (or at or below
    ``below``), in the marker's SI unit (``measurement.value_si``)."""

    loinc: str
    above: float | None = None
    below: float | None = None
    name: str = "lab"
    table = "measurement"

    def first_dates(self, lake: Lake, versions: dict) -> pd.DataFrame:
        if (self.above is None) == (self.below is None):
            raise ExplorerError(f"lab outcome {self.loinc}: give exactly one of above= or below= (in the SI unit)")
        test = "value_si >= ?" if self.above is not None else "value_si <= ?"
        return lake.sql(f"SELECT person_id, min(CAST(measurement_datetime AS DATE)) AS outcome_date FROM measurement "
                        f"WHERE loinc_code = ? AND {test} GROUP BY person_id",
                        [self.loinc, self.above if self.above is not None else self.below], versions=versions)


@dataclass(frozen=True)
class WearableOutcome:
    """An outcome that is the first valid day whose ``column`` of ``wearable_daily`` is at or above
    ``above`` (or at or below ``below``), e.g. resting heart rate of 100 /min or more."""

    column: str
    above: float | None = None
    below: float | None = None
    name: str = "wearable"
    table = "wearable_daily"

    def first_dates(self, lake: Lake, versions: dict) -> pd.DataFrame:
        if self.column not in WEARABLE_COLUMNS:
            raise ExplorerError(f"wearable outcome: column {self.column!r}; expected one of {sorted(WEARABLE_COLUMNS)}")
        if (self.above is None) == (self.below is None):
            raise ExplorerError(f"wearable outcome {self.column}: give exactly one of above= or below=")
        test = f"{self.column} >= ?" if self.above is not None else f"{self.column} <= ?"
        return lake.sql(f"SELECT person_id, min(date) AS outcome_date FROM wearable_daily WHERE valid_day AND {test} "
                        "GROUP BY person_id", [self.above if self.above is not None else self.below], versions=versions)


@dataclass
class StudyFrame:
    """A study frame with how it was made.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows (start/stop intervals or person-days).
    attrition : pandas.DataFrame
        ``step`` and ``persons`` remaining after it, in order.
    rules : list of str
        The rules applied, in words.
    versions : dict
        ``{table: version}`` read; pass as ``versions=`` to rebuild the same frame.
    """

    frame: pd.DataFrame
    attrition: pd.DataFrame
    rules: list
    versions: dict = field(default_factory=dict)

    def persons(self) -> pd.DataFrame:
        """One row per person of a time-to-event frame, indexed by ``person_id``: ``entry`` (start of
        their first interval), ``stop`` (end of their last), ``event``, ``baseline_steps`` (the steps
        their first interval carries), ``age`` and ``sex_at_birth``; for Kaplan-Meier and Table 1."""
        rows = self.frame.sort_values(["person_id", "start"])
        by_person = rows.groupby("person_id", sort=True)
        return pd.DataFrame({"entry": by_person.start.first(), "stop": by_person.stop.last(), "event": by_person.event.max(),
                             "baseline_steps": by_person.steps_previous.first(), "age": by_person.age.first(),
                             "sex_at_birth": by_person.sex_at_birth.first()})

    def __str__(self) -> str:
        steps = "; ".join(f"{row.step}: {row.persons:,}" for row in self.attrition.itertuples())
        pinned = ", ".join(f"{k}@{v}" for k, v in sorted(self.versions.items()))
        return f"{len(self.frame):,} rows. {steps}. Read {pinned}."


def _pin(lake: Lake, tables, versions) -> dict:
    versions = dict(versions or {})
    missing = [t for t in tables if not lake.has_table(t)]
    if missing:
        raise ExplorerError(f"study frame: table(s) {missing} are not in this lake; "
                            "`explorer refresh` writes wearable_daily and exposure_daily, `explorer ingest` the rest")
    return {t: int(versions.get(t, lake.version(t))) for t in tables}


def _population(lake: Lake, cohort, cohort_version, versions) -> tuple[pd.DataFrame | None, dict]:
    if cohort is None:
        return None, {}
    from explorer.cohorts import members_of

    members = members_of(lake, cohort, cohort_version)
    return members, {"cohort_member": int(members.attrs["version"])}


def time_to_event_frame(lake: Lake, outcome, *, cohort: str | None = None, cohort_version: int | None = None,
                        interval_days: int = 30, exposures=(), markers=(), versions: dict | None = None) -> StudyFrame:
    """Start/stop rows of a time-to-event study with steps as a time-varying exposure.

    Parameters
    ----------
    lake : explorer.lake.Lake
    outcome : ConditionOutcome, LabOutcome or WearableOutcome
    cohort : str, optional
        A saved cohort: only its members, from their index date.
    cohort_version : int, optional
        The ``cohort_member`` version (default: latest).
    interval_days : int, default 30
        Length of the baseline and of each interval (days).
    exposures : sequence of str
        ``exposure_daily`` columns (``tasmax``, ``tasmin``, ``pm25``, ``tas_anomaly``: their mean;
        ``heat_wave``: its days) over the previous interval, as time-varying covariates
        ``<column>_previous``.
    markers : sequence of str
        LOINC codes: each interval gets the person's latest result (SI unit) on or before its start,
        ``marker_<loinc>`` (missing before the first result).
    versions : dict, optional
        ``{table: version}`` to rebuild an earlier frame.

    Returns
    -------
    StudyFrame
        ``frame`` has ``person_id``, ``start``, ``stop`` (days since time zero), ``event``,
        ``steps_previous`` (mean daily steps on the previous interval's valid days),
        ``steps_previous_1000`` (the same in thousands), ``valid_days_previous``, ``age`` (years at
        time zero), ``sex_at_birth``, ``time_zero`` (the date), and the exposures and markers
        asked for. The module notes state the rules.
    """
    unknown = [c for c in exposures if c not in EXPOSURE_COLUMNS]
    if unknown:
        raise ExplorerError(f"time-to-event frame: exposure(s) {unknown}; expected exposure_daily columns "
                            f"{sorted(EXPOSURE_COLUMNS)}")
    if not isinstance(outcome, (ConditionOutcome, LabOutcome, WearableOutcome)):
        raise ExplorerError(f"outcome {outcome!r}: expected ConditionOutcome, LabOutcome or WearableOutcome")
    if interval_days < 1:
        raise ExplorerError(f"time-to-event frame: interval_days={interval_days}; expected at least 1")
    tables = ["wearable_daily", "person", outcome.table]
    tables += ["exposure_daily"] * bool(exposures) + ["measurement"] * bool(markers)
    pinned = _pin(lake, list(dict.fromkeys(tables)), versions)
    members, member_version = _population(lake, cohort, cohort_version, versions)
    pinned.update(member_version)
    daily = lake.sql("SELECT person_id, date, steps, valid_day FROM wearable_daily ORDER BY person_id, date",
                     versions=pinned)
    daily["date"] = pd.to_datetime(daily["date"])
    attrition = [("persons with wearable data", int(daily.person_id.nunique()))]
    if members is not None:
        index = members.assign(index_date=pd.to_datetime(members["index_date"])).set_index("person_id")["index_date"]
        daily = daily[daily.person_id.isin(index.index)]
        daily = daily[daily.date >= daily.person_id.map(index).fillna(pd.Timestamp.min)]
        attrition.append((f"in cohort {cohort!r} with wearable data from its index date", int(daily.person_id.nunique())))
    first = daily.groupby("person_id").date.min().rename("time_zero")
    last_valid = daily[daily.valid_day].groupby("person_id").date.max()
    outcome_dates = outcome.first_dates(lake, pinned)
    outcome_dates["outcome_date"] = pd.to_datetime(outcome_dates["outcome_date"])
    persons = lake.sql("SELECT person_id, year_of_birth, sex_at_birth FROM person", versions=pinned).set_index("person_id")

    people = pd.DataFrame({"time_zero": first}).join(last_valid.rename("last_valid"))
    people["end"] = ((people.last_valid - people.time_zero).dt.days + 1).fillna(0).astype(int)
    people = people.join(outcome_dates.set_index("person_id"))
    people = people[people.end > interval_days]
    attrition.append((f"more than {interval_days} days from time zero to the last valid day", len(people)))
    people["event_day"] = (people.outcome_date - people.time_zero).dt.days
    prevalent = people.event_day.notna() & (people.event_day < interval_days)
    people = people[~prevalent]
    attrition.append(("without the outcome before follow-up (washout)", len(people)))

    day = (daily.date - daily.person_id.map(people.time_zero)).dt.days
    daily = daily.assign(day=day)[daily.person_id.isin(people.index)]
    daily = daily.assign(block=daily.day // interval_days)
    valid = daily[daily.valid_day]
    by_block = valid.groupby(["person_id", "block"]).agg(steps_previous=("steps", "mean"), valid_days_previous=("steps", "size"))
    rows = []
    for person_id, person in people.iterrows():
        n_blocks = int(np.ceil(person.end / interval_days))
        event_day = person.event_day
        for block in range(1, n_blocks):
            start = block * interval_days
            stop = min(start + interval_days, int(person.end))
            event = bool(pd.notna(event_day) and start <= event_day < stop)
            if event:
                stop = int(event_day) + 1
            if start >= stop:
                break
            rows.append((person_id, start, stop, event, block - 1))
            if event or (pd.notna(event_day) and event_day < start):
                break
    frame = pd.DataFrame(rows, columns=["person_id", "start", "stop", "event", "previous_block"])
    frame = frame.join(by_block, on=["person_id", "previous_block"])
    without = frame.steps_previous.isna()
    attrition.append(("in follow-up (an interval with steps the interval before)", int(frame[~without].person_id.nunique())))
    frame = frame[~without].drop(columns="previous_block").reset_index(drop=True)
    frame["valid_days_previous"] = frame.valid_days_previous.astype(int)
    frame["steps_previous_1000"] = frame.steps_previous / 1000
    frame = frame.join(people.time_zero, on="person_id").join(persons, on="person_id")
    frame["age"] = frame.time_zero.dt.year - frame.year_of_birth
    frame = frame.drop(columns="year_of_birth")
    if exposures:
        frame = _previous_exposures(lake, frame, list(exposures), people.time_zero, interval_days, pinned)
    for loinc in markers:
        frame = _latest_marker(lake, frame, str(loinc), pinned)
    rules = [
        "time zero: the first day of wearable data" + (f" on or after the index date of cohort {cohort!r}" if cohort else ""),
        f"baseline: days 0-{interval_days - 1} measure steps only; follow-up starts on day {interval_days}",
        f"washout: outcome {outcome.name} on or before day {interval_days - 1} excludes the person (prevalent)",
        f"intervals of {interval_days} days, each with the mean steps of the previous interval's valid days "
        "(>= 600 worn minutes); an interval whose previous one has no valid day is left out",
        "censoring: the day after the last valid wear day; the event ends follow-up",
    ] + ([f"exposures {', '.join(exposures)}: the previous interval's days at home (mean; heat-wave days counted)"]
         if exposures else []) + ([f"markers {', '.join(markers)}: the latest result on or before each interval's start"]
                                  if markers else [])
    frame.attrs.update(versions=pinned, rules=rules)
    return StudyFrame(frame, pd.DataFrame(attrition, columns=["step", "persons"]), rules, pinned)


def _previous_exposures(lake: Lake, frame: pd.DataFrame, columns: list[str], time_zero: pd.Series, interval_days: int,
                        pinned: dict) -> pd.DataFrame:
    """Each interval's exposures over the interval before it (the days ``start - interval_days <= d < start``)."""
    selected = ", ".join(f"CAST({c} AS DOUBLE) AS {c}" for c in columns)
    daily = lake.sql(f"SELECT person_id, date, {selected} FROM exposure_daily WHERE list_contains(?, person_id)",
                     [sorted(frame.person_id.unique())], versions=pinned)
    daily["day"] = (pd.to_datetime(daily.date) - daily.person_id.map(time_zero)).dt.days
    daily["block"] = daily.day // interval_days
    aggregations = {f"{c}_previous": (c, "sum" if c == "heat_wave" else "mean") for c in columns}
    by_block = daily.groupby(["person_id", "block"]).agg(**aggregations)
    keys = pd.MultiIndex.from_arrays([frame.person_id, frame.start // interval_days - 1])
    return pd.concat([frame, by_block.reindex(keys).reset_index(drop=True).set_index(frame.index)], axis=1)


def _latest_marker(lake: Lake, frame: pd.DataFrame, loinc: str, pinned: dict) -> pd.DataFrame:
    """The latest result of ``loinc`` (SI unit) on or before each interval's start date."""
    results = lake.sql("SELECT person_id, CAST(measurement_datetime AS DATE) AS date, value_si FROM measurement "
                       "WHERE loinc_code = ? AND value_si IS NOT NULL ORDER BY date", [loinc], versions=pinned)
    name = f"marker_{loinc.replace('-', '_')}"
    if results.empty:
        raise ExplorerError(f"time-to-event frame: no results of LOINC {loinc} with an SI value in measurement")
    results["date"] = pd.to_datetime(results.date)
    starts = frame.assign(_date=frame.time_zero + pd.to_timedelta(frame.start, unit="D"), _row=np.arange(len(frame)))
    merged = pd.merge_asof(starts.sort_values("_date"), results.rename(columns={"date": "_date", "value_si": name})
                           .sort_values("_date"), on="_date", by="person_id", direction="backward")
    return frame.assign(**{name: merged.set_index("_row")[name].sort_index().to_numpy()})


def person_day_frame(lake: Lake, outcome: str = "resting_hr", exposure: str = "tas_anomaly", *, cohort: str | None = None,
                     cohort_version: int | None = None, valid_only: bool = True, versions: dict | None = None) -> StudyFrame:
    """Person-days of a wearable outcome and the day's exposure at home, for a distributed-lag model.

    Every day of ``exposure_daily`` is kept (the lags need the days before), with the outcome
    missing on days without a valid wear day (``valid_only``) or without the outcome; the fit leaves
    those out.

    Returns
    -------
    StudyFrame
        ``frame``: ``person_id``, ``date``, the outcome and the exposure.
    """
    if outcome not in WEARABLE_COLUMNS:
        raise ExplorerError(f"person-day frame: outcome {outcome!r}; expected a wearable_daily column: {sorted(WEARABLE_COLUMNS)}")
    if exposure not in EXPOSURE_COLUMNS:
        raise ExplorerError(f"person-day frame: exposure {exposure!r}; expected an exposure_daily column: {sorted(EXPOSURE_COLUMNS)}")
    pinned = _pin(lake, ["wearable_daily", "exposure_daily"], versions)
    members, member_version = _population(lake, cohort, cohort_version, versions)
    pinned.update(member_version)
    valid = "AND w.valid_day" if valid_only else ""
    frame = lake.sql(f"SELECT x.person_id, x.date, x.{exposure}, w.{outcome} FROM exposure_daily x "
                     f"LEFT JOIN wearable_daily w ON w.person_id = x.person_id AND w.date = x.date {valid} "
                     "ORDER BY x.person_id, x.date", versions=pinned)
    attrition = [("persons with exposure days", int(frame.person_id.nunique()))]
    if members is not None:
        frame = frame[frame.person_id.isin(members.person_id)]
        attrition.append((f"in cohort {cohort!r}", int(frame.person_id.nunique())))
    with_outcome = frame[frame[outcome].notna()].person_id.nunique()
    attrition.append((f"with a{' valid' if valid_only else ''} day of {outcome}", int(with_outcome)))
    frame["date"] = pd.to_datetime(frame["date"])
    rules = [f"every exposure_daily day of each person (for the lags); {outcome} only on "
             + ("valid wear days (>= 600 worn minutes)" if valid_only else "days that have it")]
    frame.attrs.update(versions=pinned, rules=rules)
    return StudyFrame(frame.reset_index(drop=True), pd.DataFrame(attrition, columns=["step", "persons"]), rules, pinned)
