"""The training step at scale: the lazy Adam against Keras' Adam on real TensorFlow variables,
the optimizer "auto" picks and the batch an epoch grows to (no model, no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.config import TrainConfig
from recbatch.train.loop import LAZY_ADAM_ROWS, optimizer_for

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _run(batches, lazy: bool, dense_rows: int = 0):
    """A 6 x 3 table and a bias trained on sum(gather(table, rows) * target) + bias**2 per batch;
    Keras' Adam (lazy False) gets the table's gradient made dense (duplicate rows summed)."""
    from recbatch.train.lazy_adam import LazyAdam

    rng = np.random.default_rng(0)
    table = keras.Variable(rng.standard_normal((6, 3)).astype(np.float32))
    bias = keras.Variable(np.array([0.5], np.float32))
    variables = [table, bias]
    optimizer = LazyAdam(variables, 0.05, dense_rows) if lazy else keras.optimizers.Adam(0.05)
    if not lazy:
        optimizer.build(variables)
    target = tf.constant(rng.standard_normal((1, 3)).astype(np.float32))
    for rows in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table.value, rows) * target) + tf.reduce_sum(bias.value**2)
        grads = tape.gradient(loss, [table.value, bias.value])
        assert isinstance(grads[0], tf.IndexedSlices)  # a gather's gradient: the lazy path is taken
        if lazy:
            optimizer.apply(grads)
        else:
            dense = [tf.convert_to_tensor(grads[0]), grads[1]]
            optimizer.apply_gradients(zip(dense, variables, strict=True))
    return table.numpy(), bias.numpy()


def test_every_row_in_every_batch_is_adam_on_the_dense_gradient():
    batches = [tf.constant([0, 1, 2, 3, 4, 5, 2, 2])] * 4
    lazy, dense = _run(batches, True), _run(batches, False)
    np.testing.assert_allclose(lazy[0], dense[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lazy[1], dense[1], rtol=1e-5, atol=1e-6)


def test_rows_a_batch_does_not_use_are_left_alone():
    start, _ = _run([], True)
    lazy, _ = _run([tf.constant([1, 4])] * 3, True)
    dense, _ = _run([tf.constant([1, 4])] * 3, False)
    untouched = [0, 2, 3, 5]
    assert np.array_equal(lazy[untouched], start[untouched])
    # The rows used get Adam's update (their moments never skipped a step here).
    np.testing.assert_allclose(lazy[[1, 4]], dense[[1, 4]], rtol=1e-5, atol=1e-6)
    assert not np.allclose(lazy[[1, 4]], start[[1, 4]])


def test_a_table_no_bigger_than_dense_rows_gets_adam_itself():
    batches = [tf.constant([1, 4, 4]), tf.constant([1]), tf.constant([1])]
    lazy, dense = _run(batches, True, dense_rows=6), _run(batches, False)
    # Row 4, unused after the first step, keeps moving on its moments as with Adam.
    np.testing.assert_allclose(lazy[0], dense[0], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(_run(batches, True, dense_rows=5)[0], lazy[0])


def test_auto_takes_the_lazy_update_only_for_big_tables():
    auto = TrainConfig()
    assert auto.optimizer == "auto"
    assert optimizer_for(auto, 943, 1682) == "adam"
    assert optimizer_for(auto, LAZY_ADAM_ROWS, 1) == "lazy_adam"
    assert optimizer_for(auto.model_copy(update={"optimizer": "adam"}), 10**6, 10**5) == "adam"


def test_big_bce_and_bpr_epochs_take_bigger_batches_softmax_never():
    from recbatch.train.loop import MIN_STEPS, batch_for

    cfg = TrainConfig()  # bce, 4 negatives, batch 2048 up to 16384
    assert batch_for(cfg, 90_000) == 2048  # the demo: 450K examples, 220 steps of 2048
    assert batch_for(cfg, 433_000) == 433_000 * 5 // MIN_STEPS  # 256 steps an epoch
    assert batch_for(cfg, 5_000_000) == 16_384
    assert batch_for(cfg.model_copy(update={"loss": "bpr"}), 1_000_000) == 4_000_000 // MIN_STEPS
    assert batch_for(cfg.model_copy(update={"loss": "softmax", "batch_size": 512}), 10**7) == 512
    assert batch_for(cfg.model_copy(update={"batch_size_max": 2048}), 10**7) == 2048
