"""Item allow/deny lists (which items may be recommended) and user subsets (who is scored).

Lists are Parquet tables with an `item_id` column, mapped to item indices through the
prepared vocabulary. They are applied before selection (recbatch.score.stage passes the
allowed indices to the kernel), so a user still gets k items wherever k allowed unseen
items exist. Ids absent from the vocabulary are counted and logged, never silently lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from pyspark.sql import functions as F

from recbatch.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import ScoreConfig

log = logging.getLogger(__name__)


def _read_list(spark: SparkSession, path: str, column: str, what: str) -> DataFrame:
    try:
        table = spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: path missing or not Parquet
        raise DataError(
            f"score.{what} = {path!r} is not a readable Parquet table ({str(exc)[:200]})"
        ) from None
    if column not in table.columns:
        raise DataError(f"score.{what} table {path} has no {column} column (it has {table.columns})")
    return table.select(F.col(column).cast("string").alias(column)).dropDuplicates()


def listed_users(spark: SparkSession, config: ScoreConfig) -> DataFrame | None:
    """The distinct user_id values of the score.users table (None when no table is configured)."""
    if config.users is None:
        return None
    return _read_list(spark, config.users, "user_id", "users")


def cold_start(config: ScoreConfig) -> bool:
    """score.fallback = "popularity" outside candidate mode (candidates name their own users)."""
    return config.fallback == "popularity" and config.candidates is None


def selected_users(config: ScoreConfig, listed: DataFrame | None, user_vocab: DataFrame) -> DataFrame | None:
    """user_idx, user_id of the `listed` users (`listed_users`) that the model knows (None: every user).

    Listed ids missing from the vocabulary (users without a model vector) are counted and
    logged; they get the cold-start fallback where score.fallback is on, else no rows.
    """
    if listed is None:
        return None
    known = user_vocab.select("user_id", "user_idx").join(listed, on="user_id", how="left_semi")
    n_listed, n_known = listed.count(), known.count()
    fallback = cold_start(config)
    if n_known < n_listed:
        log.warning(
            "score.users: %d of %d listed users are unknown to the model; they get %s",
            n_listed - n_known,
            n_listed,
            "the popularity fallback" if fallback else "no rows",
        )
    if n_known == 0 and not fallback:
        raise DataError(
            f"score.users = {config.users!r}: none of its {n_listed} user ids is in the user vocabulary"
        )
    return known.select("user_idx", "user_id")


def _list_indices(spark: SparkSession, path: str, item_vocab: DataFrame, what: str) -> np.ndarray:
    ids = _read_list(spark, path, "item_id", what)
    matched = ids.join(item_vocab.select("item_id", "item_idx"), on="item_id", how="left")
    rows = matched.select("item_idx").collect()  # list-sized, at most the catalogue
    unknown = sum(1 for r in rows if r.item_idx is None)
    if unknown:
        log.warning(
            "score.%s: %d of %d item ids are not in the item vocabulary; ignored", what, unknown, len(rows)
        )
    return np.array([r.item_idx for r in rows if r.item_idx is not None], dtype=np.int64)


def allowed_items(
    spark: SparkSession, config: ScoreConfig, item_vocab: DataFrame, n_items: int
) -> np.ndarray | None:
    """Ascending item indices that may be recommended, or None when no list is configured."""
    if config.allow_items is None and config.deny_items is None:
        return None
    keep = np.ones(n_items, dtype=bool)
    if config.allow_items is not None:
        listed = np.zeros(n_items, dtype=bool)
        listed[_list_indices(spark, config.allow_items, item_vocab, "allow_items")] = True
        keep &= listed
    if config.deny_items is not None:
        keep[_list_indices(spark, config.deny_items, item_vocab, "deny_items")] = False
    if not keep.any():
        raise DataError(
            "score.allow_items / score.deny_items leave no item to recommend; check the lists' item_id values"
        )
    return np.flatnonzero(keep)


def allowed_frame(spark: SparkSession, allowed: np.ndarray) -> DataFrame:
    """The allowed item indices as a one-column (item_idx int) DataFrame, for semi joins."""
    return spark.createDataFrame([(int(i),) for i in allowed], "item_idx int")
