"""Users prepare's filters removed (e.g. below prepare.min_user_interactions), kept for the fallback.

Every user of the input should get a list: score gives these users the popularity fallback
(recbatch.score.fallback), minus the items they interacted with that are in the vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def removed_users(events: DataFrame, user_vocab: DataFrame, item_vocab: DataFrame) -> DataFrame:
    """user_id, item_idx (null: an item outside the vocabulary) of each valid event's user that is
    not in the user vocabulary, one row per distinct (user, item)."""
    from pyspark.sql import functions as F

    pairs = events.select(F.col("user_id"), F.col("item_id")).distinct()
    gone = pairs.join(user_vocab.select(F.col("user_id")), on="user_id", how="left_anti")
    return gone.join(F.broadcast(item_vocab.select("item_id", "item_idx")), on="item_id", how="left").select(
        F.col("user_id").cast("string").alias("user_id"), F.col("item_idx").cast("int").alias("item_idx")
    )
