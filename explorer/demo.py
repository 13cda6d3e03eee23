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


#: the demo's size: enough persons that most public cells clear the All of Us rule (no count
#: 1-20) on every public page, and three weeks, so circadian metrics (a week at least), heat
#: waves and the README's cohort example have data; served within 2 minutes on 2 cores
DEMO_PARTICIPANTS = 300
DEMO_DAYS = 21
#: people (at most; a twentieth of a smaller demo, as synth does) whose wearable data arrives as
#: Fitbit account exports (5-15 s heart-rate samples, a file per day and stream): enough to show
#: the format, few enough that the demo's ingest is not mostly theirs (a twentieth of 300 people
#: took 75 of its 110 s on 2 cores)
DEMO_FITBIT_EXPORT_PEOPLE = 3

#: the demo's cohort: a healthy-ageing wearable study. Each step removes none or many (131 and
#: 53 of 300): a step removing a handful would be hidden from public readers, and a cohort of
#: nearly the whole lake would hide its own counts (the few left out could be told apart)
DEMO_COHORT = """
name: demo-healthy-ageing
description: Adults aged 50 and over without a recorded chronic condition, from their first valid day of wear,
  who wore the device on at least two days
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: demographics, age: {gte: 50}}
  - {kind: wearable, min_valid_days: 2}
exclusion:
  - {kind: condition, codes: [N18, E11, K76, M06]}
"""


def _readable(frame):
    """Dates as dates, a column of whole numbers without ``.0`` (others to one decimal), missing
    as —: the frame as text to print."""
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for name, column in frame.items():
        present = column.dropna()
        if pd.api.types.is_datetime64_any_dtype(column):
            text = column.dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_float_dtype(column):
            whole = bool((present == present.round()).all())
            text = column.map(lambda v: f"{v:.0f}" if whole else f"{v:.1f}")
        else:
            text = column.astype(str)
        out[name] = text.where(column.notna(), "—")
    return out


def _tables_of(references, but: str) -> list[str]:
    """The tables of ``table@version`` references, each once, in order, leaving out ``but``."""
    return [t for t in dict.fromkeys(r.split("@")[0] for r in references) if t != but]


def demo_key_file(lake: Lake) -> Path:
    """A pseudonym key for the demo, beside (never inside) the lake; made once, then reused."""
    path = lake.root.parent / f"{lake.root.name}.pseudonym.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)
    return path


def run_demo(lake: Lake, *, participants: int = DEMO_PARTICIPANTS, days: int = DEMO_DAYS, seed: int = 0, say=print) -> dict:
    """Fill ``lake`` from a small synthetic cohort and show what the lake keeps."""
    from explorer.synth import SynthConfig, generate

    cohort = lake.root.parent / f"{lake.root.name}-synth-cohort"
    say(f"[1/7] synth: {participants} participants x {days} days, with the fault set -> {cohort}")
    summary = generate(cohort, SynthConfig(participants=participants, days=days, seed=seed, faults=True,
                                                json_fraction=min(0.05, DEMO_FITBIT_EXPORT_PEOPLE / participants)),
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

    # the person-day figures shown are wearable_daily's, the table the pages and cohorts read:
    # a sum over heart-rate minutes joined to step minutes would leave out the steps of minutes
    # without a heart rate (the device off the wrist but counting), and disagree with the pages
    person = lake.sql("SELECT person_id FROM wearable_daily ORDER BY person_id LIMIT 1")["person_id"].iloc[0]
    daily = lake.sql(
        """SELECT date, steps, wear_minutes, valid_day, round(mean_hr, 1) AS mean_hr_bpm,
                  round(resting_hr, 1) AS resting_hr_bpm, round(sleep_minutes) AS sleep_minutes
           FROM wearable_daily WHERE person_id = ? ORDER BY date""", [person])
    say(f"\n[4/7] person-days of pseudonym {person} in wearable_daily (lake.sql, bound parameter; "
        f"{'the first 7 of ' if len(daily) > 7 else ''}{len(daily)} days; steps are the local day's sum of every step "
        "minute; — where the day has no sleep or no resting heart rate):")
    say(_readable(daily.head(7)).to_string(index=False).replace("\n", "\n      ").join(["      ", ""]))
    say("\n[5/7] a cohort, defined as data (explorer.cohorts), counted in one query and saved with lineage:")
    from explorer import cohorts

    definition = cohorts.loads(DEMO_COHORT)
    attrition = cohorts.count(lake, definition)
    say(attrition.astype({"removed": "object"}).fillna("").to_string(index=False).replace("\n", "\n      ").join(["      ", ""]))
    version = cohorts.save(lake, definition)
    say(f"      saved as cohort_member@{version}; try `explorer --role researcher cohort characterise {definition.name}`, "
        f"and `explorer --role public cohort count {definition.name}` for what a public user sees")
    lineage = lake.lineage("heart_rate_minute")
    raw = [r for r in lineage.upstream if r.startswith("raw:")]
    say(f"\n[6/7] lineage of {lineage.node}: made from {len(raw):,} raw files"
        + "".join(f", {r}" for r in lineage.upstream if not r.startswith("raw:"))
        + f"; used by {', '.join(_tables_of(lineage.downstream, but='job_run')) or 'nothing yet'}"
        + f"\n      (`explorer lineage heart_rate_minute` lists every one)")
    verified = lake.verify()
    say(f"\n[7/7] verify: {verified}")
    return {"ingest": report, "refresh": refreshed, "days_shown": len(daily), "verified": verified.ok}
