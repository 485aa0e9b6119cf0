"""Registration of published versions in the Spark catalog (a Hive metastore), one call per commit.

`publish.catalog_table = "db.recommendations"` makes each publish end with
`register_version`: the table is created when absent (external, Parquet, partitioned by
`dt STRING`, its columns those of the published version, its LOCATION the published table's
root folder), and the date's partition is pointed at the new version folder in ONE
metastore call:

- first time: `ALTER TABLE t ADD IF NOT EXISTS PARTITION (dt='…') LOCATION '…'`
  (Spark: SessionCatalog.createPartitions -> one Hive `add_partitions` call);
- after: `ALTER TABLE t PARTITION (dt='…') SET LOCATION '…'`
  (Spark: AlterTableSetLocationCommand -> HiveExternalCatalog.alterPartitions -> one Hive
  `alter_partitions` call, one metastore transaction; the metastore moves no data for it).

Either way a reader resolves the partition to the old version folder or to the new one, both
complete and immutable; there is no in-between. What Spark caches, and when readers need
`REFRESH TABLE t` (or `spark.catalog.refreshTable("t")`):

- the publishing session: nothing; both commands refresh the table in the session that runs them;
- other sessions (other processes): nothing for plain reads; with partitions tracked in the
  catalog (`spark.sql.hive.manageFilesourcePartitions`, default true) Spark asks the metastore
  for the partition list when each query is planned, so `spark.table(t)` and SQL see the new
  version from their next query, and so does a DataFrame made before the commit (measured:
  tests/test_catalog.py);
- a table or DataFrame a reader cached (`CACHE TABLE`, `.cache()`) keeps the rows it cached
  until `REFRESH TABLE t`, as does a table read with manageFilesourcePartitions = false (Spark
  then lists the table folder instead of asking the metastore).

A reader that planned a query on the old version and reads files after `keep_versions`
newer ones have replaced it fails loudly (file not found), never mixing versions.
The table is external: `DROP TABLE` removes the catalog entry and leaves every version.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError
from recbatch.io.versions import VERSIONS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

PARTITION = "dt"
_NAME = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)")


def register_version(
    spark: SparkSession,
    catalog_table: str,
    date: str,
    location: str,
    schema: Any,
    *,
    table_root: str | None = None,
) -> None:
    """Make `location` the catalog's partition dt=`date` of `catalog_table`, creating the table if absent.

    `schema`: the published version's StructType (or its manifest's list of {name, type}).
    `table_root`: the table's LOCATION when it is created (default: the folder holding
    `.versions/`, derived from `location`). PipelineError (one line) when the table exists
    with other columns, another partitioning, another format, or as a managed table or a view.
    """
    name = _qualified_name(catalog_table)
    columns = schema_columns(schema)
    if PARTITION in (c.lower() for c, _ in columns):
        raise PipelineError(
            f"the published table has a column {PARTITION!r}, which the catalog uses for dates"
        )
    if spark.catalog.tableExists(name):
        check_table(spark, name, columns)
    else:
        _create_table(spark, name, columns, table_root or _root_of(location, date))
    current = catalog_version(spark, name, date)
    target = _qualify(spark, location)
    if current == target:
        return
    spec = f"PARTITION ({PARTITION} = {_literal(date)})"
    if current is None:
        _sql(spark, name, f"ALTER TABLE {name} ADD IF NOT EXISTS {spec} LOCATION {_literal(location)}")
        current = catalog_version(spark, name, date)  # another writer may have added it first
    if current != target:
        _sql(spark, name, f"ALTER TABLE {name} {spec} SET LOCATION {_literal(location)}")
    log.info("catalog: %s dt=%s -> %s", name, date, target)


def catalog_version(spark: SparkSession, table: str, date: str) -> str | None:
    """The location registered for partition dt=`date` of `table` (Spark's qualified URI, e.g.
    file:/…), or None when the table or the partition does not exist."""
    name = _qualified_name(table)
    if not spark.catalog.tableExists(name):
        return None
    if PARTITION not in (c.name.lower() for c in spark.catalog.listColumns(name) if c.isPartition):
        return None
    spec = f"PARTITION ({PARTITION} = {_literal(date)})"
    if not _sql(spark, name, f"SHOW PARTITIONS {name} {spec}").collect():
        return None
    rows = _sql(spark, name, f"DESCRIBE TABLE EXTENDED {name} {spec}").collect()
    return next((str(r["data_type"]) for r in rows if r["col_name"] == "Location"), None)


def check_table(spark: SparkSession, table: str, schema: Any) -> None:
    """PipelineError (one line) unless `table` can take published versions of `schema`.

    It must be an external Parquet table partitioned by dt alone, with the same columns
    and types (names compared case-insensitively, as the metastore stores them).
    """
    name = _qualified_name(table)
    shown = name.replace("`", "")
    fix = f"drop it (DROP TABLE {shown}; recbatch recreates it, external) or set publish.catalog_table to a new name"
    info = spark.catalog.getTable(name)
    if info.isTemporary or info.tableType not in ("EXTERNAL", "MANAGED"):
        raise PipelineError(f"catalog table {shown} is a {info.tableType.lower()}, not a table: {fix}")
    if info.tableType == "MANAGED":
        raise PipelineError(
            f"catalog table {shown} is a managed table, and dropping it would delete the versions its "
            f"partitions point at: {fix}"
        )
    provider = _provider(spark, name)
    if "parquet" not in provider:
        raise PipelineError(f"catalog table {shown} is stored as {provider}, not Parquet: {fix}")
    found = spark.catalog.listColumns(name)
    parts = [c.name.lower() for c in found if c.isPartition]
    if parts != [PARTITION]:
        raise PipelineError(
            f"catalog table {shown} is partitioned by {parts or 'nothing'}, not [{PARTITION!r}]: {fix}"
        )
    have = {c.name.lower(): c.dataType.lower() for c in found if not c.isPartition}
    want = {c.lower(): t.lower() for c, t in schema_columns(schema)}
    if have != want:
        raise PipelineError(f"catalog table {shown} has columns {_diff(have, want)}: {fix}")


def schema_columns(schema: Any) -> list[tuple[str, str]]:
    """(name, Spark SQL type) pairs of a StructType, a manifest's schema list, or such pairs."""
    if hasattr(schema, "fields"):
        return [(f.name, f.dataType.simpleString()) for f in schema.fields]
    if schema and isinstance(schema[0], dict):
        return [(str(f["name"]), str(f["type"])) for f in schema]
    return [(str(n), str(t)) for n, t in schema]


