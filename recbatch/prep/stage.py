"""The prepare stage's one I/O function: read, validate, quarantine, merge, filter, index, split, write.

Counts come from independent places (the validation pass, the aggregated pairs, the
written Parquet), so the accounting check at the end catches rows lost anywhere.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from recbatch.config import Config
from recbatch.errors import ConfigError, DataError
from recbatch.layout import RunLayout
from recbatch.prep import aggregate, clean, split
from recbatch.prep.parse import COPIES, REASON, parse_valid, with_reason
from recbatch.prep.report import check_accounting, density, nothing_clean_error, write_report
from recbatch.prep.vocab import build_vocab, index_pairs

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


def run_prepare(spark: SparkSession, config: Config, layout: RunLayout) -> dict[str, Any]:
    """Turn the raw log of `config.input` into the prepared artifacts of `layout`; return the report.

    Writes interactions, train, test, quarantine, user and item vocabularies (Parquet,
    overwritten) and report.json. Raises DataError when nothing usable is left and
    PipelineError when the row accounting does not add up.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from recbatch.io.readers import read_raw

    inp, prep = config.input, config.prepare
    if prep.feedback == "explicit" and inp.rating_col is None:
        raise ConfigError(
            "prepare.feedback = 'explicit' needs input.rating_col (or use feedback = 'implicit')"
        )
    clock = _Clock()
    cached: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    try:
        raw = read_raw(spark, inp)
        rows_read = raw.count()  # counted on its own, so the accounting below is a real check
        _write(clean.quarantined(with_reason(raw, inp, prep)), layout.quarantine)
        counts = spark.read.parquet(str(layout.quarantine)).groupBy(REASON).count().collect()
        by_reason = dict(sorted((r[REASON], int(r["count"])) for r in counts))
        rows_quarantined = sum(by_reason.values())
        clock.lap("validate_quarantine")
        if rows_quarantined == rows_read:
            raise nothing_clean_error(rows_read, by_reason, str(layout.quarantine))

        valid = clean.valid(with_reason(raw, inp, prep))
        events = parse_valid(clean.drop_exact_duplicates(valid), inp, prep)
        min_rating = prep.min_rating if prep.feedback == "explicit" else None
        marked = keep(
            aggregate.mark_filtered(
                aggregate.aggregate_pairs(events),
                min_rating,
                prep.min_user_interactions,
                prep.min_item_interactions,
            )
        )
        totals = {
            r[aggregate.FILTERED_BY]: (int(r["rows"]), int(r["raw"]))
            for r in marked.groupBy(aggregate.FILTERED_BY)
            .agg(F.sum("count").alias("rows"), F.sum(COPIES).alias("raw"))
            .collect()
        }
        rows_valid = sum(raw_rows for _, raw_rows in totals.values())
        rows_deduped = sum(rows for rows, _ in totals.values())
        filtered = {name: totals.get(name, (0, 0))[0] for name in aggregate.FILTERS}
        clock.lap("aggregate_filter")
        if None not in totals:
            raise DataError(
                f"0 interactions left after filtering {rows_deduped} clean rows ({filtered}); lower "
                "prepare.min_user_interactions / min_item_interactions / min_rating"
            )

        pairs = aggregate.kept(marked)
        for id_col, idx_col, path in (
            ("user_id", "user_idx", layout.user_vocab),
            ("item_id", "item_idx", layout.item_vocab),
        ):
            _write(build_vocab(pairs, id_col, idx_col), path)
        users = spark.read.parquet(str(layout.user_vocab))
        items = spark.read.parquet(str(layout.item_vocab))
        clock.lap("vocab")

        # Partitioned by user after the split's window; sorting within partitions keeps files stable.
        split_df = keep(
            split.mark_test(index_pairs(pairs, users, items), prep.test_per_user).sortWithinPartitions(
                "user_idx", "item_idx"
            )
        )
        _write(split_df.select(*split.INTERACTION_COLUMNS), layout.interactions)
        _write(split.train_part(split_df), layout.train)
        _write(split.test_part(split_df), layout.test)
        clock.lap("split_write")

        written = (
            spark.read.parquet(str(layout.interactions))
            .agg(F.count(F.lit(1)).alias("n"), F.sum("count").alias("rows"))
            .first()
        )
        test = (
            spark.read.parquet(str(layout.test))
            .agg(F.count(F.lit(1)).alias("n"), F.countDistinct("user_idx").alias("users"))
            .first()
        )
        n_users, n_items, n_pairs = users.count(), items.count(), int(written["n"])
        report: dict[str, Any] = {
            "input": {"path": inp.path, "format": inp.format},
            "feedback": prep.feedback,
            "rows_read": rows_read,
            "rows_valid": rows_valid,
            "rows_quarantined": rows_quarantined,
            "quarantine_by_reason": by_reason,
            "duplicates_merged": rows_valid - rows_deduped,
            "filtered": filtered,
            "rows_filtered": sum(filtered.values()),
            "rows_clean": int(written["rows"] or 0),
            "users": n_users,
            "items": n_items,
            "interactions": n_pairs,
            "train_rows": spark.read.parquet(str(layout.train)).count(),
            "test_rows": int(test["n"]),
            "test_users": int(test["users"]),
            "test_per_user": prep.test_per_user,
            "density": density(n_users, n_items, n_pairs),
        }
        check_accounting(report)
        clock.lap("report")
        report["timings"] = clock.total()
        write_report(report, layout.prepare_report)
    finally:
        for df in cached:
            df.unpersist()
    logger.info(
        "prepare: %d rows read, %d quarantined, %d duplicates merged, %d filtered -> "
        "%d users x %d items, %d interactions (%d train / %d test)",
        rows_read,
        rows_quarantined,
        report["duplicates_merged"],
        report["rows_filtered"],
        n_users,
        n_items,
        n_pairs,
        report["train_rows"],
        report["test_rows"],
    )
    return report
