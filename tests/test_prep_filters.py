"""Pair filters, normalisation and splits against naive pure-Python references."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import pytest

from recbatch.prep import aggregate, filters, split

pytestmark = pytest.mark.spark

PAIRS = (
    "user_id string, item_id string, count long, weight double, rating double, "
    "first_ts long, last_ts long, copies long"
)
EVENTS = "user_id string, item_id string, event string, weight double, rating double, ts long"
INTERACTIONS = "user_idx int, item_idx int, count long, weight double, rating double, last_ts long"


def _naive_kcore(pairs: set[tuple[str, str]], ku: int, ki: int) -> set[tuple[str, str]]:
    while True:
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if users[u] >= ku and items[i] >= ki}
        if kept == pairs:
            return kept
        pairs = kept


@pytest.mark.parametrize(("ku", "ki"), [(3, 3), (4, 1), (1, 5), (2, 2)])
def test_kcore_matches_a_naive_reference(spark, ku, ki):
    rng = random.Random(ku * 10 + ki)
    pairs = {(f"u{rng.randrange(40)}", f"i{int(rng.paretovariate(1.2)) % 30}") for _ in range(260)}
    rows = [(u, i, 2, 1.0, None, 1, 1, 2) for u, i in sorted(pairs)]
    out = filters.Filtered()
    got = filters.kcore(spark.createDataFrame(rows, PAIRS), ku, ki, 50, out)
    expected = _naive_kcore(pairs, ku, ki)
    assert {(r["user_id"], r["item_id"]) for r in got.collect()} == expected
    removed = len(pairs) - len(expected)
    assert out.rows["min_user_interactions"] + out.rows["min_item_interactions"] == 2 * removed
    rounds = out.details["kcore"]["rounds"]
    assert (
        out.details["kcore"]["converged"]
        and sum(r["min_user_interactions"] + r["min_item_interactions"] for r in rounds) == 2 * removed
    )
    if ku > 1 and ki > 1:
        assert rounds[-1]["min_user_interactions"] == rounds[-1]["min_item_interactions"] == 0
    else:
        assert len(rounds) == 1  # one side only: a single round reaches the core
    out.release()


def test_outliers_by_quantile_and_cap(spark):
    rows = [(f"u{u}", f"i{k}", 1, 1.0, None, 1, 1, 1) for u in range(10) for k in range(u + 1)]
    pairs = spark.createDataFrame(rows, PAIRS)
    out = filters.Filtered()
    kept = filters.drop_outliers(pairs, "user_id", 0.8, None, out)
    # events per user are 1..10; the exact 0.8 quantile is 8.2, so u8 (9) and u9 (10) go.
    assert out.details["outlier_user"]["threshold"] == pytest.approx(8.2)
    assert out.rows["outlier_user"] == 19
    assert {r["user_id"] for r in kept.collect()} == {f"u{u}" for u in range(8)}
    kept = filters.drop_outliers(pairs, "item_id", None, 7, out)
    # item k has the 10 - k users u_k..u9: i0, i1 and i2 are above 7.
    assert out.rows["outlier_item"] == 27 and out.details["outlier_item"]["removed"] == 3
    assert {r["item_id"] for r in kept.collect()} == {f"i{k}" for k in range(3, 10)}
    out.release()


def test_near_duplicates_and_window_counters(spark):
    events = [
        ("u", "i", "view", 1.0, None, 100),
        ("u", "i", "view", 1.0, None, 100),  # exact duplicate
        ("u", "i", "view", 1.0, None, 105),  # near: 5 s after
        ("u", "i", "view", 1.0, None, 112),  # near: 7 s after the previous (chained)
        ("u", "i", "view", 1.0, None, 130),  # 18 s after: a new event
        ("u", "i", "click", 2.0, None, 131),  # another type: not near
        ("u", "j", "view", 1.0, 4.0, 10),  # before the window
        ("u", "j", "view", 1.0, 2.0, 200),
    ]
    got = {
        r["item_id"]: r.asDict()
        for r in aggregate.aggregate_events(spark.createDataFrame(events, EVENTS), 10, 50, 2).collect()
    }
    i, j = got["i"], got["j"]
    assert (i["copies"], i["events"], i["near"], i["window_out"], i["count"]) == (6, 5, 2, 0, 3)
    assert (i["weight"], i["first_ts"], i["last_ts"]) == (4.0, 100, 131)
    assert (j["copies"], j["events"], j["near"], j["window_out"], j["count"], j["rating"]) == (
        2,
        2,
        0,
        1,
        1,
        2.0,
    )


def test_normalise_logs_weights_and_centres_ratings(spark):
    rows = [
        ("a", "x", 1, 3.0, 4.0, 1, 1, 1),
        ("a", "y", 1, 1.0, 2.0, 1, 1, 1),
        ("b", "x", 1, 1.0, None, 1, 1, 1),
    ]
    got = {
        (r["user_id"], r["item_id"]): (r["weight"], r["rating"])
        for r in aggregate.normalise(spark.createDataFrame(rows, PAIRS), True, True).collect()
    }
    assert got[("a", "x")] == (pytest.approx(math.log(4.0)), 1.0)
    assert got[("a", "y")][1] == -1.0 and got[("b", "x")][1] is None


def _interactions(spark, seed=0, users=30, items=25):
    rng = random.Random(seed)
    rows = {
        (u, i): (u, i, 1, 1.0, None, rng.randrange(1000))
        for u in range(users)
        for i in rng.sample(range(items), rng.randrange(1, 9))
    }
    return spark.createDataFrame(list(rows.values()), INTERACTIONS), list(rows.values())


def _by_user(marked):
    train, test = defaultdict(list), defaultdict(list)
    for r in marked.collect():
        (test if r["is_test"] else train)[r["user_idx"]].append(r)
    return train, test


def test_time_cutoff_split_has_no_leakage(spark):
    df, rows = _interactions(spark)
    train, test = _by_user(split.mark_test_time(df, 600))
    assert sum(len(v) for v in train.values()) + sum(len(v) for v in test.values()) == len(rows)
    assert all(r["last_ts"] > 600 for v in test.values() for r in v)
    assert all(r["last_ts"] <= 600 for u in test for r in train[u])  # no test pair precedes a train pair
    assert set(test) <= set(train)  # every test user has history
    only_late = {u for u, _, _, _, _, ts in rows} - {u for u, _, _, _, _, ts in rows if ts <= 600}
    assert not only_late & set(test)


def test_random_split_is_seeded_and_keeps_a_train_pair_per_user(spark):
    df, rows = _interactions(spark, seed=1)
    a = sorted(tuple(r) for r in split.mark_test_random(df, 0.3, 7).collect())
    b = sorted(tuple(r) for r in split.mark_test_random(df.repartition(3), 0.3, 7).collect())
    c = sorted(tuple(r) for r in split.mark_test_random(df, 0.3, 8).collect())
    assert a == b and a != c
    train, test = _by_user(split.mark_test_random(df, 0.3, 7))
    assert set(train) == {r[0] for r in rows}
    share = sum(len(v) for v in test.values()) / len(rows)
    assert 0.15 < share < 0.4
