"""Ranking every user's candidate items with a trained model, in numpy (no TensorFlow).

A scorer turns a block of user indices into a score matrix [block, n_items]: `DotScorer`
for factor models (one matrix multiply, exactly as the scoring engine does) and
`NetworkScorer` for mlp/neumf (`recbatch.core.network`). `rank_users` masks each
user's seen items (or everything but a sampled candidate set) and keeps the top K with
the shared kernel, so ties break by item index everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recbatch.core.network import block_users_for, network_logits
from recbatch.core.topk import NO_ITEM, TopKScorer, mask_seen, seen_coordinates, top_k

# Scores a dot scorer's block holds at once in rank_users (64 MiB of float32): a 1M-user x
# 100K-item evaluation then ranks 1,024 users by tiles of 16,384 items instead of a 400 MB
# block, through the scoring engine's kernel (its buffer reused, no page faults per block).
TILE_SCORES = 1 << 24


class Scorer(Protocol):
    block: int

    @property
    def shape(self) -> tuple[int, int]: ...

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Scores [len(users), n_items] (higher ranks first)."""
        ...


# A model fitted for comparison: its scorer and its training history (loss, val_ndcg per epoch).
FittedModel = tuple[Scorer, dict[str, list[float]]]


@dataclass
class DotScorer:
    """score(u, i) = user_matrix[u] · item_matrix[i]."""

    user_matrix: np.ndarray
    item_matrix: np.ndarray
    block: int = 1024

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items) this scorer covers."""
        return len(self.user_matrix), len(self.item_matrix)

    def scores(self, users: np.ndarray) -> np.ndarray:
        u = np.asarray(self.user_matrix[users], dtype=np.float32)
        return u @ np.asarray(self.item_matrix, dtype=np.float32).T


@dataclass
class ListScorer:
    """score(u, i) = item_scores[i] for every user: one list for all (the popularity baselines).

    `rank_users` ranks it without a score matrix: the items in order once (score descending,
    ties by index), then each user's first k unseen ones; exact, and independent of the
    catalogue's size (a full-matrix ranking of 1M users x 100K items took minutes per baseline).
    """

    item_scores: np.ndarray
    num_users: int
    block: int = 1024

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items) this scorer covers."""
        return self.num_users, len(self.item_scores)

    def scores(self, users: np.ndarray) -> np.ndarray:
        row = np.asarray(self.item_scores, dtype=np.float32)
        return np.repeat(row[None, :], len(users), axis=0)

    def rank(self, users: np.ndarray, k: int, seen: Sequence[np.ndarray]) -> np.ndarray:
        """Top-k item indices per user, seen[r] excluded, -1 padded (as `rank_users`)."""
        scores = np.asarray(self.item_scores)
        order = np.lexsort((np.arange(len(scores)), -scores))
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        ranked = np.full((len(users), k), NO_ITEM, dtype=np.int64)
        for start in range(0, len(users), self.block):
            block_seen = seen[start : start + self.block]
            rows, cols = seen_coordinates(block_seen, len(block_seen))
            # A user's first k unseen items lie among the first k + (items they saw) of the list.
            width = min(len(order), k + max((len(s) for s in block_seen), default=0))
            taken = np.zeros((len(block_seen), width), bool)
            at = position[cols]
            near = at < width
            taken[rows[near], at[near]] = True
            free = ~taken
            place = np.cumsum(free, axis=1)
            r, c = np.nonzero(free & (place <= k))
            ranked[start + r, place[r, c] - 1] = order[c]
        return ranked


@dataclass
class NetworkScorer:
    """score(u, i) = the NCF network on (user_rows[u], item_rows[i])."""

    weights: dict[str, Any]
    user_rows: np.ndarray
    item_rows: np.ndarray
    block: int = 0

    def __post_init__(self) -> None:
        if not self.block:
            self.block = block_users_for(self.weights, len(self.item_rows))

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items) this scorer covers."""
        return len(self.user_rows), len(self.item_rows)

    def scores(self, users: np.ndarray) -> np.ndarray:
        return network_logits(self.weights, self.user_rows[users], self.item_rows)


def rank_users(
    scorer: Scorer,
    users: np.ndarray,
    k: int,
    seen: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Top-k item indices per user (seen[r] excluded; only candidates[r] when given), -1 padded."""
    if candidates is None and isinstance(scorer, ListScorer):
        return scorer.rank(users, k, seen)
    if candidates is None and isinstance(scorer, DotScorer):
        return _rank_dot(scorer, users, k, seen)
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), scorer.block):
        stop = start + scorer.block
        scores = np.asarray(scorer.scores(users[start:stop]), dtype=np.float32)
        if candidates is None:
            mask_seen(scores, seen[start:stop])
        else:
            keep = np.full_like(scores, -np.inf)
            for r, cand in enumerate(candidates[start:stop]):
                keep[r, cand] = scores[r, cand]
            scores = keep
        ranked[start:stop], _ = top_k(scores, k)
    return ranked


def _rank_dot(scorer: DotScorer, users: np.ndarray, k: int, seen: Sequence[np.ndarray]) -> np.ndarray:
    """`rank_users` for a dot scorer by the scoring engine's kernel, TILE_SCORES scores at a time."""
    tile = max(1, TILE_SCORES // max(1, scorer.block))
    kernel = TopKScorer(scorer.item_matrix, k, tile)
    ranked = np.full((len(users), k), NO_ITEM, dtype=np.int64)
    for start in range(0, len(users), scorer.block):
        stop = start + scorer.block
        ranked[start:stop], _ = kernel(scorer.user_matrix[users[start:stop]], seen[start:stop])
    return ranked


def sample_candidates(
    relevant: Sequence[np.ndarray],
    seen: Sequence[np.ndarray],
    n_items: int,
    negatives: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per user: the relevant items plus `negatives` per relevant item drawn from the unseen rest.

    The NCF paper's protocol (test item among 99 sampled non-interacted items). Fewer are
    drawn when fewer unseen items exist.
    """
    out = []
    for rel, s in zip(relevant, seen, strict=True):
        pool = np.setdiff1d(np.arange(n_items), np.concatenate([np.asarray(s), np.asarray(rel)]))
        n = min(len(pool), negatives * len(rel))
        out.append(np.concatenate([np.asarray(rel, dtype=np.int64), rng.choice(pool, size=n, replace=False)]))
    return out


def group_items(users: np.ndarray, items: np.ndarray, num_users: int) -> list[np.ndarray]:
    """Items per user index (a list of num_users arrays), from parallel user/item arrays."""
    order = np.argsort(users, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])
    sorted_items = items[order]
    return [sorted_items[bounds[u] : bounds[u + 1]] for u in range(num_users)]
