"""Cohort attrition: a five-criterion definition over the synthetic 400 x 90 lake.

Targets (issue 10): the attrition counts in at most 1 s on 2 cores, and at most 1.5x a
hand-written DuckDB query of the same criteria, measured in the same run on the same lake
(both through ``lake.sql``, so both pay the same view registration).

Lake: ``explorer synth`` 400 x 90 (seed 1, the ingest benchmark's cohort), ingested, and refreshed
for the two aggregates the definition reads (wearable_daily, exposure_daily); kept under
benchmarks/.data/cohort_lake between runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from benchmarks.harness import DATA, Result, benchmark, interleaved_medians, remove_lake, run_measured

DEFINITION = """
name: benchmark-five
description: adults with a cardiometabolic diagnosis, raised glucose, low activity and a hot year
index_date: {rule: first_valid_wear_day}
inclusion:
  - {kind: demographics, age: {gte: 40}}
  - {kind: condition, codes: [E11, I10, K76, N18], window: {start: -3650, end: 0}}
  - {kind: lab, loinc: 2345-7, unit: mmol/L, value: {gte: 5.6}, which: last, window: {end: 0}}
  - {kind: wearable, min_valid_days: 60, metric: steps, statistic: median, value: {lt: 12000}, window: {start: 0, end: 89}}
  - {kind: exposure, variable: heat_wave, statistic: days, value: {gte: 3}, window: {start: -365, end: -1}}
"""

#: the same criteria as an analyst would write them by hand in DuckDB
HAND_WRITTEN = """
WITH idx AS (
    SELECT person_id, min(date) AS d FROM wearable_daily WHERE valid_day GROUP BY person_id
), flags AS (
    SELECT i.person_id,
           year(i.d) - p.year_of_birth >= 40 AS c1,
           EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.person_id = i.person_id
                   AND c.code_system = 'http://hl7.org/fhir/sid/icd-10-cm'
                   AND (c.code LIKE 'E11%' OR c.code LIKE 'I10%' OR c.code LIKE 'K76%' OR c.code LIKE 'N18%')
                   AND c.condition_start_date BETWEEN i.d - 3650 AND i.d) AS c2,
           coalesce((SELECT arg_max(m.value_si, m.measurement_datetime) FROM measurement m
                     WHERE m.person_id = i.person_id AND m.loinc_code = '2345-7'
                       AND CAST(m.measurement_datetime AS DATE) <= i.d) >= 5.6, false) AS c3,
           coalesce((SELECT count(*) >= 60 AND median(w.steps) < 12000 FROM wearable_daily w
                     WHERE w.person_id = i.person_id AND w.valid_day AND w.date BETWEEN i.d AND i.d + 89), false) AS c4,
           (SELECT count(*) FROM exposure_daily e WHERE e.person_id = i.person_id AND e.heat_wave
                   AND e.date BETWEEN i.d - 365 AND i.d - 1) >= 3 AS c5
    FROM idx i JOIN person p ON p.person_id = i.person_id
)
SELECT (SELECT count(DISTINCT person_id) FROM person) AS n0, count(*) AS n1,
       count(*) FILTER (WHERE c1) AS n2, count(*) FILTER (WHERE c1 AND c2) AS n3,
       count(*) FILTER (WHERE c1 AND c2 AND c3) AS n4, count(*) FILTER (WHERE c1 AND c2 AND c3 AND c4) AS n5,
       count(*) FILTER (WHERE c1 AND c2 AND c3 AND c4 AND c5) AS n6
FROM flags
"""


def build_lake(participants: int, progress):
    import explorer

    lake_root = DATA / "cohort_lake"
    marker = lake_root / ".built"
    if marker.exists() and marker.read_text() == str(participants):
        return explorer.open(lake_root)
    cohort = DATA / "synth_cohort"
    truth = cohort / "truth" / "truth.json"
    if not truth.exists() or f'"participants": {participants},' not in truth.read_text():
        progress(0, 4, "generating the cohort")
        shutil.rmtree(cohort, ignore_errors=True)
        run_measured([sys.executable, "-m", "explorer.command", "synth", "--participants", str(participants), "--days", "90",
                      "--seed", "1", "--out", str(cohort)])
    remove_lake(lake_root)
    key = DATA / "cohort.key"
    key.write_text("benchmark-pseudonym-key-0123456789abcdef")
    progress(1, 4, "explorer ingest")
    run_measured([sys.executable, "-m", "explorer.command", "--lake", str(lake_root), "ingest", str(cohort), "--key-file",
                  str(key), "--no-quality"], env={**os.environ})
    progress(2, 4, "explorer refresh wearable_daily exposure_daily")
    run_measured([sys.executable, "-m", "explorer.command", "--lake", str(lake_root), "refresh", "--step", "wearable_daily",
                  "--step", "exposure_daily"], env={**os.environ})
    marker.write_text(str(participants))
    return explorer.open(lake_root)


@benchmark("cohorts")
def run(scale: float, repeats: int, progress) -> list[Result]:
    import explorer
    from explorer import cohorts

    participants = max(8, int(400 * scale))
    lake = build_lake(participants, progress)
    definition = cohorts.loads(DEFINITION)
    progress(3, 4, "attrition: compiled definition vs hand-written DuckDB")
    ours = cohorts.count(lake, definition)["persons"].tolist()
    theirs = lake.sql(HAND_WRITTEN).iloc[0].tolist()
    if ours != theirs:
        raise AssertionError(f"the compiled definition and the hand-written query disagree: {ours} vs {theirs}")
    times = interleaved_medians({
        "compiled": lambda: cohorts.count(lake, cohorts.loads(DEFINITION)),
        "hand": lambda: lake.sql(HAND_WRITTEN),
    }, repeats)
    compiled, hand = (sorted(times[k])[len(times[k]) // 2] for k in ("compiled", "hand"))
    started = time.perf_counter()
    cohorts.count(explorer.open(lake.root), definition)  # a fresh lake object: views registered on first use
    cold = time.perf_counter() - started
    progress(4, 4, "done")
    note = (f"{participants} x 90: attrition {' > '.join(map(str, ours))}; median of {repeats}, parse + compile "
            "included")
    return [
        Result("cohorts", "hand-written DuckDB attrition", hand, "s", note="the same criteria through lake.sql"),
        Result("cohorts", "cohorts.count, 5 criteria", compiled, "s", "hand-written DuckDB attrition", hand, 1.5, note,
               limit=1.0 if scale == 1.0 else None),
        Result("cohorts", "cohorts.count, first call", cold, "s", note="a freshly opened lake: views registered",
               limit=1.0 if scale == 1.0 else None),
    ]
