"""File writers in the shapes real sources deliver: All of Us-style Fitbit tables (CSV), Fitbit
personal-export JSON, and the daily summaries computed from the minute data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

AOU_TABLES = ("heart_rate_minute_level", "steps_intraday", "sleep_level", "sleep_daily_summary",
              "activity_summary", "heart_rate_summary")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV as exports write it: a plain header, unquoted values, ``YYYY-MM-DD HH:MM:SS`` times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = []
    for name in table.column_names:
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("s"))
        elif pa.types.is_boolean(column.type):
            column = pa.compute.if_else(column, "true", "false")
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    buffer = io.BytesIO()
    buffer.write((",".join(table.column_names) + "\n").encode())
    try:  # exports quote nothing unless a value holds a comma, quote or newline
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:
        buffer = io.BytesIO()
        buffer.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    path.write_bytes(buffer.getvalue())


def sleep_level_rows(source_id: str, logs: list) -> pd.DataFrame:
    rows = [(source_id, log["date_of_sleep"], log["is_main_sleep"], level, start, minutes)
            for log in logs for level, start, minutes in log["segments"]]
    return pd.DataFrame(rows, columns=["person_id", "sleep_date", "is_main_sleep", "level", "start_datetime", "duration_in_min"])


def sleep_daily_summary(source_id: str, logs: list) -> pd.DataFrame:
    rows = []
    for log in logs:
        minutes = {}
        for level, _start, length in log["segments"]:
            minutes[level] = minutes.get(level, 0) + length
        in_bed = sum(minutes.values())
        awake = minutes.get("wake", 0) + minutes.get("awake", 0) + minutes.get("restless", 0)
        rows.append({"person_id": source_id, "sleep_date": log["date_of_sleep"], "is_main_sleep": log["is_main_sleep"],
                     "minute_in_bed": in_bed, "minute_asleep": in_bed - awake, "minute_after_wakeup": 0,
                     "minute_awake": minutes.get("awake", 0), "minute_restless": minutes.get("restless", 0),
                     "minute_deep": minutes.get("deep", 0), "minute_light": minutes.get("light", 0),
                     "minute_rem": minutes.get("rem", 0), "minute_wake": minutes.get("wake", 0)})
    return pd.DataFrame(rows)


def activity_summary(source_id: str, person, minutes: pd.DataFrame) -> pd.DataFrame:
    columns = ["person_id", "date", "activity_calories", "calories_bmr", "calories_out", "elevation",
               "fairly_active_minutes", "floors", "lightly_active_minutes", "marginal_calories",
               "sedentary_minutes", "steps", "very_active_minutes"]
    if minutes.empty:
        return pd.DataFrame(columns=columns)
    when = minutes["datetime"].to_numpy()
    days, index = np.unique(when.astype("datetime64[D]"), return_inverse=True)
    steps = minutes["steps"].to_numpy()
    asleep = minutes["asleep"].to_numpy()

    def per_day(weights):
        return np.bincount(index, weights=weights, minlength=len(days)).astype(np.int64)

    age = int(when[0].astype("datetime64[Y]").astype(int) + 1970 - person.year_of_birth)
    bmr = round(10 * 75 + 6.25 * 170 - 5 * age + (5 if person.sex_at_birth == "male" else -161))  # Mifflin-St Jeor
    frame = pd.DataFrame({"person_id": source_id, "date": days.astype(object), "steps": per_day(steps),
                          "very_active_minutes": per_day(steps >= 130),
                          "fairly_active_minutes": per_day((steps >= 100) & (steps < 130)),
                          "lightly_active_minutes": per_day((steps > 0) & (steps < 100)),
                          "sedentary_minutes": per_day((steps == 0) & ~asleep)})
    frame["activity_calories"] = np.round(frame["steps"] * 0.045).astype(int)
    frame["calories_bmr"] = bmr
    frame["calories_out"] = frame["calories_bmr"] + frame["activity_calories"]
    frame["marginal_calories"] = np.round(frame["activity_calories"] * 0.6).astype(int)
    frame["floors"] = frame["steps"] // 1500
    frame["elevation"] = frame["floors"] * 3.0
    return frame[columns]


def heart_rate_summary(source_id: str, person, minutes: pd.DataFrame) -> pd.DataFrame:
    """Fitbit's daily heart-rate zones (by share of 220 - age)."""
    columns = ["person_id", "date", "zone_name", "min_heart_rate", "max_heart_rate", "minute_in_zone", "calorie_count"]
    if minutes.empty:
        return pd.DataFrame(columns=columns)
    when = minutes["datetime"].to_numpy()
    age = int(when[0].astype("datetime64[Y]").astype(int) + 1970 - person.year_of_birth)
    peak = 220 - age
    zones = [("Out of Range", 30, int(0.5 * peak)), ("Fat Burn", int(0.5 * peak), int(0.7 * peak)),
             ("Cardio", int(0.7 * peak), int(0.85 * peak)), ("Peak", int(0.85 * peak), 220)]
    days, day_index = np.unique(when.astype("datetime64[D]"), return_inverse=True)
    hr = minutes["heart_rate_value"].to_numpy()
    frames = []
    for k, (zone, low, high) in enumerate(zones):
        counts = np.bincount(day_index, weights=(hr >= low) & (hr < high), minlength=len(days)).astype(int)
        frames.append(pd.DataFrame({"person_id": source_id, "date": days.astype(object), "zone_name": zone,
                                    "min_heart_rate": low, "max_heart_rate": high, "minute_in_zone": counts,
                                    "calorie_count": np.round(counts * (1.2 + k * 3.1), 2), "_order": k}))
    out = pd.concat(frames, ignore_index=True).sort_values(["date", "_order"], ignore_index=True)
    return out[columns]


