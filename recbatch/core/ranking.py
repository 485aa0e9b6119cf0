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
from recbatch.core.topk import mask_seen, top_k


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
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), scorer.block):
        stop = start + scorer.block
        scores = np.array(scorer.scores(users[start:stop]), dtype=np.float32)
        if candidates is None:
            mask_seen(scores, seen[start:stop])
        else:
            keep = np.full_like(scores, -np.inf)
            for r, cand in enumerate(candidates[start:stop]):
                keep[r, cand] = scores[r, cand]
            scores = keep
        ranked[start:stop], _ = top_k(scores, k)
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
