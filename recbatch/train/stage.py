"""The train stage: fit the configured Keras model on the prepared split and write its artifacts.

Artifacts (see RunLayout): model.keras, user/item factor Parquet files and manifest.json,
written in that order; the manifest, last, marks a complete model.

Manifest "scoring" says how to score: "dot" (act(user_factors · item_factors), the
contract) or "network" (mlp, neumf): the factor files then hold the models' embedding
rows and `network.npz` beside model.keras the dense weights, which
`recbatch.core.network.network_logits` turns into exact scores (sigmoid applied
for the published score); model.keras stays the source of truth.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from recbatch.artifacts import (
    NETWORK_FILE,
    check_range,
    data_fingerprint,
    read_pairs,
    read_times,
    require_prepared,
    write_factors,
    write_network,
)
from recbatch.config import Config, TrainConfig
from recbatch.core.files import count_rows, write_json
from recbatch.errors import DataError
from recbatch.layout import RunLayout
from recbatch.models.runtime import prepare_tensorflow
from recbatch.ops.run_id import versions

log = logging.getLogger(__name__)


def _read_input(cfg: TrainConfig, layout: RunLayout, num_users: int, num_items: int) -> tuple[str, Any]:
    """The train split as the loop's input: ("stream", scan stats) or ("memory", arrays)."""
    from recbatch.train.stream import choose_input, scan_stats

    mode = choose_input(cfg, count_rows(layout.train))
    if mode == "stream":
        stats = scan_stats(layout.train, num_users, num_items)
        positives = stats.rows
        data: Any = stats
    else:
        users, items = read_pairs(layout.train)
        positives = len(users)
        data = (users, items)
    if positives == 0:
        raise DataError(f"the train split at {layout.train} is empty: check the input and `prepare` filters")
    if mode == "memory":
        check_range(users, items, num_users, num_items, layout.train)
        last_ts = read_times(layout.train)
        # Spark's row order within part files can change between runs of the same prepare (shuffle
        # fetch order); a canonical order makes the model a function of the data alone.
        order = np.lexsort((items, users))
        data = (users[order], items[order], last_ts[order])
    return mode, data


def _fit(cfg: TrainConfig, layout: RunLayout, num_users: int, num_items: int, mode: str, data: Any) -> Any:
    from recbatch.train.loop import fit
    from recbatch.train.stream import fit_stream

    if mode == "stream":
        # Batches follow the files' row order (seeded shuffles on top): same files, same model.
        return fit_stream(cfg, num_users, num_items, layout.train, data)
    return fit(cfg, num_users, num_items, *data)


def _write_model(model: Any, layout: RunLayout) -> tuple[str, str, int]:
    """model.keras, the factor files and (mlp/neumf) network.npz; returns (scoring, activation, dim)."""
    from recbatch.models.registry import is_network, scoring_factors

    layout.model_dir.mkdir(parents=True, exist_ok=True)
    # A manifest left by an earlier run would vouch for the files being replaced now.
    layout.model_manifest.unlink(missing_ok=True)
    tmp_model = layout.model_file.with_name(".model.tmp.keras")
    model.save(tmp_model)
    os.replace(tmp_model, layout.model_file)
    network_file = layout.model_dir / NETWORK_FILE
    network_file.unlink(missing_ok=True)
    if is_network(model):
        # Not a dot product: the factor files hold the embedding rows, and network.npz the
        # dense weights; recbatch.core.network scores them exactly.
        user_matrix, item_matrix = model.embedding_factors()
        activation, scoring = "sigmoid", "network"
        write_network(network_file, model.network_weights())
    else:
        user_matrix, item_matrix, activation = scoring_factors(model)
        scoring = "dot"
    write_factors(layout.user_factors, "user_idx", user_matrix)
    write_factors(layout.item_factors, "item_idx", item_matrix)
    return scoring, activation, int(user_matrix.shape[1])


def run_train(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Train `config.train.model` on `layout.train`, write the model artifacts, return the manifest."""
    cfg = config.train
    require_prepared(layout)
    # The same seed must give the same model, whichever process (CLI, spark-submit) trains it.
    prepare_tensorflow()
    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    mode, data = _read_input(cfg, layout, num_users, num_items)
    positives = data.rows if mode == "stream" else len(data[0])
    log.info(
        "train %s (%s loss, %s input): %d users, %d items, %d positives",
        cfg.model,
        cfg.loss,
        mode,
        num_users,
        num_items,
        positives,
    )
    result = _fit(cfg, layout, num_users, num_items, mode, data)
    scoring, activation, dim = _write_model(result.model, layout)
    manifest = {
        "model": cfg.model,
        "config": config.model_dump(mode="json"),
        "config_fingerprint": config.fingerprint(),
        "data_fingerprint": data_fingerprint(layout.train),
        "versions": versions(),
        "seed": cfg.seed,
        "num_users": num_users,
        "num_items": num_items,
        "input": mode,
        "train_positives": positives,
        "examples_per_epoch": {
            "bce": positives * (1 + cfg.negatives),
            "bpr": positives * cfg.negatives,
        }.get(cfg.loss, positives),
        "factor_dim": dim,
        "score_activation": activation,
        "scoring": scoring,
        "network_weights": NETWORK_FILE if scoring == "network" else None,
        "loss": cfg.loss,
        "best_epoch": result.best_epoch,
        "validation_ndcg": result.validation_ndcg,
        "history": {name: [float(v) for v in values] for name, values in result.history.items()},
        "train_seconds": round(result.seconds, 3),
    }
    write_json(layout.model_manifest, manifest)
    log.info("train %s: done in %.1f s, artifacts in %s", cfg.model, result.seconds, layout.model_dir)
    return manifest
