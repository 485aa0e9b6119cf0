"""Diagnostics beyond accuracy: does a model personalise, and where do its recommendations fall
on the popularity curve?

The seed model's logit is a user term plus an item term, so every user gets the same item
order: Kendall's tau between two users' score vectors is 1 and unmasked top-K lists are
identical. A personalising model has tau well below 1.
"""

from __future__ import annotations

import numpy as np

from recbatch.core.ranking import Scorer
from recbatch.core.topk import top_k


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-a between two score vectors (O(n^2) pairs; keep n to a few hundred)."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    n = len(a)
    return float((da * db).sum() / (n * (n - 1)))


def personalisation(
    scorer: Scorer, users: np.ndarray, n_items: int, k: int, seed: int, pairs: int = 100, items: int = 200
) -> dict[str, float]:
    """Mean Kendall tau between random user pairs' scores (on a random item subset) and the share
    of those pairs whose unmasked top-k lists are identical."""
    rng = np.random.default_rng(seed)
    if len(users) < 2:
        return {"kendall_tau": float("nan"), "identical_top_k": float("nan"), "pairs": 0}
    first = rng.choice(users, size=pairs)
    second = rng.choice(users, size=pairs)
    same = first == second
    second[same] = users[(np.searchsorted(users, second[same]) + 1) % len(users)]
    subset = rng.choice(n_items, size=min(items, n_items), replace=False)
    taus, identical = [], []
    for a, b in zip(first, second, strict=True):
        scores = np.asarray(scorer.scores(np.array([a, b])), dtype=np.float64)
        taus.append(kendall_tau(scores[0, subset], scores[1, subset]))
        top, _ = top_k(scores, k)
        identical.append(bool(np.array_equal(top[0], top[1])))
    return {"kendall_tau": float(np.mean(taus)), "identical_top_k": float(np.mean(identical)), "pairs": pairs}


def long_tail(ranked: np.ndarray, k: int, popularity: np.ndarray, bins: int = 10) -> list[float]:
    """Share of recommended slots per popularity decile of the catalogue (most popular first)."""
    n = len(popularity)
    order = np.lexsort((np.arange(n), -np.asarray(popularity, dtype=np.float64)))
    decile = np.empty(n, dtype=np.int64)
    decile[order] = np.arange(n) * bins // n
    top = np.asarray(ranked)[:, :k]
    top = top[top >= 0]
    if len(top) == 0:
        return [0.0] * bins
    return (np.bincount(decile[top], minlength=bins) / len(top)).tolist()
