"""Business rules on each user's list, in numpy: availability windows, a per-category cap, an MMR re-rank.

Shared by the scoring workers (recbatch.score.blocks) and evaluation on the driver, so the
published lists and the measured effect of the rules come from the same code.

Selection happens in two steps. The exact kernel gives each user a pool: the top P items by
(-score, item index), seen and unavailable items already excluded. `select_lists` then picks
k of the pool:

- category cap only: greedy by rank, skipping an item whose category already has `cap`
  items in the list. That equals the same greedy walk over the user's FULL ranking whenever
  the walk finishes inside the pool; `ruled_top_k` widens the pool for the users whose walk
  does not (one category dominates their top P), so the result is always the full-ranking one.
- MMR (mmr_lambda < 1): each pick maximises λ·rel − (1 − λ)·max cos(item, picked), where rel
  is the pool's scores min-max scaled to 0..1 per user (raw dot products or logits have no
  fixed scale, so λ would mean something else for every user and model without it) and the
  cosine is over the item vectors. The first pick is always the top item. MMR is defined over
  the pool; the cap, when also set, restricts each pick, and the pool widens as above.

Ties break by the lower item index everywhere, so reruns give the same lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

NO_ITEM = -1
NO_CATEGORY = -1  # an item in no category: never counted against the cap
WIDEN = 4  # a short user's pool grows by this factor per round


@dataclass(frozen=True, eq=False)
class ListRules:
    """The per-list rules one scoring job applies (the item-sized part travels to every worker)."""

    categories: np.ndarray | None  # category code per catalogue item_idx (NO_CATEGORY: none)
    cap: int = 0  # most items of one category per list; 0: no cap
    mmr_lambda: float = 1.0  # relevance weight of the MMR re-rank; 1.0: off
    pool: int = 50  # candidates per user the rules choose from (at least k)

    def __post_init__(self) -> None:
        if self.cap < 0 or not 0.0 <= self.mmr_lambda <= 1.0 or self.pool < 1:
            raise ValueError(
                f"invalid list rules: cap={self.cap}, mmr_lambda={self.mmr_lambda}, pool={self.pool}"
            )
        if self.cap > 0 and self.categories is None:
            raise ValueError("a category cap needs the item categories")

    @property
    def active(self) -> bool:
        """Whether the rules change anything over plain top-k by score."""
        return self.cap > 0 or self.mmr_lambda < 1.0

    @property
    def mmr(self) -> bool:
        return self.mmr_lambda < 1.0


def available_items(available_from: np.ndarray, available_to: np.ndarray, day: int) -> np.ndarray:
    """Per item: whether `day` (days since 1970-01-01) lies in its inclusive [from, to] window.

    Open ends are int64 min / max (what recbatch.io.item_metadata writes for an empty date).
    """
    return (np.asarray(available_from) <= day) & (day <= np.asarray(available_to))


def _category_matrix(idx: np.ndarray, categories: np.ndarray | None) -> np.ndarray:
    if categories is None:
        return np.full(idx.shape, NO_CATEGORY, dtype=np.int64)
    return np.where(idx >= 0, np.asarray(categories, np.int64)[np.maximum(idx, 0)], NO_CATEGORY)


def cap_mask(idx: np.ndarray, categories: np.ndarray | None, cap: int) -> np.ndarray:
    """(rows, P) bool: the pool entries a greedy walk by rank may take under `cap` (ignoring k).

    Walking a row best first, an item is skipped exactly when `cap` earlier items share its
    category, so an entry is allowed iff fewer than `cap` entries before it have its category.
    """
    valid = idx >= 0
    if cap <= 0:
        return valid
    cats = _category_matrix(idx, categories)
    n_rows, width = idx.shape
    rows = np.repeat(np.arange(n_rows), width)
    cols = np.tile(np.arange(width), n_rows)
    flat = cats.ravel()
    order = np.lexsort((cols, flat, rows))  # grouped by (row, category), by rank inside
    r, c = rows[order], flat[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    before = np.empty(len(order), dtype=np.int64)
    before[order] = np.arange(len(order)) - first  # same-category entries ranked above
    return valid & ((cats == NO_CATEGORY) | (before.reshape(n_rows, width) < cap))


def _first_k(mask: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column positions of each row's first k True entries, -1 padded."""
    take = mask & (np.cumsum(mask, axis=1) <= k)
    out = np.full((mask.shape[0], k), NO_ITEM, dtype=np.int64)
    rows, cols = np.nonzero(take)
    slot = np.cumsum(take, axis=1)[rows, cols] - 1
    out[rows, slot] = cols
    return out


