"""recbatch's scoring engine as both scoring benchmarks (bench score, bench network) run it:
inputs laid out as `recbatch train` and `recbatch prepare` write them, the engine's output on
them, its timed runs with the workers' peak memory, and the top-K lists of sampled users."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import WorkerRss, timed, to_noop


def write_inputs(spark, folder: Path, users, items, rows, cols) -> None:
    """User factors and seen pairs as Parquet, and every array as .npy, under `folder`."""
    import pandas as pd

    from recbatch.artifacts import write_factors

    folder.mkdir(parents=True, exist_ok=True)
    write_factors(folder / "users.parquet", "user_idx", users)  # as `recbatch train` writes them
    seen = pd.DataFrame({"user_idx": rows.astype(np.int32), "item_idx": cols.astype(np.int32)})
    # Laid out as `recbatch prepare` writes interactions: hash-partitioned by user, sorted within.
    (
        spark.createDataFrame(seen)
        .repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), "user_idx")
        .sortWithinPartitions("user_idx", "item_idx")
        .write.mode("overwrite")
        .parquet(str(folder / "seen.parquet"))
    )
    save_arrays(folder, users, items, rows, cols)


def save_arrays(folder: Path, users, items, rows, cols) -> None:
    """users.npy, items.npy, seen_rows.npy and seen_cols.npy under `folder`, as the ceilings read them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("users", users), ("items", items), ("seen_rows", rows), ("seen_cols", cols)):
        np.save(folder / f"{name}.npy", array)


def engine_output(spark, spec, folder: Path, items, plan, activation: str, network=None):
    """The scoring engine's (lazy) output on the bench inputs under `folder`, as `plan.user_input` says."""
    from recbatch.score.engine import score_users
    from recbatch.score.user_files import UserFiles

    if plan.user_input == "files":
        users, seen = UserFiles(str(folder / "users.parquet"), str(folder / "seen.parquet"), spec.users), None
    else:
        users = spark.read.parquet(str(folder / "users.parquet"))
        seen = spark.read.parquet(str(folder / "seen.parquet"))
    return score_users(
        spark,
        users,
        items,
        seen,
        spec.k,
        plan.user_block,
        activation,
        plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
        network=network,
    )


def timed_engine(spark, scored, runs: int) -> dict[str, Any]:
    """Timed runs of `scored()` into the noop sink; the seconds and the workers' peak RSS over them."""
    rss = WorkerRss(spark)
    rss.start_window()
    seconds = timed(lambda: to_noop(scored()), runs)
    return {"seconds": seconds, "worker_peak_rss_bytes": rss.stop_window()}


def sampled_top(spark, path: Path, sample) -> list[list[int]]:
    """The ranked item lists of the `sample` users in the engine's Parquet output at `path`."""
    from pyspark.sql import functions as F

    got = spark.read.parquet(str(path)).filter(F.col("user_idx").isin([int(u) for u in sample])).collect()
    by_user: dict[int, list[tuple[int, int]]] = {int(u): [] for u in sample}
    for row in got:
        by_user[row.user_idx].append((row.rank, row.item_idx))
    return [[i for _, i in sorted(by_user[int(u)])] for u in sample]
