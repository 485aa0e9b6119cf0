"""Exact top-K selection for a block of users against all items, in numpy.

Used by the Spark scoring engine inside each Python worker and by evaluation on the
driver, so both rank items identically. Ties break by item index (lower first), which
makes reruns byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_ITEM = -1


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
    scores the tail holds index -1 and value -inf.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    idx = np.full((n_rows, k), NO_ITEM, dtype=np.int64)
    val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or k_eff == 0:
        return idx, val
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        # argpartition picks arbitrarily among scores equal to the k-th one; rows with such
        # ties are redone exactly so the lowest item indices win.
        at_least = (scores >= kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(at_least > k_eff):
            cand = np.flatnonzero(scores[r] >= kth[r])
            order = np.lexsort((cand, -scores[r, cand]))
            part[r] = cand[order[:k_eff]]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    top_val = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top_val), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    top_val = np.take_along_axis(top_val, order, axis=1)
    finite = np.isfinite(top_val)
    idx[:, :k_eff] = np.where(finite, part, NO_ITEM)
    val[:, :k_eff] = np.where(finite, top_val, -np.inf)
    return idx, val


def top_k_dot(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    k: int,
    seen: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k items by dot product for each user row, seen items excluded.

    `seen[r]` holds the item indices user row r has interacted with (or None). Returns
    (item indices, scores) shaped (users, k), padded with -1 / -inf where a user has
    fewer than k unseen items.
    """
    scores = np.asarray(user_vecs, dtype=np.float32) @ np.asarray(item_vecs, dtype=np.float32).T
    if seen is not None:
        mask_seen(scores, seen)
    return top_k_rows(scores, k)
