"""Ranking metrics against hand-computed cases and a naive per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbatch.core.metrics import ranking_metrics

L3, L4, L5 = math.log2(3), math.log2(4), math.log2(5)

# Two users, four ranked slots (user A padded with -1), ten items in the catalogue.
RANKED = np.array([[3, 1, 7, -1], [2, 5, 9, 4]])
RELEVANT = [np.array([1, 7, 8]), np.array([4])]


def test_hand_computed_at_4() -> None:
    m = ranking_metrics(RANKED, RELEVANT, [4], n_items=10)
    # A: hits at ranks 2 and 3 of 4, R = 3.  B: hit at rank 4, R = 1.
    ndcg_a = (1 / L3 + 1 / L4) / (1 + 1 / L3 + 1 / L4)  # ideal: 3 hits on top
    ndcg_b = (1 / L5) / 1
    ap_a = (1 / 2 + 2 / 3) / 3  # precision@2 = 1/2, precision@3 = 2/3; over min(R, K) = 3
    ap_b = (1 / 4) / 1
    assert m["hr@4"] == pytest.approx(1.0)
    assert m["precision@4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["recall@4"] == pytest.approx((2 / 3 + 1 / 1) / 2)
    assert m["ndcg@4"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["map@4"] == pytest.approx((ap_a + ap_b) / 2)
    assert m["coverage@4"] == pytest.approx(7 / 10)  # {3, 1, 7, 2, 5, 9, 4}; the -1 pad is no item


def test_hand_computed_at_2_uses_only_first_columns() -> None:
    m = ranking_metrics(RANKED, RELEVANT, [2], n_items=10)
    # A: hit at rank 2 of [3, 1]; ideal DCG over min(3, 2) = 2 slots.  B: no hit in [2, 5].
    assert set(m) == {"hr@2", "ndcg@2", "precision@2", "recall@2", "map@2", "mrr@2", "coverage@2"}
    assert m["mrr@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hr@2"] == pytest.approx(1 / 2)
    assert m["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@2"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx(((1 / L3) / (1 + 1 / L3) + 0) / 2)
    assert m["map@2"] == pytest.approx(((1 / 2) / 2 + 0) / 2)
    assert m["coverage@2"] == pytest.approx(4 / 10)  # {3, 1, 2, 5}


def test_more_relevant_than_k() -> None:
    m = ranking_metrics(np.array([[4, 2]]), [np.array([0, 1, 2, 3, 4])], [2], n_items=5)
    # Both slots hit: AP and NDCG normalise by min(R, K) = 2 and reach 1; recall divides by R = 5.
    assert m["map@2"] == pytest.approx((1 / 1 + 2 / 2) / 2)
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 5)
    assert m["precision@2"] == pytest.approx(1.0)


def test_padding_never_counts_as_a_hit() -> None:
    # Row 1's -1 pads must not match anything, even where a naive row*width+item key of
    # (1, -1) would equal row 0's key for item 5.
    m = ranking_metrics(np.array([[0, 1], [-1, -1]]), [np.array([5]), np.array([0])], [2], n_items=6)
    assert m["hr@2"] == 0.0
    assert m["coverage@2"] == pytest.approx(2 / 6)


def test_users_without_relevant_items_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(np.array([[0, 1]]), [np.array([], dtype=np.int64)], [2], n_items=3)


def test_k_beyond_ranked_columns_is_rejected() -> None:
    with pytest.raises(ValueError, match="fewer than K"):
        ranking_metrics(np.array([[0, 1]]), [np.array([1])], [3], n_items=3)


def naive(ranked: np.ndarray, relevant: list[np.ndarray], k: int, n_items: int) -> dict[str, float]:
    """Per-user loops straight from the textbook definitions."""
    sums = dict.fromkeys(("hr", "ndcg", "precision", "recall", "map"), 0.0)
    for row, rel in zip(ranked, relevant, strict=True):
        rel = set(rel.tolist())
        top = [i for i in row[:k].tolist()]
        hits = [1 if (i >= 0 and i in rel) else 0 for i in top]
        sums["hr"] += 1.0 if any(hits) else 0.0
        sums["precision"] += sum(hits) / k
        sums["recall"] += sum(hits) / len(rel)
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        sums["ndcg"] += dcg / idcg
        ap = sum(hits[j] * sum(hits[: j + 1]) / (j + 1) for j in range(k))
        sums["map"] += ap / min(len(rel), k)
    out = {f"{name}@{k}": total / len(ranked) for name, total in sums.items()}
    out[f"coverage@{k}"] = len({i for i in ranked[:, :k].ravel().tolist() if i >= 0}) / n_items
    return out


def test_matches_naive_reference_on_random_rankings() -> None:
    rng = np.random.default_rng(11)
    n_items, users, width = 50, 40, 12
    ranked = np.stack([rng.permutation(n_items)[:width] for _ in range(users)])
    ranked[rng.random(ranked.shape) < 0.1] = -1  # sprinkle padding; the metrics must ignore it
    relevant = [rng.choice(n_items, size=rng.integers(1, 15), replace=False) for _ in range(users)]
    got = ranking_metrics(ranked, relevant, [1, 5, 12], n_items)
    for k in (1, 5, 12):
        for key, value in naive(ranked, relevant, k, n_items).items():
            assert got[key] == pytest.approx(value), key


def test_mrr_novelty_and_popularity_bias_by_hand() -> None:
    # Train popularity of the ten items; 20 train users. Top 10% = item 0 (one item).
    popularity = np.array([20, 10, 5, 5, 4, 2, 1, 1, 0, 0], dtype=np.float64)
    m = ranking_metrics(RANKED, RELEVANT, [4], n_items=10, popularity=popularity, n_train_users=20)
    assert m["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    info = -np.log2(np.maximum(popularity, 1) / 20)
    novelty_a = (info[3] + info[1] + info[7]) / 3  # the pad is not a recommendation
    novelty_b = (info[2] + info[5] + info[9] + info[4]) / 4
    assert m["novelty@4"] == pytest.approx((novelty_a + novelty_b) / 2)
    assert m["popularity_bias@4"] == 0.0  # item 0 is never recommended
    head = ranking_metrics(
        np.array([[0, 1], [2, 0]]), [np.array([1]), np.array([0])], [2], 10, popularity, 20
    )
    assert head["popularity_bias@2"] == pytest.approx(2 / 4)
    assert head["mrr@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
