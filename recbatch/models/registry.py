"""Model registry: name -> builder, and the scoring factors of any registered model.

The names must equal `recbatch.config.MODEL_NAMES` (a test checks it); config keeps its
own copy so that validating a config never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from recbatch.config import TrainConfig
from recbatch.models.mf import build_mf
from recbatch.models.seed import build_seed

Builder = Callable[[int, int, TrainConfig], keras.Model]

MODELS: dict[str, Builder] = {
    "seed": build_seed,
    "mf": build_mf,
}


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


def scoring_factors(model: keras.Model) -> tuple[np.ndarray, np.ndarray, str]:
    """(user_matrix, item_matrix, activation) with act(U @ V.T) equal to the model's predictions."""
    factors = getattr(model, "scoring_factors", None)
    if factors is None:
        raise TypeError(f"{type(model).__name__} is not a recbatch model (it has no scoring_factors())")
    return factors()
