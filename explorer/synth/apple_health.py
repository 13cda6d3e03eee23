"""A synthetic person's wearable streams as an Apple Health ``export.xml``.

Written as the Health app's "Export All Health Data" writes it (``HealthData`` root with its
internal DTD, ``ExportDate``, ``Me``, then ``Record`` elements with ``type``, ``sourceName``,
``device``, ``unit``, ``creationDate``, ``startDate``, ``endDate`` and ``value``; dates
``YYYY-MM-DD HH:MM:SS +HHMM``), so that the Apple Health reader can be checked against the
same person written as All of Us CSV:

- heart rate: two Watch samples per minute, at :10 and :40, one beat below and above the
  minute's value (their mean is the minute's value);
- steps: the Watch's minutes as intervals, a run of minutes with the same count written as one
  record over the run (the reader splits it back by overlap), plus the iPhone's hourly totals of
  the same steps (a second source the reader must not count again);
- sleep: one record per stage segment (``light`` as ``AsleepCore``, ``deep`` ``AsleepDeep``,
  ``rem`` ``AsleepREM``, ``asleep`` ``AsleepUnspecified``, the wake levels ``Awake``) and one
  ``InBed`` record per sleep.

Sizes: about 330 bytes per record, so a day of one person is about 1 MB; a several-GB file is
one person's weeks written into one export (benchmarks/bench_apple_health.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WATCH = ("Synthetic Apple Watch", "&lt;&lt;HKDevice: 0x0&gt;, name:Apple Watch, manufacturer:Apple Inc., "
         "model:Watch, hardware:Watch6,2, software:10.4&gt;")
PHONE = ("Synthetic iPhone", "&lt;&lt;HKDevice: 0x1&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, "
         "hardware:iPhone14,5, software:17.4&gt;")
STAGES = {"light": "AsleepCore", "deep": "AsleepDeep", "rem": "AsleepREM", "asleep": "AsleepUnspecified",
          "wake": "Awake", "awake": "Awake", "restless": "Awake"}
HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate value CDATA #REQUIRED>
<!ELEMENT Me EMPTY>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record type CDATA #REQUIRED unit CDATA #IMPLIED value CDATA #IMPLIED sourceName CDATA #REQUIRED sourceVersion CDATA #IMPLIED device CDATA #IMPLIED creationDate CDATA #IMPLIED startDate CDATA #REQUIRED endDate CDATA #REQUIRED>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry key CDATA #REQUIRED value CDATA #REQUIRED>
]>
<HealthData locale="en_US">
 <ExportDate value="{export}"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet" HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet"/>
"""


