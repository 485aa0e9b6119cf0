"""The Keras side of a warm start: read an earlier model's weights, and the new model's starting values.

Variables are paired by their path inside the model ("user_factors/embeddings", "mlp_0/kernel"), so
the pairing does not depend on the order Keras lists them in. An Embedding layer whose name says
"user" or "item" is indexed by that vocabulary: its rows are copied through the RowMap, the rest of
the table keeping the new model's seeded initial rows; every other variable must have the same shape
and is copied whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np

from recbatch.storage import Location
from recbatch.train.warm_rows import RowMap, copy_rows


def _key(variable: Any) -> str:
    # The first part of a path is the model's name, which a reloaded model may not keep.
    return variable.path.split("/", 1)[-1]


def load_weights(model_dir: Location) -> dict[str, np.ndarray]:
    """Every variable of the model.keras in `model_dir`, by path (the file is copied to a local temp
    file first: Keras reads local files only)."""
    import keras

    import recbatch.models.registry  # noqa: F401  (registers the model classes for deserialisation)

    with tempfile.TemporaryDirectory(prefix="recbatch-warm-") as tmp:
        local = os.path.join(tmp, "model.keras")
        with (model_dir / "model.keras").open_input() as source, open(local, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        model = keras.saving.load_model(local, compile=False)
    return {_key(v): keras.ops.convert_to_numpy(v) for v in model.weights}


def embedding_sides(model: Any) -> dict[str, str]:
    """{variable key: "user" | "item"} of the model's Embedding tables; ValueError for an unnamed side."""
    import keras

    sides = {}
    for layer in model._flatten_layers(include_self=False):
        if not isinstance(layer, keras.layers.Embedding):
            continue
        named = [side for side in ("user", "item") if side in layer.name]
        if len(named) != 1:
            raise ValueError(f"embedding {layer.name!r} names neither or both of user and item")
        sides[_key(layer.embeddings)] = named[0]
    return sides


def warm_values(
    model: Any, old: dict[str, np.ndarray], users: RowMap, items: RowMap
) -> list[tuple[Any, np.ndarray]] | str:
    """(variable, starting value) for every variable of the freshly built `model`, or why the earlier
    weights `old` do not fit it (nothing is assigned here)."""
    import keras

    try:
        sides = embedding_sides(model)
    except ValueError as exc:
        return str(exc)
    new = {_key(v): v for v in model.weights}
    if set(new) != set(old):
        return f"its variables {sorted(set(old) ^ set(new))} differ from this model's"
    maps = {"user": users, "item": items}
    sizes = {"user": model.num_users, "item": model.num_items}
    values = []
    for key in sorted(new):
        fresh = keras.ops.convert_to_numpy(new[key])
        earlier = old[key]
        side = sides.get(key)
        if side is None and earlier.shape != fresh.shape:
            return f"{key} has shape {earlier.shape}, this model's {fresh.shape}"
        if side is not None:
            rows = maps[side]
            if fresh.shape[0] != sizes[side] or earlier.shape[1:] != fresh.shape[1:]:
                return f"{key} has shape {earlier.shape}, this model's {fresh.shape}"
            if rows.copied and (
                rows.old_rows.max() >= earlier.shape[0] or rows.new_rows.max() >= fresh.shape[0]
            ):
                return f"{key} has {earlier.shape[0]} rows, fewer than its vocabulary indexes"
            values.append((new[key], copy_rows(fresh, earlier, rows)))
        else:
            values.append((new[key], np.array(earlier, copy=True)))
    return values
