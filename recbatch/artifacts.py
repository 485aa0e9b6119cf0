"""The one reader, writer and validator of the files stages hand each other.

prepare → train/evaluate/score: the prepared splits (user_idx, item_idx, last_ts, ...) and
vocabularies. train → evaluate/score: factor files, network weights and the manifest.

Contracts, checked here and nowhere else:
- A factor file holds (<index column> int32, factors list<float32>) with row r = index r,
  in ascending index order, FACTOR_ROW_GROUP rows per row group: scoring tasks read only
  the row groups of their user range and rely on that order (recbatch.score.user_files).
- Network weights (mlp/neumf) are `network.npz` beside model.keras, read back as a typed
  `NetworkWeights`; the manifest's "scoring" says whether they exist ("network") or the
  score is act(user · item) of the factor files ("dot").
- The manifest is written last (atomically) and marks a complete model.
A missing artifact means a stage has not run yet: DataError (exit 3) naming the command.
A present but broken one (truncated, ragged, foreign bytes) is PipelineError (exit 4).
Files are written to a temporary name beside the target and renamed into place.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.core.files import count_rows, parquet_files, sha256_file
from recbatch.core.network import NetworkWeights
from recbatch.errors import DataError, PipelineError
from recbatch.layout import RunLayout

FACTOR_ROW_GROUP = 16_384  # rows per Parquet row group of a factor file
NETWORK_FILE = "network.npz"
SCORINGS = ("dot", "network")
ACTIVATIONS = ("sigmoid", "identity")

# --- prepared splits -------------------------------------------------------------------


def require_prepared(layout: RunLayout) -> None:
    """Raise DataError unless the prepared train split and both vocabularies exist."""
    for name, path in (
        ("train split", layout.train),
        ("user vocabulary", layout.user_vocab),
        ("item vocabulary", layout.item_vocab),
    ):
        if not path.exists():
            raise DataError(
                f"prepared {name} not found at {path}: run `recbatch prepare` first "
                f"(with the same --date and paths.workdir)"
            )


def _dataset(path: Path) -> Any:
    import pyarrow.dataset as ds

    try:
        return ds.dataset(str(path), format="parquet")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read Parquet at {path}: {exc}") from None


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (user_idx, item_idx) columns of a prepared split as two int32 arrays."""
    dataset = _dataset(path)
    missing = {"user_idx", "item_idx"} - set(dataset.schema.names)
    if missing:
        raise DataError(
            f"{path} lacks column(s) {sorted(missing)} (has {dataset.schema.names}): "
            "re-run `recbatch prepare` to rebuild the prepared data"
        )
    table = dataset.to_table(columns=["user_idx", "item_idx"])
    users = table.column("user_idx").to_numpy().astype(np.int32, copy=False)
    items = table.column("item_idx").to_numpy().astype(np.int32, copy=False)
    return users, items


def read_times(path: Path) -> np.ndarray:
    """The last_ts column of a prepared split (row order as `read_pairs`); zeros when absent."""
    dataset = _dataset(path)
    if "last_ts" not in dataset.schema.names:
        return np.zeros(count_rows(path), dtype=np.int64)
    return dataset.to_table(columns=["last_ts"]).column("last_ts").to_numpy().astype(np.int64)


def check_range(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, where: Path) -> None:
    """Raise DataError when an index falls outside its vocabulary (stale or mixed prepared data)."""
    for name, values, size in (("user_idx", users, num_users), ("item_idx", items, num_items)):
        if len(values) and (values.min() < 0 or values.max() >= size):
            raise DataError(
                f"{where}: {name} outside 0..{size - 1} (vocabulary size {size}): the split and the "
                "vocabularies come from different prepare runs; re-run `recbatch prepare`"
            )


def data_fingerprint(path: Path) -> str:
    """sha256 over the sorted sha256 digests of the Parquet files' bytes, plus the row count.

    File names are left out on purpose: Spark names part files with a random id, so the
    same data written twice keeps its fingerprint while any change of content moves it.
    """
    import hashlib

    total = hashlib.sha256()
    for digest in sorted(sha256_file(file) for file in parquet_files(path)):
        total.update(digest.encode())
    total.update(f"rows={count_rows(path)}".encode())
    return "sha256:" + total.hexdigest()


