"""Exact top-K selection for a block of users against all items, in numpy.

Used by the Spark scoring engine inside each Python worker and by evaluation on the
driver, so both rank items identically. Ties break by item index (lower first), which
makes reruns byte-identical.

`TopKScorer` is the fast path: per block of users one GEMM per item tile into a reused
buffer, seen items set to -inf in place, then a threshold prefilter instead of a full
partition. The tile's columns are cut into G >= 2k groups (64 at least); the k-th largest group maximum
is a lower bound on the row's k-th largest score (k distinct elements reach it), so only
groups whose maximum reaches it can hold a top-k item. Those few groups are compared
element-wise, and the survivors (about k per row) are merged with the running top-k by an
exact lexsort on (row, -score, item). Measured on one core at 1024 users x 20K items x d32,
K=10: ~2.5x numpy's argpartition and faster than TensorFlow's matmul + top_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NO_ITEM = -1
GROUPS = 64  # column groups per tile for the prefilter; more gives a tighter bound, fewer a cheaper one


def mask_seen(scores: np.ndarray, seen: Sequence[np.ndarray | None]) -> None:
    """Set scores of already-seen items to -inf, in place (one row per user)."""
    rows = [np.full(len(s), r, dtype=np.int64) for r, s in enumerate(seen) if s is not None and len(s)]
    if not rows:
        return
    cols = [np.asarray(s, dtype=np.int64) for s in seen if s is not None and len(s)]
    scores[np.concatenate(rows), np.concatenate(cols)] = -np.inf


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of each row by (-score, column index); -inf entries are never returned.

    Returns (indices, values), both shaped (rows, k); where a row has fewer than k finite
    scores the tail holds index -1 and value -inf. The simple reference selection (a full
    sort of the row's finite scores); `TopKScorer` gives the same result faster.
    """
    idx = np.full((scores.shape[0], k), NO_ITEM, dtype=np.int64)
    val = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    rows, cols = np.nonzero(np.isfinite(scores))
    _merge(idx, val, rows, cols, scores[rows, cols].astype(np.float32))
    return idx, val


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_rows`' exact result by the threshold prefilter: only entries that may be in a row's
    top k reach the sort (evaluation and validation rank whole score blocks with it)."""
    scores = np.asarray(scores, dtype=np.float32)
    idx = np.full((scores.shape[0], k), NO_ITEM, dtype=np.int64)
    val = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    if scores.size:
        floor = np.full(scores.shape[0], -np.inf, dtype=np.float32)
        _merge(idx, val, *_candidates(scores, k, floor))
    return idx, val


def seen_coordinates(seen: Sequence[np.ndarray | None] | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, item indices) of the seen pairs of a block, sorted by item so tiles slice them."""
    if seen is None:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    lengths = np.fromiter((0 if s is None else len(s) for s in seen), dtype=np.int64, count=n_rows)
    if not lengths.sum():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    cols = np.concatenate([s for s in seen if s is not None and len(s)]).astype(np.int64, copy=False)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    order = np.argsort(cols, kind="stable")
    return rows[order], cols[order]


def _candidates(scores: np.ndarray, k: int, floor: np.ndarray) -> tuple[np.ndarray, ...]:
    """(row, column, score) of every entry that may be in its row's top k; floor: known k-th scores."""
    n_rows, n_cols = scores.shape
    # At least 2k groups: the bound needs k of them, and with fewer than k (k > GROUPS, e.g. an
    # audience of 100 users) every entry of the tile became a candidate for the full lexsort.
    groups = min(max(GROUPS, 2 * k), n_cols // 2)
    if groups < k:  # a tile narrower than 2k columns: its exact k-th score is cheap
        threshold = floor
        if n_cols > k:
            threshold = np.maximum(np.partition(scores, n_cols - k, axis=1)[:, n_cols - k], floor)
        rows, cols = np.nonzero(scores >= threshold[:, None])
    else:
        width = n_cols // groups
        body = scores[:, : groups * width].reshape(n_rows, groups, width)
        group_max = body.max(axis=2)
        bound = np.partition(group_max, groups - k, axis=1)[:, groups - k]
        threshold = np.maximum(bound, floor)
        g_rows, g_ids = np.nonzero(group_max >= threshold[:, None])
        hit_rows, hit_cols = np.nonzero(body[g_rows, g_ids] >= threshold[g_rows, None])
        rows, cols = g_rows[hit_rows], g_ids[hit_rows] * width + hit_cols
        if groups * width < n_cols:  # the few columns past the last whole group
            t_rows, t_cols = np.nonzero(scores[:, groups * width :] >= threshold[:, None])
            rows = np.concatenate([rows, t_rows])
            cols = np.concatenate([cols, t_cols + groups * width])
    values = scores[rows, cols]
    if not np.isfinite(threshold).all():
        # A row with fewer than k finite scores has threshold -inf: drop its masked entries.
        keep = np.isfinite(values)
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return rows, cols, values


def _merge(idx: np.ndarray, val: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """Merge candidates into the running top-k (idx, val) in place, by (-score, item index)."""
    n_rows, k = idx.shape
    have = idx >= 0
    all_rows = np.concatenate([np.nonzero(have)[0], rows])
    all_cols = np.concatenate([idx[have], cols])
    all_vals = np.concatenate([val[have], values])
    order = np.lexsort((all_cols, -all_vals, all_rows))
    all_rows, all_cols, all_vals = all_rows[order], all_cols[order], all_vals[order]
    position = np.arange(len(all_rows)) - np.searchsorted(all_rows, np.arange(n_rows))[all_rows]
    top = position < k
    idx[all_rows[top], position[top]] = all_cols[top]
    val[all_rows[top], position[top]] = all_vals[top]


class TopKScorer:
    """Exact top-k by dot product against fixed item factors, reusing one score buffer.

    One instance per Python worker (or per partition): the buffer of user_block x
    item_tile float32 scores is allocated once, which also spares the page faults of a
    fresh allocation per block (they cost more than the GEMM itself). Subclasses rank by
    another score by overriding `_block_state` and `_tile_scores` (the network kernel).
    """

    def __init__(
        self, items: np.ndarray, k: int, item_tile: int | None = None, item_ids: np.ndarray | None = None
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        # A memory-mapped matrix stays mapped: np.asarray keeps it zero-copy when already float32.
        self.items = items if items.dtype == np.float32 else np.asarray(items, dtype=np.float32)
        self.k = k
        self.item_tile = max(1, min(item_tile or len(items), len(items)))
        # item_ids: the catalogue index of each row of `items` when they are an allowed subset;
        # ascending, so ties still break by catalogue index.
        self.item_ids = None if item_ids is None else np.asarray(item_ids, dtype=np.int64)
        if self.item_ids is not None and (
            len(self.item_ids) != len(self.items) or np.any(np.diff(self.item_ids) <= 0)
        ):
            raise ValueError("item_ids must be ascending, unique and give one index per item row")
        self._buffer = np.empty(0, np.float32)

    def _block_state(self, users: np.ndarray) -> Any:
        """Per-block work shared by every item tile (none for a dot product)."""
        return None

    def _tile_scores(self, users: np.ndarray, block: Any, start: int, stop: int, out: np.ndarray) -> None:
        """Ranking scores of the block's users against items start..stop, into `out` (users x tile)."""
        np.matmul(users, self.items[start:stop].T, out=out)

    def _local_seen(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seen pairs in the subset's row numbering; seen items outside the subset drop out."""
        pos = np.minimum(np.searchsorted(self.item_ids, cols), len(self.item_ids) - 1)
        hit = self.item_ids[pos] == cols
        return rows[hit], pos[hit]

    def __call__(
        self, user_vecs: np.ndarray, seen: Sequence[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, scores) shaped (users, k), padded with -1 / -inf; seen[r] excluded for row r."""
        users = np.ascontiguousarray(user_vecs, dtype=np.float32)
        n_rows, n_items = len(users), len(self.items)
        idx = np.full((n_rows, self.k), NO_ITEM, dtype=np.int64)
        val = np.full((n_rows, self.k), -np.inf, dtype=np.float32)
        if n_rows == 0:
            return idx, val
        seen_rows, seen_cols = seen_coordinates(seen, n_rows)
        if self.item_ids is not None:
            seen_rows, seen_cols = self._local_seen(seen_rows, seen_cols)
        elif len(seen_cols) and (seen_cols[0] < 0 or seen_cols[-1] >= n_items):
            raise ValueError(f"seen item index outside 0..{n_items - 1}")
        block = self._block_state(users)
        for start in range(0, n_items, self.item_tile):
            stop = min(start + self.item_tile, n_items)
            if self._buffer.size < n_rows * (stop - start):
                self._buffer = np.empty(n_rows * (stop - start), np.float32)
            scores = self._buffer[: n_rows * (stop - start)].reshape(n_rows, stop - start)
            self._tile_scores(users, block, start, stop, scores)
            lo, hi = np.searchsorted(seen_cols, [start, stop])
            scores[seen_rows[lo:hi], seen_cols[lo:hi] - start] = -np.inf
            rows, cols, values = _candidates(scores, self.k, val[:, -1])
            _merge(idx, val, rows, cols + start, values)
        if self.item_ids is not None:
            idx = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], NO_ITEM)
        return idx, val


def top_k_dot(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    k: int,
    seen: Sequence[np.ndarray | None] | None = None,
    item_tile: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k items by dot product for each user row, seen items excluded.

    `seen[r]` holds the item indices user row r has interacted with (or None). Returns
    (item indices, scores) shaped (users, k), padded with -1 / -inf where a user has
    fewer than k unseen items.
    """
    return TopKScorer(np.asarray(item_vecs, dtype=np.float32), k, item_tile)(user_vecs, seen)
