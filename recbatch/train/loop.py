"""The training loop: BCE, BPR or in-batch sampled softmax, early stopping on validation NDCG.

A plain TensorFlow loop (one `tf.function` step per loss) rather than `model.fit`, because
BPR and sampled softmax need two or many items per example. An input (`TrainInput`: in
memory or streamed from Parquet) yields each epoch's batches with fresh negatives from a
seeded numpy generator, and ops are deterministic, so a seed gives the same model.
The L2 penalty is `l2 * mean(model.penalty(...))` over the batch's rows. On a terminal a
rich bar shows each epoch (`recbatch.train.progress`).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recbatch.config import TrainConfig
from recbatch.core.validation import Split, carve_validation, with_sampled_negatives
from recbatch.train.lazy_adam import LazyAdam
from recbatch.train.progress import EpochProgress, terminal
from recbatch.train.sampling import MemoryInput
from recbatch.train.validation import validation_ndcg

log = logging.getLogger("recbatch.train")

# Sets a freshly built model's starting weights in place (recbatch.train.warm).
InitWeights = Callable[[Any], None]
# Steps an epoch keeps before its batches grow (train.batch_size_max): measured on 2 cores, a step
# of 8,192 examples takes 1.3-1.5x one of 2,048, so big epochs run 3x faster in bigger batches.
MIN_STEPS = 256
# train.optimizer = "auto" takes lazy_adam above this many embedding rows: measured on 2 cores,
# the dense update adds ~2 ms to a step at 25K users and ~18 ms at 250K.
LAZY_ADAM_ROWS = 100_000
# train.optimizer = "lazy_adam": each model's moments, outside Keras' attribute tracking.
_LAZY: weakref.WeakKeyDictionary[Any, LazyAdam] = weakref.WeakKeyDictionary()


@dataclass
class FitResult:
    """A trained model and how it got there."""

    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    validation_ndcg: float | None = None
    seconds: float = 0.0


def batch_for(cfg: TrainConfig, rows: int) -> int:
    """Examples per step for a fit on `rows` positives: batch_size, grown for big bce/bpr epochs
    (at most batch_size_max) so an epoch keeps MIN_STEPS steps."""
    if cfg.loss == "softmax":
        return cfg.batch_size
    examples = rows * (1 + cfg.negatives) if cfg.loss == "bce" else rows * cfg.negatives
    return max(cfg.batch_size, min(cfg.batch_size_max, examples // MIN_STEPS))


def optimizer_for(cfg: TrainConfig, num_users: int, num_items: int) -> str:
    """train.optimizer with "auto" resolved by the embedding rows (users + items)."""
    if cfg.optimizer != "auto":
        return cfg.optimizer
    return "lazy_adam" if num_users + num_items > LAZY_ADAM_ROWS else "adam"


def _steps(model: Any, cfg: TrainConfig, log_q: np.ndarray, optimizer_name: str) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    if optimizer_name == "lazy_adam":
        # Kept per model: a model trained again (a warm start, NeuMF's pre-training) goes on
        # from its moments, as it does with the Keras optimizer compiled into it.
        lazy = _LAZY.get(model)
        if lazy is None:
            lazy = _LAZY[model] = LazyAdam(model.trainable_variables, cfg.learning_rate, cfg.batch_size)
        update = lazy.apply
    else:
        # The compiled optimizer (Adam at cfg.learning_rate) is the one trained and saved with the model.
        optimizer = getattr(model, "optimizer", None) or keras.optimizers.Adam(cfg.learning_rate)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

        def update(grads: list[Any]) -> None:
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    # With no penalty its gathers are left out of the graph: they would double the rows of every
    # table's sparse gradient (measured: 23 -> 18 ms a lazy step of 16,384 at 250K users).
    l2 = float(cfg.l2)
    log_q_t = tf.constant(log_q, dtype=tf.float32)
    ids = tf.TensorSpec((None,), tf.int32)

    def apply(tape: Any, loss: Any) -> Any:
        update(tape.gradient(loss, model.trainable_variables))
        return loss

    weights = tf.TensorSpec((None,), tf.float32)

    # `w` weighs each example (train.weighting; all ones by default, which leaves the means exact).
    @tf.function(input_signature=[ids, ids, tf.TensorSpec((None,), tf.float32), weights])
    def bce(users: Any, items: Any, labels: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model.logit({"user_idx": users, "item_idx": items}, training=True)
            loss = tf.reduce_mean(w * tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            if l2 > 0.0:
                loss += l2 * tf.reduce_mean(model.penalty(users, items))
        return apply(tape, loss)

    @tf.function(input_signature=[ids, ids, ids, weights])
    def bpr(users: Any, pos: Any, neg: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            s_pos = model.logit({"user_idx": users, "item_idx": pos}, training=True)
            s_neg = model.logit({"user_idx": users, "item_idx": neg}, training=True)
            loss = -tf.reduce_mean(w * tf.math.log_sigmoid(s_pos - s_neg))
            if l2 > 0.0:
                loss += l2 * tf.reduce_mean(model.penalty(users, pos) + model.penalty(users, neg))
        return apply(tape, loss)

    @tf.function(input_signature=[ids, ids, weights])
    def softmax(users: Any, items: Any, w: Any) -> Any:
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
                w * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            if l2 > 0.0:
                loss += l2 * tf.reduce_mean(model.penalty(users, items))
        return apply(tape, loss)

    return {"bce": bce, "bpr": bpr, "softmax": softmax}


class TrainInput(Protocol):
    """Where an epoch's batches come from: `MemoryInput` (numpy arrays) or `StreamInput` (Parquet)."""

    rows: int
    item_counts: np.ndarray
    # Whether each batch costs work worth overlapping with the steps (tf.data prefetch); else the
    # loop slices the epoch itself: tf.data's generator adds ~3.6 ms a batch (measured, 2 cores).
    prefetch: bool

    def start(self, cfg: TrainConfig, rng: np.random.Generator, grouped: bool = False) -> None: ...
    def num_batches(self, cfg: TrainConfig) -> int: ...
    def epoch(self, cfg: TrainConfig) -> Iterator[tuple[np.ndarray, ...]]: ...


