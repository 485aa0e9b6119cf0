"""Atomic publishing of a recommendation table: write to staging, validate, then swap a pointer.

    <root>/<table>/.versions/dt=<date>/<run_id>/   part-NNNNN-<run_id>.snappy.parquet, _manifest.json, _SUCCESS
    <root>/<table>/dt=<date>  -> .versions/dt=<date>/<run_id>   (relative symlink, swapped atomically)
    <root>/<table>/_latest    -> dt=<newest date>

Readers use `spark.read.parquet("<root>/<table>/dt=<date>")` (or the whole `<root>/<table>`,
which Spark reads as a table partitioned by `dt`: dot- and underscore-prefixed entries are
hidden from it). The pointer is replaced with rename(2), so a reader resolves either the old
or the new complete version, never a partial one. Part file names carry the run id, so a
reader that listed the old version and opens files after a swap fails loudly instead of
mixing versions; `read_published` resolves the pointer first and cannot straddle a swap.
The manifest is `_manifest.json` (underscore: Spark must not take it for a data file).
Needs a POSIX filesystem (local or shared mount) for symlinks and atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.core.files import parquet_content_sha256, sha256_file, write_json
from recbatch.errors import DataError, PipelineError
from recbatch.io.table_checks import validate_recommendations

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import PublishConfig

MANIFEST = "_manifest.json"
LATEST = "_latest"
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
)


def _plain(kind: str, value: str) -> str:
    if not value or "/" in value or value.startswith(".") or value.endswith(".staging"):
        raise PipelineError(f"{kind} {value!r} cannot name a directory: use a plain name without '/'")
    return value


def _tidy_parts(staging: Path, version: str) -> list[dict[str, Any]]:
    """Give part files stable names, drop Hadoop's .crc side files, and checksum the parts.

    `sha256` covers the whole file; `content_sha256` only its pages, which stays equal for
    the same data written by another JVM (core.files.parquet_content_sha256).
    """
    for crc in staging.glob(".*.crc"):
        crc.unlink()
    files = []
    for i, part in enumerate(sorted(staging.glob("part-*"))):
        target = staging / f"part-{i:05d}-{version}{part.name[part.name.index('.') :]}"
        part.rename(target)
        files.append(
            {
                "path": target.name,
                "bytes": target.stat().st_size,
                "sha256": sha256_file(target),
                "content_sha256": parquet_content_sha256(target),
            }
        )
    return files


def _check_pointer(pointer: Path) -> None:
    if pointer.exists() and not pointer.is_symlink():
        raise PipelineError(f"{pointer} is a real directory, not a publish pointer; move it away and rerun")


def _swap_link(link: Path, target: str) -> None:
    """Point `link` at `target` atomically: a fresh symlink renamed over the old one."""
    _check_pointer(link)
    tmp = link.with_name(f".{link.name}.swap")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _created_at(version: Path) -> str:
    try:
        return str(json.loads((version / MANIFEST).read_text(encoding="utf-8"))["created_at"])
    except (OSError, ValueError, KeyError):
        return datetime.fromtimestamp(version.stat().st_mtime, UTC).isoformat()


def _prune(versions: Path, current: str, keep: int) -> list[str]:
    """Remove all but the newest `keep` versions of one date; never the one the pointer targets."""
    done = [p for p in versions.iterdir() if p.is_dir() and not p.name.endswith(".staging")]
    done.sort(key=lambda p: (_created_at(p), p.name), reverse=True)
    removed = []
    for version in done[keep:]:
        if version.name != current:
            shutil.rmtree(version)
            removed.append(version.name)
    return removed


def _remove_orphaned_staging(table_dir: Path, before: float) -> list[str]:
    """Remove staging folders (of any date) last written before `before` (a time.time()).

    A publish killed mid-write leaves its `<version>.staging` folder behind, up to a whole
    table each. Publishing runs under the workdir lock, so a staging folder older than this
    publish belongs to no live writer.
    """
    removed = []
    for staging in sorted((table_dir / ".versions").glob("dt=*/*.staging")):
        if staging.is_dir() and staging.stat().st_mtime < before:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(f"{staging.parent.name}/{staging.name}")
    if removed:
        log.warning("publish: removed %d staging folder(s) left by killed runs: %s", len(removed), removed)
    return removed


def _update_latest(table_dir: Path) -> None:
    dates = sorted(p.name for p in table_dir.glob("dt=*") if p.is_symlink())
    if dates and (not (table_dir / LATEST).is_symlink() or os.readlink(table_dir / LATEST) != dates[-1]):
        _swap_link(table_dir / LATEST, dates[-1])


def _stage(
    df: DataFrame, staging: Path, version: str, k: int, expected: DataFrame | None, files: int | None
) -> tuple[DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """Write `df` to `staging`, read it back and validate it; return it, its stats and its parts."""
    spark = df.sparkSession
    n_files = files or int(spark.conf.get("spark.sql.shuffle.partitions"))
    # Hash partitioning on user_id and a total order inside each file: the same rows always
    # give the same bytes, whatever the upstream partitioning was.
    (
        df.repartition(n_files, "user_id")
        .sortWithinPartitions("user_id", "rank")
        .write.mode("errorifexists")
        .parquet(str(staging))
    )
    staged = spark.read.parquet(str(staging))
    stats = validate_recommendations(staged, k, expected)
    return staged, stats, _tidy_parts(staging, version)


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
        # whichever process wrote them (the per-file sha256 are not, see _tidy_parts).
        "content_sha256": hashlib.sha256("".join(p["content_sha256"] for p in parts).encode()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _write_version(
    df: DataFrame,
    versions: Path,
    head: dict[str, Any],
    k: int,
    expected: DataFrame | None,
    files: int | None,
) -> dict[str, Any]:
    """Write, validate and checksum `df` in staging, then rename it to `versions/<version>`.

    Returns the manifest. The version is complete but not yet current (the caller swaps
    the pointer); on any failure the staging directory is removed and the error raised.
    """
    version = head["version"]
    staging = versions / f"{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staged, stats, parts = _stage(df, staging, version, k, expected, files)
        manifest = _manifest(head, k, staged, stats, parts)
        write_json(staging / MANIFEST, manifest)
        os.rename(staging, versions / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def publish_table(
    df: DataFrame,
    config: PublishConfig,
    published_root: Path,
    date: str,
    run_id: str,
    k: int,
    expected_rows_per_user: DataFrame | None = None,
    manifest_extra: dict[str, Any] | None = None,
    *,
    files: int | None = None,
) -> dict[str, Any]:
    """Publish `df` as `<published_root>/<table>/dt=<date>` atomically and return its manifest.

    The table is written to a staging directory, read back and validated (see
    recbatch.io.table_checks), given a manifest with per-file sha256 checksums, renamed into
    place, and only then made visible by swapping the `dt=<date>` symlink. On any failure the
    staging directory is removed and the published version is untouched. Republishing a date
    replaces it whole; the newest `config.keep_versions` versions per date are kept.
    `files` sets the number of part files (default: spark.sql.shuffle.partitions).
    """
    _plain("date", date)
    _plain("run id", run_id)
    extra = dict(manifest_extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"manifest_extra must not override manifest keys {clash}")
    table_dir = Path(published_root) / config.table
    versions = table_dir / ".versions" / f"dt={date}"
    # Run ids are deterministic (a rerun of the same inputs has the same id), so each publish
    # gets its own version directory: the current one stays readable until the swap.
    version = f"{run_id}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    pointer = table_dir / f"dt={date}"
    _check_pointer(pointer)
    started = time.time()
    versions.mkdir(parents=True, exist_ok=True)
    head = {
        **extra,
        "table": config.table,
        "date": date,
        "run_id": run_id,
        "version": version,
        "path": str(pointer),
    }
    try:
        manifest = _write_version(df, versions, head, k, expected_rows_per_user, files)
    except PipelineError as exc:
        raise PipelineError(
            f"publishing {config.table} dt={date} (run {run_id}) refused: {exc}; "
            "the published version is unchanged"
        ) from None
    _swap_link(pointer, os.path.join(".versions", f"dt={date}", version))
    _update_latest(table_dir)
    _prune(versions, version, config.keep_versions)
    _remove_orphaned_staging(table_dir, started)
    return manifest


def _resolve(root: Path, table: str, date: str | None) -> Path:
    pointer = Path(root) / table / (f"dt={date}" if date else LATEST)
    if not pointer.exists():
        when = f"date {date}" if date else "any date"
        raise DataError(
            f"no published version of table {table!r} for {when} under {root}; run `recbatch score` first"
        )
    return pointer.resolve(strict=True)


def published_manifest(root: Path, table: str, date: str | None = None) -> dict[str, Any]:
    """The manifest of the version currently published for `date` (default: the newest date)."""
    return json.loads((_resolve(root, table, date) / MANIFEST).read_text(encoding="utf-8"))


def read_published(spark: SparkSession, root: Path, table: str, date: str | None = None) -> DataFrame:
    """Read the currently published version for `date` (default: the newest date).

    The pointer is resolved once, so the read sees one complete version even if a publish
    swaps the pointer meanwhile.
    """
    return spark.read.parquet(str(_resolve(root, table, date)))
