"""Spark MLlib ALS with implicit preferences: the baseline every recbatch model is compared with.

ALS runs on the same prepared train split (dense user/item indices are valid ALS ids) and
its factors are handed back as numpy matrices, so evaluation ranks its items with the
same kernel, the same candidate set and the same tie-breaking as recbatch's own models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recbatch.config import AlsConfig

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame, SparkSession


def fit_als(spark: SparkSession, train: DataFrame, params: AlsConfig) -> ALSModel:
    """Fit implicit ALS on (user_idx, item_idx, weight) rows; returns the fitted ALSModel."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    ratings = train.select(
        F.col("user_idx").cast("int").alias("user_idx"),
        F.col("item_idx").cast("int").alias("item_idx"),
        F.col("weight").cast("float").alias("confidence"),
    )
    als = ALS(
        rank=params.rank,
        maxIter=params.max_iter,
        regParam=params.reg,
        alpha=params.alpha,
        implicitPrefs=True,
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="confidence",
        coldStartStrategy="drop",
        nonnegative=False,
        seed=params.seed,
        numUserBlocks=max(1, spark.sparkContext.defaultParallelism),
        numItemBlocks=max(1, spark.sparkContext.defaultParallelism),
    )
    return als.fit(ratings)


def factor_matrix(factors: DataFrame, rows: int, rank: int) -> np.ndarray:
    """Dense (rows × rank) float32 matrix from an ALS factor DataFrame (id, features); absent ids stay 0."""
    pdf = factors.toPandas()  # model-sized (ids × rank), not data-sized
    out = np.zeros((rows, rank), dtype=np.float32)
    if len(pdf):
        out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy()).astype(np.float32)
    return out


def als_factors(
    spark: SparkSession, train_path: Path, num_users: int, num_items: int, params: AlsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Train ALS on the prepared train split and return (user factors, item factors) by dense index."""
    model = fit_als(spark, spark.read.parquet(str(train_path)), params)
    return (
        factor_matrix(model.userFactors, num_users, params.rank),
        factor_matrix(model.itemFactors, num_items, params.rank),
    )
