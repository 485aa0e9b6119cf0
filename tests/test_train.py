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
    from recbatch.train.sampling import NegativeSampler

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


def test_grouped_epochs_put_each_positive_with_its_own_negatives() -> None:
    from recbatch.train.sampling import NegativeSampler

    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, 300).astype(np.int32)
    items = rng.integers(0, 30, 300).astype(np.int32)
    keys = set(zip(users.tolist(), items.tolist(), strict=True))
    weights = rng.random(300).astype(np.float32) + 1.0
    sampler = NegativeSampler(users, items, num_items=30, negatives=4, rng=np.random.default_rng(0))
    u, i, y, w = (a.reshape(-1, 5) for a in sampler.sample(weights, grouped=True))
    assert (u == u[:, :1]).all()  # one user per group of 1 + 4
    assert (y[:, 0] == 1).all() and (y[:, 1:] == 0).all()
    assert sorted(zip(u[:, 0].tolist(), i[:, 0].tolist(), w[:, 0].tolist(), strict=True)) == sorted(
        zip(users.tolist(), items.tolist(), weights.tolist(), strict=True)
    )
    assert (w[:, 1:] == 1).all()
    assert (
        not {(a, b) for a, b in zip(u[:, 1:].ravel().tolist(), i[:, 1:].ravel().tolist(), strict=True)} & keys
    )
    assert not np.array_equal(u[:, 0], users)  # the positives are shuffled
    bu, bp, bn = (a.reshape(-1, 4) for a in sampler.pairs(grouped=True))
    assert (bu == bu[:, :1]).all() and (bp == bp[:, :1]).all()
    assert not {(a, b) for a, b in zip(bu.ravel().tolist(), bn.ravel().tolist(), strict=True)} & keys


def test_negative_sampler_is_uniform_over_unseen_items() -> None:
    from recbatch.train.sampling import NegativeSampler

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

    from recbatch.artifacts import read_factors, write_factors

    matrix = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    write_factors(tmp_path / "f.parquet", "item_idx", matrix)
    schema = pq.read_schema(tmp_path / "f.parquet")
    assert schema.field("item_idx").type == pa.int32()
    assert schema.field("factors").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(read_factors(tmp_path / "f.parquet", "item_idx"), matrix)
    assert [p.name for p in tmp_path.iterdir()] == ["f.parquet"]  # no temporary left behind


def test_data_fingerprint_ignores_file_names_not_content(tmp_path: Path) -> None:
    from recbatch.artifacts import data_fingerprint

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
    from recbatch.train.stage import run_train

    layout = RunLayout(workdir=tmp_path, date="2026-01-01")
    with pytest.raises(DataError, match="run `recbatch prepare` first"):
        run_train(tiny_config(tmp_path, "mf"), layout)


def test_index_outside_vocabulary_is_a_data_error(tmp_path: Path) -> None:
    from recbatch.train.stage import run_train

    tr_u, tr_i, te_u, te_i, n_users, _ = clustered_data()
    layout = write_prepared(tmp_path, (tr_u, tr_i, te_u, te_i, n_users, int(tr_i.max())))  # one item short
    with pytest.raises(DataError, match="item_idx outside"):
        run_train(tiny_config(tmp_path, "mf"), layout)


# ---------------------------------------------------------------- real training


def test_run_train_writes_consistent_artifacts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import keras
    import pyarrow.parquet as pq

    from recbatch.train.stage import run_train

    layout = write_prepared(tmp_path)
    config = tiny_config(tmp_path, "mf", epochs=3, validation=False)
    with caplog.at_level(logging.INFO, logger="recbatch.train"):
        manifest = run_train(config, layout)

    on_disk = json.loads(layout.model_manifest.read_text())
    assert on_disk == manifest
    assert manifest["model"] == "mf" and manifest["seed"] == 3
    assert manifest["config"] == config.model_dump(mode="json")
    assert (manifest["num_users"], manifest["num_items"]) == (60, 40)
    assert manifest["train_positives"] == 60 * 8 and manifest["examples_per_epoch"] == 60 * 8 * 5
    assert manifest["factor_dim"] == 4 + 2 and manifest["score_activation"] == "sigmoid"
    assert manifest["scoring"] == "dot" and manifest["loss"] == "bce" and manifest["best_epoch"] == 3
    assert len(manifest["history"]["loss"]) == 3
    assert manifest["history"]["loss"][-1] < manifest["history"]["loss"][0]
    assert set(manifest["versions"]) >= {"python", "tensorflow", "keras", "numpy"}
    assert manifest["data_fingerprint"].startswith("sha256:") and manifest["train_seconds"] > 0
    assert sum("epoch" in r.getMessage() and "loss" in r.getMessage() for r in caplog.records) == 3

    assert pq.read_metadata(layout.user_factors).num_rows == 60
    users, items, model, x = _artifacts_and_all_pairs(layout)
    assert users.shape == (60, 6) and items.shape == (40, 6)
    # The contract: act(user_factors · item_factors) is what the saved model predicts.
    predicted = keras.ops.convert_to_numpy(model(x, training=False)).reshape(60, 40)
    np.testing.assert_allclose(1 / (1 + np.exp(-(users.astype(np.float64) @ items.T))), predicted, atol=1e-5)


