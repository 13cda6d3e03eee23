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
    day = minutes["datetime"].dt.date
    steps = minutes["steps"]
    age = minutes["datetime"].dt.year.iloc[0] - person.year_of_birth if len(minutes) else 50
    bmr = round((10 * 75 + 6.25 * 170 - 5 * age + (5 if person.sex_at_birth == "male" else -161)))
    frame = pd.DataFrame({
        "date": day, "steps": steps,
        "very": steps >= 130, "fairly": (steps >= 100) & (steps < 130), "lightly": (steps > 0) & (steps < 100),
        "sedentary": (steps == 0) & ~minutes["asleep"],
    }).groupby("date", sort=True).agg(steps=("steps", "sum"), very_active_minutes=("very", "sum"),
                                      fairly_active_minutes=("fairly", "sum"), lightly_active_minutes=("lightly", "sum"),
                                      sedentary_minutes=("sedentary", "sum")).reset_index()
    frame["activity_calories"] = np.round(frame["steps"] * 0.045).astype(int)
    frame["calories_bmr"] = bmr
    frame["calories_out"] = frame["calories_bmr"] + frame["activity_calories"]
    frame["marginal_calories"] = np.round(frame["activity_calories"] * 0.6).astype(int)
    frame["floors"] = frame["steps"] // 1500
    frame["elevation"] = frame["floors"] * 3.0
    frame.insert(0, "person_id", source_id)
    return frame[["person_id", "date", "activity_calories", "calories_bmr", "calories_out", "elevation",
                  "fairly_active_minutes", "floors", "lightly_active_minutes", "marginal_calories",
                  "sedentary_minutes", "steps", "very_active_minutes"]]


def heart_rate_summary(source_id: str, person, minutes: pd.DataFrame) -> pd.DataFrame:
    """Fitbit's daily heart-rate zones (by share of 220 - age)."""
    if minutes.empty:
        return pd.DataFrame(columns=["person_id", "date", "zone_name", "min_heart_rate", "max_heart_rate",
                                     "minute_in_zone", "calorie_count"])
    age = int(minutes["datetime"].dt.year.iloc[0] - person.year_of_birth)
    peak = 220 - age
    bounds = [("Out of Range", 30, int(0.5 * peak)), ("Fat Burn", int(0.5 * peak), int(0.7 * peak)),
              ("Cardio", int(0.7 * peak), int(0.85 * peak)), ("Peak", int(0.85 * peak), 220)]
    hr = minutes["heart_rate_value"].to_numpy()
    day = minutes["datetime"].dt.date.to_numpy()
    rows = []
    for zone, low, high in bounds:
        in_zone = (hr >= low) & (hr < high)
        counts = pd.Series(in_zone).groupby(day).sum()
        for d, count in counts.items():
            rows.append({"person_id": source_id, "date": d, "zone_name": zone, "min_heart_rate": low,
                         "max_heart_rate": high, "minute_in_zone": int(count),
                         "calorie_count": round(float(count) * (1.2 + bounds.index((zone, low, high)) * 3.1), 2)})
    return pd.DataFrame(rows).sort_values(["date", "min_heart_rate"], ignore_index=True)


def _fitbit_datetime(values: np.ndarray) -> np.ndarray:
    """Fitbit export timestamps: ``MM/DD/YY HH:MM:SS``, local time, no zone."""
    return pd.DatetimeIndex(values).strftime("%m/%d/%y %H:%M:%S").to_numpy()


def write_fitbit_export(directory: Path, streams) -> int:
    """One JSON file per day per stream, as in a Fitbit personal data export. Returns files written."""
    activity, sleep = directory / "Physical Activity", directory / "Sleep"
    activity.mkdir(parents=True, exist_ok=True)
    sleep.mkdir(parents=True, exist_ok=True)
    written = 0
    hr = streams.heart_rate
    hr_day = hr["datetime"].dt.strftime("%Y-%m-%d").to_numpy()
    hr_text = _fitbit_datetime(hr["datetime"].to_numpy())
    for day in pd.unique(hr_day):
        rows = np.flatnonzero(hr_day == day)
        body = ",".join(f'{{"dateTime":"{hr_text[i]}","value":{{"bpm":{hr["heart_rate_value"].iat[i]},"confidence":{hr["confidence"].iat[i]}}}}}'
                        for i in rows)
        (activity / f"heart_rate-{day}.json").write_text(f"[{body}]")
        written += 1
    steps = streams.steps
    steps_day = steps["datetime"].dt.strftime("%Y-%m-%d").to_numpy()
    steps_text = _fitbit_datetime(steps["datetime"].to_numpy())
    values = steps["steps"].to_numpy()
    for day in pd.unique(steps_day):
        rows = np.flatnonzero(steps_day == day)
        body = ",".join(f'{{"dateTime":"{steps_text[i]}","value":"{values[i]}"}}' for i in rows)
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
