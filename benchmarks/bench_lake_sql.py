"""`lake.sql` over a Delta table vs DuckDB `read_parquet` over the same files.

Query: a person-by-day aggregate (sum of steps, minutes counted) over minute-level rows.
Target: lake.sql within 1.2x of bare DuckDB (median of several runs, same run).
"""

from __future__ import annotations


import duckdb

import explorer
from benchmarks.harness import DATA, Result, benchmark, interleaved_medians, median, minute_tables, remove_lake

QUERY = """SELECT person_id, CAST(datetime AS DATE) AS day, sum(steps) AS steps, count(*) AS minutes
           FROM {source} GROUP BY ALL"""
PERSONS = 400


def build(rows: int, progress) -> explorer.Lake:
    """A lake whose ``steps_minute`` holds ``rows`` rows: PERSONS people x rows/PERSONS minutes."""
    root = DATA / f"lake_sql_{rows}"
    lake = explorer.open(root)
    if lake.has_table("steps_minute") and lake.row_count("steps_minute") == rows:
        return lake
    remove_lake(root)
    lake = explorer.open(root)
    for done, table in minute_tables(PERSONS, rows, seed=1, chunk_rows=5_000_000):
        lake.write("steps_minute", table, operation="benchmark-input")
        progress(done, PERSONS, "people written")
    return lake


@benchmark("lake_sql")
def run(scale: float, repeats: int, progress) -> list[Result]:
    rows = int(50_000_000 * scale) // PERSONS * PERSONS
    lake = build(rows, progress)
    files = lake.delta("steps_minute").file_uris()
    bare = duckdb.connect()
    glob = str(lake.table_path("steps_minute") / "*.parquet")
    arrow = duckdb.connect()
    arrow.register("steps_minute", lake.delta("steps_minute").to_pyarrow_dataset())
    expected = len(lake.sql(QUERY.format(source="steps_minute")))
    assert expected == len(bare.sql(QUERY.format(source=f"read_parquet('{glob}')")).fetchall())

    times = interleaved_medians({
        "duckdb read_parquet": lambda: bare.sql(QUERY.format(source=f"read_parquet('{glob}')")).fetchall(),
        "lake.sql (Delta)": lambda: lake.sql(QUERY.format(source="steps_minute")),
        "Arrow dataset scan": lambda: arrow.sql(QUERY.format(source="steps_minute")).fetchall(),
    }, repeats)
    base = median(times["duckdb read_parquet"])
    note = f"{rows:,} rows, {len(files)} files, {expected:,} person-days, median of {repeats}"
    return [
        Result("lake_sql", "duckdb read_parquet", base, "s", note=note),
        Result("lake_sql", "lake.sql (Delta)", median(times["lake.sql (Delta)"]), "s",
               "duckdb read_parquet", base, 1.2, note),
        Result("lake_sql", "Arrow dataset scan", median(times["Arrow dataset scan"]), "s",
               "duckdb read_parquet", base, None, "reader of sandboxed dashboard connections, for reference"),
    ]