def test_same_seed_same_model(tmp_path: Path) -> None:
    from recbatch.artifacts import read_factors
    from recbatch.train.stage import run_train

    results = []
    for run in ("a", "b"):
        layout = write_prepared(tmp_path / run)
        manifest = run_train(tiny_config(tmp_path / run, "seed", epochs=2), layout)
        results.append((manifest, read_factors(layout.item_factors, "item_idx")))
    (m1, f1), (m2, f2) = results
    assert m1["data_fingerprint"] == m2["data_fingerprint"]
    assert m1["history"]["loss"] == pytest.approx(m2["history"]["loss"], rel=1e-6)
    np.testing.assert_allclose(f1, f2, atol=1e-6)


def test_popularity_negatives_follow_count_to_the_alpha() -> None:
    from recbatch.train.sampling import NegativeSampler, popularity_weights

    items = np.array([0] * 9 + [1] * 4 + [2], np.int32)
    probs = popularity_weights(items, 4, alpha=0.5)  # counts 9, 4, 1, (0 -> 1)
    np.testing.assert_allclose(probs, np.array([3, 2, 1, 1]) / 7)
    sampler = NegativeSampler(
        np.array([0], np.int32), np.array([3], np.int32), 4, 70_000, np.random.default_rng(2), probs
    )
    _, neg_items, labels = sampler.sample()
    counts = np.bincount(neg_items[labels == 0], minlength=4)
    assert counts[3] == 0  # the user's positive is never a negative
    np.testing.assert_allclose(counts[:3] / 70_000, [0.5, 1 / 3, 1 / 6], atol=0.01)
    users, pos, neg = sampler.pairs()
    assert len(users) == 70_000 and (pos == 3).all() and not (neg == 3).any()


def test_validation_split_holds_out_each_users_latest_train_item() -> None:
    from recbatch.core.validation import carve_validation

    users = np.array([0, 0, 0, 1, 2, 2], np.int32)
    items = np.array([5, 6, 7, 1, 3, 4], np.int32)
    ts = np.array([30, 10, 30, 5, 1, 2], np.int64)
    split = carve_validation(users, items, ts, num_users=3)
    # user 0: items 5 and 7 tie at t=30, the higher item index goes; user 1 keeps its only item.
    assert sorted(zip(split.val_users.tolist(), split.val_items.tolist(), strict=True)) == [(0, 7), (2, 4)]
    assert sorted(zip(split.fit_users.tolist(), split.fit_items.tolist(), strict=True)) == [
        (0, 5),
        (0, 6),
        (1, 1),
        (2, 3),
    ]


@pytest.mark.parametrize(
    ("model", "loss"),
    [("mf", "bpr"), ("two_tower", "softmax"), ("gmf", "bce"), ("neumf", "bce")],
)
def test_every_loss_learns_the_clusters(tmp_path: Path, model: str, loss: str) -> None:
    """Validation NDCG of the carved split must beat a popularity ranking by a margin."""
    from recbatch.core.ranking import DotScorer
    from recbatch.core.validation import carve_validation, scorer_ndcg
    from recbatch.evaluate.stage import item_popularity
    from recbatch.train.loop import fit

    tr_u, tr_i, _, _, n_users, n_items = clustered_data()
    ts = np.arange(len(tr_u), dtype=np.int64)
    cfg = tiny_config(tmp_path, model, loss=loss, epochs=8, patience=8, refit=False, batch_size=32).train
    result = fit(cfg, n_users, n_items, tr_u, tr_i, ts)
    split = carve_validation(tr_u, tr_i, ts, n_users)

    pop = item_popularity(split.fit_items, n_items)[:, None]
    popular = scorer_ndcg(DotScorer(np.ones((n_users, 1), np.float32), pop), split, n_users, 10)
    assert result.validation_ndcg == pytest.approx(max(result.history["val_ndcg"]))
    assert result.validation_ndcg >= popular + 0.1, (result.validation_ndcg, popular)


