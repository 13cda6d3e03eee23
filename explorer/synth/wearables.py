"""Minute-level Fitbit streams for one person: sleep with stages, steps, heart rate, wear gaps,
daylight-saving transitions in local wall-clock time, and device artefacts.

Everything is simulated on a UTC minute axis and then written as the device does: local time
without zone. On the autumn transition the repeated local hour therefore appears twice, and on
the spring transition the skipped hour has no rows; neither is an artefact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

STAGES = np.array(["wake", "light", "deep", "rem"])
WAKE, LIGHT, DEEP, REM = range(4)


@dataclass
class PersonStreams:
    heart_rate: pd.DataFrame  # datetime (local), heart_rate_value, confidence
    steps: pd.DataFrame  # datetime (local), steps
    sleep_logs: list  # dicts: log_id, date_of_sleep, start, end, is_main_sleep, type, segments [(level, start, minutes)]
    daily_truth: pd.DataFrame  # date, resting_hr_true, tas_anomaly, worn_minutes, time_zone
    artefacts: pd.DataFrame  # stream, datetime, kind, value
    minutes: pd.DataFrame  # per worn minute (local): datetime, steps, heart_rate_value, asleep, stage — for summaries


def _local_clock(utc: pd.DatetimeIndex, zones: np.ndarray) -> np.ndarray:
    """Local wall-clock datetime64[ns] (naive) of each UTC minute, in the zone in force."""
    out = np.empty(len(utc), dtype="datetime64[ns]")
    for zone in dict.fromkeys(zones[::1440].tolist() + [zones[-1]]):  # zones change only between days
        mask = zones == zone
        out[mask] = utc[mask].tz_convert(zone).tz_localize(None).to_numpy()
    return out


def simulate_person(person, daily: pd.DataFrame, config, rng: np.random.Generator) -> PersonStreams:
    """Simulate one person.

    Parameters
    ----------
    person : row of the cohort's persons table (planted parameters)
    daily : one row per day of the window: date, time_zone, tas_anomaly (K) at the residence
    """
    days = len(daily)
    first_zone = daily["time_zone"].iloc[0]
    start_local = pd.Timestamp(config.start)
    start_utc = start_local.tz_localize(first_zone, nonexistent="shift_forward", ambiguous=True).tz_convert("UTC")
    n = days * 1440
    utc = pd.date_range(start_utc, periods=n, freq="min")
    day_of_minute = np.minimum(np.arange(n) // 1440, days - 1)
    zones = daily["time_zone"].to_numpy()[day_of_minute]
    local = _local_clock(utc, zones)
    local_minutes = (local - start_local.to_datetime64()).astype("timedelta64[m]").astype(np.int64)
    hour = (local_minutes % 1440) / 60.0
    local_day = local_minutes // 1440  # may run past the window at the end; clipped where used
    weekday = ((start_local.day_of_week + local_day) % 7).astype(np.int64)
    weekend = weekday >= 5

    # ---- sleep: one main episode per night (local clock), stages by 90-minute cycles, naps
    nights = np.arange(-1, days)
    night_weekday = (start_local.day_of_week + nights) % 7
    late = np.isin(night_weekday, [4, 5])  # Friday and Saturday nights
    bed = nights * 1440 + (person.bedtime_hour + rng.normal(0, 0.45, len(nights)) + 0.8 * late) * 60
    length = (person.sleep_hours + rng.normal(0, 0.6, len(nights)) + 0.6 * late) * 60
    bed, wake = np.round(bed).astype(np.int64), np.round(bed + np.clip(length, 240, 720)).astype(np.int64)
    episode = np.clip(np.searchsorted(bed, local_minutes, side="right") - 1, 0, len(bed) - 1)
    asleep = (local_minutes >= bed[episode]) & (local_minutes < wake[episode])
    since_bed = local_minutes - bed[episode]
    stage = _stages(since_bed, asleep, rng)

    nap_days = np.flatnonzero(rng.random(days) < 0.08)
    nap_start = nap_days * 1440 + rng.integers(13 * 60, 16 * 60, len(nap_days))
    nap_end = nap_start + rng.integers(25, 70, len(nap_days))
    napping = np.zeros(n, bool)
    for s, e in zip(nap_start, nap_end):
        napping |= (local_minutes >= s) & (local_minutes < e)

    # ---- wear: whole days off, showers, charging, some nights off
    worn = np.ones(n, bool)
    off_days = rng.random(days) < (1 - person.wear_compliance) * 0.4
    worn &= ~off_days[np.clip(local_day, 0, days - 1)]
    for d in range(days):
        if rng.random() < 0.5:  # morning shower
            s = d * 1440 + int(rng.integers(6 * 60, 9 * 60))
            worn &= ~((local_minutes >= s) & (local_minutes < s + int(rng.integers(15, 40))))
        if d % 5 == int(rng.integers(0, 5)):  # charging
            s = d * 1440 + int(rng.integers(18 * 60, 21 * 60))
            worn &= ~((local_minutes >= s) & (local_minutes < s + int(rng.integers(60, 120))))
    nights_off = rng.random(len(nights)) < (1 - person.wear_compliance) * 0.5
    worn &= ~(asleep & nights_off[episode])

    # ---- steps: bouts of walking by a weekday/weekend profile, none in sleep
    awake = ~asleep & ~napping
    profile = np.where(weekend, _bump(hour, 11.5, 2.8) * 0.9 + _bump(hour, 16, 2.0) * 0.6,
                       _bump(hour, 8.0, 0.8) + _bump(hour, 12.5, 0.7) * 0.8 + _bump(hour, 17.8, 1.0) + _bump(hour, 14, 3) * 0.3)
    p_start = np.clip(0.045 * profile * person.activity_level, 0, 0.5) * awake
    starts = np.flatnonzero(rng.random(n) < p_start)
    walking = np.zeros(n, bool)
    if len(starts):
        lengths = rng.geometric(1 / 7.0, len(starts))
        index = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        walking[index[index < n]] = True
    walking &= awake
    cadence = np.clip(rng.normal(104, 11, n), 60, 132) * rng.uniform(0.55, 1.0, n)
    running = walking & (rng.random(n) < 0.01 * person.activity_level)
    cadence[running] = rng.normal(158, 8, running.sum())
    steps = np.where(walking, cadence, np.where(awake & (rng.random(n) < 0.22), rng.poisson(3, n), 0))
    steps = np.round(steps).astype(np.int64)

    # ---- heart rate: resting level (age, heat) + rhythm + sleep dip + activity + AR noise
    anomaly = daily["tas_anomaly"].to_numpy()
    age = (start_local.year - person.year_of_birth) + local_day / 365.25
    resting_daily = (person.resting_hr_base + config.age_effect_bpm_per_year * (config.start.year - person.year_of_birth - 50)
                     + config.heat_effect_bpm_per_k * anomaly)
    for lag, effect in enumerate(config.heat_lag_effects_bpm_per_k, start=1):
        if lag < len(anomaly):  # the days before the window add nothing
            resting_daily[lag:] += effect * anomaly[:-lag]
    resting = resting_daily[np.clip(local_day, 0, days - 1)] + config.age_effect_bpm_per_year * (age - age[0])
    rhythm = -3.5 * np.cos(2 * np.pi * (hour - 16.0) / 24.0)
    dip = np.select([stage == DEEP, stage == LIGHT, stage == REM, stage == WAKE, napping], [-8.0, -5.5, -2.0, -1.0, -4.0], 0.0)
    dip = np.where(asleep | napping, dip, 0.0)
    effort = lfilter([0.35], [1, -0.65], 0.42 * steps)
    noise = lfilter([1.0], [1, -0.8], rng.normal(0, 1.6, n))
    heart_rate = np.clip(np.round(resting + rhythm + dip + effort + noise), 38, 205).astype(np.int64)

    # ---- artefacts on worn minutes: 0 and 255 readings, duplicated rows
    worn_index = np.flatnonzero(worn)
    k = int(round(config.artefact_rate * len(worn_index)))
    bad = np.sort(rng.choice(worn_index, size=min(2 * k, len(worn_index)), replace=False)) if k else np.array([], int)
    bad_value = np.where(rng.random(len(bad)) < 0.5, 0, 255)
    true_hr = heart_rate.copy()
    heart_rate[bad] = bad_value
    dup_hr = np.sort(rng.choice(worn_index, size=min(k, len(worn_index)), replace=False)) if k else np.array([], int)
    dup_steps = np.sort(rng.choice(worn_index, size=min(k, len(worn_index)), replace=False)) if k else np.array([], int)

    is_bad = np.zeros(n, bool)
    is_bad[bad] = True
    confidence = np.where(is_bad, 0, np.clip(3 - (steps > 110) - (rng.random(n) < 0.05), 1, 3))
    hr_rows = np.sort(np.concatenate([worn_index, dup_hr]), kind="stable")
    step_rows = np.sort(np.concatenate([worn_index, dup_steps]), kind="stable")
    local_dt = local.astype("datetime64[s]")

    artefacts = pd.concat([
        pd.DataFrame({"stream": "heart_rate", "datetime": local_dt[bad], "kind": np.where(bad_value == 0, "hr_zero", "hr_255"),
                      "value": bad_value, "true_value": true_hr[bad]}),
        pd.DataFrame({"stream": "heart_rate", "datetime": local_dt[dup_hr], "kind": "duplicate_minute",
                      "value": heart_rate[dup_hr], "true_value": true_hr[dup_hr]}),
        pd.DataFrame({"stream": "steps", "datetime": local_dt[dup_steps], "kind": "duplicate_minute",
                      "value": steps[dup_steps], "true_value": steps[dup_steps]}),
    ], ignore_index=True)

    in_window = (local_day >= 0) & (local_day < days)
    worn_per_day = np.bincount(local_day[worn & in_window], minlength=days)[:days]
    recorded_steps = np.bincount(local_day[worn & in_window], weights=steps[worn & in_window], minlength=days)[:days]
    daily_truth = pd.DataFrame({"date": daily["date"].to_numpy(), "time_zone": daily["time_zone"].to_numpy(),
                                "tas_anomaly": anomaly, "resting_hr_true": resting_daily, "worn_minutes": worn_per_day,
                                "recorded_steps": recorded_steps.astype(np.int64)})
    minutes = pd.DataFrame({"datetime": local_dt[worn_index], "steps": steps[worn_index], "heart_rate_value": true_hr[worn_index],
                            "asleep": asleep[worn_index], "stage": stage[worn_index]})
    return PersonStreams(
        heart_rate=pd.DataFrame({"datetime": local_dt[hr_rows], "heart_rate_value": heart_rate[hr_rows], "confidence": confidence[hr_rows]}),
        steps=pd.DataFrame({"datetime": local_dt[step_rows], "steps": steps[step_rows]}),
        sleep_logs=_sleep_logs(person, local_dt, local_minutes, stage, asleep, napping, worn, episode, bed, wake, start_local, days),
        daily_truth=daily_truth, artefacts=artefacts, minutes=minutes,
    )


def _bump(hour, centre, width):
    return np.exp(-0.5 * ((hour - centre) / width) ** 2)


def _stages(since_bed: np.ndarray, asleep: np.ndarray, rng) -> np.ndarray:
    """Sleep stage per minute: onset in light sleep, ~90-minute cycles, deep early, REM late."""
    cycle_position = (since_bed % 92) / 92.0
    hours_in = since_bed / 60.0
    deep_share = 0.32 * np.exp(-hours_in / 2.8)
    rem_share = 0.12 + 0.05 * hours_in
    stage = np.full(len(since_bed), LIGHT)
    stage[(cycle_position > 0.35) & (cycle_position < 0.35 + deep_share)] = DEEP
    stage[cycle_position > 1.0 - rem_share] = REM
    stage[since_bed < 12] = LIGHT
    # brief awakenings: runs of 1-6 minutes
    wake_start = np.flatnonzero(asleep & (rng.random(len(stage)) < 1 / 80))
    for s in wake_start:
        stage[s:s + int(rng.integers(1, 7))] = WAKE
    stage[~asleep] = WAKE
    return stage


def _runs(values: np.ndarray):
    """Start index and length of each run of equal values."""
    if len(values) == 0:
        return np.array([], int), np.array([], int)
    change = np.flatnonzero(np.diff(values) != 0) + 1
    starts = np.concatenate([[0], change])
    return starts, np.diff(np.concatenate([starts, [len(values)]]))


def _sleep_logs(person, local_dt, local_minutes, stage, asleep, napping, worn, episode, bed, wake, start_local, days):
    """Sleep logs as the device records them: only for episodes it was worn through, with the
    stage segments (main sleep) or classic levels (naps)."""
    logs = []
    log_base = int(person.source_id) * 100_000
    for kind, mask in (("stages", asleep & worn), ("classic", napping & worn)):
        episode_of = episode if kind == "stages" else (local_minutes // 1440)
        for e in np.unique(episode_of[mask]):
            rows = np.flatnonzero(mask & (episode_of == e))
            if len(rows) < 20:
                continue
            levels = stage[rows] if kind == "stages" else np.full(len(rows), 1)
            names = STAGES if kind == "stages" else np.array(["awake", "asleep", "restless", "asleep"])
            starts, lengths = _runs(levels)
            segments = [(str(names[levels[s]]), local_dt[rows[s]], int(length)) for s, length in zip(starts, lengths)]
            end = local_dt[rows[-1]] + np.timedelta64(60, "s")
            date_of_sleep = pd.Timestamp(end).date()
            if not (start_local.date() <= date_of_sleep <= (start_local + pd.Timedelta(days=days - 1)).date()):
                continue
            logs.append({"log_id": log_base + len(logs), "date_of_sleep": date_of_sleep, "start": local_dt[rows[0]], "end": end,
                         "is_main_sleep": kind == "stages", "type": kind, "segments": segments})
    logs.sort(key=lambda log: log["start"])
    return logs
