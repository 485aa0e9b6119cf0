"""The seed model: the classic Keras example recbatch started from.

User and item embeddings are concatenated, flattened and fed to one sigmoid unit,
trained with binary cross-entropy and Adam. Because the dense layer is linear in the
concatenation, the logit splits into a user part and an item part:

    logit(u, i) = w_u·e_u + w_i·e_i + c = [a_u + c, 1] · [1, b_i]

so the model ranks every user's items the same way (by b_i): it is a learned
popularity baseline, kept as the reference the other models must beat.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from recbatch.config import TrainConfig
from recbatch.models.common import DotModel, compiled

SCORE_ACTIVATION = "sigmoid"


@keras.saving.register_keras_serializable(package="recbatch")
class SeedModel(DotModel):
    """Embedding(user) ⧺ Embedding(item) → Flatten → Dense(1, sigmoid)."""

    config_keys = ("embedding_dim",)

    def __init__(self, num_users: int, num_items: int, embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.embedding_dim = int(embedding_dim)
        self.user_embed = keras.layers.Embedding(self.num_users, self.embedding_dim, name="user_embedding")
        self.item_embed = keras.layers.Embedding(self.num_items, self.embedding_dim, name="item_embedding")
        self.concat = keras.layers.Concatenate(axis=1, name="concat")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.dense = keras.layers.Dense(1, activation="sigmoid", name="output")

    def build(self, input_shape: Any = None) -> None:
        # Weights do not depend on the batch shape, so build them eagerly: a reloaded
        # model then has its variables before the first call, whatever shape it records.
        self.user_embed.build((None,))
        self.item_embed.build((None,))
        self.dense.build((None, 2 * self.embedding_dim))
        self.built = True

    def call(self, inputs: dict[str, Any]) -> Any:
        user = self.user_embed(inputs["user_idx"])
        item = self.item_embed(inputs["item_idx"])
        return self.dense(self.flatten(self.concat([user, item])))

    def user_vectors(self, users: Any, training: bool | None = None) -> Any:
        """[a_u + c, 1]: the user term of the (separable) logit."""
        a = (
            keras.ops.matmul(self.user_embed(users), self.dense.kernel[: self.embedding_dim])
            + self.dense.bias
        )
        return keras.ops.concatenate([a, keras.ops.ones_like(a)], axis=-1)

    def item_vectors(self, items: Any, training: bool | None = None) -> Any:
        """[1, b_i]: the item term of the logit."""
        b = keras.ops.matmul(self.item_embed(items), self.dense.kernel[self.embedding_dim :])
        return keras.ops.concatenate([keras.ops.ones_like(b), b], axis=-1)

    def scoring_factors(self) -> tuple[np.ndarray, np.ndarray, str]:
        """User rows [a_u + c, 1] and item rows [1, b_i]; sigmoid of their dot is the prediction."""
        if not self.built:
            self.build()
        emb_u = keras.ops.convert_to_numpy(self.user_embed.embeddings).astype(np.float64)
        emb_i = keras.ops.convert_to_numpy(self.item_embed.embeddings).astype(np.float64)
        kernel = keras.ops.convert_to_numpy(self.dense.kernel).astype(np.float64)[:, 0]
        bias = float(keras.ops.convert_to_numpy(self.dense.bias)[0])
        d = self.embedding_dim
        a = emb_u @ kernel[:d] + bias
        b = emb_i @ kernel[d:]
        users = np.stack([a, np.ones_like(a)], axis=1).astype(np.float32)
        items = np.stack([np.ones_like(b), b], axis=1).astype(np.float32)
        return users, items, SCORE_ACTIVATION


def build_seed(num_users: int, num_items: int, cfg: TrainConfig) -> SeedModel:
    """A compiled seed model (binary cross-entropy, Adam at cfg.learning_rate)."""
    return compiled(SeedModel(num_users, num_items, cfg.embedding_dim, name="seed"), cfg.learning_rate)


def scoring_factors(model: SeedModel) -> tuple[np.ndarray, np.ndarray, str]:
    """(user_matrix [n_users, 2], item_matrix [n_items, 2], "sigmoid") for a seed model."""
    return model.scoring_factors()
