"""The MLP model of He et al. (WWW 2017): user and item embeddings concatenated, then a ReLU
tower and one output unit. It is NeuMF without the GMF branch (`NeuMFModel(gmf_dim=0)`),
scored through the network (manifest "scoring": "network").
"""

from __future__ import annotations

from recbatch.config import TrainConfig
from recbatch.models.common import compiled
from recbatch.models.neumf import NeuMFModel


def build_mlp(num_users: int, num_items: int, cfg: TrainConfig) -> NeuMFModel:
    """A compiled MLP model: cfg.embedding_dim per side, cfg.mlp_layers, one sigmoid output."""
    return compiled(
        NeuMFModel(num_users, num_items, 0, cfg.embedding_dim, cfg.mlp_layers, name="mlp"), cfg.learning_rate
    )
