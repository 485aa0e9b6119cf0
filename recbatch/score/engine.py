"""The Spark scoring engine: exact top-K for every user, one matrix multiply per block of users.

Item factors are model-sized: they go to the driver through pyarrow and reach every Python
worker once, as a broadcast numpy array, or, beyond `score.broadcast_limit_mb`, as a .npy
file shipped with the job and memory-mapped by each worker (see recbatch.score.plan).
Users reach the workers one of two ways (score.user_input): each task reads its own range
of user_idx from the factor and interaction files (recbatch.score.user_files; local mode,
or shared storage), or Spark hash-partitions users with their seen item indices as one
array column. Either way each partition is scored with `mapInArrow`
(recbatch.score.blocks), and users are never cross-joined with items.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.sql import functions as F

from recbatch.artifacts import ACTIVATIONS, read_factors, read_manifest, read_network
from recbatch.core.files import count_rows
from recbatch.core.network import NetworkWeights
from recbatch.errors import DataError, PipelineError
from recbatch.score.blocks import OUTPUT_SCHEMA, decode, score_blocks
from recbatch.score.filters import allowed_items, listed_users, selected_users
from recbatch.score.items import ship_items
from recbatch.score.plan import plan_for
from recbatch.score.user_files import RANGE_SCHEMA, UserFiles, task_blocks

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("user_id", "item_id", "score", "rank", "source", "model", "run_id")


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
    """
    if k < 1 or user_block < 1:
        raise ValueError(f"k and user_block must be >= 1, got k={k}, user_block={user_block}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown score activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    if isinstance(user_factors, UserFiles) and seen is not None:
        raise ValueError("with UserFiles the seen pairs are UserFiles.seen; pass seen=None")
    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    if items.ndim != 2 or items.shape[0] == 0:
        raise ValueError(f"item_factors must be a non-empty (items, dim) matrix, got shape {items.shape}")
    if not np.isfinite(items).all():
        bad = int(np.flatnonzero(~np.isfinite(items).all(axis=1))[0])
        raise ValueError(f"item_idx {bad} has NaN or infinite factors; retrain the model (`recbatch train`)")
    n_catalogue, item_ids = len(items), None
    if allowed_items is not None:
        item_ids = np.unique(np.asarray(allowed_items, dtype=np.int64))
        if len(item_ids) == 0 or item_ids[0] < 0 or item_ids[-1] >= n_catalogue:
            raise ValueError(f"allowed_items must be a non-empty set of item indices in 0..{n_catalogue - 1}")
        items = np.ascontiguousarray(items[item_ids])
    get_items = ship_items(spark, items, item_transport)
    shared_network = None
    if network is not None:
        network.check(items.shape[1])
        shared_network = spark.sparkContext.broadcast(network)
    n_parts = partitions or spark.sparkContext.defaultParallelism
    dim = items.shape[1]

    def score(blocks):
        weights = None if shared_network is None else shared_network.value
        return score_blocks(blocks, get_items(), k, user_block, activation, item_tile, item_ids, weights)

    if isinstance(user_factors, UserFiles):
        files = spark.sparkContext.broadcast(user_factors)  # the only/skip arrays may be large

        def score_ranges(tasks):
            yield from score(task_blocks(tasks, files.value, dim, n_catalogue))

        ranges = user_factors.ranges(n_parts)
        # One range per partition, in task order: fixed blocks, so reruns are byte-identical.
        tasks = spark.sparkContext.parallelize(ranges, max(1, len(ranges)))
        return spark.createDataFrame(tasks, RANGE_SCHEMA).mapInArrow(score_ranges, OUTPUT_SCHEMA)

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

    def score_partition(batches):
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


def _require(layout: RunLayout, exclude_seen: bool, fallback: bool = False) -> None:
    needed = {
        "user factors": (layout.user_factors, "train"),
        "item factors": (layout.item_factors, "train"),
        "model manifest": (layout.model_manifest, "train"),
        "user vocabulary": (layout.user_vocab, "prepare"),
        "item vocabulary": (layout.item_vocab, "prepare"),
    }
    if exclude_seen:
        needed["interactions"] = (layout.interactions, "prepare")
    if fallback:
        needed["train split"] = (layout.train, "prepare")
    for what, (path, stage) in needed.items():
        if not path.exists():
            raise DataError(
                f"{what} not found at {path}; run `recbatch {stage} --date {layout.date}` first"
                f" (or `recbatch run --date {layout.date}`)"
            )


def _check_counts(what: str, model_rows: int, vocab_rows: int) -> None:
    if model_rows != vocab_rows:
        raise PipelineError(
            f"the model has {model_rows} {what} but the prepared vocabulary has {vocab_rows}; "
            "the model was trained on other data, rerun `recbatch train`"
        )


def run_score(spark: SparkSession, config: Config, layout: RunLayout, run_id: str) -> DataFrame:
    """The score stage: top-K recommendations for every user, with original ids.

    Returns user_id, item_id, score, rank, source, model, run_id (lazy; nothing is written).
    With score.exclude_seen every item the user interacted with (train and test) is excluded.
    With score.fallback = "popularity", users without a trained vector get popular items
    (source "fallback", recbatch.score.fallback); with score.candidates only the given pairs
    are ranked (recbatch.score.candidates).
    """
    import pyarrow.parquet as pq

    cold_start = config.score.fallback == "popularity" and config.score.candidates is None
    _require(layout, config.score.exclude_seen, cold_start)
    manifest = read_manifest(layout.model_manifest)
    items = read_factors(layout.item_factors, "item_idx")
    user_vocab = spark.read.parquet(str(layout.user_vocab))
    item_vocab = spark.read.parquet(str(layout.item_vocab))
    n_users = user_vocab.count()
    _check_counts("items", items.shape[0], item_vocab.count())
    _check_counts("users", pq.ParquetFile(layout.user_factors).metadata.num_rows, n_users)

    n_model_users = n_users
    user_factors = spark.read.parquet(str(layout.user_factors))
    subset = selected_users(spark, config.score, user_vocab)
    if subset is not None:
        user_factors = user_factors.join(subset.select("user_idx"), on="user_idx", how="left_semi")
        n_users = subset.count()
    seen = None
    if config.score.exclude_seen:
        seen = spark.read.parquet(str(layout.interactions)).select("user_idx", "item_idx")
    allowed = allowed_items(spark, config.score, item_vocab, items.shape[0])
    if config.score.candidates is not None:
        return _score_candidates(spark, config, layout, user_factors, items, seen, allowed, manifest, run_id)
    cold = None
    if cold_start:
        cold = _cold_users(spark, config, layout, user_vocab)
        if cold is not None:
            user_factors = user_factors.join(cold.select("user_idx"), on="user_idx", how="left_anti")
    network = read_network(layout.model_dir, manifest)  # mlp/neumf: ranked by their network
    widths = None
    if network is not None:
        try:
            network.check(items.shape[1])
        except ValueError as exc:  # broken artifacts, not a caller's mistake: exit code 4
            raise PipelineError(str(exc)) from None
        widths = network.widths
    seen_pairs = count_rows(layout.interactions) if seen is not None else 0
    plan = plan_for(spark, config, n_users, items.shape[0], items.shape[1], widths, seen_pairs)
    log.info("%s", plan.describe())
    users: DataFrame | UserFiles = user_factors
    if plan.user_input == "files":
        users = UserFiles(
            str(layout.user_factors),
            None if seen is None else str(layout.interactions),
            n_model_users,
            only=None if subset is None else user_indices(subset),
            skip=None if cold is None else user_indices(cold.filter(F.col("user_idx").isNotNull())),
        )
    scored = score_users(
        spark,
        users,
        items,
        None if plan.user_input == "files" else seen,
        k=config.score.k,
        user_block=plan.user_block,
        activation=manifest["score_activation"],
        partitions=plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
        allowed_items=allowed,
        network=network,
    )
    model = str(manifest["model"])
    recommendations = attach_ids(scored, user_vocab, item_vocab, model, run_id)
    if cold is None:
        return recommendations
    from recbatch.score.fallback import fallback_recommendations, popularity_order

    order, share = popularity_order(spark, spark.read.parquet(str(layout.train)), items.shape[0], allowed)
    fallback = fallback_recommendations(spark, cold, seen, order, share, config.score.k)
    return recommendations.unionByName(attach_ids(fallback, None, item_vocab, model, run_id, "fallback"))


def user_indices(users: DataFrame) -> np.ndarray:
    """The distinct user_idx values of `users`, ascending, on the driver (4 bytes per user)."""
    column = users.select(F.col("user_idx").cast("int")).distinct().toArrow().column("user_idx")
    return np.sort(column.to_numpy())


def _cold_users(
    spark: SparkSession, config: Config, layout: RunLayout, user_vocab: DataFrame
) -> DataFrame | None:
    """user_id, user_idx (null if unknown) of the requested users without a trained vector, or None."""
    from recbatch.score.fallback import users_without_vectors
    from recbatch.score.filters import listed_users

    requested = listed_users(spark, config.score)
    cold = users_without_vectors(requested, user_vocab, spark.read.parquet(str(layout.train))).cache()
    n_cold = cold.count()
    if n_cold == 0:
        cold.unpersist()
        return None
    log.info("score: %d users have no trained vector; they get the popularity fallback", n_cold)
    return cold


def _score_candidates(
    spark: SparkSession,
    config: Config,
    layout: RunLayout,
    user_factors: DataFrame,
    items: np.ndarray,
    seen: DataFrame | None,
    allowed: np.ndarray | None,
    manifest: dict[str, Any],
    run_id: str,
) -> DataFrame:
    """The candidate-table mode of run_score: rank only the pairs in score.candidates."""
    from recbatch.score.candidates import eligible_candidates, read_candidates, score_candidates

    user_vocab = spark.read.parquet(str(layout.user_vocab))
    item_vocab = spark.read.parquet(str(layout.item_vocab))
    pairs, _ = read_candidates(spark, str(config.score.candidates), user_vocab, item_vocab)
    k = config.score.k if config.score.candidates_output == "top_k" else None
    scored = score_candidates(
        spark,
        user_factors,
        items,
        eligible_candidates(pairs, seen, allowed),
        k,
        manifest["score_activation"],
        read_network(layout.model_dir, manifest),
    )
    return attach_ids(scored, user_vocab, item_vocab, str(manifest["model"]), run_id)


def expected_rows_per_user(spark: SparkSession, config: Config, layout: RunLayout) -> DataFrame:
    """user_id, expected: how many items each user can be recommended (unseen catalogue size).

    Publishing checks each user got exactly min(k, expected) rows. Users listed in
    score.users but unknown to the model count when they get the fallback.
    """
    import pyarrow.parquet as pq

    n_items = pq.ParquetFile(layout.item_factors).metadata.num_rows
    vocab = spark.read.parquet(str(layout.user_vocab)).select("user_idx", "user_id")
    item_vocab = spark.read.parquet(str(layout.item_vocab))
    allowed = allowed_items(spark, config.score, item_vocab, n_items)
    interactions = spark.read.parquet(str(layout.interactions)) if config.score.exclude_seen else None
    if config.score.candidates is not None:
        from recbatch.score.candidates import eligible_candidates, expected_candidate_rows, read_candidates

        # run_score read the same table and checked it (counts, warning, all-unknown error).
        pairs, _ = read_candidates(spark, str(config.score.candidates), vocab, item_vocab, check=False)
        subset = selected_users(spark, config.score, vocab)
        if subset is not None:
            pairs = pairs.join(subset.select("user_idx"), on="user_idx", how="left_semi")
        k = config.score.k if config.score.candidates_output == "top_k" else None
        return expected_candidate_rows(eligible_candidates(pairs, interactions, allowed), vocab, k)
    listed = listed_users(spark, config.score)
    if listed is None:
        users = vocab
    elif config.score.fallback == "popularity":
        users = listed.join(vocab, on="user_id", how="left")  # unknown users: null user_idx, nothing seen
    else:
        users = selected_users(spark, config.score, vocab)
    n_allowed = n_items if allowed is None else len(allowed)
    if interactions is None:
        return users.select(F.col("user_id"), F.lit(n_allowed).cast("long").alias("expected"))
    if allowed is not None:
        # Only seen items that could have been recommended shrink a user's candidate set.
        allowed_df = spark.createDataFrame([(int(i),) for i in allowed], "item_idx int")
        interactions = interactions.join(F.broadcast(allowed_df), on="item_idx", how="left_semi")
    seen = interactions.groupBy("user_idx").agg(F.countDistinct("item_idx").alias("n_seen"))
    return users.join(seen, on="user_idx", how="left").select(
        F.col("user_id"),
        (F.lit(n_allowed) - F.coalesce(F.col("n_seen"), F.lit(0))).cast("long").alias("expected"),
    )
