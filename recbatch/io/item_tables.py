"""Publishing of tables keyed by item (similar_items, audiences): validate, version, commit.

The recommendation table's publisher (recbatch.io.publish) partitions, sorts and checks its
rows by user_id; these tables are keyed by item_id and list another id per row (a similar
item, a user), so they get their own checks with the same version protocol
(recbatch.io.versions): a version folder written in place, read back and validated, given
its manifest last, then made current by one commit. Readers use
`recbatch.io.publish.read_published` as for recommendations.

Checks: no null ids/ranks and no NaN/infinite scores, no (key, other) pair twice, no row
whose other id is its key (an item similar to itself), ranks 1..n contiguous per key, at
most k rows per key, exactly `expected_per_key` rows per key when given (or min(k, available)
where `available` gives each key's candidate count), and exactly `expected_keys` keys when given.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError
from recbatch.faults import pause_point
from recbatch.io import versions as versions_
from recbatch.io.versions import MANIFEST
from recbatch.storage import Location, location

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


@dataclass(frozen=True, eq=False)
class ItemTable:
    """What one item-keyed table is: its name, key and listed columns, and the expected shape."""

    table: str  # folder under <workdir>/published/
    key: str  # e.g. item_id
    other: str  # e.g. similar_item_id, user_id
    k: int  # the most rows a key may have
    expected_per_key: int | None = None  # exactly this many rows per key (None: 1..k)
    expected_keys: int | None = None  # exactly this many keys (None: any)
    self_excluded: bool = True  # a row whose other id equals its key is an error
    available: DataFrame | None = None  # key, available: each key gets exactly min(k, available) rows
    keep_versions: int = 3


def _bad_value(spec: ItemTable) -> Column:
    from pyspark.sql import functions as F

    return (
        F.col(spec.key).isNull()
        | F.col(spec.other).isNull()
        | F.col("rank").isNull()
        | F.col("score").isNull()
        | F.isnan("score")
        | (F.abs(F.col("score")) == F.lit(float("inf")))
    )


def _checks(spec: ItemTable) -> dict[str, tuple[Column, str]]:
    from pyspark.sql import functions as F

    n = F.col("n")
    checks = {
        "bad_values": (F.col("bad") > 0, "null ids/ranks or NaN/infinite/null scores"),
        "duplicate_items": (F.col("others") < n, f"the same ({spec.key}, {spec.other}) appears twice"),
        "ranks_not_contiguous": (
            (F.col("min_rank") != 1) | (F.col("max_rank") != n) | (F.col("ranks") != n),
            f"a {spec.key}'s ranks are not exactly 1..n",
        ),
        "too_many_rows": (n > spec.k, f"a {spec.key} has more than k={spec.k} rows"),
    }
    if spec.self_excluded:
        checks["self_listed"] = (F.col("selfs") > 0, f"a row's {spec.other} is its own {spec.key}")
    if spec.available is not None:
        checks["wrong_row_count"] = (
            n != F.least(F.lit(spec.k), F.col("available")),
            f"a {spec.key} does not have exactly min(k={spec.k}, available) rows",
        )
    elif spec.expected_per_key is not None:
        checks["wrong_row_count"] = (
            n != spec.expected_per_key,
            f"a {spec.key} does not have exactly {spec.expected_per_key} rows",
        )
    return checks


def validate_item_table(df: DataFrame, spec: ItemTable) -> dict[str, Any]:
    """Check an item-keyed table; return {"rows", "keys"} or raise PipelineError naming the check."""
    from pyspark.sql import functions as F

    required = (spec.key, spec.other, "score", "rank")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise PipelineError(f"table {spec.table} lacks columns {missing} (it has {df.columns})")
    stats = df.groupBy(spec.key).agg(
        F.count(F.lit(1)).alias("n"),
        F.size(F.collect_set(spec.other)).alias("others"),
        F.min("rank").alias("min_rank"),
        F.max("rank").alias("max_rank"),
        F.size(F.collect_set("rank")).alias("ranks"),
        F.sum(F.when(_bad_value(spec), 1).otherwise(0)).alias("bad"),
        F.sum(F.when(F.col(spec.key) == F.col(spec.other), 1).otherwise(0)).alias("selfs"),
    )
    if spec.available is not None:
        available = spec.available.select(F.col(spec.key).cast("string"), F.col("available").cast("long"))
        stats = stats.join(available, on=spec.key, how="left").fillna(0, subset=["available"])
    checks = _checks(spec)
    totals = stats.agg(
        F.sum("n").alias("rows"),
        F.count(F.lit(1)).alias("keys"),
        *[F.sum(F.when(flag, 1).otherwise(0)).alias(name) for name, (flag, _) in checks.items()],
    ).first()
    for name, (flag, what) in checks.items():
        failing = int(totals[name] or 0)
        if failing:
            example = stats.filter(flag).orderBy(spec.key).first()
            raise PipelineError(
                f"check {name} failed for {failing} {spec.key}(s) of {spec.table}: {what}; "
                f"e.g. {example.asDict() if example else None}"
            )
    rows, keys = int(totals["rows"] or 0), int(totals["keys"] or 0)
    if rows == 0:
        raise PipelineError(f"check non_empty failed: table {spec.table} has no rows")
    if spec.expected_keys is not None and keys != spec.expected_keys:
        raise PipelineError(
            f"check key_count failed: table {spec.table} has {keys} {spec.key}s, expected {spec.expected_keys}"
        )
    return {"rows": rows, "keys": keys}


def _write_version(
    df: DataFrame, spec: ItemTable, target: Location, head: dict[str, Any], files: int
) -> dict:
    """Write, read back, validate and checksum `df` as the version folder `target`, manifest last."""
    spark = df.sparkSession
    try:
        # Hash partitioning on the key and a total order in each file: same rows, same bytes.
        (
            df.repartition(files, spec.key)
            .sortWithinPartitions(spec.key, "rank")
            .write.mode("errorifexists")
            .parquet(str(target))
        )
        pause_point("written")
        staged = spark.read.parquet(str(target))
        stats = validate_item_table(staged, spec)
        parts = versions_.tidy_parts(target, head["version"])
        manifest = {
            **head,
            "rows": stats["rows"],
            "keys": stats["keys"],
            "key": spec.key,
            "k": spec.k,
            "columns": staged.columns,
            "files": parts,
            "content_sha256": hashlib.sha256(
                "".join(p["content_sha256"] for p in parts).encode()
            ).hexdigest(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    except BaseException:
        target.delete()
        raise
    return manifest


def publish_item_table(
    df: DataFrame,
    spec: ItemTable,
    published_root: Location | str,
    date: str,
    run_id: str,
    manifest_extra: dict[str, Any] | None = None,
    files: int | None = None,
) -> dict[str, Any]:
    """Publish `df` as the current version of `<published_root>/<spec.table>` for `date`; its manifest.

    On any failure before the commit the new version is removed and the current one kept.
    """
    table_dir = location(published_root) / spec.table
    versions_.check_view(table_dir, date)
    started = datetime.now(UTC)
    version = versions_.new_version(run_id, started)
    target = versions_.version_dir(table_dir, date, version)
    head = {**(manifest_extra or {}), "table": spec.table, "date": date, "run_id": run_id, "version": version}
    head["path"] = str(target)
    n_files = files or int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    try:
        manifest = _write_version(df, spec, target, head, n_files)
    except PipelineError as exc:
        raise PipelineError(
            f"publishing {spec.table} dt={date} (run {run_id}) refused: {exc}; the published version is unchanged"
        ) from None
    pause_point("before_commit")
    versions_.commit(table_dir, date, version, "publish", run_id=run_id)
    versions_.prune(table_dir, date, spec.keep_versions)
    versions_.remove_orphans(table_dir, started)
    return manifest
