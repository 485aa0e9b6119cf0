"""Spark MLlib ALS with implicit preferences: the baseline every recbatch model is compared with.

ALS runs on the same prepared train split (dense user/item indices are valid ALS ids) and
its factors are handed back as numpy matrices, so evaluation ranks its items with the
same kernel, the same candidate set and the same tie-breaking as recbatch's own models.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recbatch.config import AlsConfig

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.core.validation import Split


@contextmanager
def checkpoints_in(spark: SparkSession, directory: str) -> Iterator[None]:
    """Checkpoint into `directory` while the block runs, then remove it (also on failure).

    ALS checkpoints its factors every 10 sweeps only when a checkpoint dir is set; without
    one, the lineage of repeated fits (a grid) overflows the JVM stack. `directory` belongs
    under the work directory (the run's tmp/), which executors reach on a cluster too,
    unlike a local temp folder of the driver.
    """
    spark.sparkContext.setCheckpointDir(directory)
    try:
        yield
    finally:
        _remove_dir(spark, directory)


def _remove_dir(spark: SparkSession, directory: str) -> None:
    """Delete through Spark's Hadoop filesystem: the view the executors wrote the checkpoints with."""
    try:
        path = spark._jvm.org.apache.hadoop.fs.Path(directory)
        path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)
    except Exception as exc:  # cleanup must not hide the error that ended the fit
        log.warning("ALS: could not remove checkpoints under %s: %s", directory, exc)


def fit_als(spark: SparkSession, train: DataFrame, params: AlsConfig) -> ALSModel:
    """Fit implicit ALS on (user_idx, item_idx, weight) rows; returns the fitted ALSModel.

    Run it inside `checkpoints_in` (als_factors and pick_params do).
    """
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


def grid(params: AlsConfig) -> list[AlsConfig]:
    """Every combination of the [als] grid lists (an empty list keeps the single value)."""
    ranks = params.grid_rank or [params.rank]
    regs = params.grid_reg or [params.reg]
    alphas = params.grid_alpha or [params.alpha]
    return [
        params.model_copy(update={"rank": r, "reg": g, "alpha": a})
        for r, g, a in itertools.product(ranks, regs, alphas)
    ]


def pick_params(
    spark: SparkSession,
    train_path: Path,
    num_users: int,
    num_items: int,
    params: AlsConfig,
    checkpoint_dir: str,
    k: int = 10,
    validation_negatives: int = 0,
) -> tuple[AlsConfig, list[dict[str, float]]]:
    """The grid point with the best validation NDCG@k; validation = each user's latest train item
    (the same split the Keras models stop on), never the test split. Checkpoints go under
    `checkpoint_dir`, removed afterwards."""
    with checkpoints_in(spark, checkpoint_dir):
        return _pick(spark, train_path, num_users, num_items, params, k, validation_negatives)


def validation_fit_rows(spark: SparkSession, train_path: Path, num_users: int) -> tuple[Split, DataFrame]:
    """The validation carve of the train split (`carve_validation`, as the Keras models stop on)
    and the train rows without its held-out items, as (user_idx, item_idx, weight) for ALS."""
    import pandas as pd
    from pyspark.sql import functions as F

    from recbatch.artifacts import read_pairs, read_times
    from recbatch.core.validation import carve_validation

    users, items = read_pairs(train_path)
    split = carve_validation(users, items, read_times(train_path), num_users)
    # Every held-out row leaves the fit rows, also those of users the validation does not rank.
    out = np.ones(len(users), bool)
    out[split.fit_index] = False
    held = spark.createDataFrame(
        pd.DataFrame({"user_idx": users[out].astype("int32"), "item_idx": items[out].astype("int32")}),
        "user_idx int, item_idx int",
    )
    train = spark.read.parquet(str(train_path))
    fit_rows = train.join(held, on=["user_idx", "item_idx"], how="left_anti").select(
        F.col("user_idx"), F.col("item_idx"), F.col("weight")
    )
    return split, fit_rows


def _pick(
    spark: SparkSession,
    train_path: Path,
    num_users: int,
    num_items: int,
    params: AlsConfig,
    k: int,
    validation_negatives: int = 0,
) -> tuple[AlsConfig, list[dict[str, float]]]:
    from recbatch.core.ranking import DotScorer
    from recbatch.core.validation import scorer_ndcg, with_sampled_negatives

    split, fit_rows = validation_fit_rows(spark, train_path, num_users)
    with_sampled_negatives(split, num_users, num_items, validation_negatives)
    trials = []
    for candidate in grid(params):
        model = fit_als(spark, fit_rows, candidate)
        scorer = DotScorer(
            factor_matrix(model.userFactors, num_users, candidate.rank),
            factor_matrix(model.itemFactors, num_items, candidate.rank),
        )
        score = scorer_ndcg(scorer, split, num_users, k)
        trials.append(
            {"rank": candidate.rank, "reg": candidate.reg, "alpha": candidate.alpha, "val_ndcg": score}
        )
        log.info(
            "ALS grid: rank %d reg %g alpha %g -> validation ndcg@%d %.4f",
            candidate.rank,
            candidate.reg,
            candidate.alpha,
            k,
            score,
        )
    best = max(range(len(trials)), key=lambda n: trials[n]["val_ndcg"])
    return grid(params)[best], trials


def als_factors(
    spark: SparkSession,
    train_path: Path,
    num_users: int,
    num_items: int,
    params: AlsConfig,
    checkpoint_dir: str,
    validation_negatives: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train ALS on the prepared train split and return (user factors, item factors) by dense index.

    With [als] grid lists set, the grid point with the best validation NDCG is picked
    first (`pick_params`, on the sampled protocol with `validation_negatives`) and refitted on all of train. Checkpoints go under
    `checkpoint_dir` (e.g. <workdir>/runs/dt=<date>/tmp/als-checkpoints) and are removed
    when the fit ends, whether it succeeds or fails.
    """
    with checkpoints_in(spark, checkpoint_dir):
        if len(grid(params)) > 1:
            params, _ = _pick(spark, train_path, num_users, num_items, params, 10, validation_negatives)
            log.info("ALS grid: picked rank %d reg %g alpha %g", params.rank, params.reg, params.alpha)
        model = fit_als(spark, spark.read.parquet(str(train_path)), params)
        return (
            factor_matrix(model.userFactors, num_users, params.rank),
            factor_matrix(model.itemFactors, num_items, params.rank),
        )
