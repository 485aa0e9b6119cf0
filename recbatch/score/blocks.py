"""Worker-side scoring: Arrow batches of users in, top-K rows out, one matrix multiply per block.

This module runs inside Spark's Python workers (through `mapInArrow`), so it imports only
numpy, pyarrow and the numpy kernel: never pyspark or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recbatch.artifacts import ACTIVATIONS
from recbatch.core.network import NetworkWeights
from recbatch.core.rules import ListRules, ruled_top_k
from recbatch.core.topk import TopKScorer

# The scored rows every worker yields (catalogue and candidate scoring alike), before ids are attached.
OUTPUT_SCHEMA = "user_idx int, item_idx int, score float, rank int"
OUTPUT_ARROW_SCHEMA = pa.schema(
    [("user_idx", pa.int32()), ("item_idx", pa.int32()), ("score", pa.float32()), ("rank", pa.int32())]
)

_NUMPY_TYPES = {
    pa.int32(): np.dtype(np.int32),
    pa.int64(): np.dtype(np.int64),
    pa.float32(): np.dtype(np.float32),
    pa.float64(): np.dtype(np.float64),
}

Block = tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]


def activate(dots: np.ndarray, activation: str) -> np.ndarray:
    """Apply the model's score activation in float64 and return float32 scores."""
    x = np.asarray(dots, dtype=np.float64)
    if activation == "sigmoid":
        # 1 / (1 + e^-x) without overflow warnings for large |x|.
        out = np.exp(-np.logaddexp(0.0, -x))
    elif activation == "identity":
        out = x
    else:
        raise ValueError(f"unknown score activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    return out.astype(np.float32)


def as_numpy(array: pa.Array | pa.ChunkedArray, what: str) -> np.ndarray:
    """A null-free numeric Arrow array viewed as numpy.

    Arrow's `to_numpy` imports pandas (even with zero_copy_only=True), which costs each
    Python worker ~40 MiB of resident memory; these columns never hold nulls, so the data
    buffer is viewed as it is (read-only) and a null is an error naming the column.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError(f"{what} holds {array.null_count} null value(s); rerun the stage that wrote it")
    dtype = _NUMPY_TYPES.get(array.type)
    if dtype is None:
        raise ValueError(
            f"{what} has Arrow type {array.type}; expected one of {sorted(map(str, _NUMPY_TYPES))}"
        )
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def from_numpy(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A null-free Arrow array over a numpy array's buffer (pa.array on numpy imports pandas)."""
    values = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[arrow_type])
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def factor_matrix(users: np.ndarray, column: pa.Array, dim: int) -> np.ndarray:
    """A list<float> factor column as a (users, dim) float32 matrix, with clear errors for broken rows."""
    if column.null_count:
        user = users[column.is_null().to_pylist().index(True)]
        raise ValueError(
            f"user_idx {user} has no factors; the model artifacts are broken, rerun `recbatch train`"
        )
    lengths = as_numpy(pc.list_value_length(column), "factor lengths")
    wrong = np.flatnonzero(lengths != dim)
    if len(wrong):
        raise ValueError(
            f"user_idx {users[wrong[0]]} has {lengths[wrong[0]]} factors but items have {dim}; "
            "user and item factors come from different models, rerun `recbatch train`"
        )
    values = as_numpy(pc.list_flatten(column), "user factors").astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        user = users[np.flatnonzero(~np.isfinite(values))[0] // dim]
        raise ValueError(
            f"user_idx {user} has NaN or infinite factors; the model diverged, retrain it (`recbatch train`)"
        )
    return values.reshape(len(users), dim)


def check_seen_items(items: np.ndarray, n_items: int) -> None:
    """Raise a clear error if a seen item index is outside the model's catalogue."""
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        bad = int(items[(items < 0) | (items >= n_items)][0])
        raise ValueError(
            f"seen item_idx {bad} is outside the model's {n_items} items; the prepared data and the model "
            "do not match, rerun `recbatch train`"
        )


def _seen_lists(users: np.ndarray, column: pa.Array, n_items: int) -> list[np.ndarray | None]:
    lengths = as_numpy(pc.fill_null(pc.list_value_length(column), 0), "seen lengths")
    flat = as_numpy(pc.list_flatten(column), "seen item_idx").astype(np.int64, copy=False)
    check_seen_items(flat, n_items)
    return [part if len(part) else None for part in np.split(flat, np.cumsum(lengths)[:-1])]


def decode(batch: pa.RecordBatch, dim: int, n_items: int) -> Block:
    """Arrow batch (user_idx, factors, seen) -> (user indices, factor matrix, seen index arrays)."""
    users = as_numpy(batch.column("user_idx"), "user_idx").astype(np.int32, copy=False)
    vecs = factor_matrix(users, batch.column("factors"), dim)
    seen = _seen_lists(users, batch.column("seen"), n_items)
    return users, vecs, seen


def regroup(blocks: Iterable[Block], size: int) -> Iterator[Block]:
    """Re-chunk decoded batches into blocks of exactly `size` users (the last one may be smaller)."""
    users: list[np.ndarray] = []
    vecs: list[np.ndarray] = []
    seen: list[np.ndarray | None] = []
    pending = 0
    for u, v, s in blocks:
        users.append(u)
        vecs.append(v)
        seen.extend(s)
        pending += len(u)
        while pending >= size:
            all_u, all_v = np.concatenate(users), np.concatenate(vecs)
            yield all_u[:size], all_v[:size], seen[:size]
            users, vecs, seen = [all_u[size:]], [all_v[size:]], seen[size:]
            pending -= size
    if pending:
        yield np.concatenate(users), np.concatenate(vecs), seen


_MAPPED: dict[str, np.ndarray] = {}


def mapped_items(path: str) -> np.ndarray:
    """Item factors from a .npy file, memory-mapped once per Python worker and kept for later tasks."""
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r")
    return _MAPPED[path]


class RuledScorer:
    """A kernel scorer whose k picks per user obey list rules (recbatch.core.rules).

    The kernel ranks each user's pool (its k set to the pool size, then restored), and the
    rules choose k of it; MMR compares the kernel's own item rows (factors, or the embedding
    rows of a network model).
    """

    def __init__(self, scorer: TopKScorer, rules: ListRules, k: int) -> None:
        self.scorer, self.rules, self.k = scorer, rules, k

    def _pool_top(self, vecs: np.ndarray, seen: list[np.ndarray | None] | None):
        def top(rows: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
            kept = self.scorer.k
            self.scorer.k = p
            try:
                return self.scorer(vecs[rows], None if seen is None else [seen[r] for r in rows])
            finally:
                self.scorer.k = kept

        return top

    def _vectors(self, idx: np.ndarray) -> np.ndarray:
        ids = self.scorer.item_ids
        rows = idx if ids is None else np.minimum(np.searchsorted(ids, idx), len(ids) - 1)
        return np.asarray(self.scorer.items[rows], dtype=np.float32)

    def __call__(
        self, user_vecs: np.ndarray, seen: list[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, ranking scores) shaped (users, k), -1 / -inf padded, as TopKScorer."""
        n_candidates = len(self.scorer.items)
        vectors = self._vectors if self.rules.mmr else None
        top = self._pool_top(np.asarray(user_vecs), seen)
        return ruled_top_k(top, len(user_vecs), n_candidates, self.rules, self.k, vectors)


def score_block(block: Block, scorer: TopKScorer | RuledScorer, activation: str) -> pa.RecordBatch:
    """Top-k rows of one block of users: padded slots dropped, ranks 1..n by (-dot, item_idx)."""
    users, vecs, seen = block
    idx, dots = scorer(vecs, seen)
    # Padding (-1) only ever fills the tail of a row, so column position + 1 is the rank.
    rows, cols = np.nonzero(idx >= 0)
    return pa.RecordBatch.from_arrays(
        [
            from_numpy(users[rows], pa.int32()),
            from_numpy(idx[rows, cols], pa.int32()),
            from_numpy(activate(dots[rows, cols], activation), pa.float32()),
            from_numpy(cols + 1, pa.int32()),
        ],
        schema=OUTPUT_ARROW_SCHEMA,
    )


def score_blocks(
    blocks: Iterable[Block],
    items: np.ndarray,
    k: int,
    user_block: int,
    activation: str,
    item_tile: int | None = None,
    item_ids: np.ndarray | None = None,
    network: NetworkWeights | None = None,
    rules: ListRules | None = None,
) -> Iterator[pa.RecordBatch]:
    """Score decoded users (one Spark partition) in blocks of exactly `user_block` users.

    With `item_ids`, `items` holds only the allowed items (row r is catalogue item
    item_ids[r]). With `network` (the dense weights of an mlp/neumf model) users and items
    are embedding rows ranked by the network's logit. With active `rules` each user's k rows
    are the rules' picks from a pool of the best items (`RuledScorer`); `score` stays the
    model's score and the rank is the position after the rules.
    """
    scorer: TopKScorer | RuledScorer
    if network is None:
        scorer = TopKScorer(items, k, item_tile, item_ids)  # one score buffer for the whole partition
    else:
        from recbatch.core.network_topk import worker_scorer

        scorer = worker_scorer(items, network, k, item_tile, item_ids)  # item side once per worker
    if rules is not None and rules.active:
        scorer = RuledScorer(scorer, rules, k)
    for block in regroup(blocks, user_block):
        yield score_block(block, scorer, activation)
