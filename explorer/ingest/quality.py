"""Data-quality report per ingest, in the style of the OHDSI Data Quality Dashboard.

Every check yields a numerator (rows, minutes or person-days that fail) and a denominator (what
was checked), stored in ``dq_result`` with the threshold in force, so a threshold can be changed
later without re-running anything: ``passed = 100 * numerator / denominator <= threshold_pct``.
Categories follow Kahn et al.: conformance (does the value fit the format), completeness (is it
there), plausibility (is it believable).

References
----------
Kahn MG et al. A Harmonized Data Quality Assessment Terminology and Framework for the Secondary
Use of Electronic Health Record Data. eGEMs 2016;4(1):1244.
Blacketer C et al. Increasing trust in real-world evidence through evaluation of observational
data quality. JAMIA 2021;28(10):2251-2257.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from explorer.errors import ExplorerError, did_you_mean
from explorer.lake.engine import new_connection

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

DQ_TABLE = "dq_result"


@dataclass(frozen=True)
class Check:
    check_id: str
    category: str  # conformance | completeness | plausibility
    table: str
    description: str
    threshold_pct: float
    sql: str = ""  # returns one row: numerator, denominator; ? is the ingest's list of source files
    shared: str = ""  # or: the SHARED query that computes this check with others in one pass


_SAME_AS_LAST_29 = " AND ".join(f"heart_rate_value = lag(heart_rate_value, {k}) OVER w" for k in range(1, 30))

#: check -> tables it may read that an ingest need not have written (no day had a known zone, so
#: no wearable_day_zone): read as empty, with these columns, where the lake lacks them. Only
#: for checks whose answer is right on an empty table; the others are skipped as before.
EMPTY_WHEN_ABSENT = {"wearable_zone_unknown": {"wearable_day_zone": "person_id VARCHAR, date DATE"}}

#: checks that need the same ordering of a large table share one pass over it; each returns
#: ``<check_id>_numerator`` and ``<check_id>_denominator`` columns
SHARED = {
    # one sort of each person's minutes: the gap to the previous minute (sync gaps, and a zero
    # gap is a repeated local minute), and whether the previous 29 values equal this one (a
    # 30-minute flat line, the same as min = max over a 30-row window, at a third of the cost)
    "heart_rate_sequence": f"""
        SELECT count(*) FILTER (WHERE flat) AS hr_flatline_numerator, count(*) AS hr_flatline_denominator,
               count(*) FILTER (WHERE gap > INTERVAL 24 HOUR) AS hr_sync_gap_numerator,
               greatest(1, CAST(count(*) / 1440 AS BIGINT)) AS hr_sync_gap_denominator,
               count(*) FILTER (WHERE gap = INTERVAL 0 MINUTE) AS hr_repeated_local_minute_numerator,
               count(*) AS hr_repeated_local_minute_denominator
        FROM (SELECT datetime - lag(datetime) OVER w AS gap, coalesce({_SAME_AS_LAST_29}, false) AS flat
              FROM heart_rate_minute WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))
              WINDOW w AS (PARTITION BY person_id ORDER BY datetime))""",
}


WEARABLE_CHECKS = (
    Check("hr_wear_time", "completeness", "heart_rate_minute",
          "person-days with under 10 h (600 min) of heart-rate data (wear-time compliance)", 20.0,
          """SELECT count(*) FILTER (WHERE n < 600), count(*) FROM (
               SELECT person_id, CAST(datetime AS DATE) AS day, count(*) AS n FROM heart_rate_minute
               WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[]))) GROUP BY ALL)"""),
    Check("hr_floor", "plausibility", "heart_rate_minute", "minutes with heart rate below 35 bpm", 0.5,
          """SELECT count(*) FILTER (WHERE heart_rate_value < 35), count(*) FROM heart_rate_minute
             WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))"""),
    Check("hr_flatline", "plausibility", "heart_rate_minute",
          "minutes closing 30 consecutive recorded minutes of one identical heart-rate value (a stuck sensor; "
          "a missing value breaks the run)", 0.5,
          shared="heart_rate_sequence"),
    Check("steps_cadence", "plausibility", "steps_minute", "minutes with more than 200 steps (beyond a sprint cadence)", 0.1,
          """SELECT count(*) FILTER (WHERE steps > 200), count(*) FROM steps_minute WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))"""),
    Check("hr_sync_gap", "completeness", "heart_rate_minute",
          "gaps of more than 24 h between consecutive heart-rate minutes, per person-day (sync gaps)", 5.0,
          shared="heart_rate_sequence"),
    Check("hr_repeated_local_minute", "conformance", "heart_rate_minute",
          "local minutes present twice (kept only inside a daylight-saving fall-back hour)", 0.5,
          shared="heart_rate_sequence"),
    Check("wearable_tz_jump", "plausibility", "wearable_day_zone",
          "person-days in another time zone than the person's day before (travel or a move: the local clock jumps)", 2.0,
          """SELECT count(*) FILTER (WHERE previous IS NOT NULL AND previous <> time_zone), count(*) FROM (
               SELECT time_zone, lag(time_zone) OVER (PARTITION BY person_id ORDER BY date) AS previous
               FROM wearable_day_zone WHERE person_id IN (SELECT DISTINCT person_id FROM wearable_day_zone
                                                          WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))))"""),
    Check("hr_dst_repeat_collapsed", "conformance", "heart_rate_minute",
          "autumn clock-change days worn through the repeated hour without any minute recorded twice "
          "(the device or export dropped an hour)", 5.0,
          """WITH change AS (SELECT person_id, date, clock_change_local AS at, -clock_shift_minutes AS minutes
                             FROM wearable_day_zone WHERE clock_shift_minutes < 0),
                  hour AS (SELECT c.person_id, c.date, c.minutes, count(*) AS n, count(DISTINCT h.datetime) AS distinct_n
                           FROM heart_rate_minute h JOIN change c
                             ON h.person_id = c.person_id AND CAST(h.datetime AS DATE) = c.date
                            AND h.datetime >= c.at - to_minutes(c.minutes) AND h.datetime < c.at
                           WHERE h.source_file IN (SELECT unnest(CAST(? AS VARCHAR[]))) GROUP BY ALL)
             SELECT count(*) FILTER (WHERE n = distinct_n), count(*) FROM hour WHERE distinct_n >= minutes / 2"""),
    Check("wearable_zone_unknown", "completeness", "heart_rate_minute",
          "person-days of heart-rate local (floating) times with no known time zone: no residence history covers "
          "the day and no --default-time-zone was given, so the minutes cannot be placed in UTC", 0.0,
          """SELECT count(*) FILTER (WHERE z.person_id IS NULL), count(*) FROM (
               SELECT DISTINCT person_id, CAST(datetime AS DATE) AS date FROM heart_rate_minute
               WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))) d
             LEFT JOIN wearable_day_zone z ON z.person_id = d.person_id AND z.date = d.date"""),
    Check("lab_si_missing", "completeness", "measurement", "lab results without an SI value (LOINC code without a conversion)", 5.0,
          """SELECT count(*) FILTER (WHERE value_si IS NULL), count(*) FROM measurement WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))"""),
    Check("person_birth_missing", "completeness", "person", "persons without a year of birth", 1.0,
          """SELECT count(*) FILTER (WHERE year_of_birth IS NULL), count(*) FROM person WHERE source_file IN (SELECT unnest(CAST(? AS VARCHAR[])))"""),
)


def quality_report(lake: Lake, ingest_id: str, source_files: list[str], accounting: pd.DataFrame,
                   memory_limit: str = "2GB") -> pd.DataFrame:
    """Run every check on the rows this ingest added; returns the ``dq_result`` rows.

    ``accounting`` is the ingest's per-file outcome (format, rows_read, rows_quarantined,
    rows_ignored): the conformance check per reader is its quarantined share of the records of
    kinds the suite stores. The checks run on one DuckDB
    connection pinned to the tables' current versions (recorded as the report's inputs) and
    held to ``memory_limit``, spilling to disk beyond it, so the report fits beside an ingest.
    """
    rows = []
    accepted = accounting[accounting["status"] == "accepted"]
    for fmt, group in accepted.groupby("format"):
        rows.append({"check_id": f"conformance_{fmt}", "category": "conformance", "table_name": fmt,
                     "description": f"rows of {fmt} files quarantined by row checks",
                     "numerator": int(group["rows_quarantined"].sum()), "denominator": int(group["rows_read"].sum() - group["rows_ignored"].sum()),
                     "threshold_pct": 1.0})
    present = set(lake.tables())
    checks = [c for c in WEARABLE_CHECKS
              if c.table in present and _tables_of(c) - set(EMPTY_WHEN_ABSENT.get(c.check_id, ())) <= present]
    versions = {t: lake.version(t) for t in sorted({t for c in checks for t in _tables_of(c)} & present)}
    if checks:
        con = new_connection(memory_limit=memory_limit)
        try:
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET temp_directory = ?", [str(Path(tempfile.gettempdir()) / f"explorer-dq-{ingest_id}")])
            lake.pinned_views(con, list(versions), versions)
            empty = {t: columns for c in checks for t, columns in EMPTY_WHEN_ABSENT.get(c.check_id, {}).items()}
            for table, columns in empty.items():
                if table not in present:
                    con.execute(f"CREATE TEMP TABLE {table} ({columns})")  # names from the constant above only
            shared: dict[str, dict] = {}
            for check in checks:
                if check.shared:
                    if check.shared not in shared:
                        query = SHARED[check.shared]
                        result = con.execute(query, [source_files] * query.count("?"))
                        names = [d[0] for d in result.description]
                        shared[check.shared] = dict(zip(names, result.fetchall()[0]))
                    numerator = shared[check.shared][f"{check.check_id}_numerator"]
                    denominator = shared[check.shared][f"{check.check_id}_denominator"]
                else:
                    params = [source_files] * check.sql.count("?")
                    numerator, denominator = con.execute(check.sql, params).fetchall()[0]
                rows.append({"check_id": check.check_id, "category": check.category, "table_name": check.table,
                             "description": check.description, "numerator": int(numerator or 0),
                             "denominator": int(denominator or 0), "threshold_pct": check.threshold_pct})
        finally:
            con.close()
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["pct"] = (100.0 * frame["numerator"] / frame["denominator"].where(frame["denominator"] > 0)).round(4)
    frame["passed"] = (frame["denominator"] == 0) | (frame["pct"] <= frame["threshold_pct"])
    frame.insert(0, "ingest_id", ingest_id)
    frame.attrs["versions"] = versions
    return frame


def _tables_of(check: Check) -> set[str]:
    from explorer.lake.engine import referenced_tables

    return referenced_tables(SHARED[check.shared] if check.shared else check.sql) or {check.table}


def store_report(lake: Lake, ingest_id: str, accounting: pd.DataFrame) -> pd.DataFrame:
    """Compute the report of one ingest from its per-file accounting and append it to dq_result."""
    files = accounting.loc[accounting["status"] == "accepted", "sha256"].tolist()
    report = quality_report(lake, ingest_id, files, accounting)
    if len(report):
        inputs = [f"{t}@{v}" for t, v in report.attrs.get("versions", {}).items()]
        lake.write(DQ_TABLE, report, mode="upsert", inputs=inputs, operation=f"quality {ingest_id}")  # a re-run replaces
    return report


def run_quality(lake: Lake, ingest_id: str | None = None) -> pd.DataFrame:
    """Compute and store the report of ``ingest_id`` (default: the newest ingest) again; return it."""
    if not lake.has_table("ingest_file"):
        raise ExplorerError("no ingest yet: run `explorer ingest PATH` first")
    runs = lake.sql("SELECT ingest_id, max(ingested_at) AS finished FROM ingest_file GROUP BY ingest_id ORDER BY finished")
    if ingest_id is None:
        ingest_id = runs["ingest_id"].iloc[-1]
    elif ingest_id not in set(runs["ingest_id"]):
        raise ExplorerError(f"no ingest {ingest_id!r}{did_you_mean(ingest_id, runs['ingest_id'])}; "
                            f"ingests: {', '.join(runs['ingest_id'].tail(5))}")
    return store_report(lake, ingest_id, lake.sql("SELECT * FROM ingest_file WHERE ingest_id = ?", [ingest_id]))


def summary(report: pd.DataFrame) -> str:
    """The report as terminal text: one line per check, then what failed and by how much."""
    from explorer.progress import table_text

    if report.empty:
        return "data quality: no checks apply (the ingest accepted no rows)"
    shown = report[["category", "check_id", "numerator", "denominator", "pct", "threshold_pct", "passed"]].copy()
    shown["passed"] = shown["passed"].map({True: "pass", False: "FAIL"})
    lines = [f"data quality of ingest {report['ingest_id'].iloc[0]} (stored in dq_result; pass = pct <= threshold):",
             table_text(shown)]
    for row in report[~report["passed"]].itertuples():
        lines.append(f"FAIL {row.check_id}: {row.description}: {row.numerator:,} of {row.denominator:,} ({row.pct}%) "
                     f"above the {row.threshold_pct}% threshold")
    return "\n".join(lines)
