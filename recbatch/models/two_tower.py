"""Two towers: a user tower and an item tower (embedding, then optional dense layers), whose
output vectors meet in a dot product. Meant for in-batch sampled softmax with logQ
correction (`train.loss = "softmax"`, Yi et al., RecSys 2019), but trains with any loss.

    logit(u, i) = tower_u(e_u) · tower_i(e_i)

Towers run once per user and once per item at export, so scoring stays one matrix multiply.
"""

from __future__ import annotations

from typing import Any

import keras

from recbatch.config import TrainConfig
from recbatch.models.common import (
    DotModel,
    apply_tower,
    build_tower,
    compiled,
    dense_tower,
    embedding,
)


@keras.saving.register_keras_serializable(package="recbatch")
class TwoTowerModel(DotModel):
    """Embedding → Dense(ReLU)… → Dense(linear) per side; the logit is their dot product."""

    config_keys = ("embedding_dim", "tower_layers")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int,
        tower_layers: list[int] | tuple[int, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.embedding_dim = int(embedding_dim)
        self.tower_layers = [int(n) for n in tower_layers]
        self.user_embed = embedding(self.num_users, self.embedding_dim, "user_embedding")
        self.item_embed = embedding(self.num_items, self.embedding_dim, "item_embedding")
        self.user_tower = dense_tower(self.tower_layers, "user_tower", last_linear=True)
        self.item_tower = dense_tower(self.tower_layers, "item_tower", last_linear=True)

    def build(self, input_shape: Any = None) -> None:
        self.user_embed.build((None,))
        self.item_embed.build((None,))
        build_tower(self.user_tower, self.embedding_dim)
        build_tower(self.item_tower, self.embedding_dim)
        self.built = True

    def user_vectors(self, users: Any, training: bool | None = None) -> Any:
        return apply_tower(self.user_tower, self.user_embed(users))

    def item_vectors(self, items: Any, training: bool | None = None) -> Any:
        return apply_tower(self.item_tower, self.item_embed(items))


def build_two_tower(num_users: int, num_items: int, cfg: TrainConfig) -> TwoTowerModel:
    """A compiled two-tower model (binary cross-entropy for `fit`; the trainer picks cfg.loss)."""
    return compiled(
        TwoTowerModel(num_users, num_items, cfg.embedding_dim, cfg.tower_layers, name="two_tower"),
        cfg.learning_rate,
    )
