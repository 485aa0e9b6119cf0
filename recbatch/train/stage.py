"""The train stage: fit the configured Keras model on the prepared split and write its artifacts.

Artifacts (see RunLayout): model.keras, user/item factor Parquet files and manifest.json,
written in that order; the manifest, last, marks a complete model.

Two fits (train.final_fit = "all", the default): `run_train` fits the train split, early
stopping on a validation carve of it, into model_split/ (what evaluation measures); after
evaluation `run_final_fit` refits on every prepared interaction for the epoch count chosen
there, into model/ (what is scored and published). The manifest's "fit_data" says which.

Manifest "scoring" says how to score: "dot" (act(user_factors · item_factors), the
contract) or "network" (mlp, neumf): the factor files then hold the models' embedding
rows and `network.npz` beside model.keras the dense weights, which
`recbatch.core.network.network_logits` turns into exact scores (sigmoid applied
for the published score); model.keras stays the source of truth.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from recbatch.artifacts import (
    NETWORK_FILE,
    check_range,
    data_fingerprint,
    model_digests,
    read_pairs,
    read_strength,
    read_times,
    require_prepared,
    write_factors,
    write_network,
)
from recbatch.config import Config, TrainConfig
from recbatch.errors import ConfigError, DataError
from recbatch.layout import RunLayout
from recbatch.models.runtime import prepare_tensorflow
from recbatch.ops.run_id import versions
from recbatch.storage import Location, count_rows, write_json

log = logging.getLogger(__name__)


def _read_input(cfg: TrainConfig, path: Location, num_users: int, num_items: int) -> tuple[str, Any]:
    """A prepared split as the loop's input: ("stream", scan stats) or ("memory", arrays)."""
    from recbatch.train.stream import choose_input, scan_stats
    from recbatch.train.weights import example_weights

    mode = choose_input(cfg, count_rows(path))
    weighted = cfg.weighting != "none" or cfg.recency_half_life is not None
    if mode == "stream" and weighted:
        raise ConfigError(
            f"train.weighting / recency_half_life need the in-memory input, but {path} is streamed "
            "(train.input or a split above train.memory_limit_mb): raise memory_limit_mb, or set "
            "weighting = 'none' and recency_half_life = none"
        )
    if mode == "stream":
        stats = scan_stats(path, num_users, num_items)
        positives = stats.rows
        data: Any = stats
    else:
        users, items = read_pairs(path)
        positives = len(users)
        data = (users, items)
    if positives == 0:
        raise DataError(f"the train split at {path} is empty: check the input and `prepare` filters")
    if mode == "memory":
        check_range(users, items, num_users, num_items, path)
        last_ts = read_times(path)
        strength = read_strength(path, cfg.strength) if cfg.weighting != "none" else None
        weights = example_weights(cfg, strength, users, last_ts) if weighted else None
        # Spark's row order within part files can change between runs of the same prepare (shuffle
        # fetch order); a canonical order makes the model a function of the data alone.
        order = np.lexsort((items, users))
        data = (users[order], items[order], last_ts[order], None if weights is None else weights[order])
    return mode, data


def _fit(
    cfg: TrainConfig, path: Location, num_users: int, num_items: int, mode: str, data: Any, init_weights: Any
) -> Any:
    from recbatch.train.loop import fit
    from recbatch.train.stream import fit_stream

    if mode == "stream":
        # Batches follow the files' row order (seeded shuffles on top): same files, same model.
        return fit_stream(cfg, num_users, num_items, path, data, init_weights=init_weights)
    users, items, last_ts, weights = data
    return fit(cfg, num_users, num_items, users, items, last_ts, weights, init_weights)


def _write_model(model: Any, layout: RunLayout) -> tuple[str, str, int]:
    """model.keras, the factor files and (mlp/neumf) network.npz; returns (scoring, activation, dim)."""
    from recbatch.models.registry import is_network, scoring_factors

    layout.model_dir.mkdir()
    # A manifest left by an earlier run would vouch for the files being replaced now.
    layout.model_manifest.delete()
    # Keras saves to a local file only; the copy into the work directory is atomic.
    with tempfile.TemporaryDirectory(prefix="recbatch-model-") as tmp:
        model.save(os.path.join(tmp, "model.keras"))
        with (
            open(os.path.join(tmp, "model.keras"), "rb") as source,
            layout.model_file.atomic_output() as sink,
        ):
            shutil.copyfileobj(source, sink, 1 << 20)
    network_file = layout.model_dir / NETWORK_FILE
    network_file.delete()
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
    """Train `config.train.model` on `layout.train`, write the model artifacts, return the manifest.

    The epoch count is chosen by early stopping on a validation carve of train (train.validation).
    `layout` decides where the artifacts go: the pipeline passes `layout.split_model` when the
    published model is refitted on every interaction afterwards (`run_final_fit`).
    """
    # Without a test split (prepare.test_per_user = 0) the train split is every interaction.
    everything = not layout.test.exists() or count_rows(layout.test) == 0
    return _train_and_write(config, config.train, layout, layout.train, "all" if everything else "train", {})


