"""The published table into PostgreSQL (or any JDBC database), written by the executors, swapped in whole.

    <table>__staging_<run>  written by Spark's JDBC writer, `export.jdbc.connections` tasks in parallel;
                            given a unique index on (user_id, rank), then counted against the publish
                            manifest (rows, users)
    <table>                 the live table: ONE transaction renames the old one to <table>__previous (or
                            drops it) and the staging table to <table>
    columns                 user_id text, item_id text, score real, rank integer, source text, model text,
                            run_id text, dt date   (types: the database dialect's, or export.jdbc.column_types)

Readers of <table> see yesterday's rows or today's, never a mix or a partial table: the swap is
one transaction of DDL, which PostgreSQL (and other databases with transactional DDL) commits
atomically; a query running during the swap finishes on the old table, later ones read the new.
The driver program's statements go over a JDBC connection opened in Spark's JVM with the same
driver class the executors load, so nothing here is PostgreSQL-specific but two defaults (the
driver class and reWriteBatchedInserts). Any failure drops the staging table, leaves the live
table as it was and raises PipelineError naming the step; the password never appears in it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.errors import ConfigError, PipelineError
from recbatch.io.jdbc_connection import JvmConnection, first_words
from recbatch.io.secrets import read_password, redact

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import ExportConfig, JdbcExportConfig

log = logging.getLogger(__name__)

COLUMNS = ("user_id", "item_id", "score", "rank", "source", "model", "run_id", "dt")
POSTGRES_PREFIX = "jdbc:postgresql:"
POSTGRES_DRIVER = "org.postgresql.Driver"
DEBIAN_POSTGRES_JAR = "/usr/share/java/postgresql.jar"
# Rows, and users as rows of rank 1: published ranks are exactly 1..n per user and the unique
# (user_id, rank) index is built first, so this equals COUNT(DISTINCT user_id) in one cheap scan.
COUNT_SQL = "SELECT COUNT(*), SUM(CASE WHEN rank = 1 THEN 1 ELSE 0 END) FROM {table}"


def driver_class(config: JdbcExportConfig) -> str:
    """The JDBC driver class: the configured one, or PostgreSQL's for jdbc:postgresql: URLs."""
    return config.driver or POSTGRES_DRIVER


def driver_jar(config: JdbcExportConfig) -> str | None:
    """The jar holding the driver: the configured one, or Debian's PostgreSQL jar when it is installed."""
    if config.driver_jar:
        return config.driver_jar
    if config.url.startswith(POSTGRES_PREFIX) and Path(DEBIAN_POSTGRES_JAR).is_file():
        return DEBIAN_POSTGRES_JAR
    return None


def with_driver_jar(spark_conf: dict[str, str], export: ExportConfig) -> dict[str, str]:
    """`spark_conf` plus the JDBC driver's jar on spark.jars, for a session that will export over JDBC.

    Spark reads spark.jars only when the session starts, so the caller building the session
    passes this conf; a session started without it gets the jar at export time (ADD JAR).
    """
    if "jdbc" not in export.formats:
        return spark_conf
    jar = driver_jar(export.jdbc)
    if jar is None:
        raise ConfigError(
            "export.jdbc.driver_jar is not set and no driver jar was found: install Debian's "
            f"libpostgresql-jdbc-java ({DEBIAN_POSTGRES_JAR}) or set export.jdbc.driver_jar"
        )
    if not Path(jar).is_file() and "://" not in jar:
        raise ConfigError(f"export.jdbc.driver_jar {jar} does not exist: point it at the driver's jar file")
    jars = [j for j in spark_conf.get("spark.jars", "").split(",") if j]
    return {**spark_conf, "spark.jars": ",".join([*jars, jar] if jar not in jars else jars)}


def staging_name(table: str, run_id: str) -> str:
    """`<table>__staging_<run>`: the run id made an identifier (lower-case, `_` for other characters)."""
    run = "".join(c if c.isalnum() else "_" for c in run_id.lower())[:20]
    return f"{table}__staging_{run}"


def previous_name(table: str) -> str:
    return f"{table}__previous"


