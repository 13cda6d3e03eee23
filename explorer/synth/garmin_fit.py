"""A synthetic person's heart rate and steps as Garmin FIT monitoring files.

One file a local day, ``GARMIN/Monitor/<date>.FIT``, written with Garmin's FIT SDK encoder as a
watch writes its all-day monitoring (FIT Profile): ``file_id`` (type ``monitoring_b``), a
``monitoring_info`` whose ``local_timestamp`` gives the local time, then one ``monitoring``
message per minute with the minute's ``heart_rate`` and the day's running step total
(``activity_type`` walking, steps through the ``cycles`` field, scale 2). FIT monitoring files
carry no sleep stages, so sleep is not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIT_EPOCH_S = 631065600  # 1989-12-31 00:00:00 UTC in Unix seconds (FIT Protocol)


def _utc_seconds(local: pd.Series, zone: str) -> np.ndarray:
    aware = pd.DatetimeIndex(local).tz_localize(zone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="shift_forward")
    return (aware.tz_convert("UTC").tz_localize(None) - pd.Timestamp("1970-01-01")).total_seconds().astype(np.int64).to_numpy()


def write_garmin_monitoring(directory: Path, streams) -> list[Path]:
    """Write ``directory/GARMIN/Monitor/<date>.FIT``, one file per local day of ``streams``.

    Parameters
    ----------
    directory : Path
        The participant's folder (named by the participant's ID).
    streams : explorer.synth.wearables.PersonStreams

    Returns
    -------
    list of Path
        The files written.
    """
    from garmin_fit_sdk import Encoder, Profile

    mesg = Profile["mesg_num"]
    zones = dict(zip(pd.to_datetime(streams.daily_truth["date"]).dt.date, streams.daily_truth["time_zone"]))
    minutes = pd.merge(streams.heart_rate[["datetime", "heart_rate_value"]].drop_duplicates("datetime"),
                       streams.steps[["datetime", "steps"]].drop_duplicates("datetime"), on="datetime", how="outer")
    minutes = minutes.sort_values("datetime").reset_index(drop=True)
    target = directory / "GARMIN" / "Monitor"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for day, rows in minutes.groupby(minutes["datetime"].dt.date, sort=True):
        zone = zones.get(day, next(iter(zones.values())))
        utc = _utc_seconds(rows["datetime"], zone) - FIT_EPOCH_S
        local = (rows["datetime"] - pd.Timestamp("1970-01-01")).dt.total_seconds().astype(np.int64).to_numpy() - FIT_EPOCH_S
        encoder = Encoder()
        encoder.write_mesg({"mesg_num": mesg["FILE_ID"], "type": "monitoring_b", "manufacturer": "garmin", "product": 1,
                            "serial_number": 3999999999, "time_created": int(utc[0])})
        encoder.write_mesg({"mesg_num": mesg["MONITORING_INFO"], "timestamp": int(utc[0]), "local_timestamp": int(local[0])})
        total = 0
        for seconds, bpm, steps in zip(utc.tolist(), rows["heart_rate_value"].tolist(), rows["steps"].tolist()):
            message = {"mesg_num": mesg["MONITORING"], "timestamp": int(seconds), "activity_type": "walking"}
            if not pd.isna(bpm):
                message["heart_rate"] = int(bpm)
            if not pd.isna(steps):
                total += int(steps)
                message["cycles"] = total / 2  # steps = 2 x cycles (the Profile's scale)
            encoder.write_mesg(message)
        path = target / f"{day.isoformat()}.FIT"
        path.write_bytes(bytes(encoder.close()))
        written.append(path)
    return written
