"""What [score.rules] costs and buys, measured on the evaluation split with the published code path.

With a category cap or an MMR re-rank configured, the trained model's lists are ranked twice
for the same users: by score alone, and through the same selection the scoring workers run
(`recbatch.core.rules.ruled_top_k`, pool widening included). Both are scored on the held-out
items, and the lists themselves compared: catalogue coverage, intra-list diversity (cosine
distance over the model's item vectors, the space MMR works in), distinct categories and the
most items one category takes in a list. The difference in NDCG is the rules' metric cost.

Availability windows are left out here: they depend on the run date, and the evaluation
split's held-out items lie before it. Their effect on the published table is the publish
stage's row accounting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from recbatch.config import Config
from recbatch.core.metrics import category_counts, intra_list_diversity, ranking_metrics
from recbatch.core.ranking import DotScorer, NetworkScorer, Scorer, rank_users
from recbatch.core.rules import ListRules, ruled_top_k
from recbatch.core.topk import mask_seen, top_k
from recbatch.layout import RunLayout

log = logging.getLogger(__name__)


def item_vectors_of(scorer: Scorer) -> np.ndarray | None:
    """The item rows the re-rank compares: factors, or a network model's item embedding rows."""
    if isinstance(scorer, DotScorer):
        return np.asarray(scorer.item_matrix, dtype=np.float32)
    if isinstance(scorer, NetworkScorer):
        return np.asarray(scorer.item_rows, dtype=np.float32)
    return None


def rank_users_ruled(
    scorer: Scorer,
    users: np.ndarray,
    k: int,
    seen: Sequence[np.ndarray],
    rules: ListRules,
    item_vectors: np.ndarray | None,
) -> np.ndarray:
    """Top-k item indices per user as the rules pick them (seen items excluded), -1 padded."""
    n_items = scorer.shape[1]
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    vectors = None if item_vectors is None else (lambda idx: item_vectors[idx])
    for start in range(0, len(users), scorer.block):
        stop = start + scorer.block
        scores = np.array(scorer.scores(users[start:stop]), dtype=np.float32)
        mask_seen(scores, seen[start:stop])

        def pool_top(rows: np.ndarray, p: int, scores: np.ndarray = scores) -> tuple[np.ndarray, np.ndarray]:
            return top_k(scores[rows], p)

        ranked[start:stop], _ = ruled_top_k(pool_top, len(scores), n_items, rules, k, vectors)
    return ranked


def _list_summary(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray],
    k: int,
    n_items: int,
    item_vectors: np.ndarray | None,
    categories: np.ndarray | None,
) -> dict[str, float]:
    scores = ranking_metrics(ranked, relevant, [k], n_items)
    out = {name: scores[f"{name}@{k}"] for name in ("hr", "ndcg", "recall", "coverage")}
    if item_vectors is not None:
        out["intra_list_diversity"] = intra_list_diversity(ranked, k, item_vectors)
    if categories is not None:
        out["categories"], out["max_per_category"] = category_counts(ranked, k, categories)
    return out


def rules_effect(
    config: Config,
    layout: RunLayout,
    model_name: str,
    scorer: Scorer,
    users: np.ndarray,
    seen: Sequence[np.ndarray],
    relevant: Sequence[np.ndarray],
) -> dict[str, Any] | None:
    """The trained model's lists by score and under [score.rules], side by side; None when no rule re-ranks."""
    from recbatch.io.item_metadata import list_rules, read_rules_metadata

    settings = config.score.rules
    metadata = read_rules_metadata(settings, layout.item_vocab)
    rules = list_rules(settings, metadata)
    if rules is None or not rules.active:
        return None
    k = config.score.k
    vectors = item_vectors_of(scorer)
    if rules.mmr and vectors is None:
        log.warning(
            "evaluate: score.rules.mmr_lambda needs the model's item vectors; its effect is not measured"
        )
        return None
    n_items = scorer.shape[1]
    categories = None if metadata is None else metadata.categories
    plain = rank_users(scorer, users, k, seen)
    ruled = rank_users_ruled(scorer, users, k, seen, rules, vectors)
    by_score = _list_summary(plain, relevant, k, n_items, vectors, categories)
    with_rules = _list_summary(ruled, relevant, k, n_items, vectors, categories)
    cost = with_rules["ndcg"] - by_score["ndcg"]
    log.info(
        "evaluate %s with score.rules: ndcg@%d %.4f (by score %.4f), intra-list diversity %.3f (%.3f)",
        model_name,
        k,
        with_rules["ndcg"],
        by_score["ndcg"],
        with_rules.get("intra_list_diversity", float("nan")),
        by_score.get("intra_list_diversity", float("nan")),
    )
    return {
        "model": model_name,
        "k": k,
        "category_cap": settings.category_cap,
        "mmr_lambda": settings.mmr_lambda,
        "pool": settings.pool,
        "by_score": by_score,
        "with_rules": with_rules,
        "ndcg_cost": cost,
        "ndcg_cost_share": cost / by_score["ndcg"] if by_score["ndcg"] > 0 else 0.0,
    }
