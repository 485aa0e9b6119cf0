"""The prepare stage's one I/O function: read, validate, quarantine, merge, filter, index, split, write.

The raw input is scanned once: every line is split, validated and parsed into a staging
Parquet table (rejected rows keep their raw text). Counts come from independent places
(the staging table, the pair counters, the written Parquet), so the accounting check at
the end catches rows lost anywhere.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

from recbatch.config import Config
from recbatch.errors import ConfigError, DataError
from recbatch.io.lines import REASON
from recbatch.layout import RunLayout
from recbatch.prep import aggregate, filters, split
from recbatch.prep import quarantine as qr
from recbatch.prep.parse import COPIES, annotate, day_end
from recbatch.prep.report import check_accounting, density, format_table, nothing_clean_error, write_report
from recbatch.prep.vocab import build_vocab, extend_vocab, index_pairs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


def _write(df: DataFrame, path: Any) -> None:
    df.write.mode("overwrite").parquet(str(path))


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.perf_counter() - self._start, 3)}


def _filter_pairs(pairs: DataFrame, config: Config, out: filters.Filtered) -> DataFrame:
    prep = config.prepare
    current = filters.pair_columns(pairs.where("count > 0"))
    if prep.feedback == "explicit" and prep.min_rating is not None:
        current = filters.drop_low_ratings(current, prep.min_rating, out)
    for key, q, cap in (
        ("user_id", prep.outlier_user_quantile, prep.outlier_user_max),
        ("item_id", prep.outlier_item_quantile, prep.outlier_item_max),
    ):
        if q is not None or cap is not None:
            current = filters.drop_outliers(current, key, q, cap, out)
    return filters.kcore(
        current, prep.min_user_interactions, prep.min_item_interactions, prep.kcore_max_rounds, out
    )


def _vocabularies(spark: SparkSession, config: Config, layout: RunLayout, pairs: DataFrame) -> str | None:
    """Write both vocabularies (extending a previous run's when configured); returns the one used."""
    previous = qr.previous_prepared(config.prepare.previous_vocab, layout)
    for id_col, idx_col, path, name in (
        ("user_id", "user_idx", layout.user_vocab, "users"),
        ("item_id", "item_idx", layout.item_vocab, "items"),
    ):
        if previous is None:
            vocab = build_vocab(pairs, id_col, idx_col)
        else:
            old = spark.read.parquet(str(previous / "vocab" / name)).localCheckpoint()
            vocab = extend_vocab(old, pairs, id_col, idx_col)
        _write(vocab, path)
    return str(previous) if previous is not None else None


def _mark_split(indexed: DataFrame, config: Config, date: str) -> DataFrame:
    prep = config.prepare
    if prep.split == "time_cutoff":
        return split.mark_test_time(indexed, day_end(date) - prep.split_days * 86_400)
    if prep.split == "random":
        return split.mark_test_random(indexed, prep.test_fraction, prep.split_seed)
    return split.mark_test(indexed, prep.test_per_user)


def run_prepare(spark: SparkSession, config: Config, layout: RunLayout) -> dict[str, Any]:
    """Turn the raw log of `config.input` into the prepared artifacts of `layout`; return the report.

    Writes interactions, train, test, quarantine, user and item vocabularies (Parquet,
    overwritten) and report.json. Raises DataError when nothing usable is left and
    PipelineError when the row accounting does not add up.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from recbatch.io.readers import read_input

    inp, prep = config.input, config.prepare
    if prep.feedback == "explicit" and inp.rating_col is None:
        raise ConfigError(
            "prepare.feedback = 'explicit' needs input.rating_col (or use feedback = 'implicit')"
        )
    clock = _Clock()
    out = filters.Filtered()
    staging_path = layout.prepared / "tmp-staging"
    split_path = layout.prepared / "tmp-split"
    kept = None
    try:
        raw, files, header = read_input(spark, inp, prep.max_line_bytes)
        _write(qr.staging_rows(annotate(raw, inp, prep, layout.date)), staging_path)
        staging = spark.read.parquet(str(staging_path))
        per_file = qr.file_counts(staging, files)
        rows_read = sum(f["rows_read"] for f in per_file.values())
        clock.lap("read_validate")

        _write(qr.quarantine_rows(staging, raw.columns), layout.quarantine)
        counts = spark.read.parquet(str(layout.quarantine)).groupBy(REASON).count().collect()
        by_reason = dict(sorted((r[REASON], int(r["count"])) for r in counts))
        rows_quarantined = sum(by_reason.values())
        clock.lap("quarantine")
        if rows_quarantined == rows_read:
            raise nothing_clean_error(rows_read, by_reason, str(layout.quarantine))

        window_start = day_end(layout.date) - prep.window_days * 86_400 + 1 if prep.window_days else None
        pairs = out.keep(
            aggregate.aggregate_events(
                qr.valid_events(staging),
                prep.near_duplicate_seconds,
                window_start,
                int(spark.conf.get("spark.sql.shuffle.partitions") or 8),
            )
        )
        sums = pairs.agg(
            *[F.sum(c).alias(c) for c in (COPIES, "events", "near", "window_out", "count")]
        ).first()
        rows_valid, distinct, near = int(sums[COPIES]), int(sums["events"]), int(sums["near"])
        out.rows["time_window"] = int(sums["window_out"])
        kept = _filter_pairs(pairs, config, out)
        kept = aggregate.normalise(kept, prep.log_weights, prep.center_ratings).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        shape = kept.agg(
            F.count(F.lit(1)).alias("n"), F.min("first_ts").alias("t0"), F.max("last_ts").alias("t1")
        ).first()
        out.release()  # `kept` is materialised: the caches of earlier steps only take memory now
        clock.lap("aggregate_filter")
        if not shape["n"]:
            raise DataError(
                f"0 interactions left after filtering {distinct - near} clean events ({out.rows}); lower "
                "prepare.min_user_interactions / min_item_interactions / min_rating, or widen window_days"
            )

        previous = _vocabularies(spark, config, layout, kept)
        users = spark.read.parquet(str(layout.user_vocab))
        items = spark.read.parquet(str(layout.item_vocab))
        clock.lap("vocab")

        # Partitioned by user after the split's window; sorting within partitions keeps files stable.
        # Written once with the split mark and read back three times: no data-sized cache.
        _write(
            _mark_split(index_pairs(kept, users, items), config, layout.date).sortWithinPartitions(
                "user_idx", "item_idx"
            ),
            split_path,
        )
        kept.unpersist()
        split_df = spark.read.parquet(str(split_path))
        _write(split_df.select(*split.INTERACTION_COLUMNS), layout.interactions)
        _write(split.train_part(split_df), layout.train)
        _write(split.test_part(split_df), layout.test)
        clock.lap("split_write")

        inter = spark.read.parquet(str(layout.interactions))
        written = inter.agg(F.count(F.lit(1)).alias("n"), F.sum("count").alias("rows")).first()
        test = (
            spark.read.parquet(str(layout.test))
            .agg(F.count(F.lit(1)).alias("n"), F.countDistinct("user_idx").alias("users"))
            .first()
        )
        n_users, n_items, n_pairs = users.count(), items.count(), int(written["n"])
        report: dict[str, Any] = {
            "input": {"path": inp.path, "format": inp.format, "header": header},
            "run_date": layout.date,
            "feedback": prep.feedback,
            "files": per_file,
            "empty_files": sorted(f for f, c in per_file.items() if c["lines"] == 0),
            "header_only_files": sorted(f for f, c in per_file.items() if c["header_only"]),
            "rows_read": rows_read,
            "rows_valid": rows_valid,
            "rows_quarantined": rows_quarantined,
            "quarantine_by_reason": by_reason,
            "duplicates_merged": rows_valid - distinct + near,
            "duplicates_exact": rows_valid - distinct,
            "near_duplicates_merged": near,
            "filtered": dict(sorted(out.rows.items())),
            "rows_filtered": sum(out.rows.values()),
            "filter_details": out.details,
            "rows_clean": int(written["rows"] or 0),
            "users": n_users,
            "items": n_items,
            "interactions": n_pairs,
            "train_rows": spark.read.parquet(str(layout.train)).count(),
            "test_rows": int(test["n"]),
            "test_users": int(test["users"]),
            "split": prep.split,
            "test_per_user": prep.test_per_user,
            "density": density(n_users, n_items, n_pairs),
            "time_range": {"first_ts": shape["t0"], "last_ts": shape["t1"]},
            "per_user": qr.degree_quantiles(inter, "user_idx"),
            "per_item": qr.degree_quantiles(inter, "item_idx"),
            "previous_vocab": previous,
        }
        check_accounting(report)
        clock.lap("report")
        report["timings"] = clock.total()
        write_report(report, layout.prepare_report)
    finally:
        # Temporary files go first: releasing caches fails if the JVM is gone.
        shutil.rmtree(staging_path, ignore_errors=True)
        shutil.rmtree(split_path, ignore_errors=True)
        out.release()
        if kept is not None:
            kept.unpersist()
    logger.info("prepare report (%s):\n%s", layout.prepare_report, format_table(report))
    return report
