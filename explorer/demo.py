"""`explorer demo`: the longest end-to-end path the suite has, on a synthetic cohort.

synth (raw files in source formats, with faults) -> ingest (kept byte for byte, detected,
validated, pseudonymised, unified; bad rows and files quarantined with reasons; data-quality
report) -> refresh of the aggregate tables on a local Dask cluster -> a person-day query with
bound parameters -> a cohort counted and saved -> lineage both ways -> checksums verified.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from explorer.progress import Progress

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake


#: the demo's cohort: adults whose wearable data starts their follow-up, with enough wear
DEMO_COHORT = """
name: demo-adults-wearing
description: Adults from their first valid day of wear, who wore the device on at least two days
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: demographics, age: {gte: 18}}
  - {kind: wearable, min_valid_days: 2}
exclusion:
  - {kind: condition, codes: [N18]}
"""


def demo_key_file(lake: Lake) -> Path:
    """A pseudonym key for the demo, beside (never inside) the lake; made once, then reused."""
    path = lake.root.parent / f"{lake.root.name}.pseudonym.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)
    return path


def run_demo(lake: Lake, *, participants: int = 20, days: int = 7, seed: int = 0, say=print) -> dict:
    """Fill ``lake`` from a small synthetic cohort and show what the lake keeps."""
    from explorer.synth import SynthConfig, generate

    cohort = lake.root.parent / f"{lake.root.name}-synth-cohort"
    say(f"[1/7] synth: {participants} participants x {days} days, with the fault set -> {cohort}")
    summary = generate(cohort, SynthConfig(participants=participants, days=days, seed=seed, faults=True),
                       overwrite=True, progress=Progress("synth"))
    say(f"      {summary}")

    key = demo_key_file(lake)
    say(f"[2/7] ingest (pseudonym key {key}, outside the lake)")
    report = lake.ingest(cohort, key_file=key, progress=Progress("ingest"))
    for line in str(report).splitlines()[:14]:
        say("      " + line)

    from explorer.jobs import refresh

    say("\n[3/7] refresh: aggregate tables on a local Dask cluster (only what changed is recomputed)")
    refreshed = refresh(lake, workers=min(2, os.cpu_count() or 1), progress=Progress("refresh"))
    for line in str(refreshed).splitlines():
        say("      " + line)
    say(lake.sql("SELECT modality, persons_with_data, person_days, median_days_per_person FROM modality_coverage")
        .to_string(index=False).replace("\n", "\n      ").join(["      ", ""]))

    person = lake.sql("SELECT person_id FROM heart_rate_minute ORDER BY person_id LIMIT 1")["person_id"].iloc[0]
    daily = lake.sql(
        """SELECT h.person_id, CAST(h.datetime AS DATE) AS date, count(*) AS worn_minutes,
                  round(avg(h.heart_rate_value), 1) AS mean_hr, CAST(sum(s.steps) AS BIGINT) AS steps
           FROM heart_rate_minute h LEFT JOIN steps_minute s USING (person_id, datetime)
           WHERE h.person_id = ? GROUP BY ALL ORDER BY date""", [person])
    say(f"\n[4/7] person-day summary for pseudonym {person} (lake.sql, bound parameter):")
    say(daily.to_string(index=False))
    say("\n[5/7] a cohort, defined as data (explorer.cohorts), counted in one query and saved with lineage:")
    from explorer import cohorts

    definition = cohorts.loads(DEMO_COHORT)
    attrition = cohorts.count(lake, definition)
    say(attrition.astype({"removed": "object"}).fillna("").to_string(index=False).replace("\n", "\n      ").join(["      ", ""]))
    version = cohorts.save(lake, definition)
    say(f"      saved as cohort_member@{version}; try `explorer cohort characterise {definition.name}`, and "
        f"`explorer --role public cohort count {definition.name}` for what a public user sees")
    say("\n[6/7] lineage of the newest heart_rate_minute version:")
    say(str(lake.lineage("heart_rate_minute")).replace("\n", "\n      ")[:1500])
    verified = lake.verify()
    say(f"\n[7/7] verify: {verified}")
    return {"ingest": report, "refresh": refreshed, "days_shown": len(daily), "verified": verified.ok}
