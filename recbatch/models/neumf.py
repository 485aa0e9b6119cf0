"""NeuMF (He et al., "Neural Collaborative Filtering", WWW 2017): a GMF branch and an MLP
branch with their own embeddings, joined by one output unit.

    logit(u, i) = out · [p_u ⊙ q_i ⧺ MLP(x_u ⧺ y_i)] + b

Not a dot product: scoring uses the network (manifest "scoring": "network"); the model
exports its embedding rows and dense weights (`embedding_factors`, `network_weights`),
from which `recbatch.core.network` computes exact scores without TensorFlow.
Optional pre-training (`train.pretrain = true`): GMF and MLP are trained first and copied
in, the output unit weighted 0.5 / 0.5 as in the paper (`load_pretrained`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from recbatch.config import TrainConfig
from recbatch.core.network import NetworkWeights
from recbatch.models.common import (
    RecModel,
    apply_tower,
    build_tower,
    compiled,
    dense_tower,
    embedding,
    row_norms,
    to_numpy,
)


@keras.saving.register_keras_serializable(package="recbatch")
class NeuMFModel(RecModel):
    """GMF branch (gmf_dim) ⧺ MLP branch (mlp_dim embeddings, mlp_layers) → Dense(1) → sigmoid.

    gmf_dim = 0 leaves the GMF branch out (that is the MLP model of the paper).
    """

    config_keys = ("gmf_dim", "mlp_dim", "mlp_layers")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        gmf_dim: int,
        mlp_dim: int,
        mlp_layers: list[int] | tuple[int, ...] = (64, 32, 16),
        **kwargs: Any,
    ) -> None:
        super().__init__(num_users, num_items, **kwargs)
        self.gmf_dim = int(gmf_dim)
        self.mlp_dim = int(mlp_dim)
        self.mlp_layers = [int(n) for n in mlp_layers]
        if self.gmf_dim:
            self.gmf_user = embedding(self.num_users, self.gmf_dim, "gmf_user")
            self.gmf_item = embedding(self.num_items, self.gmf_dim, "gmf_item")
        self.mlp_user = embedding(self.num_users, self.mlp_dim, "mlp_user")
        self.mlp_item = embedding(self.num_items, self.mlp_dim, "mlp_item")
        self.tower = dense_tower(self.mlp_layers, "mlp")
        self.out = keras.layers.Dense(1, name="out")

    def build(self, input_shape: Any = None) -> None:
        for layer in self._embeddings():
            layer.build((None,))
        width = build_tower(self.tower, 2 * self.mlp_dim)
        self.out.build((None, self.gmf_dim + width))
        self.built = True

    def _embeddings(self) -> list[keras.layers.Embedding]:
        gmf = [self.gmf_user, self.gmf_item] if self.gmf_dim else []
        return [*gmf, self.mlp_user, self.mlp_item]

    def logit(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        users, items = inputs["user_idx"], inputs["item_idx"]
        parts = []
        if self.gmf_dim:
            parts.append(self.gmf_user(users) * self.gmf_item(items))
        x = keras.ops.concatenate([self.mlp_user(users), self.mlp_item(items)], axis=-1)
        parts.append(apply_tower(self.tower, x))
        joined = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=-1)
        return keras.ops.squeeze(self.out(joined), -1)

    def penalty(self, users: Any, items: Any) -> Any:
        rows = [self.mlp_user(users), self.mlp_item(items)]
        if self.gmf_dim:
            rows += [self.gmf_user(users), self.gmf_item(items)]
        return row_norms(*rows)

    def embedding_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """User rows [p_gmf ⧺ p_mlp] and item rows [q_gmf ⧺ q_mlp] (see recbatch.core.network)."""
        users = [to_numpy(self.mlp_user.embeddings)]
        items = [to_numpy(self.mlp_item.embeddings)]
        if self.gmf_dim:
            users.insert(0, to_numpy(self.gmf_user.embeddings))
            items.insert(0, to_numpy(self.gmf_item.embeddings))
        return np.concatenate(users, axis=1), np.concatenate(items, axis=1)

    def network_weights(self) -> NetworkWeights:
        """The dense weights, in the typed form the numpy kernels read (`recbatch.core.network`)."""
        return NetworkWeights(
            gmf_dim=self.gmf_dim,
            kernels=tuple(to_numpy(layer.kernel) for layer in self.tower),
            biases=tuple(to_numpy(layer.bias) for layer in self.tower),
            out_w=to_numpy(self.out.kernel)[:, 0].copy(),
            out_b=float(to_numpy(self.out.bias)[0]),
        )

    def load_pretrained(self, gmf: keras.Model, mlp: NeuMFModel, alpha: float = 0.5) -> None:
        """Copy a trained GMF model's and MLP model's weights in; the output is α·GMF + (1-α)·MLP."""
        self.gmf_user.embeddings.assign(gmf.user_embed.embeddings)
        self.gmf_item.embeddings.assign(gmf.item_embed.embeddings)
        self.mlp_user.embeddings.assign(mlp.mlp_user.embeddings)
        self.mlp_item.embeddings.assign(mlp.mlp_item.embeddings)
        for mine, theirs in zip(self.tower, mlp.tower, strict=True):
            mine.kernel.assign(theirs.kernel)
            mine.bias.assign(theirs.bias)
        kernel = keras.ops.concatenate([alpha * gmf.out.kernel, (1.0 - alpha) * mlp.out.kernel], axis=0)
        self.out.kernel.assign(kernel)
        self.out.bias.assign(alpha * gmf.out.bias + (1.0 - alpha) * mlp.out.bias)


def build_neumf(num_users: int, num_items: int, cfg: TrainConfig) -> NeuMFModel:
    """A compiled NeuMF model: GMF and MLP branches both of cfg.embedding_dim, cfg.mlp_layers."""
    model = NeuMFModel(
        num_users, num_items, cfg.embedding_dim, cfg.embedding_dim, cfg.mlp_layers, name="neumf"
    )
    return compiled(model, cfg.learning_rate)
