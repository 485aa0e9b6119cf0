"""Audiences: the engine with the roles swapped, against numpy brute force (real Spark)."""

from __future__ import annotations

import numpy as np

from recbatch.score.audience import audience_lists
from recbatch.score.plan import make_plan


def test_audiences_equal_brute_force_and_never_hold_a_user_who_interacted(spark):
    rng = np.random.default_rng(11)
    users = rng.standard_normal((150, 6)).astype(np.float32)
    items = rng.standard_normal((40, 6)).astype(np.float32)
    users[100] = users[5]  # equal scores for two users of every item: the tie goes to user 5
    pairs = sorted(
        {(int(u), int(i)) for u, i in zip(rng.integers(0, 150, 900), rng.integers(0, 40, 900), strict=True)}
    )
    interactions = spark.createDataFrame(pairs, "user_idx int, item_idx int")
    factors = spark.createDataFrame(
        [(i, items[i].tolist()) for i in range(40)], "item_idx int, factors array<float>"
    )
    plan = make_plan(40, 150, 6, 12, 2, user_input="spark", user_block=16, item_tile=64)
    rows = audience_lists(spark, factors, users, interactions, 12, "identity", plan).collect()
    got: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        got.setdefault(r.item_idx, []).append((r.rank, r.user_idx))
    seen = {i: {u for u, j in pairs if j == i} for i in range(40)}
    for i in range(40):
        scores = users @ items[i]
        order = [int(u) for u in np.lexsort((np.arange(150), -scores)) if int(u) not in seen[i]]
        assert [u for _, u in sorted(got[i])] == order[:12], f"item {i}"
