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
Files are written atomically through recbatch.storage, so the work directory may be on any storage.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from recbatch.core.network import NetworkWeights
from recbatch.errors import DataError, PipelineError
from recbatch.layout import RunLayout
from recbatch.storage import Location, count_rows, location, parquet_files, sha256

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


def _dataset(path: Location) -> Any:
    import pyarrow.dataset as ds

    try:
        path = location(path)
        return ds.dataset(path.fs_path, filesystem=path.filesystem, format="parquet")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read Parquet at {path}: {exc}") from None


def read_pairs(path: Location) -> tuple[np.ndarray, np.ndarray]:
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


def read_times(path: Location) -> np.ndarray:
    """The last_ts column of a prepared split (row order as `read_pairs`); zeros when absent."""
    dataset = _dataset(path)
    if "last_ts" not in dataset.schema.names:
        return np.zeros(count_rows(path), dtype=np.int64)
    return dataset.to_table(columns=["last_ts"]).column("last_ts").to_numpy().astype(np.int64)


def read_strength(path: Location, column: str) -> np.ndarray:
    """A pair-strength column of a prepared split (weight, count or rating; row order as `read_pairs`),
    as float64 with missing values 0."""
    dataset = _dataset(path)
    if column not in dataset.schema.names:
        raise DataError(
            f"{path} lacks column {column!r} (has {dataset.schema.names}): re-run `recbatch prepare`"
        )
    values = dataset.to_table(columns=[column]).column(column).to_numpy(zero_copy_only=False)
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def read_vocab(path: Location, side: str) -> tuple[Any, np.ndarray]:
    """A vocabulary written by prepare as (ids as an Arrow array, int64 indices); `side` is "user" or "item".

    PipelineError when it lacks the columns or its indices are not 0..n-1 once each.
    """
    dataset = _dataset(path)
    id_col, idx_col = f"{side}_id", f"{side}_idx"
    if not {id_col, idx_col} <= set(dataset.schema.names):
        raise PipelineError(
            f"vocabulary {path} lacks {id_col} / {idx_col} (has {dataset.schema.names}); rerun `recbatch prepare`"
        )
    table = dataset.to_table(columns=[id_col, idx_col])
    index = table.column(idx_col).to_numpy().astype(np.int64)
    if not np.array_equal(np.sort(index), np.arange(len(index))):
        raise PipelineError(
            f"vocabulary {path} does not index 0..{len(index) - 1} once each; rerun `recbatch prepare`"
        )
    return table.column(id_col).combine_chunks(), index


def check_range(
    users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, where: Location
) -> None:
    """Raise DataError when an index falls outside its vocabulary (stale or mixed prepared data)."""
    for name, values, size in (("user_idx", users, num_users), ("item_idx", items, num_items)):
        if len(values) and (values.min() < 0 or values.max() >= size):
            raise DataError(
                f"{where}: {name} outside 0..{size - 1} (vocabulary size {size}): the split and the "
                "vocabularies come from different prepare runs; re-run `recbatch prepare`"
            )


def data_fingerprint(path: Location) -> str:
    """sha256 over the sorted sha256 digests of the Parquet files' bytes, plus the row count.

    File names are left out on purpose: Spark names part files with a random id, so the
    same data written twice keeps its fingerprint while any change of content moves it.
    """
    import hashlib

    total = hashlib.sha256()
    for digest in sorted(sha256(file) for file in parquet_files(path)):
        total.update(digest.encode())
    total.update(f"rows={count_rows(path)}".encode())
    return "sha256:" + total.hexdigest()


# --- factor files ------------------------------------------------------------------------