def _fitbit_datetime(values: np.ndarray) -> list[str]:
    """Fitbit export timestamps: ``MM/DD/YY HH:MM:SS``, local time, no zone."""
    iso = np.datetime_as_string(values.astype("datetime64[s]"), unit="s").tolist()
    return [f"{t[5:7]}/{t[8:10]}/{t[2:4]} {t[11:]}" for t in iso]


def _by_day(values: np.ndarray):
    """(ISO day, row indices) for each local day present, in order."""
    days = values.astype("datetime64[D]")
    starts = np.flatnonzero(np.concatenate([[True], days[1:] != days[:-1]])) if len(days) else np.array([], int)
    unique, first = np.unique(days, return_index=True)
    order = np.argsort(days, kind="stable")
    bounds = np.searchsorted(days[order], unique)
    edges = np.concatenate([bounds, [len(days)]])
    return [(str(day), order[edges[k]:edges[k + 1]]) for k, day in enumerate(unique)] if len(starts) else []


#: seconds between heart-rate samples of a Fitbit export minute: the device samples every 5-15 s
SAMPLE_SECONDS = (5, 10, 15)
TAKEOUT_FOLDER = Path("Takeout") / "Fitbit" / "Global Export Data"


def heart_rate_samples(when: np.ndarray, bpm: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, list, list]:
    """Sub-minute samples whose mean is each minute's value, as an account export gives them.

    A minute's samples come every 5, 10 or 15 s (chosen from the minute itself, so a minute written
    twice gets the same sample times, and a repeated minute reads as a repeat); their values are the
    minute's value plus deviations that cancel (+1, -1, +2, -2, ...), so the mean, and the minute the
    reader makes of them, is exactly the value. Where a deviation would leave the 25-250 bpm range
    the minute gets one sample, so an artefact value is still one quarantined record. Every sample
    carries the minute's confidence, the lowest of the minute being the minute's.

    Returns
    -------
    (numpy.ndarray, list, list)
        Sample times (datetime64[s]), bpm and confidence per sample.
    """
    minute = when.astype("datetime64[m]").astype("int64")
    every = np.array(SAMPLE_SECONDS)[minute % len(SAMPLE_SECONDS)]
    n = np.where((bpm - 6 >= 25) & (bpm + 6 <= 250), 60 // every, 1)
    offset = (minute // len(SAMPLE_SECONDS)) % every
    row = np.repeat(np.arange(len(when)), n)
    k = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)  # the sample's place within its minute
    step = k // 2 + 1
    deviation = np.where(k % 2 == 0, step, -step)
    deviation = np.where((n[row] % 2 == 1) & (k == n[row] - 1), 0, deviation)  # an odd count ends on the value itself
    times = when.astype("datetime64[m]").astype("datetime64[s]")[row] + (offset[row] + k * every[row]).astype("timedelta64[s]")
    return times, (bpm[row] + deviation).tolist(), confidence[row].tolist()


def write_fitbit_export(directory: Path, streams, layout: str = "account") -> int:
    """One JSON file per day per stream, as a Fitbit account export (``layout="account"``:
    ``Physical Activity/``, ``Sleep/``) or Google Takeout (``"takeout"``: all in
    ``Takeout/Fitbit/Global Export Data/``) writes them, heart rate as sub-minute samples
    (:func:`heart_rate_samples`). Returns files written."""
    if layout == "takeout":
        activity = sleep = directory / TAKEOUT_FOLDER
    else:
        activity, sleep = directory / "Physical Activity", directory / "Sleep"
    activity.mkdir(parents=True, exist_ok=True)
    sleep.mkdir(parents=True, exist_ok=True)
    written = 0
    hr_time, bpm, confidence = heart_rate_samples(streams.heart_rate["datetime"].to_numpy().astype("datetime64[s]"),
                                                  streams.heart_rate["heart_rate_value"].to_numpy().astype("int64"),
                                                  streams.heart_rate["confidence"].to_numpy())
    hr_text = _fitbit_datetime(hr_time)
    for day, rows in _by_day(hr_time):
        body = ",".join(f'{{"dateTime":"{hr_text[i]}","value":{{"bpm":{bpm[i]},"confidence":{confidence[i]}}}}}'
                        for i in rows.tolist())
        (activity / f"heart_rate-{day}.json").write_text(f"[{body}]")
        written += 1
    steps_time = streams.steps["datetime"].to_numpy()
    steps_text = _fitbit_datetime(steps_time)
    values = streams.steps["steps"].to_numpy().tolist()
    for day, rows in _by_day(steps_time):
        body = ",".join(f'{{"dateTime":"{steps_text[i]}","value":"{values[i]}"}}' for i in rows.tolist())
        (activity / f"steps-{day}.json").write_text(f"[{body}]")
        written += 1
    by_day: dict = {}
    for log in streams.sleep_logs:
        by_day.setdefault(log["date_of_sleep"].isoformat(), []).append(_sleep_json(log))
    for day, logs in sorted(by_day.items()):
        (sleep / f"sleep-{day}.json").write_text(json.dumps(logs))
        written += 1
    return written


def _iso_ms(value) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%S.000")


def _sleep_json(log: dict) -> dict:
    summary: dict = {}
    for level, _start, minutes in log["segments"]:
        entry = summary.setdefault(level, {"count": 0, "minutes": 0})
        entry["count"] += 1
        entry["minutes"] += minutes
    in_bed = sum(m for _, _, m in log["segments"])
    awake = sum(m for level, _, m in log["segments"] if level in ("wake", "awake", "restless"))
    return {
        "logId": log["log_id"], "dateOfSleep": log["date_of_sleep"].isoformat(),
        "startTime": _iso_ms(log["start"]), "endTime": _iso_ms(log["end"]),
        "duration": in_bed * 60_000, "minutesToFallAsleep": 0, "minutesAsleep": in_bed - awake,
        "minutesAwake": awake, "minutesAfterWakeup": 0, "timeInBed": in_bed,
        "efficiency": int(round(100 * (in_bed - awake) / in_bed)) if in_bed else 0,
        "type": log["type"], "infoCode": 0,
        "levels": {"summary": summary,
                   "data": [{"dateTime": _iso_ms(start), "level": level, "seconds": minutes * 60}
                            for level, start, minutes in log["segments"]]},
        "mainSleep": log["is_main_sleep"],
    }
