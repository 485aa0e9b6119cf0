"""Model registry: name -> builder, and the scoring factors of any registered model.

The names must equal `recbatch.config.MODEL_NAMES` (a test checks it); config keeps its
own copy so that validating a config never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from recbatch.config import TrainConfig
from recbatch.models.gmf import build_gmf
from recbatch.models.mf import build_mf
from recbatch.models.mlp import build_mlp
from recbatch.models.neumf import build_neumf
from recbatch.models.seed import build_seed
from recbatch.models.two_tower import build_two_tower

Builder = Callable[[int, int, TrainConfig], keras.Model]

MODELS: dict[str, Builder] = {
    "seed": build_seed,
    "mf": build_mf,
    "gmf": build_gmf,
    "mlp": build_mlp,
    "neumf": build_neumf,
    "two_tower": build_two_tower,
}

# Models whose score is not a dot product: scored through their network (see recbatch.core.network).
NETWORK_MODELS = ("mlp", "neumf")


def names() -> list[str]:
    """Registered model names, in registration order."""
    return list(MODELS)


def build_model(name: str, num_users: int, num_items: int, cfg: TrainConfig) -> keras.Model:
    """Build and compile the model registered under `name` for the given vocabulary sizes."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}") from None
    return builder(num_users, num_items, cfg)


def is_network(model: keras.Model) -> bool:
    """True for models scored through their network (no exact dot-product factors)."""
    return hasattr(model, "network_weights")


def scoring_factors(model: keras.Model) -> tuple[np.ndarray, np.ndarray, str]:
    """(user_matrix, item_matrix, activation) with act(U @ V.T) equal to the model's predictions."""
    factors = getattr(model, "scoring_factors", None)
    if factors is None:
        raise TypeError(
            f"{type(model).__name__} has no dot-product scoring_factors(); "
            "network models export embedding_factors() and network_weights()"
        )
    return factors()