def run_final_fit(config: Config, layout: RunLayout, split: dict[str, Any]) -> dict[str, Any]:
    """Refit the published model on every prepared interaction (train + test), into `layout.model_dir`.

    `split` is the manifest of the model fitted on train (`run_train` into `layout.split_model`):
    its epoch count, chosen on the validation split, is reused, since there is nothing left to
    validate on once the held-out rows are in the fit. Returns the new manifest.
    """
    epochs = int(split.get("best_epoch") or config.train.epochs)
    cfg = config.train.model_copy(update={"epochs": max(1, epochs), "validation": False})
    evaluated = {
        "dir": str(layout.split_model.model_dir),
        "data_fingerprint": split.get("data_fingerprint"),
        "train_positives": split.get("train_positives"),
        "validation_ndcg": split.get("validation_ndcg"),
    }
    extra = {"epochs_from": "validation split of the evaluated model", "evaluated_model": evaluated}
    return _train_and_write(config, cfg, layout, layout.interactions, "all", extra)


def _train_and_write(
    config: Config, cfg: TrainConfig, layout: RunLayout, path: Location, fit_data: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Fit `cfg` on the prepared split at `path`, write the artifacts under `layout.model_dir`, return the manifest."""
    require_prepared(layout)
    # The same seed must give the same model, whichever process (CLI, spark-submit) trains it.
    prepare_tensorflow()
    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    mode, data = _read_input(cfg, path, num_users, num_items)
    positives = data.rows if mode == "stream" else len(data[0])
    from recbatch.train.loop import batch_for, optimizer_for

    optimizer = optimizer_for(cfg, num_users, num_items)
    log.info(
        "train %s (%s loss, %s, %s input, fit on %s): %d users, %d items, %d positives",
        cfg.model,
        cfg.loss,
        optimizer,
        mode,
        fit_data,
        num_users,
        num_items,
        positives,
    )
    from recbatch.train.warm import plan_warm_start

    # The split fit (input: the train split) never starts from a model that saw this run's test rows.
    warm = plan_warm_start(cfg, layout, split_fit=path == layout.train, sees_everything=fit_data == "all")
    init_weights = warm.initialise if warm is not None and warm.active else None
    result = _fit(cfg, path, num_users, num_items, mode, data, init_weights)
    if warm is not None and warm.active and warm.source is not None and warm.source.cold_epochs:
        log.info(
            "train %s: warm start from %s: best epoch %s (the model it started from: %s)",
            cfg.model,
            warm.source.label,
            result.best_epoch,
            warm.source.cold_epochs,
        )
    scoring, activation, dim = _write_model(result.model, layout)
    manifest = {
        "model": cfg.model,
        "config": config.model_dump(mode="json"),
        "config_fingerprint": config.fingerprint(),
        "data_fingerprint": data_fingerprint(path),
        # Which prepared rows the model saw: "train" (the split evaluation measures) or "all".
        "fit_data": fit_data,
        "versions": versions(),
        "seed": cfg.seed,
        "num_users": num_users,
        "num_items": num_items,
        "input": mode,
        "train_positives": positives,
        "weighting": cfg.weighting,
        "recency_half_life": cfg.recency_half_life,
        "examples_per_epoch": {
            "bce": positives * (1 + cfg.negatives),
            "bpr": positives * cfg.negatives,
        }.get(cfg.loss, positives),
        "factor_dim": dim,
        "score_activation": activation,
        "scoring": scoring,
        "network_weights": NETWORK_FILE if scoring == "network" else None,
        "loss": cfg.loss,
        "optimizer": optimizer,
        "batch_size": batch_for(cfg, positives),
        "epochs": len(result.history.get("refit_loss") or result.history.get("loss") or []),
        "best_epoch": result.best_epoch,
        "validation_ndcg": result.validation_ndcg,
        "history": {name: [float(v) for v in values] for name, values in result.history.items()},
        "train_seconds": round(result.seconds, 3),
        "warm_start": warm.record() if warm is not None else None,
        **extra,
        # Checked by every stage that reads the model (artifacts.read_manifest): a swapped or
        # corrupted file is refused instead of scored.
        "files_sha256": model_digests(layout.model_dir),
    }
    write_json(layout.model_manifest, manifest)
    log.info("train %s: done in %.1f s, artifacts in %s", cfg.model, result.seconds, layout.model_dir)
    return manifest
