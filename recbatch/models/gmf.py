"""Generalised matrix factorisation (GMF), the first model of He et al., "Neural Collaborative
Filtering" (WWW 2017): the element-wise product of user and item embeddings, weighted.

    logit(u, i) = h·(p_u ⊙ q_i) + b

It is still a dot product, so it exports scoring factors: user [p_u ⊙ h, 1], item [q_i, b].
"""

from __future__ import annotations

from typing import Any

import keras

from recbatch.config import TrainConfig
from recbatch.models.common import DotModel, compiled, embedding


@keras.saving.register_keras_serializable(package="recbatch")
class GMFModel(DotModel):
    """Embedding(user) ⊙ Embedding(item) → Dense(1) → sigmoid."""

    config_keys = ("embedding_dim",)

    def __init__(self, num_users: int, num_items: int, embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.embedding_dim = int(embedding_dim)
        self.user_embed = embedding(self.num_users, self.embedding_dim, "gmf_user")
        self.item_embed = embedding(self.num_items, self.embedding_dim, "gmf_item")
        self.out = keras.layers.Dense(1, name="gmf_out", kernel_initializer="ones")

    def build(self, input_shape: Any = None) -> None:
        self.user_embed.build((None,))
        self.item_embed.build((None,))
        self.out.build((None, self.embedding_dim))
        self.built = True

    def user_vectors(self, users: Any, training: bool | None = None) -> Any:
        """[p_u ⊙ h, 1]."""
        weighted = self.user_embed(users) * keras.ops.reshape(self.out.kernel, (1, -1))
        return keras.ops.concatenate([weighted, keras.ops.ones_like(weighted[:, :1])], axis=-1)

    def item_vectors(self, items: Any, training: bool | None = None) -> Any:
        """[q_i, b]."""
        q = self.item_embed(items)
        return keras.ops.concatenate([q, keras.ops.ones_like(q[:, :1]) * self.out.bias], axis=-1)

    def logit(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        p = self.user_embed(inputs["user_idx"])
        q = self.item_embed(inputs["item_idx"])
        return keras.ops.squeeze(self.out(p * q), -1)


def build_gmf(num_users: int, num_items: int, cfg: TrainConfig) -> GMFModel:
    """A compiled GMF model (binary cross-entropy, Adam at cfg.learning_rate)."""
    return compiled(GMFModel(num_users, num_items, cfg.embedding_dim, name="gmf"), cfg.learning_rate)