def _unqualified(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def connection_properties(config: JdbcExportConfig, password: str | None) -> dict[str, str]:
    """What the driver is given on every connection, the driver program's and the executors' alike."""
    props = {"driver": driver_class(config)}
    if config.url.startswith(POSTGRES_PREFIX):
        # Without it pgjdbc sends one INSERT per row of a batch; with it, multi-row INSERTs.
        props["reWriteBatchedInserts"] = "true"
    props.update(config.properties)
    if config.user:
        props["user"] = config.user
    if password is not None:
        props["password"] = password
    return props


def export_jdbc(
    spark: SparkSession, table: DataFrame, manifest: dict[str, Any], config: JdbcExportConfig, date: str
) -> dict[str, Any]:
    """Write the published `table` (whose publish manifest is `manifest`) into `config.table`, swapped in whole.

    Returns the target, the rows and users counted in the database before the swap, and the
    staging and previous table names.
    """
    password = read_password("export.jdbc", config.password_env, config.password_file)
    props = connection_properties(config, password)
    staging = staging_name(config.table, str(manifest["run_id"]))
    step, connection = "connect", None
    try:
        connection = JvmConnection.open(spark, config.url, driver_class(config), props, driver_jar(config))
        step = "clean"
        for leftover in connection.tables_with_prefix(f"{config.table}__staging_"):
            log.info("export jdbc: dropping %s, left by an export that did not finish", leftover)
            connection.execute(f"DROP TABLE {leftover}")
        step = "write"
        _write_staging(table, config, props, staging, date)
        step = "index"
        index = f"{_unqualified(config.table)}__ur_{uuid.uuid4().hex[:8]}"
        connection.execute(f"CREATE UNIQUE INDEX {index} ON {staging} (user_id, rank)")
        step = "validate"
        rows, users = connection.query_longs(COUNT_SQL.format(table=staging))
        check_counts(rows, users, manifest)
        step = "swap"
        connection.transaction(swap_statements(config, staging, connection.table_exists(config.table)))
    except BaseException as exc:
        if connection is not None:
            connection.drop_quietly(staging)
        if isinstance(exc, (ConfigError, KeyboardInterrupt)):
            raise
        raise PipelineError(
            f"export jdbc to {config.table} ({_bare_url(config.url)}): step '{step}' failed: "
            f"{redact(first_words(exc), password)}; the live table is untouched"
        ) from None
    finally:
        if connection is not None:
            connection.close()
    log.info(
        "export jdbc: %s now holds %s rows for %s users (run %s)",
        config.table,
        rows,
        users,
        manifest["run_id"],
    )
    return {
        "target": f"{_bare_url(config.url)} table {config.table}",
        "rows": rows,
        "users": users,
        "staging": staging,
        "previous": previous_name(config.table) if config.keep_previous else None,
    }


def check_counts(rows: int, users: int, manifest: dict[str, Any]) -> None:
    """PipelineError unless the staged rows and users equal the publish manifest's."""
    if rows != manifest["rows"] or users != manifest["users"]:
        raise PipelineError(
            f"the staging table holds {rows:,} rows for {users:,} users but the published table "
            f"has {manifest['rows']:,} rows for {manifest['users']:,} users"
        )


def swap_statements(config: JdbcExportConfig, staging: str, live_exists: bool) -> list[str]:
    """The swap, as the statements of one transaction: old live → previous (or dropped), staging → live."""
    statements = []
    if live_exists and config.keep_previous:
        previous = previous_name(config.table)
        statements += [
            f"DROP TABLE IF EXISTS {previous}",
            f"ALTER TABLE {config.table} RENAME TO {_unqualified(previous)}",
        ]
    elif live_exists:
        statements.append(f"DROP TABLE {config.table}")
    statements.append(f"ALTER TABLE {staging} RENAME TO {_unqualified(config.table)}")
    return statements


def _write_staging(
    table: DataFrame, config: JdbcExportConfig, props: dict[str, str], staging: str, date: str
) -> None:
    from pyspark.sql import functions as F

    from recbatch.io.export import with_source

    rows = with_source(table).select(*[F.col(c) for c in COLUMNS[:-1]], F.lit(date).cast("date").alias("dt"))
    if rows.rdd.getNumPartitions() < config.connections:
        rows = rows.repartition(config.connections)  # one writing task per connection
    writer = (
        rows.write.mode("errorifexists")
        .option("numPartitions", config.connections)
        .option("batchsize", config.batch_size)
    )
    if config.column_types:
        writer = writer.option("createTableColumnTypes", config.column_types)
    writer.jdbc(config.url, staging, properties=props)


def _bare_url(url: str) -> str:
    return url.split("?", 1)[0]
