"""Single-process scoring ceilings for `recbatch bench score`, each run in a fresh child process.

    python -m recbatch.bench.score_ceiling KIND DATA_DIR K BLOCK RUNS THREADS

KIND is one of:
  tf        TensorFlow matmul + tf.math.top_k per block of users (seen items not masked)
  tf-mask   the same with seen items set to -inf (tf.tensor_scatter_nd_update) before top_k
  numpy     numpy matmul + seen mask + np.argpartition + sort of the k (the textbook numpy way)
  recbatch  recbatch's own kernel (TopKScorer) in one process

The child reads users.npy, items.npy, seen_rows.npy, seen_cols.npy from DATA_DIR (seen pairs
sorted by row), times one warm-up and RUNS runs over all users, and prints one JSON line:
{"kind", "seconds": [...], "pairs", "maxrss_bytes", "top": [[...], ...] for the first 64 users}.
Thread caps are set in the environment by the parent before numpy/TensorFlow load.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

from recbatch.bench.harness import timed

KINDS = ("tf", "tf-mask", "numpy", "recbatch")


def _seen_per_block(rows: np.ndarray, cols: np.ndarray, n_users: int, block: int):
    bounds = np.searchsorted(rows, np.arange(0, n_users + block, block))
    for b, start in enumerate(range(0, n_users, block)):
        lo, hi = bounds[b], bounds[b + 1]
        yield start, rows[lo:hi] - start, cols[lo:hi]


def _tf_runner(users, items, rows, cols, k, block, threads, mask):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    items_t = tf.constant(items)

    @tf.function(reduce_retracing=True)
    def top(u, where):
        scores = tf.matmul(u, items_t, transpose_b=True)
        if mask:
            neg = tf.fill([tf.shape(where)[0]], tf.constant(-np.inf, tf.float32))
            scores = tf.tensor_scatter_nd_update(scores, where, neg)
        return tf.math.top_k(scores, k)

    def run():
        out = []
        for start, r, c in _seen_per_block(rows, cols, len(users), block):
            where = tf.constant(np.stack([r, c], axis=1).astype(np.int64).reshape(-1, 2))
            out.append(top(tf.constant(users[start : start + block]), where).indices.numpy())
        return np.concatenate(out)

    return run


def _numpy_runner(users, items, rows, cols, k, block):
    def run():
        out = []
        for start, r, c in _seen_per_block(rows, cols, len(users), block):
            scores = users[start : start + block] @ items.T
            scores[r, c] = -np.inf
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(scores, part, axis=1)
            order = np.lexsort((part, -vals), axis=1)
            out.append(np.take_along_axis(part, order, axis=1))
        return np.concatenate(out)

    return run


def _recbatch_runner(users, items, rows, cols, k, block):
    from recbatch.core.topk import TopKScorer

    scorer = TopKScorer(items, k)

    def run():
        out = []
        for start, r, c in _seen_per_block(rows, cols, len(users), block):
            n = len(users[start : start + block])
            seen = np.split(c, np.searchsorted(r, np.arange(1, n)))
            out.append(scorer(users[start : start + block], seen)[0])
        return np.concatenate(out)

    return run


def main(argv: list[str]) -> None:
    """Entry point of the child process."""
    kind, data_dir, k, block, runs, threads = argv[0], Path(argv[1]), *map(int, argv[2:6])
    users, items = np.load(data_dir / "users.npy"), np.load(data_dir / "items.npy")
    rows, cols = np.load(data_dir / "seen_rows.npy"), np.load(data_dir / "seen_cols.npy")
    if kind in ("tf", "tf-mask"):
        run = _tf_runner(users, items, rows, cols, k, block, threads, kind == "tf-mask")
    elif kind == "numpy":
        run = _numpy_runner(users, items, rows, cols, k, block)
    elif kind == "recbatch":
        run = _recbatch_runner(users, items, rows, cols, k, block)
    else:
        raise SystemExit(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    top = run()  # warm-up (and tracing): its lists are the ones reported
    seconds = timed(run, runs, warm_up=False)
    result = {
        "kind": kind,
        "seconds": seconds,
        "pairs": int(len(users) * len(items)),
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "top": top[:64].tolist(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
