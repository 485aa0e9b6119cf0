"""Pieces shared by the models: L2 of a batch's embedding rows, dense towers, numpy export.

Every model in this package offers the same small interface to the trainer and evaluator:

- ``logit(inputs, training)``: the raw score, shape (batch,); ``call`` is its sigmoid.
- ``penalty(users, items)``: per-example sum of squares of the embedding rows it used, so
  the trainer applies ``l2 * mean(penalty)`` whatever the loss.
- dot-product models also offer ``user_vectors(users)`` / ``item_vectors(items)`` with
  ``logit = dot(user_vectors, item_vectors)`` (sampled softmax needs them) and
  ``scoring_factors()``; network models (mlp, neumf) offer ``embedding_factors()`` and
  ``score_block(user_rows, item_rows)`` instead (see `recbatch.models.network`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class RecModel(keras.Model):
    """What every recbatch model shares: its catalogue sizes, a config round trip through
    `config_keys` (the constructor arguments beyond the sizes), and `call` = sigmoid(logit).
    """

    config_keys: tuple[str, ...] = ()

    def __init__(self, num_users: int, num_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    def logit(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        """The raw score of each (user_idx, item_idx) pair, shape (batch,)."""
        raise NotImplementedError

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        return keras.ops.sigmoid(keras.ops.expand_dims(self.logit(inputs, training=training), -1))

    def penalty(self, users: Any, items: Any) -> Any:
        """|e_u|^2 + |e_i|^2 per example, over the models' `user_embed` / `item_embed` tables."""
        return row_norms(self.user_embed(users), self.item_embed(items))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_users=self.num_users, num_items=self.num_items)
        for key in self.config_keys:
            value = getattr(self, key)
            config[key] = list(value) if isinstance(value, list | tuple) else value
        return config


class DotModel(RecModel):
    """A model whose logit is dot(user_vectors(u), item_vectors(i)): scored by its factor tables."""

    score_activation = "sigmoid"

    def user_vectors(self, users: Any, training: bool | None = None) -> Any:
        raise NotImplementedError

    def item_vectors(self, items: Any, training: bool | None = None) -> Any:
        raise NotImplementedError

    def logit(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        u = self.user_vectors(inputs["user_idx"])
        v = self.item_vectors(inputs["item_idx"])
        return keras.ops.sum(u * v, axis=-1)

    def scoring_factors(self) -> tuple[np.ndarray, np.ndarray, str]:
        """user_vectors of every user and item_vectors of every item (float32), and the activation;
        activation(dot) of their rows is the model's prediction."""
        users = to_numpy(self.user_vectors(all_indices(self.num_users)))
        items = to_numpy(self.item_vectors(all_indices(self.num_items)))
        return users, items, self.score_activation


def compiled(model: keras.Model, learning_rate: float) -> keras.Model:
    """The model built eagerly and compiled with Adam and binary cross-entropy (the trainer's
    own loop applies the configured loss; compile keeps `fit`/`evaluate` usable)."""
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    return model


def row_norms(*rows: Any) -> Any:
    """Sum over the last axis of squares, added up over the given (batch, dim) tensors."""
    total = 0.0
    for r in rows:
        total = total + keras.ops.sum(keras.ops.square(r), axis=-1)
    return total


def to_numpy(var: Any) -> np.ndarray:
    """A variable or tensor as a float32 numpy array."""
    return keras.ops.convert_to_numpy(var).astype(np.float32)


def embedding(rows: int, dim: int, name: str, stddev: float = 0.05) -> keras.layers.Embedding:
    """An embedding table with small normal initial rows (the dot starts near zero)."""
    init = keras.initializers.RandomNormal(stddev=stddev)
    return keras.layers.Embedding(rows, dim, embeddings_initializer=init, name=name)


def dense_tower(sizes: list[int], name: str, last_linear: bool = False) -> list[keras.layers.Dense]:
    """ReLU dense layers of the given widths (the last one linear when `last_linear`)."""
    layers = []
    for n, width in enumerate(sizes):
        linear = last_linear and n == len(sizes) - 1
        layers.append(keras.layers.Dense(width, activation=None if linear else "relu", name=f"{name}_{n}"))
    return layers


def build_tower(layers: list[keras.layers.Dense], input_dim: int) -> int:
    """Build the layers eagerly for `input_dim` inputs; returns the output width."""
    width = input_dim
    for layer in layers:
        layer.build((None, width))
        width = layer.units
    return width


def apply_tower(layers: list[keras.layers.Dense], x: Any) -> Any:
    for layer in layers:
        x = layer(x)
    return x


def all_indices(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int32)
