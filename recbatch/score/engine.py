"""The Spark scoring engine: exact top-K for every user, one matrix multiply per block of users.

Item factors are model-sized: they go to the driver through pyarrow and reach every Python
worker once, as a broadcast numpy array, or, beyond `score.broadcast_limit_mb`, as a .npy
file shipped with the job and memory-mapped by each worker (see recbatch.score.plan).
Users reach the workers one of two ways (score.user_input): each task reads its own range
of user_idx from the factor and interaction files (recbatch.score.user_files; local mode,
or shared storage), or Spark hash-partitions users with their seen item indices as one
array column. Either way each partition is scored with `mapInArrow`
(recbatch.score.blocks), and users are never cross-joined with items.

What is scored (which users, items, candidates, fallback) is decided once by
recbatch.score.request; recbatch.score.stage wires the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from pyspark.sql import functions as F

from recbatch.artifacts import ACTIVATIONS
from recbatch.core.network import NetworkWeights
from recbatch.core.rules import ListRules
from recbatch.faults import fail_first_attempt, fail_task_once
from recbatch.score.blocks import OUTPUT_SCHEMA, Block, decode, score_blocks
from recbatch.score.items import ship_items
from recbatch.score.user_files import RANGE_SCHEMA, UserFiles, task_blocks

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

# Worker side: decoded blocks of one partition in, scored Arrow batches out.
BlockScorer = Callable[[Iterable[Block]], Iterator["pa.RecordBatch"]]


def score_users(
    spark: SparkSession,
    user_factors: DataFrame | UserFiles,
    item_factors: np.ndarray,
    seen: DataFrame | None,
    k: int,
    user_block: int,
    activation: str,
    partitions: int | None = None,
    *,
    item_tile: int | None = None,
    item_transport: str = "broadcast",
    allowed_items: np.ndarray | None = None,
    network: NetworkWeights | None = None,
    rules: ListRules | None = None,
) -> DataFrame:
    """Exact top-k items for every user in `user_factors` (user_idx, factors).

    Ranking is by the raw dot product, ties by lower item_idx; `score` is activation(dot).
    Items in `seen` (user_idx, item_idx) are never recommended, so a user who has seen all
    but n < k items gets n rows. Returns user_idx int, item_idx int, score float, rank int.
    `user_factors` as a DataFrame goes through Spark (shuffled with the seen lists); as
    UserFiles (which names the seen pairs itself, so `seen` must be None) the Python workers
    read their users from the files (recbatch.score.user_files), which is faster.
    `item_transport` is "broadcast" or "file" (a memory-mapped .npy shipped with the job).
    `allowed_items` (item indices) restricts candidates before selection, so users still get
    k items where k allowed unseen items exist (an allow list, or the complement of a deny list).
    With `network` (an mlp/neumf model's dense weights) factors are embedding rows and ranking
    is by the network's logit (recbatch.core.network_topk); the weights travel by broadcast.
    With active `rules` (a category cap, an MMR re-rank: recbatch.core.rules) each user's k
    rows are chosen from the user's exact top pool; they travel by broadcast too.
    """
    if k < 1 or user_block < 1:
        raise ValueError(f"k and user_block must be >= 1, got k={k}, user_block={user_block}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown score activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    if isinstance(user_factors, UserFiles) and seen is not None:
        raise ValueError("with UserFiles the seen pairs are UserFiles.seen; pass seen=None")
    items, item_ids, n_catalogue = _candidate_items(item_factors, allowed_items)
    get_items = ship_items(spark, items, item_transport)
    shared_network = None
    if network is not None:
        network.check(items.shape[1])
        shared_network = spark.sparkContext.broadcast(network)
    shared_rules = spark.sparkContext.broadcast(rules) if rules is not None and rules.active else None
    n_parts = partitions or spark.sparkContext.defaultParallelism

    inject = fail_task_once("score")

    def score(blocks: Iterable[Block]) -> Iterator[pa.RecordBatch]:
        if inject:
            fail_first_attempt()
        weights = None if shared_network is None else shared_network.value
        chosen = None if shared_rules is None else shared_rules.value
        return score_blocks(
            blocks, get_items(), k, user_block, activation, item_tile, item_ids, weights, chosen
        )

    dim = items.shape[1]
    if isinstance(user_factors, UserFiles):
        return _score_user_files(spark, user_factors, score, n_parts, dim, n_catalogue)
    return _score_user_frame(user_factors, seen, score, n_parts, dim, n_catalogue)


def _candidate_items(
    item_factors: np.ndarray, allowed_items: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(item rows the kernel ranks, their catalogue indices or None for all, catalogue size)."""
    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    if items.ndim != 2 or items.shape[0] == 0:
        raise ValueError(f"item_factors must be a non-empty (items, dim) matrix, got shape {items.shape}")
    if not np.isfinite(items).all():
        bad = int(np.flatnonzero(~np.isfinite(items).all(axis=1))[0])
        raise ValueError(f"item_idx {bad} has NaN or infinite factors; retrain the model (`recbatch train`)")
    n_catalogue = len(items)
    if allowed_items is None:
        return items, None, n_catalogue
    item_ids = np.unique(np.asarray(allowed_items, dtype=np.int64))
    if len(item_ids) == 0 or item_ids[0] < 0 or item_ids[-1] >= n_catalogue:
        raise ValueError(f"allowed_items must be a non-empty set of item indices in 0..{n_catalogue - 1}")
    return np.ascontiguousarray(items[item_ids]), item_ids, n_catalogue


def _score_user_files(
    spark: SparkSession, users: UserFiles, score: BlockScorer, n_parts: int, dim: int, n_catalogue: int
) -> DataFrame:
    """The files input: the Spark job carries only user_idx ranges; each task reads its own."""
    files = spark.sparkContext.broadcast(users)  # the only/skip arrays may be large

    def score_ranges(tasks: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from score(task_blocks(tasks, files.value, dim, n_catalogue))

    ranges = users.ranges(n_parts)
    # One range per partition, in task order: fixed blocks, so reruns are byte-identical.
    tasks = spark.sparkContext.parallelize(ranges, max(1, len(ranges)))
    return spark.createDataFrame(tasks, RANGE_SCHEMA).mapInArrow(score_ranges, OUTPUT_SCHEMA)


def _score_user_frame(
    user_factors: DataFrame,
    seen: DataFrame | None,
    score: BlockScorer,
    n_parts: int,
    dim: int,
    n_catalogue: int,
) -> DataFrame:
    """The Spark input: users hash-partitioned with their seen item indices as one array column."""
    # Both join sides are partitioned alike up front, so the join needs no further exchange
    # and user factors are shuffled once.
    users = user_factors.select(
        F.col("user_idx").cast("int").alias("user_idx"),
        F.col("factors").cast("array<float>").alias("factors"),
    ).repartition(n_parts, "user_idx")
    if seen is None:
        users = users.withColumn("seen", F.lit(None).cast("array<int>"))
    else:
        seen_lists = (
            seen.select(F.col("user_idx").cast("int").alias("user_idx"), F.col("item_idx").cast("int"))
            .repartition(n_parts, "user_idx")
            .groupBy("user_idx")
            .agg(F.collect_list("item_idx").alias("seen"))
        )
        users = users.join(seen_lists, on="user_idx", how="left")

    def score_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        decoded = (decode(batch, dim, n_catalogue) for batch in batches if batch.num_rows)
        yield from score(decoded)

    return (
        users.select("user_idx", "factors", "seen")
        # A fixed row order per partition gives fixed blocks, so reruns are byte-identical.
        .sortWithinPartitions("user_idx")
        .mapInArrow(score_partition, OUTPUT_SCHEMA)
    )


def attach_ids(
    scored: DataFrame,
    user_vocab: DataFrame | None,
    item_vocab: DataFrame,
    model: str,
    run_id: str,
    source: str = "model",
) -> DataFrame:
    """Map user_idx/item_idx back to the original ids and add the source, model and run_id columns.

    `user_vocab` None: `scored` already has user_id (the cold-start fallback's rows).
    """
    if user_vocab is not None:
        scored = scored.join(user_vocab.select("user_idx", "user_id"), on="user_idx", how="inner")
    return scored.join(
        F.broadcast(item_vocab.select("item_idx", "item_id")), on="item_idx", how="inner"
    ).select(
        F.col("user_id").cast("string").alias("user_id"),
        F.col("item_id").cast("string").alias("item_id"),
        F.col("score"),
        F.col("rank"),
        F.lit(source).alias("source"),
        F.lit(model).alias("model"),
        F.lit(run_id).alias("run_id"),
    )


def user_indices(users: DataFrame) -> np.ndarray:
    """The distinct user_idx values of `users`, ascending, on the driver (4 bytes per user)."""
    column = users.select(F.col("user_idx").cast("int")).distinct().toArrow().column("user_idx")
    return np.sort(column.to_numpy())
