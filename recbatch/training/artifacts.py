"""Model artifacts: factor Parquet files, the data fingerprint and the manifest.

Files are written to a temporary name beside the target and renamed into place, so a
reader never sees half a file; the manifest is written last and marks a complete model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.errors import DataError
from recbatch.training.data import count_rows, parquet_files

FACTOR_ROW_GROUP = 16_384  # rows per Parquet row group of a factor file


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write_factors(path: Path, index_column: str, matrix: np.ndarray) -> None:
    """Write rows of `matrix` as (index_column int32 = row number, factors list<float32>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    factors = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.float32()))
    table = pa.table({index_column: pa.array(np.arange(n, dtype=np.int32)), "factors": factors})
    path.parent.mkdir(parents=True, exist_ok=True)
    # Small row groups let scoring tasks read only the row groups of their user range.
    pq.write_table(table, _tmp(path), row_group_size=FACTOR_ROW_GROUP)
    os.replace(_tmp(path), path)


def read_factors(path: Path, index_column: str) -> np.ndarray:
    """Read a factor file back as a float32 matrix whose row r holds the factors of index r."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"factor file {path} not found: run `recbatch train` first (same --date and workdir)")
    table = pq.read_table(path, columns=[index_column, "factors"])
    index = table.column(index_column).to_numpy()
    lists = table.column("factors").combine_chunks()
    lengths = np.diff(lists.offsets.to_numpy())
    if len(index) == 0 or not np.array_equal(np.sort(index), np.arange(len(index))) or len(set(lengths)) != 1:
        raise DataError(
            f"{path} is malformed (indices must be 0..n-1 once each, factors all one length): "
            "re-run `recbatch train`"
        )
    dim = int(lengths[0])
    values = lists.flatten().to_numpy(zero_copy_only=False)
    matrix = np.empty((len(index), dim), dtype=np.float32)
    matrix[index] = values.reshape(len(index), dim)
    return matrix


def data_fingerprint(path: Path) -> str:
    """sha256 over the sorted sha256 digests of the Parquet files' bytes, plus the row count.

    File names are left out on purpose: Spark names part files with a random id, so the
    same data written twice keeps its fingerprint while any change of content moves it.
    """
    digests = []
    for file in parquet_files(path):
        h = hashlib.sha256()
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        digests.append(h.hexdigest())
    total = hashlib.sha256()
    for digest in sorted(digests):
        total.update(digest.encode())
    total.update(f"rows={count_rows(path)}".encode())
    return "sha256:" + total.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """The model manifest, or DataError when there is no trained model."""
    if not path.is_file():
        raise DataError(
            f"model manifest {path} not found: run `recbatch train` first (same --date and workdir)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): re-run `recbatch train`") from None


def read_network(model_dir: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The dense weights of an mlp/neumf model (manifest scoring "network"), else None."""
    if manifest.get("scoring", "dot") != "network":
        return None
    from recbatch.models.network_numpy import NETWORK_FILE, load_network

    path = model_dir / str(manifest.get("network_weights") or NETWORK_FILE)
    if not path.is_file():
        raise DataError(
            f"network weights {path} not found for model {manifest.get('model')!r}; rerun `recbatch train`"
        )
    return load_network(path)