def test_early_stopping_and_refit(tmp_path: Path) -> None:
    from recbatch.train.loop import fit

    tr_u, tr_i, _, _, n_users, n_items = clustered_data()
    ts = np.arange(len(tr_u), dtype=np.int64)
    # A learning rate this high overfits in a few epochs: validation NDCG peaks early.
    cfg = tiny_config(tmp_path, "mf", epochs=30, patience=2, learning_rate=0.3, l2=0.0).train
    result = fit(cfg, n_users, n_items, tr_u, tr_i, ts)
    val = result.history["val_ndcg"]
    assert len(val) < 30 and len(val) == result.best_epoch + 2
    assert val[result.best_epoch - 1] == max(val) == result.validation_ndcg
    assert len(result.history["refit_loss"]) == result.best_epoch


def test_network_model_artifacts_score_like_the_model(tmp_path: Path) -> None:
    import keras

    from recbatch.artifacts import load_network
    from recbatch.core.network import network_logits
    from recbatch.train.stage import run_train

    layout = write_prepared(tmp_path)
    manifest = run_train(tiny_config(tmp_path, "neumf", epochs=2, mlp_layers=[8]), layout)
    assert manifest["scoring"] == "network" and manifest["network_weights"] == "network.npz"
    users, items, model, x = _artifacts_and_all_pairs(layout)
    assert users.shape == (60, 8) and items.shape == (40, 8)
    expected = keras.ops.convert_to_numpy(model.logit(x)).reshape(60, 40)
    got = network_logits(load_network(layout.model_dir / "network.npz"), users, items)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_softmax_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    import tensorflow as tf

    from recbatch.train.loop import fit

    tf.config.experimental.enable_op_determinism()
    tr_u, tr_i, _, _, n_users, n_items = clustered_data()
    ts = np.arange(len(tr_u), dtype=np.int64)
    cfg = tiny_config(tmp_path, "mf", loss="softmax", epochs=3, batch_size=32).train
    first, second = (fit(cfg, n_users, n_items, tr_u, tr_i, ts) for _ in range(2))
    assert first.history == second.history
    np.testing.assert_array_equal(first.model.scoring_factors()[1], second.model.scoring_factors()[1])


def test_neumf_pretraining_path_trains_gmf_and_mlp_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from recbatch.train.loop import fit

    tr_u, tr_i, _, _, n_users, n_items = clustered_data()
    ts = np.arange(len(tr_u), dtype=np.int64)
    cfg = tiny_config(tmp_path, "neumf", epochs=2, pretrain=True, refit=False, mlp_layers=[8]).train
    with caplog.at_level(logging.INFO, logger="recbatch.train"):
        result = fit(cfg, n_users, n_items, tr_u, tr_i, ts)
    trained = {r.getMessage().split(":")[0] for r in caplog.records if "epoch" in r.getMessage()}
    assert trained == {"train gmf", "train mlp", "train neumf"}
    assert result.model.name == "neumf" and len(result.history["val_ndcg"]) == 2


def _artifacts_and_all_pairs(layout):
    """The trained factor matrices, the saved Keras model, and every (user, item) pair as its input."""
    import keras

    from recbatch.artifacts import read_factors

    users = read_factors(layout.user_factors, "user_idx")
    items = read_factors(layout.item_factors, "item_idx")
    model = keras.saving.load_model(layout.model_file)
    uu, ii = np.meshgrid(np.arange(len(users)), np.arange(len(items)), indexing="ij")
    return (
        users,
        items,
        model,
        {"user_idx": uu.ravel().astype(np.int32), "item_idx": ii.ravel().astype(np.int32)},
    )
