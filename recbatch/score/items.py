"""Item factors sent to every Python worker once (read by `recbatch.artifacts.read_factors`).

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
