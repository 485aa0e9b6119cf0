"""Popularity baselines: the same list for every user, ranked by the scoring kernel like any model.

popularity: train users per item. popularity_recent: train users per item within the last
`evaluate.window_days` of train, all-time counts breaking ties. Both are `ListScorer`s (one
list for every user), so seen items are masked and ties break by item index exactly as for
the models. The Spark ALS baseline is in `recbatch.evaluate.als`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from recbatch.config import EvaluateConfig
from recbatch.core.ranking import ListScorer, Scorer
from recbatch.core.validation import has_time

log = logging.getLogger(__name__)

DAY = 86_400


def item_popularity(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Number of train users per item (prepared splits hold one row per user and item)."""
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


def recent_popularity(
    train_items: np.ndarray, train_ts: np.ndarray, num_items: int, window_days: int
) -> np.ndarray:
    """Train users per item within the last `window_days` of train; all-time counts break ties."""
    recent = train_ts >= train_ts.max(initial=0) - window_days * DAY
    counts = np.bincount(train_items[recent], minlength=num_items).astype(np.float64)
    overall = np.bincount(train_items, minlength=num_items).astype(np.float64)
    return (counts * (overall.max(initial=0) + 1) + overall).astype(np.float64)


def popularity_scorers(
    ecfg: EvaluateConfig,
    num_users: int,
    train_items: np.ndarray,
    popularity: np.ndarray,
    train_times: Callable[[], np.ndarray],
    block: int,
) -> dict[str, Scorer]:
    """The configured popularity baselines as scorers; `train_times` is read only when needed."""
    scorers: dict[str, Scorer] = {}
    if "popularity" in ecfg.baselines:
        scorers["popularity"] = ListScorer(popularity, num_users, block)
    if "popularity_recent" in ecfg.baselines:
        times = train_times()
        if not has_time(times):
            # Every last_ts equal (no timestamp column): "recent" would be popularity again.
            log.warning("evaluate: popularity_recent skipped: the prepared data has no event times")
            return scorers
        recent = recent_popularity(train_items, times, len(popularity), ecfg.window_days)
        scorers["popularity_recent"] = ListScorer(recent, num_users, block)
    return scorers