_SIGNATURES = {"bce": ("int32", "int32", "float32"), "bpr": ("int32",) * 3, "softmax": ("int32", "int32")}


def _weighted(batches: Iterator[tuple[np.ndarray, ...]], width: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Each batch with its example weights: those the input gives, else ones."""
    for batch in batches:
        yield batch if len(batch) > width else (*batch, np.ones(len(batch[0]), np.float32))


def _epoch_batches(data: TrainInput, cfg: TrainConfig) -> Any:
    """The epoch's weighted batches: through a prefetching tf.data pipeline where making a batch
    costs work (it then overlaps the steps), else straight from the input."""
    width = len(_SIGNATURES[cfg.loss])
    if not data.prefetch:
        return _weighted(data.epoch(cfg), width)
    import tensorflow as tf

    dtypes = (*_SIGNATURES[cfg.loss], "float32")
    signature = tuple(tf.TensorSpec(shape=(None,), dtype=dtype) for dtype in dtypes)
    return tf.data.Dataset.from_generator(
        lambda: _weighted(data.epoch(cfg), width), output_signature=signature
    ).prefetch(2)


def train_epochs(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    users: np.ndarray,
    items: np.ndarray,
    epochs: int,
    split: Split | None = None,
    model: Any = None,
    weights: np.ndarray | None = None,
) -> FitResult:
    """`train_on` the in-memory positives (users[k], items[k]), weighted by weights[k] when given."""
    data = MemoryInput(users, items, num_items, weights)
    return train_on(cfg, num_users, num_items, data, epochs, split, model)


def train_on(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    data: TrainInput,
    epochs: int,
    split: Split | None = None,
    model: Any = None,
) -> FitResult:
    """Train for up to `epochs`; with a validation split, stop early and keep the best epoch's weights."""
    import keras

    from recbatch.models.registry import build_model

    batch = batch_for(cfg, data.rows)
    if batch != cfg.batch_size:
        log.info(
            "train %s: batches of %d examples (train.batch_size_max) for %d positives",
            cfg.model,
            batch,
            data.rows,
        )
        cfg = cfg.model_copy(update={"batch_size": batch})
    keras.utils.set_random_seed(cfg.seed)
    if model is None:
        model = build_model(cfg.model, num_users, num_items, cfg)
    optimizer = optimizer_for(cfg, num_users, num_items)
    # The lazy update costs what the rows a step touches do: a positive's negatives in its own
    # batch (one user row for 1 + negatives examples). Keras' Adam writes every row whatever the
    # batch, so there examples stay shuffled one by one.
    data.start(cfg, np.random.default_rng(cfg.seed), grouped=optimizer == "lazy_adam")
    counts = np.maximum(data.item_counts, 1)
    log.debug("train %s: optimizer %s (train.optimizer = %r)", cfg.model, optimizer, cfg.optimizer)
    step = _steps(model, cfg, np.log(counts / counts.sum()).astype(np.float32), optimizer)[cfg.loss]

    result = FitResult(model=model, history={"loss": []})
    best_weights, since_best = None, 0
    # On a terminal the bar shows each epoch; the log line then only goes to debug.
    level = logging.DEBUG if terminal() else logging.INFO
    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        title = f"{cfg.model} epoch {epoch + 1}/{epochs}"
        with EpochProgress(title, data.num_batches(cfg)) as bar:
            losses = []
            for batch in _epoch_batches(data, cfg):
                losses.append(float(step(*batch)))
                bar.step(losses[-1])
            result.history["loss"].append(float(np.mean(losses)) if losses else float("nan"))
            line = f"loss {result.history['loss'][-1]:.4f}"
            if split is not None:
                bar.note("validating")
                score = validation_ndcg(model, split, num_users, cfg.validation_k)
                bar.note(f"val_ndcg@{cfg.validation_k} {score:.4f}")
                result.history.setdefault("val_ndcg", []).append(score)
                line += f" val_ndcg@{cfg.validation_k} {score:.4f}"
                if result.validation_ndcg is None or score > result.validation_ndcg:
                    result.validation_ndcg, result.best_epoch = score, epoch + 1
                    best_weights, since_best = model.get_weights(), 0
                else:
                    since_best += 1
        log.log(
            level,
            "train %s: epoch %d/%d %s (%.1f s)",
            cfg.model,
            epoch + 1,
            epochs,
            line,
            time.perf_counter() - t0,
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
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    data: TrainInput,
    init_weights: InitWeights | None = None,
) -> Any:
    """None (train_on builds a fresh model), a fresh model `init_weights` started from earlier weights
    (a warm start, which makes pre-training moot), or for neumf with pretrain: a NeuMF started from
    a GMF and an MLP trained first."""
    from recbatch.models.registry import build_model

    if init_weights is not None:
        import keras

        # The same seed as a cold start: rows the earlier model lacks start where a cold start would.
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg.model, num_users, num_items, cfg)
        init_weights(model)
        return model
    if not (cfg.model == "neumf" and cfg.pretrain):
        return None

    parts = {}
    for name in ("gmf", "mlp"):
        part_cfg = cfg.model_copy(update={"model": name})
        parts[name] = train_on(part_cfg, num_users, num_items, data, cfg.epochs).model
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
    weights: np.ndarray | None = None,
    init_weights: InitWeights | None = None,
) -> FitResult:
    """Fit `cfg.model` on in-memory positives, weighted by `weights` when given (see `fit_input`)."""
    split = None
    if cfg.validation:
        split = carve_validation(users, items, last_ts, num_users)
        with_sampled_negatives(split, num_users, num_items, cfg.validation_negatives)
    fit_part = None
    if split is not None:
        fit_weights = None if weights is None else weights[split.fit_index]
        fit_part = MemoryInput(split.fit_users, split.fit_items, num_items, fit_weights)
    return fit_input(
        cfg,
        num_users,
        num_items,
        fit_part,
        split,
        lambda: MemoryInput(users, items, num_items, weights),
        init_weights,
    )


