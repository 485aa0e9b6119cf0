"""Catalog tables: published versions registered in a Hive metastore (embedded Derby), on real Spark.

The shared session has the Hive catalog (tests/conftest.py). Readers poll from sessions
of their own (`spark.newSession()`: their own table caches, the same metastore) while
versions are published, as readers in other jobs do.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from recbatch.errors import PipelineError
from recbatch.io.catalog import catalog_version, check_table, register_version

DATE = "2026-01-02"
SCHEMA = "user_id string, item_id string, score float, rank int, run_id string"


def write_version(spark, root: Path, date: str, run_id: str, users: int, k: int) -> str:
    """A version folder as publish lays it out, `users` × `k` rows of one run id; returns its path."""
    rows = [(f"u{u}", f"i{r}", float(k - r), r, run_id) for u in range(users) for r in range(1, k + 1)]
    path = root / ".versions" / f"dt={date}" / run_id
    spark.createDataFrame(rows, SCHEMA).coalesce(2).write.parquet(str(path))
    return str(path)


def counts(df) -> dict[str, int]:
    return {
        r["run_id"]: r["n"] for r in df.groupBy("run_id").count().withColumnRenamed("count", "n").collect()
    }


def test_register_creates_an_external_table_and_swaps_a_partition_per_call(spark, tmp_path):
    root = tmp_path / "published" / "recs"
    first = write_version(spark, root, DATE, "run-a", users=4, k=3)
    schema = spark.read.parquet(first).schema
    assert catalog_version(spark, "cat1.recs", DATE) is None

    register_version(spark, "cat1.recs", DATE, first, schema)
    table = spark.catalog.getTable("cat1.recs")
    assert table.tableType == "EXTERNAL"
    assert [c.name for c in spark.catalog.listColumns("cat1.recs") if c.isPartition] == ["dt"]
    assert catalog_version(spark, "cat1.recs", DATE) == f"file:{first}"
    assert counts(spark.table("cat1.recs")) == {"run-a": 12}

    second = write_version(spark, root, DATE, "run-b", users=5, k=2)
    other_day = write_version(spark, root, "2026-01-03", "run-c", users=1, k=1)
    register_version(spark, "cat1.recs", DATE, second, schema)
    register_version(spark, "cat1.recs", "2026-01-03", other_day, schema)
    register_version(spark, "cat1.recs", "2026-01-03", other_day, schema)  # already there: no call
    assert catalog_version(spark, "cat1.recs", DATE) == f"file:{second}"
    by_date = spark.sql("SELECT dt, run_id, count(*) AS n FROM cat1.recs GROUP BY dt, run_id").collect()
    assert sorted(tuple(r) for r in by_date) == [(DATE, "run-b", 10), ("2026-01-03", "run-c", 1)]
    # External: the table's own folder is the published table's, and dropping it keeps the data.
    spark.sql("DROP TABLE cat1.recs")
    assert Path(second).is_dir() and Path(first).is_dir()


@pytest.mark.parametrize(
    ("ddl", "complaint"),
    [
        (
            "(user_id STRING, item_id STRING, score DOUBLE, rank INT, run_id STRING, dt STRING)"
            " USING parquet PARTITIONED BY (dt) LOCATION '{loc}'",
            "score double (published: float)",
        ),
        (
            "(user_id STRING, item_id STRING, score FLOAT, rank INT, run_id STRING, day STRING)"
            " USING parquet PARTITIONED BY (day) LOCATION '{loc}'",
            "partitioned by ['day'], not ['dt']",
        ),
        (
            "(user_id STRING, item_id STRING, score FLOAT, rank INT, run_id STRING, dt STRING)"
            " USING parquet PARTITIONED BY (dt)",
            "managed table",
        ),
        (
            "(user_id STRING, item_id STRING, score FLOAT, rank INT, run_id STRING, dt STRING)"
            " USING csv PARTITIONED BY (dt) LOCATION '{loc}'",
            "stored as csv, not Parquet",
        ),
    ],
    ids=["column-type", "not-dt", "managed", "csv"],
)
def test_an_incompatible_catalog_table_is_refused_in_one_line(spark, tmp_path, ddl, complaint):
    version = write_version(spark, tmp_path / "recs", DATE, "run-a", users=2, k=2)
    spark.sql("CREATE DATABASE IF NOT EXISTS cat2")
    spark.sql("DROP TABLE IF EXISTS cat2.recs")
    spark.sql("CREATE TABLE cat2.recs " + ddl.format(loc=tmp_path / "other"))
    with pytest.raises(PipelineError) as failure:
        register_version(spark, "cat2.recs", DATE, version, spark.read.parquet(version).schema)
    message = str(failure.value)
    assert complaint in message and "DROP TABLE cat2.recs" in message and "\n" not in message
    assert catalog_version(spark, "cat2.recs", DATE) is None, "nothing was registered"
    spark.sql("DROP TABLE cat2.recs")


def test_check_table_accepts_the_table_register_created(spark, tmp_path):
    version = write_version(spark, tmp_path / "recs", DATE, "run-a", users=2, k=2)
    schema = spark.read.parquet(version).schema
    register_version(spark, "recs_check", DATE, version, schema)
    check_table(spark, "recs_check", schema)  # no error
    with pytest.raises(PipelineError, match=r"item_id string \(published: none\)"):
        check_table(
            spark,
            "recs_check",
            [
                (n, t)
                for n, t in [("user_id", "string"), ("score", "float"), ("rank", "int"), ("run_id", "string")]
            ],
        )
    spark.sql("DROP TABLE recs_check")


def test_readers_polling_during_repeated_publishes_see_one_whole_version(spark, tmp_path):
    from recbatch.config import PublishConfig
    from recbatch.io.publish import publish_table

    config = PublishConfig(table="recs", keep_versions=10, catalog_table="cat3.recs")
    shapes = {"run-0": (40, 3), "run-1": (25, 5), "run-2": (40, 3), "run-3": (25, 5)}
    frames = {
        run: spark.createDataFrame(
            [(f"u{u}", f"i{r}", float(k - r), r, run) for u in range(users) for r in range(1, k + 1)], SCHEMA
        )
        for run, (users, k) in shapes.items()
    }
    publish_table(frames["run-0"], config, tmp_path, DATE, "run-0", 5)
    expected = {run: users * k for run, (users, k) in shapes.items()}
    reader = spark.newSession()
    made_before = reader.table("cat3.recs")
    polls = {
        "spark.table": lambda: counts(reader.table("cat3.recs").where("dt = '2026-01-02'")),
        "sql": lambda: {
            r[0]: r[1]
            for r in reader.sql(
                "SELECT run_id, count(*) FROM cat3.recs WHERE dt = '2026-01-02' GROUP BY run_id"
            ).collect()
        },
        "dataframe made before": lambda: counts(made_before),
    }
    seen: dict[str, list[dict[str, int]]] = {name: [] for name in polls}
    errors: list[BaseException] = []
    done = threading.Event()

    def poll(name: str) -> None:
        try:
            while not done.is_set():
                seen[name].append(polls[name]())
        except BaseException as exc:  # surfaced below: a reader must never fail either
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(name,), daemon=True) for name in polls]
    for thread in threads:
        thread.start()
    for run in ("run-1", "run-2", "run-3"):
        time.sleep(1.0)
        publish_table(frames[run], config, tmp_path, DATE, run, 5)
    time.sleep(1.0)
    done.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    for name, observations in seen.items():
        assert observations, f"{name}: no poll finished"
        bad = [o for o in observations if len(o) != 1 or expected[next(iter(o))] != next(iter(o.values()))]
        assert not bad, f"{name} saw a partial or mixed table: {bad[:3]}"
        runs = {next(iter(o)) for o in observations}
        assert len(runs) >= 2, f"{name} never saw a newer version without REFRESH TABLE: {runs}"
    assert catalog_version(spark, "cat3.recs", DATE).endswith("/" + _newest(tmp_path / "recs", "run-3"))


def _newest(table_dir: Path, run_id: str) -> str:
    return sorted(
        p.name for p in (table_dir / ".versions" / f"dt={DATE}").iterdir() if p.name.startswith(run_id)
    )[-1]
