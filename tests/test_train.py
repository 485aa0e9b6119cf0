"""Training on a tiny synthetic prepared dataset written with pyarrow (no Spark needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from recbatch.errors import DataError
from recbatch.layout import RunLayout
from tests.builders import clustered_data, tiny_config, write_prepared, write_split

# ---------------------------------------------------------------- no TensorFlow below this line


def test_negative_sampler_labels_and_seen_items() -> None:
    from recbatch.training.data import NegativeSampler

    users = np.array([0, 0, 1, 2], np.int32)
    items = np.array([0, 1, 2, 3], np.int32)
    sampler = NegativeSampler(users, items, num_items=6, negatives=3, rng=np.random.default_rng(0))
    u, i, y = sampler.sample()
    assert len(y) == sampler.examples_per_epoch() == 4 * (1 + 3)
    assert y.sum() == 4
    positives = {(a, b) for a, b in zip(users.tolist(), items.tolist(), strict=True)}
    pos_drawn = {(a, b) for a, b, lab in zip(u.tolist(), i.tolist(), y.tolist(), strict=True) if lab == 1}
    assert pos_drawn == positives
    negs = [(a, b) for a, b, lab in zip(u.tolist(), i.tolist(), y.tolist(), strict=True) if lab == 0]
    assert not set(negs) & positives  # never a known positive, while unseen items remain
    assert sorted(np.bincount([a for a, _ in negs]).tolist()) == [3, 3, 6]  # 3 per positive of each user
    # Fresh negatives and order every epoch; the same seed replays the same epochs.
    u2, i2, _ = sampler.sample()
    assert not (np.array_equal(u, u2) and np.array_equal(i, i2))
    again = NegativeSampler(users, items, num_items=6, negatives=3, rng=np.random.default_rng(0)).sample()
    assert all(np.array_equal(a, b) for a, b in zip((u, i, y), again, strict=True))


def test_negative_sampler_is_uniform_over_unseen_items() -> None:
    from recbatch.training.data import NegativeSampler

    sampler = NegativeSampler(
        np.array([0], np.int32),
        np.array([2], np.int32),
        num_items=5,
        negatives=40_000,
        rng=np.random.default_rng(1),
    )
    _, items, labels = sampler.sample()
    counts = np.bincount(items[labels == 0], minlength=5)
    assert counts[2] == 0
    np.testing.assert_allclose(counts[[0, 1, 3, 4]] / 40_000, 0.25, atol=0.01)


def test_factors_round_trip(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recbatch.training.artifacts import read_factors, write_factors

    matrix = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    write_factors(tmp_path / "f.parquet", "item_idx", matrix)
    schema = pq.read_schema(tmp_path / "f.parquet")
    assert schema.field("item_idx").type == pa.int32()
    assert schema.field("factors").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(read_factors(tmp_path / "f.parquet", "item_idx"), matrix)
    assert [p.name for p in tmp_path.iterdir()] == ["f.parquet"]  # no temporary left behind


def test_data_fingerprint_ignores_file_names_not_content(tmp_path: Path) -> None:
    from recbatch.training.artifacts import data_fingerprint

    users, items = np.array([0, 1, 1], np.int32), np.array([2, 0, 1], np.int32)
    write_split(tmp_path / "a", users, items)
    write_split(tmp_path / "b", users, items)
    (tmp_path / "b" / "part-00000.parquet").rename(tmp_path / "b" / "part-7f3a-00000.parquet")
    write_split(tmp_path / "c", users, np.array([2, 0, 2], np.int32))
    fp = data_fingerprint(tmp_path / "a")
    assert fp.startswith("sha256:")
    assert fp == data_fingerprint(tmp_path / "b")
    assert fp != data_fingerprint(tmp_path / "c")


def test_missing_prepared_data_is_a_data_error(tmp_path: Path) -> None:
    from recbatch.train import run_train

    layout = RunLayout(workdir=tmp_path, date="2026-01-01")
    with pytest.raises(DataError, match="run `recbatch prepare` first"):
        run_train(tiny_config(tmp_path, "mf"), layout)


def test_index_outside_vocabulary_is_a_data_error(tmp_path: Path) -> None:
    from recbatch.train import run_train

    tr_u, tr_i, te_u, te_i, n_users, _ = clustered_data()
    layout = write_prepared(tmp_path, (tr_u, tr_i, te_u, te_i, n_users, int(tr_i.max())))  # one item short
    with pytest.raises(DataError, match="item_idx outside"):
        run_train(tiny_config(tmp_path, "mf"), layout)


# ---------------------------------------------------------------- real training


def test_run_train_writes_consistent_artifacts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import keras
    import pyarrow.parquet as pq

    from recbatch.train import run_train
    from recbatch.training.artifacts import read_factors

    layout = write_prepared(tmp_path)
    config = tiny_config(tmp_path, "mf", epochs=3)
    with caplog.at_level(logging.INFO, logger="recbatch.train"):
        manifest = run_train(config, layout)

    on_disk = json.loads(layout.model_manifest.read_text())
    assert on_disk == manifest
    assert manifest["model"] == "mf" and manifest["seed"] == 3
    assert manifest["config"] == config.model_dump(mode="json")
    assert (manifest["num_users"], manifest["num_items"]) == (60, 40)
    assert manifest["train_positives"] == 60 * 8 and manifest["examples_per_epoch"] == 60 * 8 * 5
    assert manifest["factor_dim"] == 4 + 2 and manifest["score_activation"] == "sigmoid"
    assert len(manifest["history"]["loss"]) == 3
    assert manifest["history"]["loss"][-1] < manifest["history"]["loss"][0]
    assert set(manifest["versions"]) >= {"python", "tensorflow", "keras", "numpy"}
    assert manifest["data_fingerprint"].startswith("sha256:") and manifest["train_seconds"] > 0
    assert sum("epoch" in r.getMessage() and "loss" in r.getMessage() for r in caplog.records) == 3

    assert pq.read_metadata(layout.user_factors).num_rows == 60
    users = read_factors(layout.user_factors, "user_idx")
    items = read_factors(layout.item_factors, "item_idx")
    assert users.shape == (60, 6) and items.shape == (40, 6)
    # The contract: act(user_factors · item_factors) is what the saved model predicts.
    model = keras.saving.load_model(layout.model_file)
    uu, ii = np.meshgrid(np.arange(60), np.arange(40), indexing="ij")
    x = {"user_idx": uu.ravel().astype(np.int32), "item_idx": ii.ravel().astype(np.int32)}
    predicted = keras.ops.convert_to_numpy(model(x, training=False)).reshape(60, 40)
    np.testing.assert_allclose(1 / (1 + np.exp(-(users.astype(np.float64) @ items.T))), predicted, atol=1e-5)


def test_same_seed_same_model(tmp_path: Path) -> None:
    from recbatch.train import run_train
    from recbatch.training.artifacts import read_factors

    results = []
    for run in ("a", "b"):
        layout = write_prepared(tmp_path / run)
        manifest = run_train(tiny_config(tmp_path / run, "seed", epochs=2), layout)
        results.append((manifest, read_factors(layout.item_factors, "item_idx")))
    (m1, f1), (m2, f2) = results
    assert m1["data_fingerprint"] == m2["data_fingerprint"]
    assert m1["history"]["loss"] == pytest.approx(m2["history"]["loss"], rel=1e-6)
    np.testing.assert_allclose(f1, f2, atol=1e-6)