def fit_input(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    fit_part: TrainInput | None,
    split: Split | None,
    everything: Callable[[], TrainInput],
    init_weights: InitWeights | None = None,
) -> FitResult:
    """Fit `cfg.model`: early stopping on `split` while training on `fit_part` (train minus the
    validation items), then (cfg.refit) retraining on `everything()` for the best epoch count.
    `init_weights` (a warm start) sets each freshly built model's starting weights."""
    if fit_part is None or split is None or len(split.val_users) == 0:
        data = everything()
        init = _initial_model(cfg, num_users, num_items, data, init_weights)
        return train_on(cfg, num_users, num_items, data, cfg.epochs, model=init)
    init = _initial_model(cfg, num_users, num_items, fit_part, init_weights)
    searched = train_on(cfg, num_users, num_items, fit_part, cfg.epochs, split, init)
    if not cfg.refit:
        return searched
    log.info("train %s: refit on all of train for %d epochs", cfg.model, searched.best_epoch)
    data = everything()
    init = _initial_model(cfg, num_users, num_items, data, init_weights)
    final = train_on(cfg, num_users, num_items, data, searched.best_epoch, model=init)
    final.history = {**searched.history, "refit_loss": final.history["loss"]}
    final.best_epoch, final.validation_ndcg = searched.best_epoch, searched.validation_ndcg
    final.seconds += searched.seconds
    return final
