"""Erasure finds a person by their identifiers where they are identifiers: a short source id
that also occurs in others' values or codes leaves those rows alone."""

from __future__ import annotations

import json

from explorer.privacy.erasure import _Marks, _mentions_bytes, _without

PSEUDONYM = "ab" * 32


def marks(source_id="4711"):
    return _Marks(source_id, PSEUDONYM, ["0f8fad5b-d9cb-469f-a165-70867728950e"])


def test_a_short_id_is_matched_under_person_columns_only():
    data = (b"person_id,datetime,steps,code\n4711,2024-01-01 00:00,3,x\n5000,2024-01-01 00:00,4711,4711-1\n"
            b"5001,2024-01-01 00:01,2,4711\n4711,2024-01-01 00:01,5,y\n")
    kept = _without(data, marks(), "steps.csv")
    assert kept == b"person_id,datetime,steps,code\n5000,2024-01-01 00:00,4711,4711-1\n5001,2024-01-01 00:01,2,4711\n"
    assert _mentions_bytes(data, marks()) and not _mentions_bytes(kept, marks())
    others = b"participant_id,GLU\n5000,4711\n"
    assert not _mentions_bytes(others, marks()) and _without(others, marks(), "labs.csv") == others


def test_records_paths_and_bundles():
    m = marks()
    assert m.in_record(json.dumps({"person_id": "4711", "steps": "3"}))
    assert not m.in_record(json.dumps({"person_id": "5000", "steps": "4711"}))
    assert m.in_record("fitbit_export/4711/steps-2024-01-01.json") and m.in_record("fhir/4711.json")
    assert not m.in_record("fitbit_export/5000/steps-4711.json.bak")
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"value": "4711"}]}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"}}},
        {"resource": {"resourceType": "Patient", "identifier": [{"value": "5000"}], "note": "4711"}}]}
    data = json.dumps(bundle).encode()
    assert _mentions_bytes(data, m)
    kept = json.loads(_without(data, m, "bundle.json"))
    assert [e["resource"]["identifier"][0]["value"] for e in kept["entry"]] == ["5000"]


def test_a_long_id_and_the_pseudonym_are_found_anywhere():
    m = marks("1000007")
    assert _mentions_bytes(b"free text naming 1000007 here", m) and not _mentions_bytes(b"10000071", m)
    assert _mentions_bytes(("x " + PSEUDONYM).encode(), m)
