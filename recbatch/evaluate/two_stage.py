"""Two-stage scoring in evaluation: what retrieve-top-n-then-rerank costs against exact ranking.

The retriever (a dot-product model of the run: the trained model, an extra model or ALS)
gives each user's top n unseen items; every network model (mlp/neumf) then ranks only
those. Per network model: recall@k of both rankings, their difference, and the share of
the exact top-k items the two stages keep.
"""

from __future__ import annotations

import logging

import numpy as np

from recbatch.core.metrics import ranking_metrics
from recbatch.core.ranking import DotScorer, NetworkScorer, Scorer, rank_users
from recbatch.errors import ConfigError

log = logging.getLogger(__name__)


def two_stage(
    scorers: dict[str, Scorer],
    exact: dict[str, dict[str, float]],
    retriever: str,
    n: int,
    users: np.ndarray,
    seen: list[np.ndarray],
    relevant: list[np.ndarray],
    k: int,
) -> dict[str, dict[str, float]]:
    """Recall@k of retrieve-top-n-then-rerank against exact ranking (`exact`), per network model.

    The retriever's top n unseen items become each user's candidates; the network model
    ranks only those. `overlap` is the share of the exact top-k items the two stages keep.
    """
    if not isinstance(scorers.get(retriever), DotScorer):
        raise ConfigError(
            f"evaluate.two_stage_retriever = {retriever!r} is not a dot-product model of this run; "
            "add it to evaluate.extra_models (mf, gmf, two_tower), or use als with the als baseline on"
        )
    retrieved = rank_users(scorers[retriever], users, n, seen)
    candidates = [row[row >= 0] for row in retrieved]
    out = {}
    for name, scorer in scorers.items():
        if not isinstance(scorer, NetworkScorer):
            continue
        exact_recall = exact[name][f"recall@{k}"]
        recall, overlap = _rerank(scorer, users, seen, relevant, candidates, k)
        out[f"{name} <- {retriever} top-{n}"] = {
            "k": k,
            "n": n,
            "exact_recall": exact_recall,
            "recall": recall,
            "recall_cost": exact_recall - recall,
            "overlap": overlap,
        }
    for name, row in out.items():
        log.info("evaluate %s: recall@%d %.4f (exact %.4f)", name, k, row["recall"], row["exact_recall"])
    return out


def _rerank(
    scorer: Scorer,
    users: np.ndarray,
    seen: list[np.ndarray],
    relevant: list[np.ndarray],
    candidates: list[np.ndarray],
    k: int,
) -> tuple[float, float]:
    """Recall@k of one network model re-ranking `candidates`, and the share of its exact top k kept."""
    full = rank_users(scorer, users, k, seen)
    staged = rank_users(scorer, users, k, seen, candidates)
    recall = ranking_metrics(staged, relevant, [k], scorer.shape[1])[f"recall@{k}"]
    kept = [
        len(np.intersect1d(a[a >= 0], b[b >= 0])) / max(1, int((a >= 0).sum()))
        for a, b in zip(full, staged, strict=True)
    ]
    return recall, float(np.mean(kept))
