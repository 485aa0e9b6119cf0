"""The peers of `recbatch bench score`: Spark ALS, the single-process ceilings and the naive
cross join, each timed on the same factors and seen items as recbatch (see recbatch.bench.score)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import timed, to_noop
from recbatch.bench.spark_engine import save_arrays

CEILING_BLOCKS = (("tf", 4096), ("tf-mask", 4096), ("numpy", 4096), ("recbatch", None))  # kind, user block


def als(spark, spec, users, items) -> dict[str, Any]:
    """ALSModel.recommendForAllUsers on our factors (cached, one partition per core), noop sink."""
    from pyspark.ml.recommendation import ALSModel

    cores = spark.sparkContext.defaultParallelism

    def factors(matrix):
        rows = [(i, matrix[i].tolist()) for i in range(len(matrix))]
        return spark.createDataFrame(rows, "id int, features array<float>").repartition(cores).cache()

    user_df, item_df = factors(users), factors(items)
    user_df.count(), item_df.count()
    jvm = spark.sparkContext._jvm
    # ALSModel's constructor is package-private in Scala, public on the JVM: the model gets our factors.
    jmodel = jvm.org.apache.spark.ml.recommendation.ALSModel(
        "als-bench", spec.dim, user_df._jdf, item_df._jdf
    )
    # The estimator would set these defaults; ALS's own blockSize default (4096) is kept.
    jmodel = jmodel.setUserCol("user").setItemCol("item").setPredictionCol("prediction").setBlockSize(4096)
    model = ALSModel(jmodel)
    seconds = timed(lambda: to_noop(model.recommendForAllUsers(spec.k)), spec.runs)
    user_df.unpersist(), item_df.unpersist()
    return {"seconds": seconds, "partitions": cores}


def _ceiling(kind: str, folder: Path, spec, block: int, threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[key] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cmd = [sys.executable, "-m", "recbatch.bench.score_ceiling", kind, str(folder / "ceiling"), str(spec.k)]
    done = subprocess.run(
        [*cmd, str(block), str(spec.runs), str(threads)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ceilings(spec, folder: Path, data, recbatch_block: int, want: list[list[int]]) -> dict[str, Any]:
    """Each ceiling in a fresh child process on the first `ceiling_users` users; `want` is the
    brute-force top-K of the first len(want) users, which each ceiling's own lists are checked against."""
    users, items, rows, cols = data
    n = min(spec.ceiling_users, spec.users)
    keep = rows < n
    save_arrays(folder / "ceiling", users[:n], items, rows[keep], cols[keep])
    found = {}
    for kind, block in CEILING_BLOCKS:
        got = _ceiling(kind, folder, spec, block or recbatch_block, os.cpu_count() or 1)
        if "top" in got:
            got["exact_users"] = sum(g == w for g, w in zip(got.pop("top"), want, strict=True))
            got["sampled_users"] = len(want)
        found[f"{kind}-1p" if kind == "recbatch" else kind] = got
    return found


def naive(spark, spec, users, items, rows, cols) -> dict[str, Any]:
    """crossJoin users x items + pandas_udf dot + left_anti seen + window rank, on a small corner."""
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    nu, ni = min(spec.naive_users, len(users)), min(spec.naive_items, len(items))
    u = spark.createDataFrame([(i, users[i].tolist()) for i in range(nu)], "user_idx int, uf array<float>")
    it = spark.createDataFrame([(i, items[i].tolist()) for i in range(ni)], "item_idx int, itf array<float>")
    keep = (rows < nu) & (cols < ni)
    seen = spark.createDataFrame(
        list(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)), "user_idx int, item_idx int"
    )

    def dot_arrays(a, b):
        return pd.Series(np.einsum("ij,ij->i", np.stack(a.to_numpy()), np.stack(b.to_numpy())))

    # Real classes, not the postponed string annotations, tell Spark this is a Series -> Series UDF.
    dot_arrays.__annotations__ = {"a": pd.Series, "b": pd.Series, "return": pd.Series}
    dot = pandas_udf(dot_arrays, "float")

    window = Window.partitionBy("user_idx").orderBy(F.desc("score"), F.col("item_idx"))
    top = (
        u.crossJoin(it)
        .join(seen, on=["user_idx", "item_idx"], how="left_anti")
        .select("user_idx", "item_idx", dot("uf", "itf").alias("score"))
        .withColumn("rank", F.row_number().over(window))
        .filter(F.col("rank") <= spec.k)
    )
    return {"seconds": timed(lambda: to_noop(top), spec.runs), "pairs": nu * ni}
