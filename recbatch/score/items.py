"""Item factors: read from the model's Parquet file, and sent to every Python worker once.

A broadcast suits moderate catalogues; beyond `score.broadcast_limit_mb` the matrix is saved
as a .npy file, shipped with the job (SparkContext.addFile) and memory-mapped by each
worker, which keeps it once per worker process for all later tasks (recbatch.score.blocks).
"""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recbatch.errors import PipelineError
from recbatch.score.blocks import mapped_items

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def ship_items(spark: SparkSession, items: np.ndarray, transport: str) -> Callable[[], np.ndarray]:
    """Send item factors to the workers once; returns a worker-side function giving the matrix."""
    if transport == "broadcast":
        shared = spark.sparkContext.broadcast(items)
        return lambda: shared.value
    if transport != "file":
        raise ValueError(f"unknown item transport {transport!r}; expected 'broadcast' or 'file'")
    from pyspark import SparkFiles

    folder = Path(tempfile.mkdtemp(prefix="recbatch-items-"))
    path = folder / f"items-{uuid.uuid4().hex}.npy"
    np.save(path, items)
    spark.sparkContext.addFile(str(path))
    atexit.register(_remove, path)
    name = path.name
    return lambda: mapped_items(SparkFiles.get(name))


def _remove(path: Path) -> None:
    try:
        os.remove(path)
        os.rmdir(path.parent)
    except OSError:
        pass


def load_item_factors(path: Path) -> np.ndarray:
    """Item factors as an (items, dim) float32 matrix, row i = item_idx i, read with pyarrow."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["item_idx", "factors"])
    except (OSError, KeyError, ValueError) as exc:
        raise PipelineError(
            f"item factors at {path} are unreadable ({exc}); rerun `recbatch train`"
        ) from None
    n = table.num_rows
    index = table.column("item_idx").to_numpy().astype(np.int64)
    factors = table.column("factors").combine_chunks()
    lengths = pc.list_value_length(factors).to_numpy(zero_copy_only=False)
    if n == 0 or factors.null_count or len(set(lengths.tolist())) != 1:
        raise PipelineError(f"item factors at {path} are empty or ragged; rerun `recbatch train`")
    if not np.array_equal(np.sort(index), np.arange(n)):
        raise PipelineError(
            f"item factors at {path} do not cover item_idx 0..{n - 1} once each; rerun `recbatch train`"
        )
    matrix = np.empty((n, int(lengths[0])), dtype=np.float32)
    matrix[index] = pc.list_flatten(factors).to_numpy(zero_copy_only=False).reshape(n, -1)
    return matrix
