"""The driver-side ways of loading a published table that `recbatch bench export` measures recbatch against.

Each starts from the published Parquet (as recbatch's exports do) and ends with the rows
committed in the server: the table collected to the driver with toPandas(), then one
connection. None of them stages, validates, indexes or swaps: they do less work.
"""

from __future__ import annotations

from typing import Any

COLUMNS = "user_id, item_id, score, rank, source, model, run_id, dt"
CREATE = (
    "CREATE TABLE {table} (user_id text, item_id text, score real, rank integer, source text, "
    "model text, run_id text, dt date)"
)


def driver_rows(spark, published: str, date: str) -> list[tuple[Any, ...]]:
    """The published table on the driver (toPandas), as Python tuples in the export's column order."""
    import datetime

    frame = spark.read.parquet(published).toPandas()
    day = datetime.date.fromisoformat(date)
    return [
        (u, i, float(s), int(r), src, m, run, day)
        for u, i, s, r, src, m, run in zip(
            frame["user_id"],
            frame["item_id"],
            frame["score"],
            frame["rank"],
            frame["source"],
            frame["model"],
            frame["run_id"],
            strict=True,
        )
    ]


def _fresh_table(db, table: str) -> None:
    db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute(CREATE.format(table=table))


def naive_insert(spark, published: str, date: str, conninfo: str) -> int:
    """toPandas() + executemany INSERT over one psycopg connection, one transaction; returns rows."""
    import psycopg

    rows = driver_rows(spark, published, date)
    with psycopg.connect(conninfo) as db:
        _fresh_table(db, "bench_naive")
        with db.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO bench_naive ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows
            )
    return len(rows)


def driver_copy(spark, published: str, date: str, conninfo: str) -> int:
    """toPandas() + COPY FROM STDIN over one psycopg connection: the fast single-connection way."""
    import psycopg

    rows = driver_rows(spark, published, date)
    with psycopg.connect(conninfo) as db:
        _fresh_table(db, "bench_copy")
        with db.cursor() as cursor, cursor.copy(f"COPY bench_copy ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def redis_driver(spark, published: str, client, prefix: str, batch: int = 1_000) -> int:
    """toPandas(), grouped per user in pandas, SET of the same JSON value over one pipelined connection."""
    import json

    import numpy as np

    frame = spark.read.parquet(published).toPandas().sort_values(["user_id", "rank"])
    written = 0
    pipe = client.pipeline(transaction=False)
    for user, group in frame.groupby("user_id", sort=False):
        pairs = [
            [i, float(str(np.float32(s)))] for i, s in zip(group["item_id"], group["score"], strict=True)
        ]
        pipe.set(f"{prefix}:{user}", json.dumps(pairs, separators=(",", ":")))
        written += 1
        if written % batch == 0:
            pipe.execute()
    pipe.execute()
    return written