def write_factors(path: Location, index_column: str, matrix: np.ndarray) -> None:
    """Write rows of `matrix` as (index_column int32 = row number, factors list<float32>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    factors = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.float32()))
    table = pa.table({index_column: pa.array(np.arange(n, dtype=np.int32)), "factors": factors})
    # Small row groups let scoring tasks read only the row groups of their user range.
    with location(path).atomic_output() as stream:
        pq.write_table(table, stream, row_group_size=FACTOR_ROW_GROUP)


def read_factors(path: Location, index_column: str) -> np.ndarray:
    """A factor file as a float32 matrix whose row r holds the factors of index r.

    DataError when the file is missing (train has not run), PipelineError when it is
    unreadable, empty, ragged, has nulls or does not cover 0..n-1 once each.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = location(path)
    if not path.is_file():
        raise DataError(f"factor file {path} not found: run `recbatch train` first (same --date and workdir)")
    try:
        table = pq.read_table(path.fs_path, filesystem=path.filesystem, columns=[index_column, "factors"])
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


def factor_shape(path: Location) -> tuple[int, int]:
    """(rows, dim) of a factor file from its footer and first row (no full read)."""
    import pyarrow.parquet as pq

    path = location(path)
    if not path.is_file():
        raise DataError(f"factor file {path} not found: run `recbatch train` first (same --date and workdir)")
    try:
        file = pq.ParquetFile(path.open_input())
        first = file.read_row_group(0, columns=["factors"]).column("factors")[0].as_py() or []
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise PipelineError(f"factor file {path} is unreadable ({exc}); rerun `recbatch train`") from None
    return file.metadata.num_rows, len(first)


# --- network weights ---------------------------------------------------------------------


def write_network(path: Location, weights: NetworkWeights) -> None:
    """Write network weights as an .npz file (arrays only: loading never unpickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **weights.to_arrays())
    location(path).write_bytes(buffer.getvalue())


def load_network(path: Location) -> NetworkWeights:
    """Network weights written by `write_network`; PipelineError when the file is not such weights."""
    try:
        with np.load(io.BytesIO(location(path).read_bytes()), allow_pickle=False) as data:
            return NetworkWeights.from_arrays({k: data[k] for k in data.files})
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise PipelineError(
            f"network weights {path} are unreadable ({exc}); rerun `recbatch train`"
        ) from None


def network_path(model_dir: Location, manifest: dict[str, Any]) -> Location:
    """Where the manifest says its network weights are."""
    return model_dir / str(manifest.get("network_weights") or NETWORK_FILE)


def read_network(model_dir: Location, manifest: dict[str, Any]) -> NetworkWeights | None:
    """The dense weights of an mlp/neumf model (manifest scoring "network"), else None."""
    if manifest.get("scoring", "dot") != "network":
        return None
    path = network_path(location(model_dir), manifest)
    if not path.is_file():
        raise DataError(
            f"network weights {path} not found for model {manifest.get('model')!r} "
            "(scoring='network'); rerun `recbatch train`"
        )
    return load_network(path)


# --- manifest ----------------------------------------------------------------------------

MODEL_FILES = ("model.keras", "user_factors.parquet", "item_factors.parquet", NETWORK_FILE)


def model_digests(model_dir: Location) -> dict[str, str]:
    """sha256 of each model file present in `model_dir` (the manifest's "files_sha256")."""
    model_dir = location(model_dir)
    return {name: sha256(model_dir / name) for name in MODEL_FILES if (model_dir / name).is_file()}


def verify_model_files(model_dir: Location, manifest: dict[str, Any]) -> None:
    """PipelineError naming the first model file whose bytes are not those train recorded."""
    model_dir = location(model_dir)
    for name, expected in sorted((manifest.get("files_sha256") or {}).items()):
        path = model_dir / name
        if not path.is_file():
            raise PipelineError(
                f"model file {path} is missing (the manifest lists it); rerun `recbatch train`"
            )
        if sha256(path) != expected:
            raise PipelineError(
                f"model file {path} does not match the sha256 train recorded in {model_dir / 'manifest.json'} "
                "(swapped or corrupted since training); rerun `recbatch train`"
            )


def read_manifest(path: Location) -> dict[str, Any]:
    """The model manifest, checked for what evaluation and scoring need.

    DataError when there is no trained model; PipelineError when the manifest is not JSON,
    lacks 'model', or names an unknown activation or scoring, or when a model file's bytes
    differ from the sha256 train recorded; DataError when it names network weights that
    are missing, before any work starts.
    """
    path = location(path)
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
    verify_model_files(path.parent, manifest)
    return manifest
