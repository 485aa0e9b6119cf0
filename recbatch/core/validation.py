"""The validation split, carved from train (never from test), and validation NDCG of any scorer.

Each user with at least two train items gives up their latest one (by last_ts, ties by
the higher item_idx), mirroring how prepare holds out test; a model is fitted on the
rest and early stopping (train) or a grid search (the ALS baseline) watches NDCG@K of
these held-out items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbatch.core.metrics import hits_matrix, ndcg
from recbatch.core.ranking import Scorer, group_items, rank_users


@dataclass
class Split:
    """Fit rows and one validation item per user who has >= 2 train items."""

    fit_users: np.ndarray
    fit_items: np.ndarray
    val_users: np.ndarray
    val_items: np.ndarray


def carve_validation(users: np.ndarray, items: np.ndarray, last_ts: np.ndarray, num_users: int) -> Split:
    """Hold out each user's latest train item (users with a single train item keep it)."""
    order = np.lexsort((items, last_ts, users))  # by user, then time, then item
    su = users[order]
    is_last = np.append(su[1:] != su[:-1], True)
    counts = np.bincount(users, minlength=num_users)
    held = is_last & (counts[su] >= 2)
    keep = order[~held]
    val = order[held]
    return Split(users[keep], items[keep], users[val], items[val])


def scorer_ndcg(scorer: Scorer, split: Split, num_users: int, k: int) -> float:
    """NDCG@k of the validation items under any scorer, ranking all items not in the fit rows."""
    seen_all = group_items(split.fit_users, split.fit_items, num_users)
    users = np.asarray(split.val_users, dtype=np.int64)
    ranked = rank_users(scorer, users, k, [seen_all[u] for u in users])
    relevant = [np.array([i]) for i in split.val_items]
    return ndcg(hits_matrix(ranked, relevant, k), np.ones(len(users)))
