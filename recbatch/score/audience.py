"""Audiences: the top-N users of every item by the model's score, users who interacted excluded.

The user-scoring engine with the roles swapped: item factor rows play the users' side, the
user-factor matrix is the "catalogue", and an item's "seen" list is the users who already
interacted with it (every prepared interaction). Exact, ranked by the raw dot product with
ties by user index, scored act(dot) like the recommendations; no users x items join. Items
reach the workers through Spark (score.user_input "spark"): the files input reads factor
files keyed user_idx, which item factors are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recbatch.artifacts import read_factors, read_manifest
from recbatch.errors import ConfigError, DataError
from recbatch.io.item_tables import ItemTable
from recbatch.score.similar import DOT_MODELS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout
    from recbatch.score.plan import ScorePlan


@dataclass(frozen=True, eq=False)
class AudienceJob:
    """The lazy audiences rows of one run and the checks their table must pass."""

    rows: DataFrame  # item_id, user_id, score, rank, model, run_id
    spec: ItemTable
    model: str
    plan: ScorePlan


def audience_lists(
    spark: SparkSession,
    item_factors: DataFrame,
    user_matrix: np.ndarray,
    interactions: DataFrame,
    k: int,
    activation: str,
    plan: ScorePlan,
) -> DataFrame:
    """item_idx, user_idx, score, rank: each item's top-k users who never interacted with it (lazy)."""
    from pyspark.sql import functions as F

    from recbatch.score.engine import score_users

    items = item_factors.select(F.col("item_idx").alias("user_idx"), F.col("factors"))
    seen = interactions.select(F.col("item_idx").alias("user_idx"), F.col("user_idx").alias("item_idx"))
    scored = score_users(
        spark,
        items,
        user_matrix,
        seen.distinct(),
        k,
        plan.user_block,
        activation,
        plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
    )
    return scored.select(
        F.col("user_idx").alias("item_idx"),
        F.col("item_idx").alias("user_idx"),
        F.col("score"),
        F.col("rank"),
    )


def _plan(spark: SparkSession, config: Config, n_items: int, n_users: int, dim: int, k: int) -> ScorePlan:
    from recbatch.score.plan import make_plan

    s = config.score
    return make_plan(
        n_items,
        n_users,
        dim,
        k,
        spark.sparkContext.defaultParallelism,
        worker_memory_mb=s.worker_memory_mb,
        broadcast_limit_mb=s.broadcast_limit_mb,
        user_block=s.user_block,
        item_tile=s.item_tile,
        partitions=s.partitions,
        user_input="spark",
    )


def audience_job(spark: SparkSession, config: Config, layout: RunLayout, run_id: str) -> AudienceJob:
    """The audiences table of `layout`'s published model (lazy), with its checks."""
    from pyspark.sql import functions as F

    for what, path, stage in (
        ("user factors", layout.user_factors, "train"),
        ("model manifest", layout.model_manifest, "train"),
        ("interactions", layout.interactions, "prepare"),
    ):
        if not path.exists():
            raise DataError(f"{what} not found at {path}; run `recbatch {stage} --date {layout.date}` first")
    manifest = read_manifest(layout.model_manifest)
    if manifest.get("scoring", "dot") == "network":
        raise ConfigError(
            f"audiences need a dot-product model ({', '.join(DOT_MODELS)}); model {manifest.get('model')!r} "
            "ranks by its network: train one of those (e.g. --set train.model=mf)"
        )
    from recbatch.score.similar_stage import query_items

    k = config.audience.k
    users = read_factors(layout.user_factors, "user_idx")
    item_vocab = spark.read.parquet(str(layout.item_vocab)).select(
        "item_idx", F.col("item_id").cast("string")
    )
    item_factors = spark.read.parquet(str(layout.item_factors))
    listed = query_items(spark, config.audience.items, item_vocab, "audience.items")
    if listed is not None:
        wanted = spark.createDataFrame([(int(i),) for i in listed], "item_idx int")
        item_factors = item_factors.join(F.broadcast(wanted), on="item_idx", how="inner")
        item_vocab = item_vocab.join(F.broadcast(wanted), on="item_idx", how="inner")
    n_items = item_factors.count() if listed is None else len(listed)
    plan = _plan(spark, config, n_items, len(users), users.shape[1], k)
    interactions = spark.read.parquet(str(layout.interactions)).select("user_idx", "item_idx")
    lists = audience_lists(
        spark, item_factors, users, interactions, k, str(manifest["score_activation"]), plan
    )
    user_vocab = spark.read.parquet(str(layout.user_vocab)).select(
        "user_idx", F.col("user_id").cast("string")
    )
    model = str(manifest["model"])
    rows = (
        lists.join(F.broadcast(item_vocab), on="item_idx", how="inner")
        .join(user_vocab, on="user_idx", how="inner")
        .select(
            "item_id", "user_id", "score", "rank", F.lit(model).alias("model"), F.lit(run_id).alias("run_id")
        )
    )
    # Each item can reach every user who has not interacted with it.
    seen_users = interactions.distinct().groupBy("item_idx").agg(F.count(F.lit(1)).alias("seen"))
    available = item_vocab.join(seen_users, on="item_idx", how="left").select(
        "item_id", (F.lit(len(users)) - F.coalesce(F.col("seen"), F.lit(0))).alias("available")
    )
    spec = ItemTable(
        table=config.audience.table,
        key="item_id",
        other="user_id",
        k=k,
        available=available,
        self_excluded=False,
        keep_versions=config.publish.keep_versions,
    )
    return AudienceJob(rows, spec, model, plan)