def apple_dates(local: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD HH:MM:SS +HHMM`` of local wall-clock times, each with its zone's offset then.

    Parameters
    ----------
    local : datetime64 array
        Naive local times.
    zones : array of str
        The IANA zone of each time.
    """
    local = pd.DatetimeIndex(local)
    out = np.empty(len(local), dtype=object)
    for zone in pd.unique(zones):
        mask = zones == zone
        # the repeated autumn hour is taken as the first (daylight) time; the wall clock is kept either way
        aware = local[mask].tz_localize(zone, ambiguous=np.ones(int(mask.sum()), dtype=bool), nonexistent="shift_forward")
        minutes = ((aware.tz_localize(None) - aware.tz_convert("UTC").tz_localize(None)).total_seconds() // 60).astype(int)
        suffix = pd.Series(minutes).map(lambda m: f" {'-' if m < 0 else '+'}{abs(m) // 60:02d}{abs(m) % 60:02d}")
        out[mask] = (pd.Series(aware.strftime("%Y-%m-%d %H:%M:%S")) + suffix).to_numpy()
    return out


def _record(kind, source, unit, start, end, value) -> str:
    name, device = source
    unit_attribute = f' unit="{unit}"' if unit else ""
    return (f' <Record type="{kind}" sourceName="{name}" sourceVersion="1" device="{device}"{unit_attribute} '
            f'creationDate="{end}" startDate="{start}" endDate="{end}" value="{value}"/>\n')


def _zones_of(times: np.ndarray, daily_zones: pd.Series) -> np.ndarray:
    days = pd.DatetimeIndex(times).normalize()
    zones = daily_zones.reindex(days).to_numpy()
    fallback = daily_zones.iloc[0] if len(daily_zones) else "UTC"
    return np.where(pd.isna(zones), fallback, zones).astype(str)


def export_records(streams) -> list[str]:
    """The ``Record`` lines of one person's streams (see the module's description)."""
    daily_zones = pd.Series(streams.daily_truth["time_zone"].to_numpy(),
                            index=pd.to_datetime(streams.daily_truth["date"]))
    lines: list[str] = []
    hr = streams.heart_rate
    if len(hr):
        minute = hr["datetime"].to_numpy().astype("datetime64[s]")
        zones = _zones_of(minute, daily_zones)
        value = hr["heart_rate_value"].to_numpy()
        for offset, delta in ((10, -1), (40, 1)):
            stamp = apple_dates(minute + np.timedelta64(offset, "s"), zones)
            lines.extend(_record("HKQuantityTypeIdentifierHeartRate", WATCH, "count/min", s, s, v + delta)
                         for s, v in zip(stamp, value.tolist()))
    steps = streams.steps.sort_values("datetime")
    if len(steps):
        minute = steps["datetime"].to_numpy().astype("datetime64[m]")
        count = steps["steps"].to_numpy()
        # a run: consecutive minutes with one count, within one local day
        new_run = np.ones(len(minute), dtype=bool)
        new_run[1:] = ((minute[1:] - minute[:-1]) != np.timedelta64(1, "m")) | (count[1:] != count[:-1]) | \
            (minute[1:].astype("datetime64[D]") != minute[:-1].astype("datetime64[D]"))
        starts = np.flatnonzero(new_run)
        ends = np.append(starts[1:], len(minute)) - 1
        first, last = minute[starts], minute[ends] + np.timedelta64(1, "m")
        zones = _zones_of(first, daily_zones)
        begin, end = apple_dates(first, zones), apple_dates(last, _zones_of(minute[ends], daily_zones))
        totals = count[starts] * (ends - starts + 1)
        lines.extend(_record("HKQuantityTypeIdentifierStepCount", WATCH, "count", b, e, int(t))
                     for b, e, t in zip(begin, end, totals.tolist()))
        hours = minute.astype("datetime64[h]")
        hour, index = np.unique(hours, return_inverse=True)
        per_hour = np.bincount(index, weights=count).astype(int)
        zones = _zones_of(hour, daily_zones)
        hour_start, hour_end = apple_dates(hour, zones), apple_dates(hour + np.timedelta64(59, "m"), zones)
        lines.extend(_record("HKQuantityTypeIdentifierStepCount", PHONE, "count", b, e, t)
                     for b, e, t in zip(hour_start, hour_end, per_hour.tolist()) if t > 0)
    for log in streams.sleep_logs:
        segments = log["segments"]
        if not segments:
            continue
        begin = np.array([np.datetime64(pd.Timestamp(s), "s") for _level, s, _m in segments])
        finish = begin + np.array([int(round(m * 60)) for _l, _s, m in segments]).astype("timedelta64[s]")
        zones = _zones_of(begin, daily_zones)
        b, e = apple_dates(begin, zones), apple_dates(finish, zones)
        lines.append(_record("HKCategoryTypeIdentifierSleepAnalysis", WATCH, None, b[0], e[-1],
                             "HKCategoryValueSleepAnalysisInBed"))
        lines.extend(_record("HKCategoryTypeIdentifierSleepAnalysis", WATCH, None, b[k], e[k],
                             "HKCategoryValueSleepAnalysis" + STAGES[level])
                     for k, (level, _s, _m) in enumerate(segments))
    return lines


def write_apple_health_export(directory: Path, streams, *, repeat: int = 1) -> Path:
    """Write ``directory/apple_health_export/export.xml`` of one person's streams.

    Parameters
    ----------
    directory : Path
        The participant's folder (named by the participant's ID, as the reader expects).
    streams : explorer.synth.wearables.PersonStreams
    repeat : int, default 1
        Write the records this many times over (the reader averages the repeated samples into
        the same minutes and counts the repeated steps again: for tests of size, not of values).

    Returns
    -------
    Path
        The file written.
    """
    target = directory / "apple_health_export" / "export.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(export_records(streams))
    with open(target, "w", encoding="utf-8") as out:
        out.write(HEADER.format(export="2025-01-01 00:00:00 +0000"))
        for _ in range(repeat):
            out.write(body)
        out.write("</HealthData>\n")
    return target
