"""Similar items: the top-K other items of every item, through the user-scoring engine.

Items play the users' side: each query item's (normalised) factor row is a "user" vector,
the whole catalogue is the item side, and the item itself is its one "seen" item, masked
in place by the kernel. So the ranking is exact, ties break by item index, the blocks,
tiles, item transport and rerun identity are those of `recbatch.score.engine`, and no
items x items join is ever built. Cosine ranks L2-normalised rows by their dot product
(a zero row scores 0 with everything); "dot" ranks the raw factors.

The query rows and their self pairs are written to a scratch folder as the files the
engine's inputs expect (a factor file keyed user_idx and a user_idx/item_idx pair table);
the caller removes the folder once the lazy result has been written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recbatch.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.score.plan import ScorePlan
    from recbatch.storage import Location

METRICS = ("cosine", "dot")
DOT_MODELS = ("seed", "mf", "gmf", "two_tower")
SIMILAR_COLUMNS = ("item_idx", "similar_item_idx", "score", "rank")


def item_vectors(factors: np.ndarray, metric: str) -> np.ndarray:
    """The rows the kernel ranks by dot product: L2-normalised for cosine, as they are for dot."""
    if metric not in METRICS:
        raise ValueError(f"unknown similarity metric {metric!r}; expected one of {', '.join(METRICS)}")
    vectors = np.ascontiguousarray(factors, dtype=np.float32)
    if metric == "dot":
        return vectors
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    # A zero row (an item the model never moved) stays zero: cosine 0 with every item.
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def check_dot_model(manifest: dict) -> None:
    """ConfigError for models ranked by a network (mlp, neumf): their factors are not a similarity space."""
    if manifest.get("scoring", "dot") == "network":
        raise ConfigError(
            f"similar items need a dot-product model ({', '.join(DOT_MODELS)}); model "
            f"{manifest.get('model')!r} ranks by its network, so its item embeddings have no exact "
            "item-to-item score: train one of those (e.g. --set train.model=mf) or turn similar.enabled off"
        )


@dataclass(frozen=True)
class SimilarInputs:
    """The engine's input files for one similar-items job, under a scratch folder."""

    factors: str  # user_idx int (= item_idx), factors list<float>: every item's (normalised) row
    self_pairs: str  # user_idx, item_idx = (i, i) for every query item: the item itself is masked
    n_items: int
    query: np.ndarray | None  # ascending query item indices (None: every item)


def write_inputs(scratch: Location, vectors: np.ndarray, query: np.ndarray | None) -> SimilarInputs:
    """Write the query side of the job: every item's row keyed user_idx, and the self pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recbatch.artifacts import write_factors

    n_items = len(vectors)
    rows = np.arange(n_items, dtype=np.int32) if query is None else query.astype(np.int32)
    factors, pairs = scratch / "item_rows.parquet", scratch / "self_pairs.parquet"
    scratch.mkdir()
    write_factors(factors, "user_idx", vectors)
    table = pa.table({"user_idx": pa.array(rows, pa.int32()), "item_idx": pa.array(rows, pa.int32())})
    with pairs.atomic_output() as stream:
        pq.write_table(table, stream, row_group_size=1 << 16)
    return SimilarInputs(str(factors), str(pairs), n_items, query)


def similar_plan(
    spark: SparkSession, config: Config, n_query: int, n_items: int, dim: int, k: int
) -> ScorePlan:
    """The scoring plan of the job (score.* memory settings), with `k` similar items per item."""
    from recbatch.score.plan import make_plan, resolve_user_input

    s = config.score
    return make_plan(
        n_query,
        n_items,
        dim,
        k,
        spark.sparkContext.defaultParallelism,
        worker_memory_mb=s.worker_memory_mb,
        broadcast_limit_mb=s.broadcast_limit_mb,
        user_block=s.user_block,
        item_tile=s.item_tile,
        partitions=s.partitions,
        user_input=resolve_user_input(s.user_input, spark.sparkContext.master),
        seen_pairs=n_query,
    )


def similar_items(
    spark: SparkSession, vectors: np.ndarray, inputs: SimilarInputs, k: int, plan: ScorePlan
) -> DataFrame:
    """item_idx, similar_item_idx, score, rank: the exact top-k other items of every query item (lazy).

    `vectors` are `item_vectors(...)`; `inputs` are `write_inputs(...)` of the same rows.
    An item gets min(k, items - 1) rows; score is the cosine (or dot), rank 1..n.
    """
    from pyspark.sql import functions as F

    from recbatch.score.engine import score_users
    from recbatch.score.user_files import UserFiles

    if plan.user_input == "files":
        users, seen = UserFiles(inputs.factors, inputs.self_pairs, inputs.n_items, only=inputs.query), None
    else:
        users = spark.read.parquet(inputs.factors)
        seen = spark.read.parquet(inputs.self_pairs)
        if inputs.query is not None:
            users = users.join(seen.select("user_idx"), on="user_idx", how="left_semi")
    scored = score_users(
        spark,
        users,
        vectors,
        seen,
        k,
        plan.user_block,
        "identity",
        plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
    )
    return scored.select(
        F.col("user_idx").alias("item_idx"),
        F.col("item_idx").alias("similar_item_idx"),
        F.col("score"),
        F.col("rank"),
    )


def with_item_ids(similar: DataFrame, item_vocab: DataFrame, model: str, run_id: str) -> DataFrame:
    """item_id, similar_item_id, score, rank, model, run_id: the published table's schema."""
    from pyspark.sql import functions as F

    ids = item_vocab.select("item_idx", F.col("item_id").cast("string").alias("item_id"))
    other = ids.select(F.col("item_idx").alias("similar_item_idx"), F.col("item_id").alias("similar_item_id"))
    return (
        similar.join(F.broadcast(ids), on="item_idx", how="inner")
        .join(F.broadcast(other), on="similar_item_idx", how="inner")
        .select(
            F.col("item_id"),
            F.col("similar_item_id"),
            F.col("score").cast("float").alias("score"),
            F.col("rank").cast("int").alias("rank"),
            F.lit(model).alias("model"),
            F.lit(run_id).alias("run_id"),
        )
    )


def brute_force_similar(factors: np.ndarray, metric: str, rows: np.ndarray, k: int) -> list[list[int]]:
    """Reference lists: top-k other items of each of `rows` by a full float32 sort, ties by index."""
    vectors = item_vectors(factors, metric)
    scores = vectors[rows] @ vectors.T
    out = []
    for r, item in enumerate(rows):
        s = scores[r].copy()
        s[item] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))
        out.append([int(i) for i in order[:k] if np.isfinite(s[i])])
    return out
