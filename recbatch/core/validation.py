"""The validation split, carved from train (never from test), and validation NDCG of any scorer.

Each user with at least two train items gives up their latest one (by last_ts, ties by
the higher item_idx), mirroring how prepare holds out test; a model is fitted on the
rest and early stopping (train) or a grid search (the ALS baseline) watches NDCG@K of
these held-out items (on a seeded sample of VALIDATION_USERS users where there are more). Without time information (every last_ts equal: the input had no
timestamp column) the held-out item is a seeded random one instead: ordering by item
index would hold out each user's largest index, and indices follow the id order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recbatch.core.metrics import hits_matrix, ndcg
from recbatch.core.ranking import Scorer, group_items, rank_users, sample_candidates

# Fixed, so every model and the ALS grid validate on the same items whatever their own seeds.
VALIDATION_SEED = 0x5EED
# Users whose held-out item is ranked (a seeded sample above this): NDCG on 20,000 users has a
# standard error near 0.002, enough to pick an epoch, and ranking 250K users x 10K items took
# ~5 s an epoch (measured, 2 cores).
VALIDATION_USERS = 20_000


@dataclass
class Split:
    """Fit rows and one validation item per user who has >= 2 train items."""

    fit_users: np.ndarray
    fit_items: np.ndarray
    val_users: np.ndarray
    val_items: np.ndarray
    fit_index: np.ndarray | None = None  # positions of the fit rows in the carved arrays
    seen: list[np.ndarray] | None = field(default=None, repr=False)  # fit items of each val user
    # The sampled protocol (with_sampled_negatives): the items each validation ranking is over.
    candidates: list[np.ndarray] | None = field(default=None, repr=False)


def has_time(last_ts: np.ndarray) -> bool:
    """Whether the timestamps order anything (an input without a timestamp column gives all zeros)."""
    return len(last_ts) > 0 and bool(np.any(last_ts != last_ts[0]))


def pair_draw(users: np.ndarray, items: np.ndarray, seed: int = VALIDATION_SEED) -> np.ndarray:
    """A seeded pseudo-random uint64 per (user, item), independent of row order (splitmix64)."""
    with np.errstate(over="ignore"):
        x = (np.asarray(users, np.uint64) << np.uint64(32)) ^ np.asarray(items, np.uint64)
        x = x ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
        return x ^ (x >> np.uint64(31))


def carve_validation(users: np.ndarray, items: np.ndarray, last_ts: np.ndarray, num_users: int) -> Split:
    """Hold out each user's latest train item (users with a single train item keep it)."""
    when = last_ts if has_time(last_ts) else pair_draw(users, items)
    order = np.lexsort((items, when, users))  # by user, then time (or the draw), then item
    su = users[order]
    is_last = np.append(su[1:] != su[:-1], True)
    counts = np.bincount(users, minlength=num_users)
    held = is_last & (counts[su] >= 2)
    keep = order[~held]
    val = order[held]
    # Every user's latest item leaves the fit rows; a sample of them is ranked (VALIDATION_USERS).
    if len(val) > VALIDATION_USERS:
        picked = np.random.default_rng(VALIDATION_SEED).choice(len(val), VALIDATION_USERS, replace=False)
        val = val[np.sort(picked)]
    return Split(users[keep], items[keep], users[val], items[val], keep)


def seen_items(split: Split, num_users: int) -> list[np.ndarray]:
    """The fit items of each validation user, grouped once per split (every epoch and grid point reuses them)."""
    if split.seen is None:
        wanted = np.zeros(num_users, bool)
        wanted[split.val_users] = True
        mask = wanted[split.fit_users]
        seen_all = group_items(split.fit_users[mask], split.fit_items[mask], num_users)
        split.seen = [seen_all[u] for u in split.val_users]
    return split.seen


def with_sampled_negatives(split: Split, num_users: int, num_items: int, negatives: int) -> Split:
    """`split` with each validation item ranked among `negatives` unseen items drawn uniformly
    (seeded by VALIDATION_SEED, so every model and the ALS grid see the same candidates), as
    evaluate.protocol = "sampled" ranks test items; `negatives` 0 leaves the full ranking."""
    if negatives:
        relevant = [np.array([item]) for item in split.val_items]
        rng = np.random.default_rng(VALIDATION_SEED)
        split.candidates = sample_candidates(
            relevant, seen_items(split, num_users), num_items, negatives, rng
        )
    return split


def scorer_ndcg(scorer: Scorer, split: Split, num_users: int, k: int) -> float:
    """NDCG@k of the validation items under any scorer, ranking all items not in the fit rows
    (or only each user's sampled candidates, `with_sampled_negatives`)."""
    users = np.asarray(split.val_users, dtype=np.int64)
    ranked = rank_users(scorer, users, k, seen_items(split, num_users), split.candidates)
    relevant = [np.array([i]) for i in split.val_items]
    return ndcg(hits_matrix(ranked, relevant, k), np.ones(len(users)))
