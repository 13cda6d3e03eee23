"""Random and mutated input never escapes ingest: each file is parsed or quarantined, and the
row accounting holds."""

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explorer

GOOD = ("person_id,datetime,heart_rate_value\n"
        "1000001,2024-08-15 00:00:00,61\n1000001,2024-08-15 00:01:00,63\n1000001,2024-08-15 00:02:00,64\n")
PATIENTS = ('{"resourceType": "Patient", "id": "p1", "identifier": [{"value": "9"}]}\n'
            '{"resourceType": "Patient", "id": "p2", "birthDate": "1950-01-01", "identifier": [{"value": "8"}]}\n')
OBSERVATIONS = ('{"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"}, "code": {"coding": '
                '[{"system": "http://loinc.org", "code": "2345-7"}]}, "effectiveDateTime": "2020-01-01T08:00:00Z", '
                '"valueQuantity": {"value": 90, "code": "mg/dL"}}\n')
MAPPING = "column_name,loinc_code,unit\nGLU,2345-7,mg/dL\nCREA,2160-0,mg/dL\n"
WIDE = "participant_id,specimen_collected,GLU,CREA\n1,2021-03-01 08:00,90,1.0\n2,2021-03-02 08:00,95,\n"
FHIR = '{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient", "identifier": [{"value": "9"}]}}]}'


def mutate(text: str, data) -> bytes:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(0, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            raw = raw[:at]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at]
    return bytes(raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_or_random_files_are_parsed_or_quarantined(data):
    with tempfile.TemporaryDirectory() as root:
        incoming = Path(root) / "in"
        incoming.mkdir()
        (incoming / "hr.csv").write_bytes(mutate(GOOD, data))
        (incoming / "bundle.json").write_bytes(mutate(FHIR, data))
        (incoming / "random.bin").write_bytes(data.draw(st.binary(max_size=300)))
        (incoming / "Patient.ndjson").write_bytes(mutate(PATIENTS, data))
        (incoming / "Observation.ndjson").write_bytes(mutate(OBSERVATIONS, data))
        (incoming / "mapping.csv").write_bytes(mutate(MAPPING, data))
        (incoming / "wide.csv").write_bytes(mutate(WIDE, data))
        lake = explorer.open(Path(root) / "lake")
        key = Path(root) / "pseudonym.key"
        key.write_text("property-test-key-0123456789abcdef")
        report = lake.ingest(incoming, key_file=key)
        assert not report.errors, [(f.source_name, f.reason) for f in report.errors]
        for outcome in report.files:
            assert outcome.status in ("accepted", "quarantined", "skipped")
            assert outcome.rows_read == outcome.rows_accepted + outcome.rows_quarantined
            if outcome.status == "quarantined":
                assert outcome.reason


@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(["America/New_York", "America/Denver", "Europe/Berlin", "Australia/Sydney",
                             "Australia/Lord_Howe", "America/Santiago", "Asia/Tokyo"]),
       day=st.dates(min_value=__import__("datetime").date(2015, 1, 1), max_value=__import__("datetime").date(2030, 12, 31)))
def test_clock_change_agrees_with_the_tz_database_minute_by_minute(zone, day):
    """Every local minute of the day exists unless it lies in the reported skipped window, and
    happens twice exactly when it lies in the reported repeated window."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from explorer.ingest.checks import clock_change

    info = ZoneInfo(zone)
    start, end, change, shift = clock_change(zone, day)
    midnight = datetime(day.year, day.month, day.day)
    for minute in range(0, 1440, 5):
        local = midnight + timedelta(minutes=minute)
        early, late = local.replace(tzinfo=info, fold=0), local.replace(tzinfo=info, fold=1)
        exists = early.astimezone(timezone.utc).astimezone(info).replace(tzinfo=None) == local
        twice = exists and early.utcoffset() != late.utcoffset()
        skipped = change is not None and shift > 0 and change <= local < change + timedelta(minutes=shift)
        repeated = change is not None and shift < 0 and change + timedelta(minutes=shift) <= local < change
        assert exists == (not skipped), (local, change, shift)
        assert twice == repeated, (local, change, shift)
    assert (start == end) == (change is None)
