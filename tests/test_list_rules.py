"""The list rules' kernels (recbatch.core.rules) against naive full-ranking references."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.core.rules import ListRules, available_items, ruled_top_k


def _full_ranking(scores: np.ndarray, seen: list[set[int]]) -> list[list[int]]:
    return [
        [int(i) for i in sorted(range(scores.shape[1]), key=lambda i: (-scores[r, i], i)) if i not in seen[r]]
        for r in range(len(scores))
    ]


def _pool_top(scores: np.ndarray, seen: list[set[int]]):
    ranked = _full_ranking(scores, seen)

    def top(rows: np.ndarray, p: int):
        idx = np.full((len(rows), p), -1, np.int64)
        val = np.full((len(rows), p), -np.inf, np.float32)
        for j, r in enumerate(rows):
            items = ranked[r][:p]
            idx[j, : len(items)] = items
            val[j, : len(items)] = scores[r, items]
        return idx, val

    return top


def test_cap_equals_greedy_over_the_full_ranking_even_when_the_pool_must_widen():
    rng = np.random.default_rng(0)
    n_users, n_items, k, cap = 30, 60, 8, 2
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    categories = np.where(np.arange(n_items) < 40, 0, np.arange(n_items) % 5 + 1).astype(np.int32)
    scores[:, :40] += 3.0  # category 0 dominates every pool of 8: the pool has to widen
    seen = [set(rng.choice(n_items, 5, replace=False).tolist()) for _ in range(n_users)]
    rules = ListRules(categories, cap=cap, pool=k)
    got, _ = ruled_top_k(_pool_top(scores, seen), n_users, n_items, rules, k)
    for r, ranking in enumerate(_full_ranking(scores, seen)):
        want, count = [], {}
        for i in ranking:
            if count.get(categories[i], 0) < cap:
                want.append(i)
                count[categories[i]] = count.get(categories[i], 0) + 1
            if len(want) == k:
                break
        assert got[r].tolist() == want


def test_mmr_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    n_users, n_items, k, lam, pool = 12, 40, 5, 0.7, 15
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    vectors = rng.normal(size=(n_items, 4)).astype(np.float32)
    seen = [set() for _ in range(n_users)]
    rules = ListRules(None, mmr_lambda=lam, pool=pool)
    got, _ = ruled_top_k(_pool_top(scores, seen), n_users, n_items, rules, k, lambda idx: vectors[idx])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for r, ranking in enumerate(_full_ranking(scores, seen)):
        cand = ranking[:pool]
        s = scores[r, cand].astype(np.float64)
        rel = dict(zip(cand, (s - s.min()) / (s.max() - s.min()), strict=True))
        picked: list[int] = []
        while len(picked) < k:
            rest = [i for i in cand if i not in picked]
            closest = {i: max((float(unit[i] @ unit[j]) for j in picked), default=0.0) for i in rest}
            gains = {i: lam * rel[i] - (1 - lam) * closest[i] for i in rest}
            best = max(gains.values())
            picked.append(min(i for i in rest if np.isclose(gains[i], best, rtol=0, atol=1e-12)))
        assert got[r].tolist() == picked


def test_evaluation_ranks_through_the_same_rules_as_the_naive_greedy():
    from recbatch.core.ranking import DotScorer
    from recbatch.evaluate.list_rules import rank_users_ruled

    rng = np.random.default_rng(2)
    n_users, n_items, k, cap = 25, 50, 6, 2
    users_m = rng.normal(size=(n_users, 4)).astype(np.float32)
    items_m = rng.normal(size=(n_items, 4)).astype(np.float32)
    categories = (np.arange(n_items) % 4).astype(np.int32)
    seen = [rng.choice(n_items, 4, replace=False) for _ in range(n_users)]
    scorer = DotScorer(users_m, items_m, block=7)  # blocks that do not divide the users
    got = rank_users_ruled(scorer, np.arange(n_users), k, seen, ListRules(categories, cap=cap, pool=k), None)
    scores = users_m @ items_m.T
    for r, ranking in enumerate(_full_ranking(scores, [set(x.tolist()) for x in seen])):
        want, count = [], {}
        for i in ranking:
            if count.get(categories[i], 0) < cap and len(want) < k:
                want.append(i)
                count[categories[i]] = count.get(categories[i], 0) + 1
        assert got[r].tolist() == want


def test_list_diversity_and_category_counts_match_naive_loops():
    from recbatch.core.metrics import category_counts, intra_list_diversity

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 5))
    categories = np.where(np.arange(30) < 25, np.arange(30) % 3, -1)  # the last five in no category
    ranked = np.array([rng.permutation(30)[:6] for _ in range(9)] + [[4, -1, -1, -1, -1, -1]])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    per_list = [
        np.mean([1 - unit[a] @ unit[b] for a in row for b in row if a != b]) for row in ranked[:9]
    ]  # the last list has one item: no pair, not averaged
    assert intra_list_diversity(ranked, 6, vectors) == pytest.approx(np.mean(per_list))
    distinct = [len({categories[i] for i in row if i >= 0 and categories[i] >= 0}) for row in ranked]
    most = max(
        max(np.bincount([categories[i] for i in row if i >= 0 and categories[i] >= 0])) for row in ranked
    )
    assert category_counts(ranked, 6, categories) == (pytest.approx(np.mean(distinct)), most)


def test_availability_window_is_inclusive_with_open_ends():
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    start = np.array([10, lo, 11, 5], np.int64)
    end = np.array([10, 9, hi, 20], np.int64)
    assert available_items(start, end, 10).tolist() == [True, False, False, True]


@pytest.mark.spark
def test_published_lists_obey_the_cap_and_availability_exactly(spark, tmp_path):
    """score_and_publish with rules on equals a naive full-ranking greedy walk per user."""

    from recbatch.config import Config
    from recbatch.pipeline import score_and_publish
    from tests.builders import write_scored_run

    rng = np.random.default_rng(7)
    n_users, n_items, k, cap = 40, 30, 6, 2
    users = rng.normal(size=(n_users, 4)).astype(np.float32)
    items = rng.normal(size=(n_items, 4)).astype(np.float32)
    train = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)]
    layout = write_scored_run(tmp_path, users, items, train, [])
    category = [f"c{i % 4}" for i in range(n_items)]
    gone = {5, 11}  # their window ended before the run date
    metadata = tmp_path / "items.csv"
    metadata.write_text(
        "item_id,category,available_from,available_to\n"
        + "".join(f"i{i},{category[i]},,{'2026-01-01' if i in gone else ''}\n" for i in range(n_items))
    )
    config = Config.model_validate(
        {
            "paths": {"workdir": str(tmp_path)},
            "score": {"k": k, "rules": {"item_metadata": str(metadata), "category_cap": cap, "pool": 8}},
        }
    )
    manifest = score_and_publish(spark, config, layout, "r1")
    table = spark.read.parquet(manifest["path"])
    got: dict[str, list[str]] = {}
    for row in sorted(table.select("user_id", "rank", "item_id").collect()):
        got.setdefault(row.user_id, []).append(row.item_id)
    seen = {u: {i for v, i in train if v == u} for u in range(n_users)}
    want = {}
    for u in range(n_users):
        scores = items @ users[u]
        order = sorted(range(n_items), key=lambda i: (-scores[i], i))
        picked, per_category = [], {}
        for i in order:
            if i in seen[u] or i in gone or per_category.get(category[i], 0) >= cap:
                continue
            picked.append(f"i{i}")
            per_category[category[i]] = per_category.get(category[i], 0) + 1
            if len(picked) == k:
                break
        want[f"u{u}"] = picked
    assert got == want
