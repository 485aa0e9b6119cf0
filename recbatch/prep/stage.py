"""The prepare stage: read, validate, quarantine, merge, filter, index, split, write, report.

`run_prepare` runs one function per step, in this order. The raw input is scanned once:
every line is split, validated and parsed into a staging Parquet table (rejected rows keep
their raw text). Counts come from independent places (the staging table, the pair
counters, the written Parquet), so the accounting check at the end catches rows lost
anywhere. This is the module of prep/ that decides what is read and written, and when.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from recbatch.config import Config
from recbatch.errors import ConfigError, DataError
from recbatch.io.lines import REASON
from recbatch.io.readers import read_input
from recbatch.layout import RunLayout
from recbatch.prep import aggregate, filters, split
from recbatch.prep.checks import quarantine_warnings, time_warnings
from recbatch.prep.parse import COPIES, annotate, day_end
from recbatch.prep.quarantine import quarantine_rows, staging_rows, valid_events
from recbatch.prep.removed import removed_users
from recbatch.prep.report import (
    check_accounting,
    density,
    file_counts,
    format_table,
    nothing_clean_error,
    write_report,
    written_counts,
)
from recbatch.prep.vocab import build_vocab, extend_vocab, index_pairs, previous_prepared

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

# Scratch folders under prepared/, removed when the stage ends, whether it succeeds or not.
STAGING_DIR = "tmp-staging"
SPLIT_DIR = "tmp-split"


def _write(df: DataFrame, path: Any) -> StructType:
    """Write `df` as Parquet at `path` (overwritten); returns its schema for `_read_back`."""
    df.write.mode("overwrite").parquet(str(path))
    return df.schema


def _read_back(spark: SparkSession, path: Any, schema: StructType) -> DataFrame:
    # Given the schema just written, Spark skips the job that infers it from the files' footers
    # (one of the ~70 jobs of a small prepare, each costing a fraction of a second).
    return spark.read.schema(schema).parquet(str(path))


class _Clock:
    """Seconds spent per step, for the report's `timings`."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.perf_counter() - self._start, 3)}


@dataclass(frozen=True)
class _Staged:
    """The staging table read back, and what reading the input found."""

    staging: DataFrame
    input_columns: list[str]
    header: str | None
    per_file: dict[str, dict[str, Any]]
    rows_read: int


@dataclass(frozen=True)
class _Merged:
    """What merging valid rows into pairs counted: rows in, distinct events, near duplicates."""

    rows_valid: int
    distinct: int
    near: int


class _Vocabularies(NamedTuple):
    users: DataFrame
    items: DataFrame
    previous: str | None  # the prepared/ folder extended, or None for fresh vocabularies


def _check_config(config: Config) -> None:
    if config.prepare.feedback == "explicit" and config.input.rating_col is None:
        raise ConfigError(
            "prepare.feedback = 'explicit' needs input.rating_col (or use feedback = 'implicit')"
        )


def _read_and_stage(spark: SparkSession, config: Config, layout: RunLayout) -> _Staged:
    """Read the input once and write every line to the staging table; count rows per file."""
    inp, prep = config.input, config.prepare
    staging_path = layout.prepared / STAGING_DIR
    raw, files, header = read_input(spark, inp, prep.max_line_bytes)
    schema = _write(staging_rows(annotate(raw, inp, prep, layout.date)), staging_path)
    staging = _read_back(spark, staging_path, schema)
    per_file = file_counts(staging, files)
    rows_read = sum(f["rows_read"] for f in per_file.values())
    return _Staged(staging, raw.columns, header, per_file, rows_read)


def _quarantine(spark: SparkSession, staged: _Staged, layout: RunLayout) -> dict[str, int]:
    """Write the rejected rows; return their count per reason, or raise DataError if none is clean."""
    schema = _write(quarantine_rows(staged.staging, staged.input_columns), layout.quarantine)
    # Counted from the written quarantine, not the staging table, so the accounting check
    # also catches rejected rows lost on the way to the file.
    counts = _read_back(spark, layout.quarantine, schema).groupBy(REASON).count().collect()
    by_reason = dict(sorted((r[REASON], int(r["count"])) for r in counts))
    if sum(by_reason.values()) == staged.rows_read:
        raise nothing_clean_error(staged.rows_read, by_reason, str(layout.quarantine))
    return by_reason


