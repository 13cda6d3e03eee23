"""Write the two FIT fixtures with Garmin's FIT Python SDK encoder (garmin-fit-sdk), message by
message as the FIT Protocol and Profile define them; run from the repository root:
``python tests/write_fit_fixtures.py``. The answers each file must give are in
tests/data/README.md and tests/test_garmin_fit.py."""

from datetime import datetime, timezone
from pathlib import Path

from garmin_fit_sdk import Encoder, Profile

HERE = Path(__file__).resolve().parent / "data" / "garmin_fit"
MESG = Profile["mesg_num"]
FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)


def fit_seconds(when: datetime) -> int:
    return int((when - FIT_EPOCH).total_seconds())


def monitoring() -> bytes:
    t0 = datetime(2024, 5, 1, 15, 0, tzinfo=timezone.utc)  # 08:00 at UTC-7
    s0 = fit_seconds(t0)
    e = Encoder()
    e.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "monitoring_b", "manufacturer": "garmin", "product": 1,
                  "serial_number": 3999999999, "time_created": t0})
    e.write_mesg({"mesg_num": MESG["MONITORING_INFO"], "timestamp": t0, "local_timestamp": s0 - 7 * 3600})
    # steps are written through the 'cycles' field (scale 2): steps = 2 x cycles for walking and running
    e.write_mesg({"mesg_num": MESG["MONITORING"], "timestamp": t0, "activity_type": "walking", "cycles": 50, "heart_rate": 70})
    e.write_mesg({"mesg_num": MESG["MONITORING"], "timestamp_16": (s0 + 30) & 0xFFFF, "heart_rate": 74})
    e.write_mesg({"mesg_num": MESG["MONITORING"], "timestamp_16": (s0 + 60) & 0xFFFF, "activity_type": "walking", "cycles": 80})
    e.write_mesg({"mesg_num": MESG["MONITORING"], "timestamp_16": (s0 + 120) & 0xFFFF, "activity_type": "running", "cycles": 20})
    e.write_mesg({"mesg_num": MESG["MONITORING"], "timestamp_16": (s0 + 125) & 0xFFFF, "heart_rate": 255})
    return bytes(e.close())


def activity() -> bytes:
    t1 = datetime(2024, 5, 1, 17, 0, tzinfo=timezone.utc)  # 10:00 at UTC-7
    s1 = fit_seconds(t1)
    e = Encoder()
    e.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "activity", "manufacturer": "garmin", "product": 1,
                  "serial_number": 3999999999, "time_created": t1})
    for seconds, bpm in ((0, 120), (30, 124), (60, 130), (70, 0)):
        e.write_mesg({"mesg_num": MESG["RECORD"], "timestamp": s1 + seconds, "heart_rate": bpm})
    e.write_mesg({"mesg_num": MESG["ACTIVITY"], "timestamp": s1 + 70, "local_timestamp": s1 + 70 - 7 * 3600,
                  "num_sessions": 1, "type": "manual"})
    return bytes(e.close())


if __name__ == "__main__":
    for name, data in (("1000002/GARMIN/Monitor/M0501.FIT", monitoring()), ("1000002/GARMIN/Activity/A0501.FIT", activity())):
        target = HERE / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        print(target, len(data), "bytes")
