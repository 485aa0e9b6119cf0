"""Candidate-table scoring: rank given (user, item) pairs instead of the whole catalogue.

For pipelines where an upstream system proposes candidates (say 100 per user) and recbatch
re-ranks them, or for scoring NCF-style sampled negatives. The candidate table needs
user_id and item_id columns (other columns are ignored); ids unknown to the model are
counted, logged and reported, never silently dropped. Each user's candidate item indices
travel as one array column with the user's factors; the worker gathers those item rows and
scores them (a row-wise dot, or the NCF network for mlp/neumf), so the cost is
proportional to the candidates, not to users × items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recbatch.core.network import NetworkWeights
from recbatch.errors import DataError
from recbatch.score.blocks import OUTPUT_ARROW_SCHEMA, OUTPUT_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def read_candidates(
    spark: SparkSession, path: str, user_vocab: DataFrame, item_vocab: DataFrame
) -> tuple[DataFrame, dict[str, int]]:
    """Distinct (user_idx, item_idx) candidate pairs of the table at `path`, and row counts.

    Counts: rows (distinct pairs read), unknown_user, unknown_item (pairs whose user or
    item is not in the vocabulary, not scored) and known (pairs that will be scored).
    The score stage reads the table once (recbatch.score.request), so the counts, their
    warning and the all-unknown DataError happen once per run.
    """
    from pyspark.sql import functions as F

    try:
        table = spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: path missing or not Parquet
        raise DataError(
            f"score.candidates = {path!r} is not a readable Parquet table ({str(exc)[:200]}); "
            "point it at a Parquet file or directory with user_id and item_id columns"
        ) from None
    missing = [c for c in ("user_id", "item_id") if c not in table.columns]
    if missing:
        raise DataError(f"score.candidates table {path} lacks {missing} (it has {table.columns})")
    pairs = table.select(
        F.col("user_id").cast("string").alias("user_id"), F.col("item_id").cast("string").alias("item_id")
    ).dropDuplicates()
    matched = pairs.join(user_vocab.select("user_id", "user_idx"), on="user_id", how="left").join(
        F.broadcast(item_vocab.select("item_id", "item_idx")), on="item_id", how="left"
    )
    known = matched.where(F.col("user_idx").isNotNull() & F.col("item_idx").isNotNull())
    known = known.select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"))
    totals = matched.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.col("user_idx").isNull(), 1).otherwise(0)).alias("unknown_user"),
        F.sum(F.when(F.col("user_idx").isNotNull() & F.col("item_idx").isNull(), 1).otherwise(0)).alias(
            "unknown_item"
        ),
    ).first()
    counts = {name: int(totals[name] or 0) for name in ("rows", "unknown_user", "unknown_item")}
    counts["known"] = counts["rows"] - counts["unknown_user"] - counts["unknown_item"]
    if counts["unknown_user"] or counts["unknown_item"]:
        log.warning(
            "score.candidates: %d of %d pairs have a user and %d an item unknown to the model; not scored",
            counts["unknown_user"],
            counts["rows"],
            counts["unknown_item"],
        )
    if counts["known"] == 0:
        raise DataError(
            f"score.candidates table {path}: none of its {counts['rows']} (user_id, item_id) pairs has both "
            "ids in the model's vocabulary; check that it comes from the same data as the model"
        )
    return known, counts


def eligible_candidates(
    candidates: DataFrame, seen: DataFrame | None, allowed: np.ndarray | None
) -> DataFrame:
    """The candidate pairs that may be recommended: seen pairs and non-allowed items removed."""
    from pyspark.sql import functions as F

    out = candidates
    if seen is not None:
        out = out.join(seen.select("user_idx", "item_idx"), on=["user_idx", "item_idx"], how="left_anti")
    if allowed is not None:
        from recbatch.score.filters import allowed_frame

        allowed_df = allowed_frame(candidates.sparkSession, allowed)
        out = out.join(F.broadcast(allowed_df), on="item_idx", how="left_semi")
    return out.select("user_idx", "item_idx")


def score_candidates(
    spark: SparkSession,
    user_factors: DataFrame,
    items: np.ndarray,
    candidates: DataFrame,
    k: int | None,
    activation: str,
    network: NetworkWeights | None = None,
) -> DataFrame:
    """user_idx, item_idx, score, rank for each user's candidates, ranked by (-score, item_idx).

    `k` keeps each user's best k candidates; None keeps all of them. `network` (the weights of
    an mlp/neumf model) scores through the NCF network instead of a dot product.
    """
    from pyspark.sql import functions as F

    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    lists = candidates.groupBy("user_idx").agg(F.sort_array(F.collect_list("item_idx")).alias("cands"))
    users = user_factors.select(F.col("user_idx").cast("int"), F.col("factors").cast("array<float>")).join(
        lists, on="user_idx", how="inner"
    )
    shared = spark.sparkContext.broadcast((np.ascontiguousarray(items, np.float32), network))

    def score(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_rows, weights = shared.value
        for batch in batches:
            if batch.num_rows:
                yield score_candidate_batch(batch, item_rows, k, activation, weights)

    return (
        users.select("user_idx", "factors", "cands")
        .sortWithinPartitions("user_idx")
        .mapInArrow(score, OUTPUT_SCHEMA)
    )


def pair_logits(user_rows: np.ndarray, item_rows: np.ndarray, network: NetworkWeights | None) -> np.ndarray:
    """Raw scores of aligned (user row, item row) pairs: a row-wise dot, or the NCF network."""
    if network is None:
        return np.einsum("ij,ij->i", user_rows, item_rows)
    from recbatch.core.network import network_pair_logits

    return network_pair_logits(network, user_rows, item_rows)


def score_candidate_batch(
    batch: pa.RecordBatch,
    items: np.ndarray,
    k: int | None,
    activation: str,
    network: NetworkWeights | None = None,
) -> pa.RecordBatch:
    """Rank one Arrow batch of (user_idx, factors, cands) rows; see `score_candidates`."""
    from recbatch.score.blocks import activate, as_numpy, from_numpy

    users = as_numpy(batch.column("user_idx"), "candidate user_idx").astype(np.int32, copy=False)
    factors = batch.column("factors")
    dim = items.shape[1]
    vecs = as_numpy(pc.list_flatten(factors), "user factors").astype(np.float32, copy=False)
    if len(vecs) != len(users) * dim:
        raise ValueError(f"user factors do not all have {dim} values; rerun `recbatch train`")
    vecs = vecs.reshape(len(users), dim)
    lengths = as_numpy(pc.fill_null(pc.list_value_length(batch.column("cands")), 0), "candidate counts")
    cands = as_numpy(pc.list_flatten(batch.column("cands")), "candidate item_idx").astype(np.int64)
    rows = np.repeat(np.arange(len(users)), lengths)
    logits = pair_logits(vecs[rows], items[cands], network).astype(np.float32)
    order = np.lexsort((cands, -logits, rows))
    rows, cands, logits = rows[order], cands[order], logits[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1
    keep = slice(None) if k is None else rank <= k
    return pa.RecordBatch.from_arrays(
        [
            from_numpy(users[rows[keep]], pa.int32()),
            from_numpy(cands[keep], pa.int32()),
            from_numpy(activate(logits[keep], activation), pa.float32()),
            from_numpy(rank[keep], pa.int32()),
        ],
        schema=OUTPUT_ARROW_SCHEMA,
    )


def expected_candidate_rows(eligible: DataFrame, user_vocab: DataFrame, k: int | None) -> DataFrame:
    """user_id, expected: how many rows each candidate user must get (min(k, candidates) or all)."""
    from pyspark.sql import functions as F

    per_user = eligible.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n"))
    n = F.col("n") if k is None else F.least(F.col("n"), F.lit(k))
    return per_user.join(user_vocab.select("user_idx", "user_id"), on="user_idx", how="inner").select(
        F.col("user_id"), n.cast("long").alias("expected")
    )
