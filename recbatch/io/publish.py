"""Atomic publishing of a recommendation table: write a new version, validate it, then commit it.

    <root>/<table>/.versions/dt=<date>/<version>/   part-NNNNN-<version>.snappy.parquet, _SUCCESS, _manifest.json
    <root>/<table>/_commits/dt=<date>/<seq>.json    the commit that makes a version current (io/versions)

Readers call `read_published` (or resolve `_commits` themselves, or use the catalog table
when `publish.catalog_table` is set); on a plain local path the `dt=<date>` and `_latest`
symlinks are a view of the same commits, so `spark.read.parquet("<root>/<table>")` reads
the current versions as a table partitioned by `dt`. A version is written in place,
validated, given its manifest last, and only then committed: a version without a manifest
is unfinished and never current. Part file names carry the version, so a reader that
listed an old version and opens files later fails loudly instead of mixing versions. The
same protocol runs on local disks, HDFS and object stores (no symlink, rename of a folder
or file lock is needed; see recbatch.storage).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError
from recbatch.faults import pause_point
from recbatch.io import versions as versions_
from recbatch.io.table_checks import validate_recommendations
from recbatch.io.versions import LATEST, MANIFEST
from recbatch.storage import Location, location

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import PublishConfig

# gate(staged table, table folder, date) -> the gate's record for the manifest (raises to refuse)
Gate = Callable[["DataFrame", Location, str], dict[str, Any]]

__all__ = ["LATEST", "MANIFEST", "publish_table", "published_manifest", "read_published"]
_CORE_KEYS = (
    "table",
    "date",
    "run_id",
    "version",
    "path",
    "rows",
    "users",
    "by_source",
    "k",
    "columns",
    "schema",
    "files",
    "content_sha256",
    "created_at",
    "gate",
)


def _plain(kind: str, value: str) -> str:
    if not value or "/" in value or value.startswith(".") or value.endswith(".staging"):
        raise PipelineError(f"{kind} {value!r} cannot name a directory: use a plain name without '/'")
    return value


def _stage(
    df: DataFrame, target: Location, version: str, k: int, expected: DataFrame | None, files: int | None
) -> tuple[DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Write `df` to `target`, read it back and validate it; return it, its stats and its parts."""
    spark = df.sparkSession
    n_files = files or int(spark.conf.get("spark.sql.shuffle.partitions"))
    # Hash partitioning on user_id and a total order inside each file: the same rows always
    # give the same bytes, whatever the upstream partitioning was.
    (
        df.repartition(n_files, "user_id")
        .sortWithinPartitions("user_id", "rank")
        .write.mode("errorifexists")
        .parquet(str(target))
    )
    pause_point("written")
    staged = spark.read.parquet(str(target))
    stats = validate_recommendations(staged, k, expected)
    return staged, stats, versions_.tidy_parts(target, version)


