"""Per-positive loss weights from interaction strength (play counts, event weights, ratings).

A prepared pair carries its strength s (`train.strength`: the summed event weight, the
event count or the mean rating). `train.weighting` turns it into how much the pair's
positive counts in the loss: "log" gives 1 + log(1 + s), which keeps heavy users' and
items' counts from dominating; "confidence" gives 1 + alpha * s, the confidence of
implicit ALS (Hu, Koren & Volinsky 2008). `train.recency_half_life` multiplies in how recent
the pair is among the user's own interactions, 0.5^(newer / half_life): next-item behaviour
follows what a user did last. Weights are scaled to mean 1, so the learning rate keeps its
meaning; sampled negatives keep weight 1.
"""

from __future__ import annotations

import numpy as np

from recbatch.config import TrainConfig


def strength_weights(strength: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Unscaled weights of the positives whose strengths are `strength`; None for weighting "none"."""
    if cfg.weighting == "none":
        return None
    # Centred ratings can be negative and a missing value is 0: neither may weigh less than nothing.
    s = np.maximum(np.nan_to_num(np.asarray(strength, dtype=np.float64), nan=0.0), 0.0)
    return 1.0 + np.log1p(s) if cfg.weighting == "log" else 1.0 + cfg.weight_alpha * s


def newer_counts(users: np.ndarray, last_ts: np.ndarray) -> np.ndarray:
    """Per row: how many rows of the same user have a later last_ts (ties are not newer)."""
    users = np.asarray(users, dtype=np.int64)
    ts = np.asarray(last_ts, dtype=np.int64)
    order = np.lexsort((ts, users))
    su, st = users[order], ts[order]
    # Rows of a user after the last row with the same time are the newer ones.
    boundary = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    user_end = np.repeat(np.r_[boundary[1:], len(su)], np.diff(np.r_[boundary, len(su)]))
    same_end = np.flatnonzero(np.r_[(su[1:] != su[:-1]) | (st[1:] != st[:-1]), True]) + 1
    group_end = np.repeat(same_end, np.diff(np.r_[0, same_end]))
    out = np.empty(len(users), dtype=np.int64)
    out[order] = user_end - group_end
    return out


def recency_weights(users: np.ndarray, last_ts: np.ndarray, half_life: float) -> np.ndarray:
    """0.5^(n / half_life) per row, n = `newer_counts`: each user's latest rows weigh 1."""
    return 0.5 ** (newer_counts(users, last_ts) / float(half_life))


def example_weights(
    cfg: TrainConfig, strength: np.ndarray | None, users: np.ndarray, last_ts: np.ndarray
) -> np.ndarray | None:
    """float32 loss weights (mean 1) of the positives: strength (train.weighting) times recency
    (train.recency_half_life, only where the timestamps order anything); None when neither applies."""
    from recbatch.core.validation import has_time

    raw = strength_weights(strength, cfg) if strength is not None else None
    if cfg.recency_half_life is not None and has_time(last_ts):
        recency = recency_weights(users, last_ts, cfg.recency_half_life)
        raw = recency if raw is None else raw * recency
    if raw is None:
        return None
    if len(raw) == 0:
        return raw.astype(np.float32)
    return (raw / raw.mean()).astype(np.float32)
