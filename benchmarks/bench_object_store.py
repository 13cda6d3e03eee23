"""Reading a Delta table from S3-compatible object storage against the same table in a local folder
(issue 24: "measure the cost against a local lake").

DuckDB's ``httpfs`` extension cannot be installed here, so a lake on object storage is read
through deltalake's Arrow dataset, which DuckDB scans with projection and filter pushdown. The
store is a real SeaweedFS (``weed mini`` on 127.0.0.1, the same server the tests use); both
copies are written by delta-rs from the same Arrow tables.

Queries: the person-by-day aggregate of ``bench_lake_sql`` (every row, two columns), and one
person's minutes (a filter the Parquet statistics can skip row groups on). No target: the
issue asks for the cost.
"""

from __future__ import annotations

import shutil

import duckdb

from benchmarks.harness import DATA, Result, benchmark, interleaved_medians, median, minute_tables
from explorer.lake.engine import delta_dataset
from explorer.testing import person_ids

QUERY = """SELECT person_id, CAST(datetime AS DATE) AS day, sum(steps) AS steps, count(*) AS minutes
           FROM steps_minute GROUP BY ALL"""
ONE_PERSON = "SELECT datetime, steps FROM steps_minute WHERE person_id = ?"
PERSONS = 200


@benchmark("object_store")
def run(scale: float, repeats: int, progress) -> list[Result]:
    import deltalake

    from explorer.testing.seaweed import start_object_store

    rows = int(20_000_000 * scale) // PERSONS * PERSONS
    local = DATA / "object_store_local" / "steps_minute"
    shutil.rmtree(local.parent, ignore_errors=True)
    shutil.rmtree(DATA / "object_store_seaweed", ignore_errors=True)
    server = start_object_store(DATA / "object_store_seaweed")
    try:
        remote, options = "s3://lake/steps_minute", server.storage_options
        for k, (done, table) in enumerate(minute_tables(PERSONS, rows, seed=2, chunk_rows=2_500_000)):
            mode = "overwrite" if k == 0 else "append"
            deltalake.write_deltalake(str(local), table, mode=mode)
            deltalake.write_deltalake(remote, table, mode=mode, storage_options=options)
            progress(done, PERSONS, "people written to both copies")
        connections = {}
        for name, table in (("local folder", deltalake.DeltaTable(str(local))),
                            ("object store", deltalake.DeltaTable(remote, storage_options=options))):
            con = duckdb.connect()
            con.register("steps_minute", delta_dataset(table))  # the suite's reader of a table on object storage
            connections[name] = con
        person = person_ids(PERSONS, seed=2)[PERSONS // 2]
        expected = len(connections["local folder"].sql(QUERY).fetchall())
        assert expected == len(connections["object store"].sql(QUERY).fetchall())
        times = interleaved_medians({
            **{f"aggregate, {name}": (lambda con=con: con.sql(QUERY).fetchall()) for name, con in connections.items()},
            **{f"one person, {name}": (lambda con=con: con.execute(ONE_PERSON, [person]).fetchall())
               for name, con in connections.items()},
        }, repeats)
    finally:
        server.stop()
    note = f"{rows:,} rows of {PERSONS} persons, DuckDB over deltalake's Arrow dataset, median of {repeats}"
    out = []
    for query in ("aggregate", "one person"):
        base = median(times[f"{query}, local folder"])
        out += [Result("object_store", f"{query}, local folder", base, "s", note=note),
                Result("object_store", f"{query}, object store (SeaweedFS)", median(times[f"{query}, object store"]), "s",
                       f"{query}, local folder", base, None, "same table written by delta-rs to weed mini on 127.0.0.1")]
    return out
