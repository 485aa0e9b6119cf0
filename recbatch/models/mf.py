"""Matrix factorisation with biases, trained as a binary classifier on positives and negatives.

    p(u, i) = sigmoid(p_u·q_i + b_u + b_i + g)

The L2 penalty (cfg.l2) is applied to the embedding rows in each batch, averaged over the
batch, rather than to the whole embedding matrices at every step: rows of users and items
that are rarely seen are then not shrunk towards zero on every step they take no part in.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from recbatch.config import TrainConfig
from recbatch.models.common import DotModel, compiled

SCORE_ACTIVATION = "sigmoid"


@keras.saving.register_keras_serializable(package="recbatch")
class MFModel(DotModel):
    """Biased matrix factorisation: dot(p_u, q_i) + b_u + b_i + global bias, sigmoid."""

    config_keys = ("embedding_dim", "l2")

    def __init__(
        self, num_users: int, num_items: int, embedding_dim: int, l2: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.embedding_dim = int(embedding_dim)
        self.l2 = float(l2)
        # Small initial factors: the dot starts near zero, so early steps learn the biases.
        init = keras.initializers.RandomNormal(stddev=0.05)
        dim = self.embedding_dim
        self.user_embed = keras.layers.Embedding(
            num_users, dim, embeddings_initializer=init, name="user_factors"
        )
        self.item_embed = keras.layers.Embedding(
            num_items, dim, embeddings_initializer=init, name="item_factors"
        )
        self.user_bias = keras.layers.Embedding(
            num_users, 1, embeddings_initializer="zeros", name="user_bias"
        )
        self.item_bias = keras.layers.Embedding(
            num_items, 1, embeddings_initializer="zeros", name="item_bias"
        )

    def build(self, input_shape: Any = None) -> None:
        # Built eagerly, independent of the batch shape, so a reloaded model has its weights.
        for layer in (self.user_embed, self.item_embed, self.user_bias, self.item_bias):
            layer.build((None,))
        self.global_bias = self.add_weight(shape=(1,), initializer="zeros", name="global_bias")
        self.built = True

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        users, items = inputs["user_idx"], inputs["item_idx"]
        if training and self.l2 > 0.0:
            self.add_loss(self.l2 * keras.ops.mean(self.penalty(users, items)))
        return keras.ops.sigmoid(keras.ops.expand_dims(self.logit(inputs), -1))

    def user_vectors(self, users: Any, training: bool | None = None) -> Any:
        """[p_u, b_u, 1] per user: the user half of the logit's dot product."""
        b = self.user_bias(users)
        return keras.ops.concatenate([self.user_embed(users), b, keras.ops.ones_like(b)], axis=-1)

    def item_vectors(self, items: Any, training: bool | None = None) -> Any:
        """[q_i, 1, b_i + g] per item: the item half of the logit's dot product."""
        b = self.item_bias(items) + self.global_bias
        return keras.ops.concatenate([self.item_embed(items), keras.ops.ones_like(b), b], axis=-1)

    def scoring_factors(self) -> tuple[np.ndarray, np.ndarray, str]:
        """User rows [p_u, b_u, 1] and item rows [q_i, 1, b_i + g]; sigmoid of their dot is the prediction."""
        if not self.built:
            self.build()

        def value(var: Any) -> np.ndarray:
            return keras.ops.convert_to_numpy(var).astype(np.float32)

        p, q = value(self.user_embed.embeddings), value(self.item_embed.embeddings)
        b_u, b_i = value(self.user_bias.embeddings), value(self.item_bias.embeddings)
        g = value(self.global_bias)[0]
        users = np.concatenate([p, b_u, np.ones_like(b_u)], axis=1)
        items = np.concatenate([q, np.ones_like(b_i), b_i + g], axis=1)
        return users, items, SCORE_ACTIVATION


def build_mf(num_users: int, num_items: int, cfg: TrainConfig) -> MFModel:
    """A compiled MF model (binary cross-entropy, Adam at cfg.learning_rate, L2 cfg.l2)."""
    return compiled(MFModel(num_users, num_items, cfg.embedding_dim, l2=cfg.l2, name="mf"), cfg.learning_rate)


def scoring_factors(model: MFModel) -> tuple[np.ndarray, np.ndarray, str]:
    """(user_matrix [n_users, D+2], item_matrix [n_items, D+2], "sigmoid") for an MF model."""
    return model.scoring_factors()