def _create_table(spark: SparkSession, name: str, columns: list[tuple[str, str]], root: str) -> None:
    database = name.rsplit(".", 1)[0] if "." in name else None
    if database:
        _sql(spark, name, f"CREATE DATABASE IF NOT EXISTS {database}")
    ddl = ", ".join(f"`{c}` {t.upper()}" for c, t in [*columns, (PARTITION, "string")])
    _sql(
        spark,
        name,
        f"CREATE TABLE IF NOT EXISTS {name} ({ddl}) USING parquet PARTITIONED BY ({PARTITION}) "
        f"LOCATION {_literal(root)}",
    )
    log.info("catalog: created external table %s at %s", name, root)


def _diff(have: dict[str, str], want: dict[str, str]) -> str:
    """What differs between the table's columns and the published ones, briefly."""
    notes = [f"{c} {t} (published: none)" for c, t in sorted(have.items()) if c not in want]
    notes += [f"no {c} (published: {t})" for c, t in sorted(want.items()) if c not in have]
    notes += [f"{c} {have[c]} (published: {t})" for c, t in sorted(want.items()) if have.get(c, t) != t]
    return ", ".join(notes)


def _provider(spark: SparkSession, name: str) -> str:
    rows = {
        r["col_name"]: str(r["data_type"])
        for r in _sql(spark, name, f"DESCRIBE TABLE EXTENDED {name}").collect()
    }
    provider = rows.get("Provider", "").lower()
    return f"hive ({rows.get('Serde Library', '?')})".lower() if provider == "hive" else provider


def _root_of(location: str, date: str) -> str:
    """The published table's folder: the part of a version's location before `.versions/dt=<date>/`."""
    marker = f"/{VERSIONS}/{PARTITION}={date}/"
    if marker in location:
        return location.split(marker, 1)[0]
    return location.rstrip("/").rsplit("/", 1)[0]


def _qualify(spark: SparkSession, path: str) -> str:
    """`path` as the metastore stores it (Hadoop's qualified form, e.g. file:/x for /x)."""
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return str(hpath.getFileSystem(spark._jsc.hadoopConfiguration()).makeQualified(hpath).toString())


def _qualified_name(table: str) -> str:
    """`db`.`name` (quoted for SQL) of a '[db.]name'; idempotent, so helpers may pass it on."""
    match = _NAME.fullmatch(table.replace("`", ""))
    if not match:
        raise PipelineError(f"catalog table {table!r} is not [db.]name; fix publish.catalog_table")
    database, name = match.groups()
    return f"`{database}`.`{name}`" if database else f"`{name}`"


def _literal(text: str) -> str:
    """A Spark SQL string literal (backslash escapes are on by default)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql(spark: SparkSession, name: str, statement: str):
    """Run one catalog statement; a Spark failure becomes a one-line PipelineError."""
    from pyspark.errors import PySparkException

    try:
        return spark.sql(statement)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise PipelineError(
            f"catalog table {name.replace('`', '')}: `{statement.split(' (', 1)[0]}` failed: {first}"
        ) from None
