"""Keras models: registry, naive references, scoring factors, save -> load round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from recbatch.config import MODEL_NAMES, TrainConfig  # noqa: E402
from recbatch.models import registry  # noqa: E402

N_USERS, N_ITEMS = 5, 7
CFG = TrainConfig(embedding_dim=4, learning_rate=0.05, l2=0.01, seed=1)


def all_pairs() -> dict[str, np.ndarray]:
    users, items = np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij")
    return {"user_idx": users.ravel().astype(np.int32), "item_idx": items.ravel().astype(np.int32)}


_TRAINED: dict[str, keras.Model] = {}


def trained(name: str) -> keras.Model:
    """A tiny model fitted for two epochs on random labels, so every weight (biases too) moved.

    Fitted once per model and shared by the tests of this file (no test changes weights).
    """
    if name not in _TRAINED:
        keras.utils.set_random_seed(CFG.seed)
        model = registry.build_model(name, N_USERS, N_ITEMS, CFG)
        x = all_pairs()
        y = np.random.default_rng(0).integers(0, 2, size=len(x["user_idx"])).astype(np.float32)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        _TRAINED[name] = model
    return _TRAINED[name]


def predict(model: keras.Model, x: dict[str, np.ndarray]) -> np.ndarray:
    """Inference-mode outputs; a direct call avoids tracing a predict function per model."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_registry_names_equal_config_model_names() -> None:
    assert tuple(registry.names()) == MODEL_NAMES
    assert set(registry.MODELS) == set(MODEL_NAMES)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="registered models: seed, mf"):
        registry.build_model("nope", 3, 3, CFG)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scoring_factors_reproduce_predictions_on_all_pairs(name: str) -> None:
    model = trained(name)
    x = all_pairs()
    predicted = predict(model, x).reshape(N_USERS, N_ITEMS)
    users, items, activation = registry.scoring_factors(model)
    assert activation == "sigmoid"
    assert users.shape[0] == N_USERS and items.shape[0] == N_ITEMS and users.shape[1] == items.shape[1]
    assert users.dtype == np.float32 and items.dtype == np.float32
    np.testing.assert_allclose(sigmoid(users.astype(np.float64) @ items.T), predicted, atol=1e-5)
    # The factors must carry more than a constant: predictions differ across pairs.
    assert predicted.std() > 1e-3


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_gives_identical_predictions(name: str, tmp_path: Path) -> None:
    model = trained(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    x = all_pairs()
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    u1, v1, _ = registry.scoring_factors(model)
    u2, v2, _ = registry.scoring_factors(loaded)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(v1, v2)


def test_seed_is_the_classic_concat_dense_network() -> None:
    model = trained("seed")
    emb_u = model.user_embed.embeddings.numpy()
    emb_i = model.item_embed.embeddings.numpy()
    kernel, bias = model.dense.kernel.numpy(), model.dense.bias.numpy()
    x = all_pairs()
    concat = np.concatenate([emb_u[x["user_idx"]], emb_i[x["item_idx"]]], axis=1)
    expected = sigmoid(concat @ kernel + bias)
    np.testing.assert_allclose(predict(model, x), expected, atol=1e-6)
    assert emb_u.shape == (N_USERS, CFG.embedding_dim)


def test_mf_is_biased_dot_product_with_batch_l2() -> None:
    model = trained("mf")
    p, q = model.user_embed.embeddings.numpy(), model.item_embed.embeddings.numpy()
    b_u, b_i = model.user_bias.embeddings.numpy()[:, 0], model.item_bias.embeddings.numpy()[:, 0]
    g = model.global_bias.numpy()[0]
    x = all_pairs()
    u, i = x["user_idx"], x["item_idx"]
    expected = sigmoid((p[u] * q[i]).sum(axis=1) + b_u[u] + b_i[i] + g)
    np.testing.assert_allclose(predict(model, x)[:, 0], expected, atol=1e-6)
    # In training the L2 penalty is l2 * mean over the batch of |p_u|^2 + |q_i|^2.
    model(x, training=True)
    penalty = CFG.l2 * ((p[u] ** 2).sum(axis=1) + (q[i] ** 2).sum(axis=1)).mean()
    assert len(model.losses) == 1
    assert float(model.losses[0]) == pytest.approx(penalty, rel=1e-5)
    model(x, training=False)
    assert model.losses == []
