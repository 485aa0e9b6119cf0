"""Leave-last-N-out split: each user's latest items (by last_ts, ties by item_idx) are held out."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

INTERACTION_COLUMNS = ("user_idx", "item_idx", "count", "weight", "rating", "last_ts")


def mark_test(interactions: DataFrame, n: int) -> DataFrame:
    """Add boolean `is_test`: true for a user's last `n` items, only for users with more than `n` items.

    "Last" orders by (last_ts, item_idx), so a tie goes to the larger index and the
    split is deterministic; every user keeps at least one training item.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = [F.col(c) for c in INTERACTION_COLUMNS]
    if n == 0:
        return interactions.select(*cols, F.lit(False).alias("is_test"))
    by_user = Window.partitionBy("user_idx")
    latest_first = by_user.orderBy(F.col("last_ts").desc(), F.col("item_idx").desc())
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
