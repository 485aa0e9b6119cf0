"""Keras models: registry, naive references, scoring factors, save -> load round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from recbatch.config import MODEL_NAMES, TrainConfig  # noqa: E402
from recbatch.models import registry  # noqa: E402

N_USERS, N_ITEMS = 5, 7
CFG = TrainConfig(
    embedding_dim=4, learning_rate=0.05, l2=0.01, seed=1, mlp_layers=[8, 4], tower_layers=[6, 3]
)
NETWORK = ("mlp", "neumf")
DOT = tuple(m for m in MODEL_NAMES if m not in NETWORK)


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


@pytest.mark.parametrize("name", DOT)
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
    if name in NETWORK:
        for key, value in model.network_weights().to_arrays().items():
            np.testing.assert_array_equal(loaded.network_weights().to_arrays()[key], value)
        return
    u1, v1, _ = registry.scoring_factors(model)
    u2, v2, _ = registry.scoring_factors(loaded)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(v1, v2)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logit_is_the_pre_sigmoid_output_and_penalty_is_batch_l2(name: str) -> None:
    model = trained(name)
    x = all_pairs()
    logits = keras.ops.convert_to_numpy(model.logit(x))
    assert logits.shape == (N_USERS * N_ITEMS,)
    np.testing.assert_allclose(sigmoid(logits.astype(np.float64)), predict(model, x)[:, 0], atol=1e-6)
    penalty = keras.ops.convert_to_numpy(model.penalty(x["user_idx"], x["item_idx"]))
    assert penalty.shape == (N_USERS * N_ITEMS,) and (penalty > 0).all()


@pytest.mark.parametrize("name", NETWORK)
def test_network_models_score_exactly_in_numpy(name: str) -> None:
    """The exported embedding rows and dense weights reproduce the Keras logits without TensorFlow."""
    from recbatch.core.network import network_logits

    model = trained(name)
    with pytest.raises(TypeError, match="no dot-product"):
        registry.scoring_factors(model)
    assert registry.is_network(model)
    users, items = model.embedding_factors()
    dim = CFG.embedding_dim * (2 if name == "neumf" else 1)
    assert users.shape == (N_USERS, dim) and items.shape == (N_ITEMS, dim)
    expected = keras.ops.convert_to_numpy(model.logit(all_pairs())).reshape(N_USERS, N_ITEMS)
    got = network_logits(model.network_weights(), users, items)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected.std() > 1e-3
    # A sub-block of users against a subset of items gives the same numbers.
    np.testing.assert_allclose(
        network_logits(model.network_weights(), users[1:3], items[2:5]), got[1:3, 2:5], atol=1e-6
    )


def test_gmf_is_weighted_elementwise_product() -> None:
    model = trained("gmf")
    p, q = model.user_embed.embeddings.numpy(), model.item_embed.embeddings.numpy()
    h, b = model.out.kernel.numpy()[:, 0], model.out.bias.numpy()[0]
    x = all_pairs()
    u, i = x["user_idx"], x["item_idx"]
    np.testing.assert_allclose(predict(model, x)[:, 0], sigmoid((p[u] * q[i] * h).sum(axis=1) + b), atol=1e-6)


def test_two_tower_towers_apply_relu_then_a_linear_layer() -> None:
    model = trained("two_tower")
    assert model.tower_layers == [6, 3]

    def tower(emb, layers):
        x = emb
        for n, layer in enumerate(layers):
            x = x @ layer.kernel.numpy() + layer.bias.numpy()
            x = x if n == len(layers) - 1 else np.maximum(x, 0)
        return x

    users = tower(model.user_embed.embeddings.numpy(), model.user_tower)
    items = tower(model.item_embed.embeddings.numpy(), model.item_tower)
    expected = sigmoid(users @ items.T)
    np.testing.assert_allclose(predict(model, all_pairs()).reshape(N_USERS, N_ITEMS), expected, atol=1e-5)


def test_neumf_pretraining_copies_gmf_and_mlp_and_halves_the_output() -> None:
    gmf, mlp = trained("gmf"), trained("mlp")
    neumf = registry.build_model("neumf", N_USERS, N_ITEMS, CFG)
    neumf.load_pretrained(gmf, mlp, alpha=0.5)
    x = all_pairs()
    gmf_logit = keras.ops.convert_to_numpy(gmf.logit(x))
    mlp_logit = keras.ops.convert_to_numpy(mlp.logit(x))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(neumf.logit(x)), 0.5 * gmf_logit + 0.5 * mlp_logit, atol=1e-5
    )


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
