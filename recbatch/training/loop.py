"""The training loop: BCE, BPR or in-batch sampled softmax, early stopping on validation NDCG.

A plain TensorFlow loop (one `tf.function` step per loss) rather than `model.fit`, because
BPR and sampled softmax need two or many items per example. Every epoch draws fresh
negatives from a seeded numpy generator, and ops are deterministic, so a seed gives the
same model. The L2 penalty is `l2 * mean(model.penalty(...))` over the batch's rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbatch.config import TrainConfig
from recbatch.training.data import NegativeSampler, popularity_weights
from recbatch.training.validation import Split, carve_validation, validation_ndcg

log = logging.getLogger("recbatch.train")


@dataclass
class FitResult:
    """A trained model and how it got there."""

    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    validation_ndcg: float | None = None
    seconds: float = 0.0


def _steps(model: Any, cfg: TrainConfig, log_q: np.ndarray) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    # The compiled optimizer (Adam at cfg.learning_rate) is the one trained and saved with the model.
    optimizer = getattr(model, "optimizer", None) or keras.optimizers.Adam(cfg.learning_rate)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    l2 = float(cfg.l2)
    log_q_t = tf.constant(log_q, dtype=tf.float32)
    ids = tf.TensorSpec((None,), tf.int32)

    def apply(tape: Any, loss: Any) -> Any:
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function(input_signature=[ids, ids, tf.TensorSpec((None,), tf.float32)])
    def bce(users: Any, items: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model.logit({"user_idx": users, "item_idx": items}, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            loss += l2 * tf.reduce_mean(model.penalty(users, items))
        return apply(tape, loss)

    @tf.function(input_signature=[ids, ids, ids])
    def bpr(users: Any, pos: Any, neg: Any) -> Any:
        with tf.GradientTape() as tape:
            s_pos = model.logit({"user_idx": users, "item_idx": pos}, training=True)
            s_neg = model.logit({"user_idx": users, "item_idx": neg}, training=True)
            loss = -tf.reduce_mean(tf.math.log_sigmoid(s_pos - s_neg))
            loss += l2 * tf.reduce_mean(model.penalty(users, pos) + model.penalty(users, neg))
        return apply(tape, loss)

    @tf.function(input_signature=[ids, ids])
    def softmax(users: Any, items: Any) -> Any:
        with tf.GradientTape() as tape:
            u = model.user_vectors(users, training=True)
            v = model.item_vectors(items, training=True)
            logits = tf.matmul(u, v, transpose_b=True) / cfg.temperature
            if cfg.logq_correction:
                logits -= tf.gather(log_q_t, items)[None, :]
            # The same item twice in a batch: the other copy is not a negative for this row.
            same = tf.equal(items[:, None], items[None, :])
            off_diag = tf.logical_not(tf.eye(tf.shape(items)[0], dtype=tf.bool))
            logits = tf.where(same & off_diag, tf.fill(tf.shape(logits), -1e9), logits)
            labels = tf.range(tf.shape(items)[0])
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            loss += l2 * tf.reduce_mean(model.penalty(users, items))
        return apply(tape, loss)

    return {"bce": bce, "bpr": bpr, "softmax": softmax}


def _as_dataset(batches: list[tuple[np.ndarray, ...]]) -> Any:
    """The epoch's batches as a prefetching tf.data pipeline (sampling overlaps the steps)."""
    import tensorflow as tf

    if not batches:
        return []
    signature = tuple(tf.TensorSpec(shape=(None,), dtype=tf.as_dtype(a.dtype)) for a in batches[0])
    return tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=signature).prefetch(2)


def _epoch_batches(
    cfg: TrainConfig, sampler: NegativeSampler, rng: np.random.Generator
) -> list[tuple[np.ndarray, ...]]:
    if cfg.loss == "bce":
        arrays: tuple[np.ndarray, ...] = sampler.sample()
    elif cfg.loss == "bpr":
        arrays = sampler.pairs()
    else:
        order = rng.permutation(len(sampler.users))
        arrays = (sampler.users[order], sampler.items[order])
    n, b = len(arrays[0]), cfg.batch_size
    return [tuple(a[s : s + b] for a in arrays) for s in range(0, n, b)]