def _manifest(
    head: dict[str, Any], k: int, staged: DataFrame, stats: dict[str, Any], parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest of a validated version: `head` (extra keys, then identity), counts, schema, files."""
    return {
        **head,
        "rows": stats["rows"],
        "users": stats["users"],
        **({"by_source": stats["by_source"]} if "by_source" in stats else {}),
        "k": k,
        "columns": staged.columns,
        "schema": [
            {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
            for f in staged.schema.fields
        ],
        "files": parts,
        # One digest of the table's data: equal for the same rows in the same part files,
        # whichever process wrote them (the per-file sha256 are not, see versions.tidy_parts).
        "content_sha256": hashlib.sha256("".join(p["content_sha256"] for p in parts).encode()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _write_version(
    df: DataFrame,
    target: Location,
    head: dict[str, Any],
    k: int,
    expected: DataFrame | None,
    files: int | None,
    gate: Gate | None,
) -> dict[str, Any]:
    """Write, validate, gate and checksum `df` as the version folder `target`, manifest last.

    Returns the manifest. The version is complete but not yet current (the caller commits
    it); on any failure, a failed gate included, the folder is removed and the error raised.
    """
    try:
        staged, stats, parts = _stage(df, target, head["version"], k, expected, files)
        manifest = _manifest(head, k, staged, stats, parts)
        if gate is not None:
            # Read again: the part files were renamed after `staged` listed them.
            fresh = df.sparkSession.read.parquet(str(target))
            manifest["gate"] = gate(fresh, target.parent.parent.parent, head["date"])
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    except BaseException:
        target.delete()
        raise
    return manifest


def publish_table(
    df: DataFrame,
    config: PublishConfig,
    published_root: Location | Path | str,
    date: str,
    run_id: str,
    k: int,
    expected_rows_per_user: DataFrame | None = None,
    manifest_extra: dict[str, Any] | None = None,
    *,
    files: int | None = None,
    gate: Gate | None = None,
) -> dict[str, Any]:
    """Publish `df` as the current version of `<published_root>/<table>` for `date`; returns its manifest.

    The table is written as a new version folder, read back and validated (see
    recbatch.io.table_checks), given a manifest with per-file checksums, and only then made
    current by one commit (recbatch.io.versions), then registered in the catalog when
    `config.catalog_table` is set. On any failure before the commit the new folder is
    removed and the published version is untouched. Republishing a date replaces it whole;
    the newest `config.keep_versions` versions per date are kept. `files` sets the number
    of part files (default: spark.sql.shuffle.partitions). `gate(staged, table_dir, date)`
    runs before the commit (recbatch.ops.gate.publish_gate): it returns the record kept in
    the manifest under "gate", or raises to keep the current version.
    """
    _plain("date", date)
    _plain("run id", run_id)
    extra = dict(manifest_extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"manifest_extra must not override manifest keys {clash}")
    table_dir = location(published_root) / config.table
    versions_.check_view(table_dir, date)
    started = datetime.now(UTC)
    # Run ids are deterministic (a rerun of the same inputs has the same id), so each publish
    # gets its own version folder: the current one stays readable until the commit.
    version = versions_.new_version(run_id, started)
    target = versions_.version_dir(table_dir, date, version)
    head = {
        **extra,
        "table": config.table,
        "date": date,
        "run_id": run_id,
        "version": version,
        "path": str(target),
    }
    try:
        manifest = _write_version(df, target, head, k, expected_rows_per_user, files, gate)
    except PipelineError as exc:
        raise PipelineError(
            f"publishing {config.table} dt={date} (run {run_id}) refused: {exc}; "
            "the published version is unchanged"
        ) from None
    catalog_table = config.catalog_table
    if catalog_table:
        _check_catalog(df.sparkSession, catalog_table, target)  # a table that cannot take it: nothing changes
    pause_point("before_commit")
    forced = bool(manifest.get("gate", {}).get("forced"))
    versions_.commit(table_dir, date, version, "publish", run_id=run_id, forced=forced)  # commit
    pause_point("after_commit")
    if catalog_table:
        _register(df.sparkSession, catalog_table, date, target, run_id)
    versions_.prune(table_dir, date, config.keep_versions)
    versions_.remove_orphans(table_dir, started)
    return manifest


def _check_catalog(spark: SparkSession, catalog_table: str, target: Location) -> None:
    from recbatch.io.catalog import check_table

    if spark.catalog.tableExists(catalog_table):
        try:
            check_table(spark, catalog_table, spark.read.parquet(str(target)).schema)
        except PipelineError:
            target.delete()
            raise


def _register(spark: SparkSession, catalog_table: str, date: str, target: Location, run_id: str) -> None:
    from recbatch.io.catalog import register_version

    try:
        register_version(spark, catalog_table, date, str(target), spark.read.parquet(str(target)).schema)
    except PipelineError as exc:
        raise PipelineError(
            f"dt={date} (run {run_id}) is published under {target} but registering it in catalog table "
            f"{catalog_table} failed: {exc}; rerun the publish to register it"
        ) from None


def published_manifest(root: Location | Path | str, table: str, date: str | None = None) -> dict[str, Any]:
    """The manifest of the version currently published for `date` (default: the newest date)."""
    return json.loads((versions_.resolve(location(root), table, date) / MANIFEST).read_text())


def read_published(
    spark: SparkSession, root: Location | Path | str, table: str, date: str | None = None
) -> DataFrame:
    """Read the currently published version for `date` (default: the newest date).

    The commit log is resolved once, so the read sees one complete version even if a
    publish commits another meanwhile.
    """
    return spark.read.parquet(str(versions_.resolve(location(root), table, date)))
