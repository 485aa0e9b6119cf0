"""`recbatch bench export`: rows/s into PostgreSQL and keys/s into Redis, against the driver-side ways.

Data: a seeded published table of `users` x `k` recommendations (default 100,000 x 10 = 1M rows),
written once by recbatch's own publish (4 part files). Servers: a throwaway PostgreSQL and
redis-server on 127.0.0.1 (recbatch.bench.servers), the same for every contender.
Contenders, each from the published Parquet to rows committed in the server:
  recbatch-jdbc   recbatch.io.export_jdbc: Spark's JDBC writer on `connections` executor tasks into a
                  staging table, count check, unique index (user_id, rank), one-transaction swap
  driver-copy     toPandas() + COPY FROM STDIN on one psycopg connection (the fast single-connection way)
  naive-insert    toPandas() + executemany INSERT on one psycopg connection
  recbatch-redis  recbatch.io.export_redis as configured by default (writer = "auto": at this size
                  the driver reads the published part files, one thread and connection per core),
                  per-user values built with Arrow, pipelined MSETs, pointer swap, expiry of the
                  replaced version (each run writes a new version)
  recbatch-redis-executors  the same with writer = "executors": Spark tasks reading the table (no
                  shuffle) build and send the values, the way for tables past driver_max_rows
  redis-driver    toPandas(), grouped in pandas, pipelined SETs of the same values on one connection
Timing: one warm-up for the Spark contenders, then `runs` timed runs; medians. Memory: peak resident
set of this process tree (driver, JVM, Python workers; the servers excluded), sampled every 0.1 s.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recbatch.bench.harness import MIB, PeakSampler, median, save_results, timed, tree_rss

DATE = "2026-01-02"
CONTENDERS = (
    "recbatch-jdbc",
    "driver-copy",
    "naive-insert",
    "recbatch-redis",
    "recbatch-redis-executors",
    "redis-driver",
)
SPARK_CONTENDERS = ("recbatch-jdbc", "recbatch-redis", "recbatch-redis-executors")


@dataclass
class ExportSpec:
    """What one `recbatch bench export` run measures."""

    users: int = 100_000
    k: int = 10
    items: int = 20_000
    runs: int = 3
    connections: int = 2
    batch_size: int = 10_000
    contenders: list[str] = field(default_factory=lambda: list(CONTENDERS))


def publish_synthetic(spark, spec: ExportSpec, root: Path) -> dict[str, Any]:
    """Publish `users` x `k` seeded rows (distinct items per user, scores falling with rank); returns the manifest."""
    from pyspark.sql import functions as F

    from recbatch.config import PublishConfig
    from recbatch.io.publish import publish_table

    user = F.floor(F.col("id") / spec.k)
    rank = (F.col("id") % spec.k + 1).cast("int")
    rows = spark.range(spec.users * spec.k).select(
        F.concat(F.lit("u"), F.lpad(user.cast("string"), 7, "0")).alias("user_id"),
        F.concat(F.lit("i"), ((user * 37 + rank * 101) % spec.items).cast("string")).alias("item_id"),
        (F.lit(1.0) - rank / 100 - F.rand(7) / 1000).cast("float").alias("score"),
        rank.alias("rank"),
        F.lit("model").alias("source"),
        F.lit("mf").alias("model"),
        F.lit("bench-run").alias("run_id"),
    )
    return publish_table(rows, PublishConfig(), root, DATE, "bench-run", spec.k, files=4)


def _measured(action, runs: int, warm_up: bool, exclude_pid: int | None) -> dict[str, Any]:
    me = os.getpid()
    sampler = PeakSampler(lambda: tree_rss(me) - (tree_rss(exclude_pid) if exclude_pid else 0), 0.1)
    sampler.start()
    try:
        seconds = timed(action, runs, warm_up=warm_up)
    finally:
        peak = sampler.stop()
    return {"seconds": seconds, "peak_rss_mib": round(peak / MIB, 1)}


def run_contenders(spark, spec: ExportSpec, root: Path, postgres, redis_server) -> dict[str, Any]:
    """Time every contender of `spec` against the servers; returns {name: seconds, peak, rows/keys}."""
    from recbatch.bench import export_peers
    from recbatch.config import ExportConfig
    from recbatch.io.export_jdbc import export_jdbc
    from recbatch.io.export_redis import export_redis
    from recbatch.io.publish import published_manifest, read_published
    from recbatch.io.versions import resolve
    from recbatch.storage import location

    os.environ["RECBATCH_BENCH_PG_PASSWORD"] = postgres.password
    os.environ["RECBATCH_BENCH_REDIS_PASSWORD"] = redis_server.password or ""
    export = ExportConfig.model_validate(
        {
            "jdbc": {
                "url": postgres.jdbc_url,
                "user": postgres.user,
                "password_env": "RECBATCH_BENCH_PG_PASSWORD",
                "table": "bench_recbatch",
                "connections": spec.connections,
                "batch_size": spec.batch_size,
            },
            "redis": {
                "url": redis_server.url,
                "prefix": "bench",
                "password_env": "RECBATCH_BENCH_REDIS_PASSWORD",
                "ttl_seconds": 1,  # replaced versions vanish instead of filling the server
            },
        }
    )
    manifest = published_manifest(root, "recommendations", DATE)
    folder = resolve(location(root), "recommendations", DATE)
    executors = export.redis.model_copy(update={"writer": "executors"})
    path = manifest["path"]
    # Read once, as the export step does for all its formats (the read is a Spark job of its own).
    published = read_published(spark, root, "recommendations", DATE)
    table = lambda: published  # noqa: E731
    client, runs = redis_server.client(), iter(range(10**6))
    actions = {
        "recbatch-jdbc": lambda: export_jdbc(spark, table(), manifest, export.jdbc, DATE),
        "driver-copy": lambda: export_peers.driver_copy(spark, path, DATE, postgres.conninfo),
        "naive-insert": lambda: export_peers.naive_insert(spark, path, DATE, postgres.conninfo),
        "recbatch-redis": lambda: export_redis(
            spark, table(), {**manifest, "version": f"v{next(runs)}"}, export.redis, DATE, folder
        ),
        "recbatch-redis-executors": lambda: export_redis(
            spark, table(), {**manifest, "version": f"v{next(runs)}"}, executors, DATE, folder
        ),
        "redis-driver": lambda: export_peers.redis_driver(spark, path, client, "bench-driver"),
    }
    found = {}
    for name in spec.contenders:
        got = _measured(actions[name], spec.runs, name in SPARK_CONTENDERS, redis_server.process.pid)
        if "redis" in name:
            got["keys"] = manifest["users"]
        else:
            got["rows"] = manifest["rows"]
        found[name] = got
        if name == "redis-driver":
            client.flushdb()
    return found


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Median rate per contender and the ratios the issue's targets are stated in."""
    table = {}
    for name, got in results["contenders"].items():
        seconds = median(got["seconds"])
        unit = "keys" if "keys" in got else "rows"
        table[name] = {
            "median_s": seconds,
            f"{unit}_per_s": got[unit] / seconds,
            "peak_rss_mib": got["peak_rss_mib"],
        }
    ratios: dict[str, Any] = {}
    jdbc = table.get("recbatch-jdbc")
    if jdbc and "naive-insert" in table:
        ratios["jdbc_vs_naive_insert"] = jdbc["rows_per_s"] / table["naive-insert"]["rows_per_s"]
        ratios["target_jdbc_3x_naive"] = ratios["jdbc_vs_naive_insert"] >= 3
    if jdbc and "driver-copy" in table:
        ratios["jdbc_vs_driver_copy"] = jdbc["rows_per_s"] / table["driver-copy"]["rows_per_s"]
        ratios["target_jdbc_within_2x_copy"] = ratios["jdbc_vs_driver_copy"] >= 0.5
    redis = table.get("recbatch-redis")
    if redis:
        ratios["target_redis_100k_keys_per_s"] = redis["keys_per_s"] >= 100_000
        if "redis-driver" in table:
            ratios["redis_vs_driver"] = redis["keys_per_s"] / table["redis-driver"]["keys_per_s"]
    executors = table.get("recbatch-redis-executors")
    if executors:
        ratios["redis_executors_100k_keys_per_s"] = executors["keys_per_s"] >= 100_000
    return {"contenders": table, "ratios": ratios}


