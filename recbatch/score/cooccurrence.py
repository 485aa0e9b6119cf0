"""The co-occurrence baseline of similar items, in Spark: items interacted with by the same users.

score(i, j) = c(i, j) / sqrt(n(i) * n(j)), the cosine of the two items' binary user columns,
where c counts users who interacted with both and n counts each item's users; ranked by
(-score, similar_item_idx). Only each user's `max_items_per_user` most recent items pair up,
which bounds the self-join at users x max^2 pairs while keeping what a user did lately.
An item that shares no user with another gets fewer than k rows (or none): the baseline has
nothing to say about it, which the report counts as a miss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def recent_pairs(interactions: DataFrame, max_items_per_user: int) -> DataFrame:
    """user_idx, item_idx: each user's distinct items, the most recent `max_items_per_user` of them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    when = F.col("last_ts") if "last_ts" in interactions.columns else F.lit(0)
    per_item = interactions.groupBy("user_idx", "item_idx").agg(F.max(when).alias("ts"))
    newest = Window.partitionBy("user_idx").orderBy(F.desc("ts"), F.col("item_idx"))
    return (
        per_item.withColumn("n", F.row_number().over(newest))
        .filter(F.col("n") <= max_items_per_user)
        .select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"))
    )


def cooccurrence_similar(interactions: DataFrame, k: int, max_items_per_user: int) -> DataFrame:
    """item_idx, similar_item_idx, score (double), rank: each item's top-k co-occurring items (lazy)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pairs = recent_pairs(interactions, max_items_per_user)
    users_of = pairs.groupBy("item_idx").agg(F.count(F.lit(1)).alias("n_users"))
    left = pairs.select("user_idx", F.col("item_idx"))
    right = pairs.select("user_idx", F.col("item_idx").alias("similar_item_idx"))
    counts = (
        left.join(right, on="user_idx", how="inner")
        .filter(F.col("item_idx") != F.col("similar_item_idx"))
        .groupBy("item_idx", "similar_item_idx")
        .agg(F.count(F.lit(1)).alias("together"))
    )
    n_left = users_of.select("item_idx", F.col("n_users").alias("n_left"))
    n_right = users_of.select(F.col("item_idx").alias("similar_item_idx"), F.col("n_users").alias("n_right"))
    scored = (
        counts.join(n_left, on="item_idx", how="inner")
        .join(n_right, on="similar_item_idx", how="inner")
        .withColumn("score", F.col("together") / F.sqrt(F.col("n_left") * F.col("n_right")))
    )
    best = Window.partitionBy("item_idx").orderBy(F.desc("score"), F.col("similar_item_idx"))
    return (
        scored.withColumn("rank", F.row_number().over(best))
        .filter(F.col("rank") <= k)
        .select(
            F.col("item_idx").cast("int"),
            F.col("similar_item_idx").cast("int"),
            F.col("score").cast("double"),
            F.col("rank").cast("int"),
        )
    )
