"""The train stage: fit the configured Keras model on the prepared split and write its artifacts.

Artifacts (see RunLayout): model.keras, user/item factor Parquet files and manifest.json,
written in that order; the manifest, last, marks a complete model.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from recbatch.config import Config
from recbatch.errors import DataError
from recbatch.layout import RunLayout
from recbatch.runs import versions, write_json
from recbatch.training.artifacts import data_fingerprint, write_factors
from recbatch.training.data import (
    NegativeSampler,
    check_range,
    count_rows,
    make_dataset,
    read_pairs,
    require_prepared,
)

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


def _epoch_logger(model_name: str, epochs: int) -> Any:
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One log line per epoch instead of Keras's progress bar (readable in cron logs)."""

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            seconds = time.perf_counter() - self._start
            log.info("train %s: epoch %d/%d %s (%.1f s)", model_name, epoch + 1, epochs, values, seconds)

    return EpochLog()


def run_train(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Train `config.train.model` on `layout.train`, write the model artifacts, return the manifest."""
    cfg = config.train
    require_prepared(layout)
    quiet_tensorflow()
    configure_tf_threads()
    import keras

    from recbatch.models.registry import build_model, scoring_factors

    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    users, items = read_pairs(layout.train)
    if len(users) == 0:
        raise DataError(f"the train split at {layout.train} is empty: check the input and `prepare` filters")
    check_range(users, items, num_users, num_items, layout.train)

    keras.utils.set_random_seed(cfg.seed)
    # The same seed must give the same model, whichever process (CLI, spark-submit) trains it.
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    sampler = NegativeSampler(users, items, num_items, cfg.negatives, np.random.default_rng(cfg.seed))
    dataset = make_dataset(sampler, cfg.batch_size)
    model = build_model(cfg.model, num_users, num_items, cfg)
    log.info(
        "train %s: %d users, %d items, %d positives, %d examples per epoch",
        cfg.model,
        num_users,
        num_items,
        len(users),
        sampler.examples_per_epoch(),
    )
    start = time.perf_counter()
    history = model.fit(
        dataset, epochs=cfg.epochs, verbose=0, shuffle=False, callbacks=[_epoch_logger(cfg.model, cfg.epochs)]
    )
    train_seconds = time.perf_counter() - start

    layout.model_dir.mkdir(parents=True, exist_ok=True)
    # A manifest left by an earlier run would vouch for the files being replaced now.
    layout.model_manifest.unlink(missing_ok=True)
    tmp_model = layout.model_file.with_name(".model.tmp.keras")
    model.save(tmp_model)
    os.replace(tmp_model, layout.model_file)
    user_matrix, item_matrix, activation = scoring_factors(model)
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
        "train_positives": len(users),
        "examples_per_epoch": sampler.examples_per_epoch(),
        "factor_dim": int(user_matrix.shape[1]),
        "score_activation": activation,
        "history": {name: [float(v) for v in values] for name, values in history.history.items()},
        "train_seconds": round(train_seconds, 3),
    }
    write_json(layout.model_manifest, manifest)
    log.info("train %s: done in %.1f s, artifacts in %s", cfg.model, train_seconds, layout.model_dir)
    return manifest
