"""The numpy top-K kernel against a naive sort, on seeded data full of exact ties (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.core.topk import TopKScorer, top_k, top_k_dot, top_k_rows


def _naive(users, items, k, seen):
    """Python sort of every unseen item by (-dot, item index), scores in float64 (exact here)."""
    dots = users.astype(np.float64) @ items.astype(np.float64).T
    idx = np.full((len(users), k), -1, np.int64)
    val = np.full((len(users), k), -np.inf, np.float32)
    for r in range(len(users)):
        skip = set() if seen is None or seen[r] is None else set(seen[r].tolist())
        ranked = sorted((-dots[r, i], i) for i in range(len(items)) if i not in skip)[:k]
        for j, (neg, i) in enumerate(ranked):
            idx[r, j], val[r, j] = i, -neg
    return idx, val


def _tied(rng, n_users, n_items, dim, levels=3):
    # Few distinct small values: dot products are exact in float32 and ties are everywhere.
    users = rng.integers(-levels, levels + 1, size=(n_users, dim)).astype(np.float32)
    items = rng.integers(-levels, levels + 1, size=(n_items, dim)).astype(np.float32)
    return users, items


def _seen(rng, n_users, n_items, most):
    seen = [rng.choice(n_items, size=int(rng.integers(0, most + 1)), replace=False) for _ in range(n_users)]
    seen[0] = None
    seen[1] = np.arange(n_items)  # everything seen: no recommendations
    seen[2] = np.arange(n_items - 3)  # three unseen items left, fewer than k
    return seen


@pytest.mark.parametrize(
    ("n_items", "k", "tile", "levels"),
    [
        (53, 5, None, 2),
        (1000, 10, None, 2),
        (1000, 10, 97, 1),
        (1000, 40, 300, 3),
        (700, 7, 700, 0),
        (9, 20, 4, 2),
        (5000, 100, 2000, 2),  # k above the 64 prefilter groups (an audience's top 100)
        (5000, 150, 180, 1),  # tiles narrower than 2k: the exact k-th score per row
    ],
)
def test_scorer_matches_naive_sort_with_ties(n_items, k, tile, levels):
    rng = np.random.default_rng(n_items + k)
    users, items = _tied(rng, 40, n_items, 6, levels)
    seen = _seen(rng, 40, n_items, min(n_items, 50))
    got = TopKScorer(items, k, tile)(users, seen)
    want = _naive(users, items, k, seen)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_scorer_reuses_its_buffer_across_block_sizes():
    rng = np.random.default_rng(3)
    users, items = _tied(rng, 64, 500, 4)
    scorer = TopKScorer(items, 10, 128)
    parts = [scorer(users[a:b], None) for a, b in [(0, 50), (50, 51), (51, 64)]]
    whole = _naive(users, items, 10, None)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])


def test_random_floats_match_full_sort_of_the_same_gemm():
    rng = np.random.default_rng(5)
    users = rng.standard_normal((300, 32), dtype=np.float32)
    items = rng.standard_normal((5000, 32), dtype=np.float32)
    seen = [rng.choice(5000, size=20, replace=False) for _ in range(300)]
    scores = users @ items.T
    for r, s in enumerate(seen):
        scores[r, s] = -np.inf
    idx, val = top_k_dot(users, items, 10, seen)
    ref_idx, ref_val = top_k_rows(scores, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


def test_top_k_rows_orders_by_score_then_index():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0], [-np.inf] * 5], np.float32)
    idx, val = top_k_rows(scores, 3)
    assert idx.tolist() == [[1, 2, 4], [-1, -1, -1]]
    assert val[0].tolist() == [3.0, 3.0, 2.0]


def test_rejects_out_of_range_seen_items():
    with pytest.raises(ValueError, match="outside 0..3"):
        TopKScorer(np.ones((4, 2), np.float32), 2)(np.ones((1, 2), np.float32), [np.array([4])])


def test_allowed_subset_ranks_like_the_full_catalogue_with_the_rest_masked():
    rng = np.random.default_rng(8)
    users, items = _tied(rng, 30, 400, 5, 2)
    seen = _seen(rng, 30, 400, 60)
    allowed = np.sort(rng.choice(400, size=150, replace=False))
    got = TopKScorer(items[allowed], 10, 64, item_ids=allowed)(users, seen)
    denied = np.setdiff1d(np.arange(400), allowed)
    masked = [denied if s is None else np.union1d(s, denied) for s in seen]
    want = _naive(users, items, 10, masked)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="ascending"):
        TopKScorer(items[:3], 2, item_ids=np.array([5, 1, 9]))


def test_top_k_selects_exactly_what_the_full_sort_does_with_ties_and_masked_entries():
    """Evaluation's selection (the prefilter) against the reference full sort of every finite score."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        rows, cols, k = int(rng.integers(1, 50)), int(rng.integers(1, 300)), int(rng.integers(1, 25))
        if trial % 2:  # few distinct values: ties everywhere, broken by item index
            scores = rng.integers(0, 4, size=(rows, cols)).astype(np.float32)
        else:
            scores = rng.standard_normal((rows, cols)).astype(np.float32)
        scores[rng.random((rows, cols)) < rng.random()] = -np.inf
        want_idx, want_val = top_k_rows(scores, k)
        got_idx, got_val = top_k(scores, k)
        assert np.array_equal(got_idx, want_idx) and np.array_equal(got_val, want_val), (rows, cols, k)


def test_evaluation_ranks_one_list_for_everyone_like_the_naive_sort():
    from recbatch.core.ranking import ListScorer, rank_users

    rng = np.random.default_rng(5)
    popularity = rng.integers(0, 6, 300).astype(np.float32)  # many ties
    seen = [rng.choice(300, rng.integers(0, 40), replace=False) for _ in range(500)]
    seen[7] = np.arange(296)  # only 4 unseen items left: the rest of the row is padding
    ranked = rank_users(ListScorer(popularity, 500, block=64), np.arange(500), 10, seen)
    np.testing.assert_array_equal(ranked, _naive(np.ones((500, 1)), popularity[:, None], 10, seen)[0])
    assert (ranked[7, 4:] == -1).all()


def test_evaluation_ranks_dot_scorers_by_tiles_like_the_naive_sort(monkeypatch):
    import recbatch.core.ranking as ranking

    rng = np.random.default_rng(6)
    user_rows, item_rows = _tied(rng, 300, 257, 4)  # exact dots, ties broken by index in every tile
    seen = [rng.choice(257, rng.integers(0, 30), replace=False) for _ in range(300)]
    monkeypatch.setattr(ranking, "TILE_SCORES", 64 * 50)  # 64-user blocks by tiles of 50 items
    scorer = ranking.DotScorer(user_rows, item_rows, block=64)
    ranked = ranking.rank_users(scorer, np.arange(300), 12, seen)
    np.testing.assert_array_equal(ranked, _naive(user_rows, item_rows, 12, seen)[0])