def format_report(results: dict[str, Any]) -> str:
    """A Markdown table of the medians, ratios, memory and load."""
    spec, summary = results["spec"], results["summary"]
    lines = [
        f"export benchmark: {spec['users']:,} users x K{spec['k']} = {spec['users'] * spec['k']:,} rows, "
        f"{results['cores']} cores, {spec['connections']} writers, median of {spec['runs']} runs "
        f"(Spark contenders after a warm-up); load average {', '.join(f'{x:.1f}' for x in results['load_average'])}",
        "",
        "| contender | median s | rate | peak RSS (driver+JVM+workers) |",
        "|---|---:|---:|---:|",
    ]
    for name, row in summary["contenders"].items():
        rate = (
            f"{row['keys_per_s']:,.0f} keys/s" if "keys_per_s" in row else f"{row['rows_per_s']:,.0f} rows/s"
        )
        lines.append(f"| {name} | {row['median_s']:.2f} | {rate} | {row['peak_rss_mib']:,.0f} MiB |")
    lines += [
        "",
        *(
            f"- {key}: {value:.2f}" if isinstance(value, float) else f"- {key}: {value}"
            for key, value in summary["ratios"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def bench_export(spec: ExportSpec, out: Path) -> tuple[dict[str, Any], str]:
    """Start the servers and a local[*] session, publish the data, time the contenders; save JSON + Markdown."""
    from recbatch.bench.servers import start_postgres, start_redis
    from recbatch.config import SparkConfig
    from recbatch.io.export_jdbc import DEBIAN_POSTGRES_JAR
    from recbatch.session import build_session

    spark = build_session(
        SparkConfig(
            master="local[*]",
            app_name="recbatch-bench-export",
            driver_memory="4g",
            shuffle_partitions=2 * (os.cpu_count() or 1),
            log_level="ERROR",
            conf={"spark.jars": DEBIAN_POSTGRES_JAR, "spark.ui.enabled": "false"},
        )
    )
    folder = Path(out)
    root = folder / "published"
    publish_synthetic(spark, spec, root)
    postgres, redis_server = start_postgres("bench-pg-password"), start_redis("bench-redis-password")
    try:
        found = run_contenders(spark, spec, root, postgres, redis_server)
    finally:
        redis_server.stop()
        postgres.stop()
    results = {"spec": asdict(spec), "cores": spark.sparkContext.defaultParallelism, "contenders": found}
    return results, save_results(folder, results, summarise, format_report)