def relevance(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row's pool scores min-max scaled to 0..1 over its valid entries (all 1 if they are equal)."""
    v = np.where(valid, values.astype(np.float64), np.nan)
    with np.errstate(all="ignore"):  # rows with no valid entry stay NaN and are never picked
        low, high = np.nanmin(v, axis=1, keepdims=True), np.nanmax(v, axis=1, keepdims=True)
        span = high - low
        scaled = np.where(span > 0, (v - low) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, scaled, 0.0)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero: cosine 0 with everything)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def mmr_positions(
    idx: np.ndarray,
    values: np.ndarray,
    vectors: np.ndarray,
    categories: np.ndarray | None,
    cap: int,
    mmr_lambda: float,
    k: int,
) -> np.ndarray:
    """(rows, k) pool positions picked by greedy MMR under the cap, -1 padded; vectors: (rows, P, d)."""
    n_rows, width = idx.shape
    valid = idx >= 0
    rel = relevance(values, valid)
    unit = unit_rows(vectors)
    cats = _category_matrix(idx, categories)
    open_ = valid.copy()
    closest = np.zeros((n_rows, width))  # max cosine to the picked items (0 before the first pick)
    same = np.zeros((n_rows, width), dtype=np.int64)  # picked items sharing the entry's category
    out = np.full((n_rows, k), NO_ITEM, dtype=np.int64)
    rows = np.arange(n_rows)
    for step in range(k):
        gain = np.where(open_, mmr_lambda * rel - (1.0 - mmr_lambda) * closest, -np.inf)
        best_gain = gain.max(axis=1)
        live = np.isfinite(best_gain)
        if not live.any():
            break
        tied = (gain == best_gain[:, None]) & open_
        pick = np.where(tied, idx, np.iinfo(np.int64).max).argmin(axis=1)  # ties: lower item index
        out[live, step] = pick[live]
        open_[rows[live], pick[live]] = False
        sim = np.einsum("rpd,rd->rp", unit, unit[rows, pick])
        closest = np.where(live[:, None], np.maximum(closest, sim) if step else sim, closest)
        if cap > 0:
            category = np.where(live, cats[rows, pick], NO_CATEGORY)
            same += (cats == category[:, None]) & (category[:, None] != NO_CATEGORY)
            open_ &= (cats == NO_CATEGORY) | (same < cap)
    return out


def select_lists(
    idx: np.ndarray,
    values: np.ndarray,
    rules: ListRules,
    k: int,
    vectors: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, scores) shaped (rows, k), -1 / -inf padded: the rules' k picks of each pool.

    `idx`/`values` are pools best first (the kernel's output with k = P); `vectors(idx)` gives
    the item vectors of an index array (needed for MMR only).
    """
    if rules.mmr:
        if vectors is None:
            raise ValueError("the MMR re-rank needs the item vectors")
        vecs = vectors(np.maximum(idx, 0))
        positions = mmr_positions(idx, values, vecs, rules.categories, rules.cap, rules.mmr_lambda, k)
    else:
        positions = _first_k(cap_mask(idx, rules.categories, rules.cap), k)
    hit = positions >= 0
    safe = np.maximum(positions, 0)
    out_idx = np.where(hit, np.take_along_axis(idx, safe, axis=1), NO_ITEM)
    out_val = np.where(hit, np.take_along_axis(values, safe, axis=1), -np.inf).astype(np.float32)
    return out_idx, out_val


PoolTop = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def ruled_top_k(
    pool_top: PoolTop,
    n_rows: int,
    n_candidates: int,
    rules: ListRules,
    k: int,
    vectors: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The rules' k items per row, widening the pool of rows the cap leaves short.

    `pool_top(rows, p)` returns the exact top-p (idx, values) of those rows (seen and
    unavailable items excluded); `n_candidates` is how many items a row can rank at most. A
    row is short when it got fewer than k items while its pool was full, so more items exist
    below it: its pool grows WIDEN times until it fills k or holds every candidate.
    """
    out_idx = np.full((n_rows, k), NO_ITEM, dtype=np.int64)
    out_val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    rows = np.arange(n_rows)
    p = max(1, min(max(rules.pool, k), n_candidates))
    while len(rows):
        idx, values = pool_top(rows, p)
        got_idx, got_val = select_lists(idx, values, rules, k, vectors)
        short = (got_idx[:, -1] < 0) & (idx[:, -1] >= 0) & (p < n_candidates)
        done = rows[~short]
        out_idx[done], out_val[done] = got_idx[~short], got_val[~short]
        rows = rows[short]
        p = min(n_candidates, p * WIDEN)
    return out_idx, out_val
