"""The artifact contract: missing files say which stage to run (exit 3), broken ones are refused (exit 4)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from recbatch.artifacts import (
    factor_shape,
    load_network,
    model_digests,
    read_factors,
    read_manifest,
    write_factors,
    write_network,
)
from recbatch.core.network import NetworkWeights
from recbatch.errors import DataError, PipelineError


def _weights() -> NetworkWeights:
    rng = np.random.default_rng(0)
    return NetworkWeights(
        gmf_dim=2,
        kernels=(rng.standard_normal((6, 4)).astype(np.float32),),
        biases=(rng.standard_normal(4).astype(np.float32),),
        out_w=rng.standard_normal(6).astype(np.float32),
        out_b=0.25,
    )


def test_factor_files_round_trip_and_report_their_shape(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_factors(tmp_path / "f.parquet", "user_idx", matrix)
    np.testing.assert_array_equal(read_factors(tmp_path / "f.parquet", "user_idx"), matrix)
    assert factor_shape(tmp_path / "f.parquet") == (4, 3)


def test_a_missing_factor_file_names_the_stage_and_a_truncated_one_is_refused(tmp_path):
    with pytest.raises(DataError, match="run `recbatch train` first"):
        read_factors(tmp_path / "absent.parquet", "user_idx")
    path = tmp_path / "f.parquet"
    write_factors(path, "user_idx", np.ones((100, 8), np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for read in (lambda: read_factors(path, "user_idx"), lambda: factor_shape(path)):
        with pytest.raises(PipelineError, match="unreadable.*rerun `recbatch train`"):
            read()


def test_network_weights_round_trip_typed_and_a_pickle_is_refused(tmp_path):
    path = tmp_path / "network.npz"
    write_network(path, _weights())
    loaded = load_network(path)
    assert isinstance(loaded, NetworkWeights) and loaded.widths == (4,) and loaded.out_b == 0.25
    for key, value in _weights().to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], value)
    path.write_bytes(pickle.dumps(_weights().to_arrays()))
    with pytest.raises(PipelineError, match="unreadable"):
        load_network(path)


def test_manifest_missing_is_data_error_and_garbage_is_pipeline_error(tmp_path):
    with pytest.raises(DataError, match="run `recbatch train` first"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PipelineError, match="not valid JSON"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text('{"model": "mf", "score_activation": "relu"}')
    with pytest.raises(PipelineError, match="score_activation='relu'"):
        read_manifest(tmp_path / "manifest.json")


def test_a_model_file_swapped_after_training_is_refused_by_name(tmp_path):
    rng = np.random.default_rng(0)
    write_factors(tmp_path / "user_factors.parquet", "user_idx", rng.normal(size=(4, 2)))
    write_factors(tmp_path / "item_factors.parquet", "item_idx", rng.normal(size=(3, 2)))
    (tmp_path / "model.keras").write_bytes(b"the trained model")
    manifest = {"model": "mf", "score_activation": "sigmoid", "files_sha256": model_digests(tmp_path)}
    assert set(manifest["files_sha256"]) == {"model.keras", "user_factors.parquet", "item_factors.parquet"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path / "manifest.json")["model"] == "mf"
    (tmp_path / "model.keras").write_bytes(b"another model")
    with pytest.raises(PipelineError, match=r"model.keras does not match the sha256 train recorded"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "model.keras").write_bytes(b"the trained model")
    write_factors(
        tmp_path / "item_factors.parquet", "item_idx", rng.normal(size=(3, 2))
    )  # retrained elsewhere
    with pytest.raises(PipelineError, match=r"item_factors.parquet does not match"):
        read_manifest(tmp_path / "manifest.json")
