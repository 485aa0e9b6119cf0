"""Merging events into one row per (user, item), and the interaction filters.

Every pair keeps `count` (distinct raw rows merged into it) and `copies` (raw rows
including exact duplicates), so filters can report what they removed in raw rows and
the stage's accounting adds up exactly. Filters mark rows instead of dropping them, so
one aggregation yields every filter's count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.prep.parse import COPIES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PAIR_COLUMNS = ("user_id", "item_id", "count", "weight", "rating", "last_ts", COPIES)
FILTERED_BY = "filtered_by"
FILTERS = ("min_rating", "min_user_interactions", "min_item_interactions")


def aggregate_pairs(events: DataFrame) -> DataFrame:
    """Parsed events -> one row per (user_id, item_id).

    count (events merged), weight (sum), rating (mean of non-null), last_ts (max), and
    copies (sum of the events' `copies`, or count when events carry none).
    """
    from pyspark.sql import functions as F

    copies = F.col(COPIES) if COPIES in events.columns else F.lit(1)
    return (
        events.groupBy(F.col("user_id"), F.col("item_id"))
        .agg(
            F.count(F.lit(1)).cast("long").alias("count"),
            F.sum(F.col("weight")).cast("double").alias("weight"),
            F.avg(F.col("rating")).cast("double").alias("rating"),
            F.max(F.col("ts")).cast("long").alias("last_ts"),
            F.sum(copies).cast("long").alias(COPIES),
        )
        .select(*[F.col(c) for c in PAIR_COLUMNS])
    )


def mark_filtered(pairs: DataFrame, min_rating: float | None, min_user: int, min_item: int) -> DataFrame:
    """Add `filtered_by`: the first filter that removes the pair, or null when it is kept.

    In order: mean rating below `min_rating` (pairs without a rating pass); users with
    fewer than `min_user` distinct items left; then items with fewer than `min_item`
    distinct users left (one pass: a user is not re-checked after the item filter).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    low = F.coalesce(F.col("rating") < min_rating, F.lit(False)) if min_rating is not None else F.lit(False)
    one = F.lit(1)
    # A minimum of 1 can never bite, so skip its shuffle.
    user_n = F.sum(F.when(~F.col("_low"), one).otherwise(0)).over(Window.partitionBy("user_id"))
    item_n = F.sum(F.when(F.col("_kept_u"), one).otherwise(0)).over(Window.partitionBy("item_id"))
    user_n = user_n if min_user > 1 else F.lit(min_user)
    item_n = item_n if min_item > 1 else F.lit(min_item)
    return (
        pairs.withColumn("_low", low)
        .withColumn("_few_u", ~F.col("_low") & (user_n < min_user))
        .withColumn("_kept_u", ~F.col("_low") & ~F.col("_few_u"))
        .withColumn("_few_i", F.col("_kept_u") & (item_n < min_item))
        .select(
            *[F.col(c) for c in PAIR_COLUMNS],
            F.when(F.col("_low"), F.lit(FILTERS[0]))
            .when(F.col("_few_u"), F.lit(FILTERS[1]))
            .when(F.col("_few_i"), F.lit(FILTERS[2]))
            .alias(FILTERED_BY),
        )
    )


def kept(marked: DataFrame) -> DataFrame:
    """Pairs of `mark_filtered` output that no filter removed, in the pair schema."""
    from pyspark.sql import functions as F

    return marked.where(F.col(FILTERED_BY).isNull()).select(*[F.col(c) for c in PAIR_COLUMNS])
