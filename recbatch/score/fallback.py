"""Cold start: recommendations for users the model has no trained vector for.

Who: users listed in `score.users` that are not in the model's vocabulary (new sign-ups),
users in the vocabulary without rows the model was fitted on (kept by
`prepare.previous_vocab`, so their vector was never trained), and users prepare's filters
removed (e.g. below `prepare.min_user_interactions`: prepared/filtered_users), so every user
of the input gets a list. What: the most popular items of the rows the model was fitted on
(users per item, ties by lower item index), minus the user's seen items (for filtered users
their items that are in the vocabulary) and any denied items, so the fallback obeys the same
rules as the model's rows. Every output row carries
`source` = "model" or "fallback" (recbatch.score.engine), and publishing counts both.

The per-user selection runs in the Python workers (`mapInArrow`) against the popularity
order broadcast once: users are never joined with the catalogue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FALLBACK_SCHEMA = "user_id string, item_idx int, score float, rank int"
_ARROW_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_idx", pa.int32()), ("score", pa.float32()), ("rank", pa.int32())]
)


def popularity_order(
    spark: SparkSession, train: DataFrame, n_items: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate items by (-train users, item index) and each one's share of train users.

    Items without train rows (seen only in test) come last, in index order, so the whole
    allowed catalogue stays available to users who have seen the popular ones.
    """
    from pyspark.sql import functions as F

    # Prepared splits hold one row per (user, item): rows per item = train users per item.
    rows = train.groupBy("item_idx").agg(F.count(F.lit(1)).alias("users")).collect()  # catalogue-sized
    n_users = train.select("user_idx").distinct().count()
    counts = np.zeros(n_items, dtype=np.int64)
    for row in rows:
        counts[int(row.item_idx)] = int(row.users)
    candidates = np.arange(n_items, dtype=np.int64) if allowed is None else np.asarray(allowed, np.int64)
    order = candidates[np.lexsort((candidates, -counts[candidates]))]
    share = counts[order] / max(1, n_users)
    return order.astype(np.int32), share.astype(np.float32)


def users_without_vectors(requested: DataFrame | None, user_vocab: DataFrame, train: DataFrame) -> DataFrame:
    """user_id, user_idx (null when unknown) of the requested users that have no train rows.

    `requested` holds user_id (None: every user in the vocabulary); a user absent from the
    vocabulary has no vector at all, one present but without train rows has an untrained
    one: both get the fallback.
    """
    from pyspark.sql import functions as F

    trained = train.select(F.col("user_idx").cast("int").alias("user_idx")).distinct()
    known = user_vocab.select(F.col("user_id").cast("string"), F.col("user_idx").cast("int"))
    if requested is not None:
        known = requested.select(F.col("user_id").cast("string").alias("user_id")).join(
            known, on="user_id", how="left"
        )
    # A null user_idx matches nothing, so unknown users stay in the anti join's output.
    return known.join(trained, on="user_idx", how="left_anti").select("user_id", "user_idx")


