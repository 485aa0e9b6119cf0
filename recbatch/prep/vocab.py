"""Dense id vocabularies (id <-> 0..n-1 in id order), built distributed, and indexing pairs.

The index of an id is its rank among the sorted distinct ids. Spark sorts with range
partitions, so partition p holds a contiguous block of ranks: the rank is the row's
position inside its partition plus the sizes of the partitions before it. Only one
number per partition reaches the driver; no data-sized table is collected and no
single-partition window is used.

A run can instead extend an earlier run's vocabularies (`previous_prepared` finds them),
so an id keeps its index across dates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.errors import ConfigError, PipelineError
from recbatch.storage import Location, location

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recbatch.layout import RunLayout

MAX_INDEX = 2**31 - 1  # indices are int32


def build_vocab(pairs: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Distinct `id_col` values of `pairs` with a dense int32 `idx_col` (0..n-1 in id order)."""
    from pyspark.sql import functions as F

    # Checkpointed, so the partitions whose sizes are counted are the ones later indexed.
    ranked = (
        pairs.select(F.col(id_col))
        .distinct()
        .orderBy(F.col(id_col))
        .select(
            F.col(id_col),
            F.spark_partition_id().alias("_part"),
            F.monotonically_increasing_id().alias("_mid"),
        )
        .localCheckpoint(eager=False)
    )
    sizes = sorted(
        (r["_part"], r["_n"], r["_first"])
        for r in ranked.groupBy("_part")
        .agg(F.count(F.lit(1)).alias("_n"), F.min("_mid").alias("_first"))
        .collect()
    )
    offsets, total = [], 0
    for part, n, first in sizes:
        offsets.append((part, total - first))  # idx = _mid - first + ranks before this partition
        total += n
    if total > MAX_INDEX + 1:
        raise PipelineError(f"{total} distinct {id_col} values do not fit int32 indices")
    shift = pairs.sparkSession.createDataFrame(offsets or [(0, 0)], "_part int, _shift long")
    return ranked.join(F.broadcast(shift), on="_part", how="inner").select(
        F.col(id_col), (F.col("_mid") + F.col("_shift")).cast("int").alias(idx_col)
    )


def index_pairs(pairs: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace user_id/item_id by user_idx/item_idx (every id must be in its vocabulary)."""
    from pyspark.sql import functions as F

    return (
        pairs.join(users, on="user_id", how="inner")
        .join(items, on="item_id", how="inner")
        .select(
            F.col("user_idx").cast("int").alias("user_idx"),
            F.col("item_idx").cast("int").alias("item_idx"),
            F.col("count").cast("long").alias("count"),
            F.col("weight").cast("double").alias("weight"),
            F.col("rating").cast("double").alias("rating"),
            F.col("last_ts").cast("long").alias("last_ts"),
        )
    )


def extend_vocab(previous: DataFrame, pairs: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """The `previous` vocabulary unchanged, then ids of `pairs` it lacks, appended in id order.

    Existing ids keep their index, so factors and published tables stay comparable across
    runs; ids absent from `pairs` stay too (an index is never reused).
    """
    from pyspark.sql import functions as F

    prev = previous.select(F.col(id_col), F.col(idx_col).cast("int").alias(idx_col))
    stats = prev.agg(F.count(F.lit(1)).alias("n"), F.max(idx_col).alias("top")).first()
    n = int(stats["n"])
    if n and int(stats["top"]) != n - 1:
        raise PipelineError(
            f"previous {id_col} vocabulary is not dense 0..{n - 1} (max index {stats['top']}); "
            "point prepare.previous_vocab at a vocabulary written by recbatch"
        )
    new = pairs.select(F.col(id_col)).distinct().join(prev.select(F.col(id_col)), on=id_col, how="left_anti")
    appended = build_vocab(new, id_col, idx_col).select(
        F.col(id_col), (F.col(idx_col) + F.lit(n)).cast("int").alias(idx_col)
    )
    return prev.unionByName(appended)


def _has_vocab(prepared: Location) -> bool:
    return (prepared / "vocab" / "users").is_dir() and (prepared / "vocab" / "items").is_dir()


def previous_prepared(setting: str, layout: RunLayout) -> Location | None:
    """The prepared/ folder whose vocabularies this run extends (None: build fresh ones).

    `setting` is prepare.previous_vocab: "" (none), "auto" (the latest earlier dt= run of the
    work directory that has both vocabularies) or a prepared/ folder, which must hold them.
    """
    if not setting:
        return None
    if setting == "auto":
        runs = sorted(
            p
            for p in (layout.workdir / "runs").glob("dt=*")
            if p.name[3:] < layout.date and _has_vocab(p / "prepared")
        )
        return runs[-1] / "prepared" if runs else None
    path = location(setting)
    if not _has_vocab(path):
        raise ConfigError(
            f"prepare.previous_vocab = {setting!r} holds no vocab/users and vocab/items "
            '(point it at an earlier run\'s prepared/ folder, or use "auto")'
        )
    return path