# --- factor files ------------------------------------------------------------------------


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
    """A factor file as a float32 matrix whose row r holds the factors of index r.

    DataError when the file is missing (train has not run), PipelineError when it is
    unreadable, empty, ragged, has nulls or does not cover 0..n-1 once each.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"factor file {path} not found: run `recbatch train` first (same --date and workdir)")
    try:
        table = pq.read_table(path, columns=[index_column, "factors"])
    except (OSError, KeyError, ValueError) as exc:
        raise PipelineError(f"factor file {path} is unreadable ({exc}); rerun `recbatch train`") from None
    index = table.column(index_column).to_numpy().astype(np.int64)
    lists = table.column("factors").combine_chunks()
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    n = len(index)
    if n == 0 or lists.null_count or len(set(lengths.tolist())) != 1:
        raise PipelineError(f"factor file {path} is empty, ragged or has nulls; rerun `recbatch train`")
    if not np.array_equal(np.sort(index), np.arange(n)):
        raise PipelineError(
            f"factor file {path} does not cover {index_column} 0..{n - 1} once each; rerun `recbatch train`"
        )
    matrix = np.empty((n, int(lengths[0])), dtype=np.float32)
    matrix[index] = pc.list_flatten(lists).to_numpy(zero_copy_only=False).reshape(n, -1)
    return matrix


def factor_shape(path: Path) -> tuple[int, int]:
    """(rows, dim) of a factor file from its footer and first row (no full read)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"factor file {path} not found: run `recbatch train` first (same --date and workdir)")
    try:
        file = pq.ParquetFile(path)
        first = file.read_row_group(0, columns=["factors"]).column("factors")[0].as_py() or []
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise PipelineError(f"factor file {path} is unreadable ({exc}); rerun `recbatch train`") from None
    return file.metadata.num_rows, len(first)


# --- network weights ---------------------------------------------------------------------


def write_network(path: Path, weights: NetworkWeights) -> None:
    """Write network weights as an .npz file (arrays only: loading never unpickles)."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **weights.to_arrays())
    os.replace(tmp, path)


def load_network(path: Path) -> NetworkWeights:
    """Network weights written by `write_network`; PipelineError when the file is not such weights."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return NetworkWeights.from_arrays({k: data[k] for k in data.files})
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise PipelineError(
            f"network weights {path} are unreadable ({exc}); rerun `recbatch train`"
        ) from None


def network_path(model_dir: Path, manifest: dict[str, Any]) -> Path:
    """Where the manifest says its network weights are."""
    return model_dir / str(manifest.get("network_weights") or NETWORK_FILE)


def read_network(model_dir: Path, manifest: dict[str, Any]) -> NetworkWeights | None:
    """The dense weights of an mlp/neumf model (manifest scoring "network"), else None."""
    if manifest.get("scoring", "dot") != "network":
        return None
    path = network_path(model_dir, manifest)
    if not path.is_file():
        raise DataError(
            f"network weights {path} not found for model {manifest.get('model')!r} "
            "(scoring='network'); rerun `recbatch train`"
        )
    return load_network(path)


# --- manifest ----------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The model manifest, checked for what evaluation and scoring need.

    DataError when there is no trained model; PipelineError when the manifest is not JSON,
    lacks 'model', or names an unknown activation or scoring; DataError when it names
    network weights that are missing, before any work starts.
    """
    if not path.is_file():
        raise DataError(
            f"model manifest {path} not found: run `recbatch train` first (same --date and workdir)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc}); rerun `recbatch train`") from None
    activation = manifest.get("score_activation") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or "model" not in manifest or activation not in ACTIVATIONS:
        raise PipelineError(
            f"model manifest {path} lacks 'model' or has score_activation={activation!r} "
            f"(expected one of {', '.join(ACTIVATIONS)}); rerun `recbatch train`"
        )
    scoring = manifest.get("scoring", "dot")
    if scoring not in SCORINGS:
        raise PipelineError(
            f"model manifest {path} has scoring={scoring!r} (expected 'dot' or 'network'); rerun `recbatch train`"
        )
    if scoring == "network" and not network_path(path.parent, manifest).is_file():
        # mlp/neumf rank by their network: without the weights there is no exact score.
        raise DataError(
            f"network weights {network_path(path.parent, manifest)} not found for model "
            f"{manifest['model']!r} (scoring='network'); rerun `recbatch train`"
        )
    return manifest