def fallback_recommendations(
    spark: SparkSession,
    users: DataFrame,
    seen: DataFrame | None,
    order: np.ndarray,
    share: np.ndarray,
    k: int,
    seen_by_id: DataFrame | None = None,
    categories: np.ndarray | None = None,
    cap: int = 0,
) -> DataFrame:
    """user_id, item_idx, score (popularity share), rank: each user's first k unseen items of `order`.

    `users` holds user_id and user_idx (null for users unknown to the vocabulary); `seen`
    (user_idx, item_idx) is excluded where given, and for users without an index so are their
    `seen_by_id` (user_id, item_idx) rows (users the filters removed). With `cap` > 0 at most
    `cap` items of one category (`categories` by item_idx) are taken, walking the order
    (score.rules.category_cap, as the model's rows).
    """
    from pyspark.sql import functions as F

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    wanted = users.select(F.col("user_id").cast("string"), F.col("user_idx").cast("int"))
    if seen is None:
        wanted = wanted.withColumn("seen", F.lit(None).cast("array<int>"))
    else:
        seen_lists = (
            seen.select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"))
            .join(wanted.select("user_idx").where(F.col("user_idx").isNotNull()), "user_idx", "left_semi")
            .groupBy("user_idx")
            .agg(F.collect_list("item_idx").alias("seen"))
        )
        wanted = wanted.join(seen_lists, on="user_idx", how="left")
        if seen_by_id is not None:
            by_id = (
                seen_by_id.where(F.col("item_idx").isNotNull())
                .groupBy(F.col("user_id").cast("string").alias("user_id"))
                .agg(F.collect_list(F.col("item_idx").cast("int")).alias("_seen_by_id"))
            )
            wanted = wanted.join(by_id, on="user_id", how="left").select(
                F.col("user_id"),
                F.col("user_idx"),
                F.coalesce(F.col("seen"), F.col("_seen_by_id")).alias("seen"),
            )
    capped = categories if cap > 0 else None
    shared = spark.sparkContext.broadcast(
        (np.asarray(order, np.int32), np.asarray(share, np.float32), capped)
    )

    def select(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        popular, shares, cats = shared.value
        for batch in batches:
            if batch.num_rows:
                yield fallback_batch(batch, popular, shares, k, cats, cap)

    return (
        wanted.select("user_id", "seen")
        .sortWithinPartitions("user_id")  # fixed order in, fixed bytes out on a rerun
        .mapInArrow(select, FALLBACK_SCHEMA)
    )


def _capped_picks(order: np.ndarray, open_positions: np.ndarray, categories: np.ndarray, cap: int, k: int):
    """The first k of `open_positions` (into `order`) a greedy walk keeps under the category cap."""
    from recbatch.core.rules import cap_mask

    allowed = cap_mask(order[open_positions][None, :].astype(np.int64), categories, cap)[0]
    return open_positions[np.flatnonzero(allowed)[:k]]


def fallback_batch(
    batch: pa.RecordBatch,
    order: np.ndarray,
    share: np.ndarray,
    k: int,
    categories: np.ndarray | None = None,
    cap: int = 0,
) -> pa.RecordBatch:
    """Top-k unseen items of `order` for each row of a (user_id, seen) Arrow batch (capped: see above)."""
    from recbatch.score.blocks import as_numpy, from_numpy

    seen_col = batch.column("seen")
    lengths = as_numpy(pc.fill_null(pc.list_value_length(seen_col), 0), "seen lengths")
    flat = as_numpy(pc.list_flatten(seen_col), "seen item_idx").astype(np.int64, copy=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    capped = categories is not None and cap > 0
    head = np.arange(min(k, len(order)))
    if capped:
        head = _capped_picks(order, np.arange(len(order)), categories, cap, k)
    rows: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    plain = np.flatnonzero(lengths == 0)
    if len(plain):  # the common case: no seen items, everyone gets the same head
        rows.append(np.repeat(plain, len(head)))
        picks.append(np.tile(head, len(plain)))
    for r in np.flatnonzero(lengths > 0):
        user_seen = flat[offsets[r] : offsets[r + 1]]
        if capped:  # the cap may skip far down the order: walk all of it
            keep = _capped_picks(order, np.flatnonzero(~np.isin(order, user_seen)), categories, cap, k)
        else:
            window = order[: k + len(user_seen)]  # k unseen items are within the first k + |seen|
            keep = np.flatnonzero(~np.isin(window, user_seen))[:k]
        rows.append(np.full(len(keep), r))
        picks.append(keep)
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    pick = np.concatenate(picks) if picks else np.empty(0, np.int64)
    order_rows = np.lexsort((pick, row))  # rows grouped per user, by rank, in input order
    row, pick = row[order_rows], pick[order_rows]
    starts = np.searchsorted(row, row, side="left")
    rank = np.arange(len(row)) - starts + 1
    return pa.RecordBatch.from_arrays(
        [
            batch.column("user_id").take(from_numpy(row, pa.int64())),
            from_numpy(order[pick], pa.int32()),
            from_numpy(share[pick], pa.float32()),
            from_numpy(rank, pa.int32()),
        ],
        schema=_ARROW_SCHEMA,
    )
