"""Top-K ranking metrics with binary relevance, in pure numpy.

Inputs: `ranked`, an int array [users, K'] of item indices best first, padded with -1
where fewer items were ranked (K' >= K; only the first K columns count), and `relevant`,
one array of relevant item indices per row (the user's held-out test items). Every user
must have at least one relevant item; each metric is averaged over users.

Definitions for one user with hits h_j (1 if the item at rank j = 1..K is relevant),
R = |relevant| and m = min(R, K):

- hr@K         1 if any h_j, else 0
- precision@K  sum(h_j) / K             (padding counts as a miss)
- recall@K     sum(h_j) / R             (R, not m: a user with R > K cannot reach 1)
- ndcg@K       sum(h_j / log2(j + 1)) / sum_{j=1..m} 1 / log2(j + 1)
- map@K        sum_j h_j * precision@j / m
- mrr@K        1 / rank of the first hit within K, else 0
- coverage@K   distinct items ranked in the top K over all users / n_items (a catalogue property)

Beyond accuracy (when the train popularity of items is given):

- novelty@K          mean self-information -log2(pop_i / n_train_users) of recommended items
                     (pop_i = train users of item i, at least 1), averaged over users
- popularity_bias@K  share of recommended slots taken by the top 10% most popular items

Of the lists themselves (what business rules change; recbatch.evaluate.list_rules):

- intra_list_diversity@K  mean over lists of the mean pairwise cosine distance (1 - cos) between
                          the item vectors of a list's top K (lists of fewer than 2 items skipped)
- categories@K            mean number of distinct categories in a list's top K
- max_per_category@K      the most items one category takes in any list's top K
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("hr", "ndcg", "precision", "recall", "map", "mrr", "coverage")
BEYOND_ACCURACY = ("novelty", "popularity_bias")


def hits_matrix(ranked: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Boolean [users, k]: whether the item at each rank is relevant to that user."""
    ranked = np.asarray(ranked, dtype=np.int64)[:, :k]
    if len(relevant) != len(ranked):
        raise ValueError(f"ranked has {len(ranked)} rows but relevant has {len(relevant)}")
    # One vectorised membership test on (row, item) keys instead of a loop over users.
    lengths = np.array([len(r) for r in relevant], dtype=np.int64)
    rel_items = np.concatenate(
        [np.asarray(r, dtype=np.int64).ravel() for r in relevant] + [np.empty(0, np.int64)]
    )
    width = int(max(ranked.max(initial=0), rel_items.max(initial=0))) + 1
    rel_keys = np.repeat(np.arange(len(relevant), dtype=np.int64), lengths) * width + rel_items
    rank_keys = np.arange(len(ranked), dtype=np.int64)[:, None] * width + ranked
    return np.isin(rank_keys, rel_keys) & (ranked >= 0)


def _relevant_counts(relevant: Sequence[np.ndarray]) -> np.ndarray:
    counts = np.array([len(np.unique(np.asarray(r))) for r in relevant], dtype=np.float64)
    if np.any(counts == 0):
        raise ValueError("every user needs at least one relevant item; leave out users without test items")
    return counts


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def hit_rate(hits: np.ndarray) -> float:
    """HR@K: share of users with at least one relevant item in the top K."""
    return float(hits.any(axis=1).mean())


def precision(hits: np.ndarray) -> float:
    """Precision@K: relevant items in the top K over K, averaged over users."""
    return float((hits.sum(axis=1) / hits.shape[1]).mean())


