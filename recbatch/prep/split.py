"""Train/test splits that add a boolean `is_test`: leave-last-N-out (each user's latest items,
by last_ts, ties by item_idx), a time cutoff, or a seeded random draw; `mark_split` applies
the one `prepare.split` names.

Each comes out with the rows of every partition in a total order (a user's rows by the split's
own window order; without a test split, by user and item), so the split is written as it
leaves the window: a sort after it would buffer the partition while the window buffers a big
user, and Spark cannot spill the window's buffer for the sort (SPARK-39932: "Unable to acquire
... memory, got 0" at 20M events with a 2g driver).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.prep.parse import day_end

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recbatch.config import PrepareConfig

INTERACTION_COLUMNS = ("user_idx", "item_idx", "count", "weight", "rating", "last_ts")


def mark_test(interactions: DataFrame, n: int, seed: int | None = None) -> DataFrame:
    """Add boolean `is_test`: true for a user's last `n` items, only for users with more than `n` items.

    "Last" orders by (last_ts, item_idx), so a tie goes to the larger index and the
    split is deterministic; every user keeps at least one training item. With `seed` (an
    input without timestamps, where every last_ts is 0) a seeded hash of (user, item) orders
    instead: `n` random items per user, not the `n` largest indices (which follow the id order).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = [F.col(c) for c in INTERACTION_COLUMNS]
    if n == 0:
        ordered = interactions.sortWithinPartitions("user_idx", "item_idx")
        return ordered.select(*cols, F.lit(False).alias("is_test"))
    by_user = Window.partitionBy("user_idx")
    when = F.col("last_ts") if seed is None else F.xxhash64(F.col("user_idx"), F.col("item_idx"), F.lit(seed))
    latest_first = by_user.orderBy(when.desc(), F.col("item_idx").desc())
    return interactions.select(
        *cols,
        ((F.row_number().over(latest_first) <= n) & (F.count(F.lit(1)).over(by_user) > n)).alias("is_test"),
    )


def train_part(marked: DataFrame) -> DataFrame:
    """Rows of `mark_test` output that stay in training, in the interaction schema."""
    from pyspark.sql import functions as F

    return marked.where(~F.col("is_test")).select(*[F.col(c) for c in INTERACTION_COLUMNS])


def test_part(marked: DataFrame) -> DataFrame:
    """Held-out rows of `mark_test` output, in the interaction schema."""
    from pyspark.sql import functions as F

    return marked.where(F.col("is_test")).select(*[F.col(c) for c in INTERACTION_COLUMNS])


def mark_test_time(interactions: DataFrame, cutoff: int) -> DataFrame:
    """Add `is_test`: pairs whose last event is after `cutoff` (unix seconds), for users with a
    pair at or before it. Every test pair is later than all of its user's train pairs; users
    seen only after the cutoff stay in train (they have no history to evaluate against).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    after = F.col("last_ts") > cutoff
    # Ordered by item over the whole frame: the same max, and a total order of each user's rows.
    by_user = (
        Window.partitionBy("user_idx")
        .orderBy("item_idx")
        .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    has_past = F.max((~after).cast("int")).over(by_user) == 1
    return interactions.select(*[F.col(c) for c in INTERACTION_COLUMNS], (after & has_past).alias("is_test"))


def mark_test_random(interactions: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Add `is_test`: a seeded hash of (user, item) below `fraction`; each user keeps >= 1 train pair.

    The draw depends only on the pair and the seed, so the same data gives the same split
    on any cluster; a user whose pairs all drew test keeps the one with the largest draw.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    draw = (F.abs(F.xxhash64(F.col("user_idx"), F.col("item_idx"), F.lit(seed))) % 1_000_000) / 1_000_000.0
    by_user = Window.partitionBy("user_idx")
    first = by_user.orderBy(F.col("_draw").desc(), F.col("item_idx"))
    picked = F.col("_draw") < fraction
    no_train = F.sum((~picked).cast("int")).over(by_user) == 0
    return interactions.withColumn("_draw", draw).select(
        *[F.col(c) for c in INTERACTION_COLUMNS],
        (picked & ~(no_train & (F.row_number().over(first) == 1))).alias("is_test"),
    )


def mark_split(
    interactions: DataFrame, prep: PrepareConfig, run_date: str, has_time: bool = True
) -> DataFrame:
    """Add `is_test` with the split `prep.split` names (time_cutoff counts back from `run_date`'s end).

    Without timestamps (`has_time` false) leave_last_n holds out seeded random items (config
    validation refuses time_cutoff there).
    """
    if prep.split == "time_cutoff":
        return mark_test_time(interactions, day_end(run_date) - prep.split_days * 86_400)
    if prep.split == "random":
        return mark_test_random(interactions, prep.test_fraction, prep.split_seed)
    return mark_test(interactions, prep.test_per_user, None if has_time else prep.split_seed)