def _merge(
    spark: SparkSession, config: Config, date: str, staging: DataFrame, out: filters.Filtered
) -> tuple[DataFrame, _Merged]:
    """Merge valid events into (user, item) pairs, cached in `out`, and count what merging removed."""
    from pyspark.sql import functions as F

    prep = config.prepare
    window_start = day_end(date) - prep.window_days * 86_400 + 1 if prep.window_days else None
    pairs = out.keep(
        aggregate.aggregate_events(
            valid_events(staging),
            prep.near_duplicate_seconds,
            window_start,
            int(spark.conf.get("spark.sql.shuffle.partitions") or 8),
        )
    )
    sums = pairs.agg(*[F.sum(c).alias(c) for c in (COPIES, "events", "near", "window_out", "count")]).first()
    out.rows["time_window"] = int(sums["window_out"])
    return pairs, _Merged(int(sums[COPIES]), int(sums["events"]), int(sums["near"]))


def _filter_and_weigh(pairs: DataFrame, config: Config, out: filters.Filtered) -> DataFrame:
    """Apply the configured pair filters, then the weight and rating normalisation (persisted)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    prep = config.prepare
    # Pairs with no event left in the time window are already counted (time_window).
    inside = filters.pair_columns(pairs.where(F.col("count") > 0))
    kept = filters.filter_pairs(inside, prep, out)
    return aggregate.normalise(kept, prep.log_weights, prep.center_ratings).persist(
        StorageLevel.MEMORY_AND_DISK
    )


def _kept_shape(kept: DataFrame, out: filters.Filtered, clean_events: int) -> Row:
    """Pairs kept and their time range (n, t0, t1); raise DataError when filtering left none."""
    from pyspark.sql import functions as F

    shape = kept.agg(
        F.count(F.lit(1)).alias("n"), F.min("first_ts").alias("t0"), F.max("last_ts").alias("t1")
    ).first()
    out.release()  # `kept` is materialised: the caches of earlier steps only take memory now
    if not shape["n"]:
        raise DataError(
            f"0 interactions left after filtering {clean_events} clean events ({out.rows}); lower "
            "prepare.min_user_interactions / min_item_interactions / min_rating, or widen window_days"
        )
    return shape


def _vocabularies(spark: SparkSession, config: Config, layout: RunLayout, pairs: DataFrame) -> _Vocabularies:
    """Write both vocabularies (extending a previous run's when configured) and read them back."""
    previous = previous_prepared(config.prepare.previous_vocab, layout)
    schemas = []
    for id_col, idx_col, path, name in (
        ("user_id", "user_idx", layout.user_vocab, "users"),
        ("item_id", "item_idx", layout.item_vocab, "items"),
    ):
        if previous is None:
            vocab = build_vocab(pairs, id_col, idx_col)
        else:
            old = spark.read.parquet(str(previous / "vocab" / name)).localCheckpoint()
            vocab = extend_vocab(old, pairs, id_col, idx_col)
        schemas.append(_write(vocab, path))
    return _Vocabularies(
        _read_back(spark, layout.user_vocab, schemas[0]),
        _read_back(spark, layout.item_vocab, schemas[1]),
        str(previous) if previous is not None else None,
    )


def _split_and_write(
    spark: SparkSession, config: Config, layout: RunLayout, kept: DataFrame, vocab: _Vocabularies
) -> dict[str, StructType]:
    """Index the kept pairs, mark the test split, and write interactions, train and test
    (their schemas returned, by name)."""
    split_path = layout.prepared / SPLIT_DIR
    # Each partition in a total order as the split leaves it (see prep.split: no sort after the
    # window). Written once with the split mark and read back three times: no
    # data-sized cache.
    has_time = config.input.timestamp_col is not None
    marked = split.mark_split(
        index_pairs(kept, vocab.users, vocab.items), config.prepare, layout.date, has_time
    )
    schema = _write(marked, split_path)
    kept.unpersist()  # the split is on disk: the cache of `kept` only takes memory now
    split_df = _read_back(spark, split_path, schema)
    return {
        "interactions": _write(split_df.select(*split.INTERACTION_COLUMNS), layout.interactions),
        "train": _write(split.train_part(split_df), layout.train),
        "test": _write(split.test_part(split_df), layout.test),
    }


def _write_removed_users(
    spark: SparkSession, staged: _Staged, layout: RunLayout, vocab: _Vocabularies
) -> int:
    """Write the users the filters removed (for the score stage's fallback); return how many."""
    from pyspark.sql import functions as F

    schema = _write(
        removed_users(valid_events(staged.staging), vocab.users, vocab.items), layout.filtered_users
    )
    removed = _read_back(spark, layout.filtered_users, schema)
    return removed.agg(F.countDistinct("user_id")).first()[0] or 0


def _report(
    spark: SparkSession,
    config: Config,
    layout: RunLayout,
    *,
    staged: _Staged,
    by_reason: dict[str, int],
    merged: _Merged,
    filtered: filters.Filtered,
    shape: Row,
    vocab: _Vocabularies,
    schemas: dict[str, StructType],
) -> dict[str, Any]:
    """The prepare report: the steps' counts beside counts of the Parquet as written."""
    inp, prep, per_file = config.input, config.prepare, staged.per_file
    written = written_counts(spark, layout, schemas)
    n_users, n_items = vocab.users.count(), vocab.items.count()
    rows_valid, distinct, near = merged.rows_valid, merged.distinct, merged.near
    return {
        "input": {"path": inp.path, "format": inp.format, "header": staged.header},
        "run_date": layout.date,
        "feedback": prep.feedback,
        "files": per_file,
        "empty_files": sorted(f for f, c in per_file.items() if c["lines"] == 0),
        "header_only_files": sorted(f for f, c in per_file.items() if c["header_only"]),
        "rows_read": staged.rows_read,
        "rows_valid": rows_valid,
        "rows_quarantined": sum(by_reason.values()),
        "quarantine_by_reason": by_reason,
        "duplicates_merged": rows_valid - distinct + near,
        "duplicates_exact": rows_valid - distinct,
        "near_duplicates_merged": near,
        "filtered": dict(sorted(filtered.rows.items())),
        "rows_filtered": sum(filtered.rows.values()),
        "filter_details": filtered.details,
        "rows_clean": written["rows_clean"],
        "users": n_users,
        "items": n_items,
        "interactions": written["interactions"],
        "train_rows": written["train_rows"],
        "test_rows": written["test_rows"],
        "test_users": written["test_users"],
        "split": prep.split,
        "test_per_user": prep.test_per_user,
        "density": density(n_users, n_items, written["interactions"]),
        "time_range": {"first_ts": shape["t0"], "last_ts": shape["t1"]},
        "per_user": written["per_user"],
        "per_item": written["per_item"],
        "previous_vocab": vocab.previous,
    }


def run_prepare(spark: SparkSession, config: Config, layout: RunLayout) -> dict[str, Any]:
    """Turn the raw log of `config.input` into the prepared artifacts of `layout`; return the report.

    Writes interactions, train, test, quarantine, user and item vocabularies (Parquet,
    overwritten) and report.json. Raises ConfigError for explicit feedback without a rating
    column, DataError when nothing usable is left and PipelineError when the row accounting
    does not add up.
    """
    _check_config(config)
    clock = _Clock()
    out = filters.Filtered()
    kept = None
    try:
        staged = _read_and_stage(spark, config, layout)
        clock.lap("read_validate")
        by_reason = _quarantine(spark, staged, layout)
        clock.lap("quarantine")
        pairs, merged = _merge(spark, config, layout.date, staged.staging, out)
        kept = _filter_and_weigh(pairs, config, out)
        shape = _kept_shape(kept, out, merged.distinct - merged.near)
        clock.lap("aggregate_filter")
        vocab = _vocabularies(spark, config, layout, kept)
        clock.lap("vocab")
        schemas = _split_and_write(spark, config, layout, kept, vocab)
        removed = _write_removed_users(spark, staged, layout, vocab)
        clock.lap("split_write")
        report = _report(
            spark,
            config,
            layout,
            staged=staged,
            by_reason=by_reason,
            merged=merged,
            filtered=out,
            shape=shape,
            vocab=vocab,
            schemas=schemas,
        )
        report["timestamps"] = config.input.timestamp_col is not None
        report["filtered_users"] = removed
        report["warnings"] = quarantine_warnings(report, config.prepare) + time_warnings(config)
        check_accounting(report)
        clock.lap("report")
        report["timings"] = clock.total()
        write_report(report, layout.prepare_report)
    finally:
        # Temporary files go first: releasing caches fails if the JVM is gone.
        (layout.prepared / STAGING_DIR).delete()
        (layout.prepared / SPLIT_DIR).delete()
        out.release()
        if kept is not None:
            kept.unpersist()
    logger.info("prepare report (%s):\n%s", layout.prepare_report, format_table(report))
    return report