def train_epochs(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    users: np.ndarray,
    items: np.ndarray,
    epochs: int,
    split: Split | None = None,
    model: Any = None,
) -> FitResult:
    """Train for up to `epochs`; with a validation split, stop early and keep the best epoch's weights."""
    import keras

    from recbatch.models.registry import build_model

    keras.utils.set_random_seed(cfg.seed)
    if model is None:
        model = build_model(cfg.model, num_users, num_items, cfg)
    rng = np.random.default_rng(cfg.seed)
    probs = None
    if cfg.negative_sampling == "popularity":
        probs = popularity_weights(items, num_items, cfg.negative_alpha)
    sampler = NegativeSampler(users, items, num_items, cfg.negatives, rng, probs)
    counts = np.maximum(np.bincount(items, minlength=num_items), 1)
    step = _steps(model, cfg, np.log(counts / counts.sum()).astype(np.float32))[cfg.loss]

    result = FitResult(model=model, history={"loss": []})
    best_weights, since_best = None, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        losses = [float(step(*batch)) for batch in _as_dataset(_epoch_batches(cfg, sampler, rng))]
        result.history["loss"].append(float(np.mean(losses)))
        line = f"loss {result.history['loss'][-1]:.4f}"
        if split is not None:
            score = validation_ndcg(model, split, num_users, cfg.validation_k)
            result.history.setdefault("val_ndcg", []).append(score)
            line += f" val_ndcg@{cfg.validation_k} {score:.4f}"
            if result.validation_ndcg is None or score > result.validation_ndcg:
                result.validation_ndcg, result.best_epoch = score, epoch + 1
                best_weights, since_best = model.get_weights(), 0
            else:
                since_best += 1
        log.info(
            "train %s: epoch %d/%d %s (%.1f s)", cfg.model, epoch + 1, epochs, line, time.perf_counter() - t0
        )
        if split is not None and since_best >= cfg.patience:
            log.info("train %s: early stop, best epoch %d", cfg.model, result.best_epoch)
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    else:
        result.best_epoch = len(result.history["loss"])
    result.seconds = time.perf_counter() - start
    return result


def _initial_model(
    cfg: TrainConfig, num_users: int, num_items: int, users: np.ndarray, items: np.ndarray
) -> Any:
    """None, or for neumf with pretrain: a NeuMF started from a GMF and an MLP trained first."""
    if not (cfg.model == "neumf" and cfg.pretrain):
        return None
    from recbatch.models.registry import build_model

    parts = {}
    for name in ("gmf", "mlp"):
        part_cfg = cfg.model_copy(update={"model": name})
        parts[name] = train_epochs(part_cfg, num_users, num_items, users, items, cfg.epochs).model
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = build_model("neumf", num_users, num_items, cfg)
    model.load_pretrained(parts["gmf"], parts["mlp"])
    return model


def fit(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    users: np.ndarray,
    items: np.ndarray,
    last_ts: np.ndarray,
) -> FitResult:
    """Fit `cfg.model`: early stopping on a validation split carved from train, then (cfg.refit)
    retraining on all of train for the best epoch count."""
    split = carve_validation(users, items, last_ts, num_users) if cfg.validation else None
    if split is None or len(split.val_users) == 0:
        init = _initial_model(cfg, num_users, num_items, users, items)
        return train_epochs(cfg, num_users, num_items, users, items, cfg.epochs, model=init)
    init = _initial_model(cfg, num_users, num_items, split.fit_users, split.fit_items)
    searched = train_epochs(
        cfg, num_users, num_items, split.fit_users, split.fit_items, cfg.epochs, split, init
    )
    if not cfg.refit:
        return searched
    log.info("train %s: refit on all of train for %d epochs", cfg.model, searched.best_epoch)
    init = _initial_model(cfg, num_users, num_items, users, items)
    final = train_epochs(cfg, num_users, num_items, users, items, searched.best_epoch, model=init)
    final.history = {**searched.history, "refit_loss": final.history["loss"]}
    final.best_epoch, final.validation_ndcg = searched.best_epoch, searched.validation_ndcg
    final.seconds += searched.seconds
    return final
