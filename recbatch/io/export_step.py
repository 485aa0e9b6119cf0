"""The export step: each requested format of one published date, timed, with its rows accounted for.

Every format reads the version the date's pointer names. Each reports the rows and users
counted in what it wrote — read back from the files, counted by the database before its
swap, acknowledged by Redis before its pointer moved — and the step fails (PipelineError,
exit 4) unless they equal the publish manifest's: rows written = rows published.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import ExportConfig

log = logging.getLogger(__name__)

FILE_FORMATS = ("csv", "jsonl", "sqlite")
SERVING_FORMATS = ("jdbc", "redis")
FORMATS = FILE_FORMATS + SERVING_FORMATS


def run_exports(
    spark: SparkSession,
    export: ExportConfig,
    published_root: Any,
    table_name: str,
    date: str,
    formats: list[str],
    out_dir: Path,
) -> dict[str, dict[str, Any]]:
    """Export the date's published table in each format; returns {format: target, rows, users, seconds}."""
    from recbatch.io.versions import MANIFEST, resolve
    from recbatch.storage import location

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"export formats {', '.join(unknown)}: unknown; choose from {', '.join(FORMATS)}")
    # One resolution of the commit log: the manifest, the table and its files are one version.
    folder = resolve(location(published_root), table_name, date)
    manifest = json.loads((folder / MANIFEST).read_text())
    table = spark.read.parquet(str(folder))
    results: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        started = time.perf_counter()
        result = _export_one(spark, table, manifest, export, fmt, out_dir, table_name, date, folder)
        check_accounting(fmt, result, manifest)
        result["seconds"] = round(time.perf_counter() - started, 2)
        log.info(
            "export %s: %s rows for %s users in %.1fs",
            fmt,
            result["rows"],
            result["users"],
            result["seconds"],
        )
        results[fmt] = result
    return results


def check_accounting(fmt: str, result: dict[str, Any], manifest: dict[str, Any]) -> None:
    """PipelineError unless an export wrote as many rows (and users) as were published."""
    if result["rows"] != manifest["rows"] or result["users"] != manifest["users"]:
        raise PipelineError(
            f"export {fmt} to {result['target']} wrote {result['rows']:,} rows for {result['users']:,} users "
            f"but {manifest['rows']:,} rows for {manifest['users']:,} users are published "
            f"(run {manifest.get('run_id')}); rerun `recbatch export --format {fmt}`"
        )


def _export_one(
    spark: SparkSession,
    table: DataFrame,
    manifest: dict[str, Any],
    export: ExportConfig,
    fmt: str,
    out_dir: Path,
    table_name: str,
    date: str,
    folder: Any = None,
) -> dict[str, Any]:
    if fmt == "jdbc":
        from recbatch.io.export_jdbc import export_jdbc

        return export_jdbc(spark, table, manifest, export.jdbc, date)
    if fmt == "redis":
        from recbatch.io.export_redis import export_redis

        return export_redis(spark, table, manifest, export.redis, date, folder)
    from recbatch.io.export import export_table

    target = export_table(table, [fmt], out_dir, table_name, date)[fmt]
    rows, users = count_file_export(spark, fmt, target, table_name)
    return {"target": target, "rows": rows, "users": users}


def count_file_export(spark: SparkSession, fmt: str, target: str, table_name: str) -> tuple[int, int]:
    """(rows, users) of a file export, read back from what was written."""
    from pyspark.sql import functions as F

    if fmt == "sqlite":
        with sqlite3.connect(target) as db:
            rows, users = db.execute(
                f'SELECT COUNT(*), COUNT(DISTINCT user_id) FROM "{table_name}"'
            ).fetchone()
        return int(rows), int(users)
    if fmt == "csv":
        counted = spark.read.option("header", True).csv(target).agg(F.count("*"), F.countDistinct("user_id"))
    else:  # jsonl: one line per user, its items in a list
        counted = spark.read.json(target).agg(F.sum(F.size("items")), F.count("*"))
    rows, users = counted.collect()[0]
    return int(rows or 0), int(users or 0)
