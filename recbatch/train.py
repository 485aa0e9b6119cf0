"""The train stage: fit the configured Keras model on the prepared split and write its artifacts.

Artifacts (see RunLayout): model.keras, user/item factor Parquet files and manifest.json,
written in that order; the manifest, last, marks a complete model.

Manifest "scoring" says how to score: "dot" (act(user_factors · item_factors), the
contract) or "network" (mlp, neumf): the factor files then hold the models' embedding
rows and `network.npz` beside model.keras the dense weights, which
`recbatch.models.network_numpy.network_logits` turns into exact scores (sigmoid applied
for the published score); model.keras stays the source of truth.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from recbatch.config import Config
from recbatch.errors import DataError
from recbatch.layout import RunLayout
from recbatch.runs import versions, write_json
from recbatch.training.artifacts import data_fingerprint, write_factors
from recbatch.training.data import check_range, count_rows, read_pairs, read_times, require_prepared

log = logging.getLogger(__name__)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of batch logs, unless the user set a level.

    On a machine without an NVIDIA driver TF logs a CUDA init failure at error level on
    every start, which reads like a fault in a cron log; there, level 3 hides it. Where a
    driver exists, real errors stay visible.
    """
    no_gpu_driver = not os.path.exists("/proc/driver/nvidia")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu_driver else "2")


def configure_tf_threads() -> None:
    """Let TensorFlow use the CPUs this process may run on, unless the user already chose.

    TensorFlow sizes its pools by the host's cores, which oversubscribes a container or a
    `taskset`; TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS (set by the user or by
    recbatch's Spark executor environment) win, as does an earlier explicit setting.
    """
    import tensorflow as tf

    if "TF_NUM_INTRAOP_THREADS" in os.environ or "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() or threading.get_inter_op_parallelism_threads():
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        threading.set_intra_op_parallelism_threads(cpus)
        threading.set_inter_op_parallelism_threads(min(2, cpus))
    except RuntimeError:
        pass  # the TF runtime is already initialised in this process; its pools stay as they are


def run_train(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Train `config.train.model` on `layout.train`, write the model artifacts, return the manifest."""
    cfg = config.train
    require_prepared(layout)
    quiet_tensorflow()
    configure_tf_threads()
    from recbatch.models.network_numpy import NETWORK_FILE, save_network
    from recbatch.models.registry import is_network, scoring_factors
    from recbatch.training.loop import fit
    from recbatch.training.stream import choose_input, fit_stream, scan_stats

    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    mode = choose_input(cfg, count_rows(layout.train))
    # The same seed must give the same model, whichever process (CLI, spark-submit) trains it.
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if mode == "stream":
        stats = scan_stats(layout.train, num_users, num_items)
        positives = stats.rows
    else:
        users, items = read_pairs(layout.train)
        positives = len(users)
    if positives == 0:
        raise DataError(f"the train split at {layout.train} is empty: check the input and `prepare` filters")
    log.info(
        "train %s (%s loss, %s input): %d users, %d items, %d positives",
        cfg.model,
        cfg.loss,
        mode,
        num_users,
        num_items,
        positives,
    )
    if mode == "stream":
        # Batches follow the files' row order (seeded shuffles on top): same files, same model.
        result = fit_stream(cfg, num_users, num_items, layout.train, stats)
    else:
        check_range(users, items, num_users, num_items, layout.train)
        last_ts = read_times(layout.train)
        # Spark's row order within part files can change between runs of the same prepare (shuffle
        # fetch order); a canonical order makes the model a function of the data alone.
        order = np.lexsort((items, users))
        users, items, last_ts = users[order], items[order], last_ts[order]
        result = fit(cfg, num_users, num_items, users, items, last_ts)
    model, train_seconds = result.model, result.seconds

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
        # dense weights; recbatch.models.network_numpy scores them exactly.
        user_matrix, item_matrix = model.embedding_factors()
        activation, scoring = "sigmoid", "network"
        save_network(network_file, model.network_weights())
    else:
        user_matrix, item_matrix, activation = scoring_factors(model)
        scoring = "dot"
    write_factors(layout.user_factors, "user_idx", user_matrix)
    write_factors(layout.item_factors, "item_idx", item_matrix)

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
        "factor_dim": int(user_matrix.shape[1]),
        "score_activation": activation,
        "scoring": scoring,
        "network_weights": NETWORK_FILE if scoring == "network" else None,
        "loss": cfg.loss,
        "best_epoch": result.best_epoch,
        "validation_ndcg": result.validation_ndcg,
        "history": {name: [float(v) for v in values] for name, values in result.history.items()},
        "train_seconds": round(train_seconds, 3),
    }
    write_json(layout.model_manifest, manifest)
    log.info("train %s: done in %.1f s, artifacts in %s", cfg.model, train_seconds, layout.model_dir)
    return manifest
