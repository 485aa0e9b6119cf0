"""Validation of a Keras model during training: its numpy scorer and its validation NDCG.

The split itself and NDCG of any scorer live in `recbatch.core.validation`, shared with the
ALS baseline's grid search.
"""

from __future__ import annotations

from typing import Any

from recbatch.core.ranking import DotScorer, NetworkScorer, Scorer
from recbatch.core.validation import Split, scorer_ndcg


def model_scorer(model: Any) -> Scorer:
    """A numpy scorer for a trained recbatch Keras model (dot factors or the NCF network)."""
    if hasattr(model, "network_weights"):
        user_rows, item_rows = model.embedding_factors()
        return NetworkScorer(model.network_weights(), user_rows, item_rows)
    users, items, _ = model.scoring_factors()
    return DotScorer(users, items)


def validation_ndcg(model: Any, split: Split, num_users: int, k: int) -> float:
    """NDCG@k of the validation items for a trained model, ranking all items not in the fit rows."""
    return scorer_ndcg(model_scorer(model), split, num_users, k)