def recall(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Recall@K: relevant items in the top K over all of the user's relevant items."""
    return float((hits.sum(axis=1) / n_relevant).mean())


def ndcg(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """NDCG@K with binary gains; the ideal DCG puts min(R, K) hits at the top."""
    k = hits.shape[1]
    disc = _discounts(k)
    dcg = hits.astype(np.float64) @ disc
    ideal = np.cumsum(disc)[np.minimum(n_relevant, k).astype(np.int64) - 1]
    return float((dcg / ideal).mean())


def mean_average_precision(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """MAP@K: precision at each hit's rank, summed and divided by min(R, K), averaged over users."""
    k = hits.shape[1]
    h = hits.astype(np.float64)
    prec_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return float(((prec_at * h).sum(axis=1) / np.minimum(n_relevant, k)).mean())


def reciprocal_rank(hits: np.ndarray) -> float:
    """MRR@K: 1 / rank of the first relevant item in the top K (0 when none), averaged over users."""
    first = np.argmax(hits, axis=1)
    return float(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0).mean())


def novelty(ranked: np.ndarray, k: int, popularity: np.ndarray, n_train_users: int) -> float:
    """Mean self-information -log2(p_i) of each user's recommended items, p_i = pop_i / n_users."""
    top = np.asarray(ranked)[:, :k]
    info = -np.log2(np.maximum(popularity, 1.0) / max(n_train_users, 1))
    valid = top >= 0
    per_user = np.where(valid, info[np.where(valid, top, 0)], 0.0).sum(axis=1) / np.maximum(
        valid.sum(axis=1), 1
    )
    return float(per_user.mean())


def head_items(popularity: np.ndarray, share: float = 0.1) -> np.ndarray:
    """Boolean mask of the ceil(share · n) most popular items (ties by lower index)."""
    n = len(popularity)
    order = np.lexsort((np.arange(n), -np.asarray(popularity, dtype=np.float64)))
    mask = np.zeros(n, dtype=bool)
    mask[order[: int(np.ceil(share * n))]] = True
    return mask


def popularity_bias(ranked: np.ndarray, k: int, popularity: np.ndarray) -> float:
    """Share of (non-padding) recommended slots filled by the top 10% most popular items."""
    top = np.asarray(ranked)[:, :k]
    valid = top >= 0
    if not valid.any():
        return 0.0
    return float(head_items(popularity)[top[valid]].mean())


def coverage(ranked: np.ndarray, k: int, n_items: int) -> float:
    """Catalogue coverage@K: distinct items recommended in anyone's top K over n_items."""
    top = np.asarray(ranked)[:, :k]
    return float(len(np.unique(top[top >= 0])) / n_items)


def ranking_metrics(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray],
    ks: Sequence[int],
    n_items: int,
    popularity: np.ndarray | None = None,
    n_train_users: int = 0,
) -> dict[str, float]:
    """All metrics at every K in `ks`, keyed "<metric>@<K>" (e.g. "ndcg@10"), K ascending.

    With `popularity` (train users per item) also novelty@K and popularity_bias@K.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or len(ranked) == 0:
        raise ValueError("ranked must be a non-empty [users, K] array")
    if max(ks) > ranked.shape[1]:
        raise ValueError(f"ranked has {ranked.shape[1]} columns, fewer than K = {max(ks)}")
    n_rel = _relevant_counts(relevant)
    full = hits_matrix(ranked, relevant, max(ks))
    out: dict[str, float] = {}
    for k in sorted(set(ks)):
        hits = full[:, :k]
        out[f"hr@{k}"] = hit_rate(hits)
        out[f"ndcg@{k}"] = ndcg(hits, n_rel)
        out[f"precision@{k}"] = precision(hits)
        out[f"recall@{k}"] = recall(hits, n_rel)
        out[f"map@{k}"] = mean_average_precision(hits, n_rel)
        out[f"mrr@{k}"] = reciprocal_rank(hits)
        out[f"coverage@{k}"] = coverage(ranked, k, n_items)
        if popularity is not None:
            out[f"novelty@{k}"] = novelty(ranked, k, popularity, n_train_users)
            out[f"popularity_bias@{k}"] = popularity_bias(ranked, k, popularity)
    return out


_LIST_BLOCK = 4096  # lists per block: bounds the (block, K, K) similarity array


def intra_list_diversity(ranked: np.ndarray, k: int, item_vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance inside each list's top K, averaged over lists of 2+ items."""
    from recbatch.core.rules import unit_rows

    unit = unit_rows(item_vectors)
    total, lists = 0.0, 0
    top = np.asarray(ranked)[:, :k]
    for start in range(0, len(top), _LIST_BLOCK):
        block = top[start : start + _LIST_BLOCK]
        valid = block >= 0
        vecs = unit[np.maximum(block, 0)] * valid[..., None]
        sims = np.einsum("nkd,njd->nkj", vecs, vecs)
        pairs = valid[:, :, None] & valid[:, None, :] & ~np.eye(block.shape[1], dtype=bool)
        n_pairs = pairs.sum(axis=(1, 2))
        ok = n_pairs > 0
        distance = np.where(pairs, 1.0 - sims, 0.0).sum(axis=(1, 2))
        total += float((distance[ok] / n_pairs[ok]).sum())
        lists += int(ok.sum())
    return total / lists if lists else 0.0


def category_counts(ranked: np.ndarray, k: int, categories: np.ndarray) -> tuple[float, int]:
    """(mean distinct categories per list, most items of one category in any list) over top K.

    `categories` holds a code >= 0 per item index (negative: no category, never counted).
    """
    cats = np.asarray(categories, np.int64)
    n_codes = int(cats.max()) + 1 if len(cats) and cats.max() >= 0 else 1
    top = np.asarray(ranked)[:, :k]
    distinct, most = 0.0, 0
    for start in range(0, len(top), _LIST_BLOCK):
        block = top[start : start + _LIST_BLOCK]
        codes = np.where(block >= 0, cats[np.maximum(block, 0)], -1)
        rows = np.repeat(np.arange(len(block)), block.shape[1])
        keep = codes.ravel() >= 0
        counts = np.bincount(
            rows[keep] * n_codes + codes.ravel()[keep], minlength=len(block) * n_codes
        ).reshape(len(block), n_codes)
        distinct += float((counts > 0).sum())
        most = max(most, int(counts.max(initial=0)))
    return (distinct / len(top) if len(top) else 0.0), most
