"""The Spark scoring engine against a naive numpy brute force, on small seeded data."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recbatch.config import Config
from recbatch.errors import DataError, PipelineError
from recbatch.layout import RunLayout
from recbatch.score.blocks import regroup

pytestmark = pytest.mark.spark

N_USERS, N_ITEMS, DIM, K = 37, 53, 4, 5
TIED = [2, 9, 17, 30, 41, 50, 52]  # identical, strong item vectors: ties at and around the k-th place


def _factors(seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Quarter steps keep every dot product exact in float32, so ties are real ties.
    users = rng.integers(-8, 9, size=(N_USERS, DIM)) / 4.0
    items = rng.integers(-8, 9, size=(N_ITEMS, DIM)) / 4.0
    items[TIED] = [2.0, 2.0, 2.0, 2.0]
    users[3] = [1.0, 1.0, 1.0, 1.0]  # the tied group is strictly best for user 3
    return users.astype(np.float32), items.astype(np.float32)


def _seen(seed: int = 12) -> dict[int, set[int]]:
    rng = np.random.default_rng(seed)
    seen = {
        u: set(rng.choice(N_ITEMS, size=int(rng.integers(1, 9)), replace=False).tolist())
        for u in range(N_USERS)
    }
    del seen[0]  # user 0 has seen nothing
    seen[1] = set(range(N_ITEMS)) - {TIED[3], 7}  # all but 2 items -> exactly 2 rows
    seen[2] = set(range(N_ITEMS))  # catalogue exhausted -> no rows
    seen[3] = set(TIED[:2])  # the tied group minus its two lowest items
    return seen


def _brute_force(users, items, seen, k, activation):
    rows = []
    for u in range(len(users)):
        cands = [
            (-sum(float(a) * float(b) for a, b in zip(users[u], items[i], strict=True)), i)
            for i in range(len(items))
            if i not in seen.get(u, set())
        ]
        for rank, (neg, i) in enumerate(sorted(cands)[:k], start=1):
            score = 1.0 / (1.0 + math.exp(neg)) if activation == "sigmoid" else -neg
            rows.append((u, i, score, rank))
    return rows


def _inputs(spark, users, seen):
    user_df = spark.createDataFrame(
        [(u, users[u].tolist()) for u in range(len(users))], "user_idx int, factors array<float>"
    )
    pairs = [(u, i) for u, items in seen.items() for i in sorted(items)]
    pairs.append((4, next(iter(seen[4]))))  # a duplicated pair must not matter
    seen_df = spark.createDataFrame(pairs, "user_idx int, item_idx int")
    return user_df, seen_df


def _collect(df):
    return sorted((r.user_idx, r.item_idx, r.score, r.rank) for r in df.collect())


@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
def test_matches_brute_force(spark, activation):
    from recbatch.score.engine import score_users

    users, items = _factors()
    seen = _seen()
    user_df, seen_df = _inputs(spark, users, seen)
    got = _collect(score_users(spark, user_df, items, seen_df, K, 8, activation, 2))
    want = sorted(_brute_force(users, items, seen, K, activation))

    assert [(u, i, r) for u, i, _, r in got] == [(u, i, r) for u, i, _, r in want]
    np.testing.assert_allclose([s for *_, s, _ in got], [s for *_, s, _ in want], rtol=1e-6)
    per_user = {
        u: [i for uu, i, _, _ in sorted(got, key=lambda t: (t[0], t[3])) if uu == u] for u in range(4)
    }
    assert len(per_user[0]) == K
    assert sorted(per_user[1]) == sorted([TIED[3], 7])
    assert per_user[2] == []
    assert per_user[3] == TIED[2:7]  # seven tied items, two seen: the lowest unseen indices win


def test_blocks_and_partitions_do_not_change_results(spark):
    from recbatch.score.engine import score_users

    users, items = _factors(seed=21)
    seen = _seen(seed=22)
    user_df, seen_df = _inputs(spark, users, seen)
    one = score_users(spark, user_df, items, seen_df, K, 1000, "sigmoid", 1)
    many = score_users(spark, user_df, items, seen_df, K, 3, "sigmoid", 5)
    assert many.rdd.getNumPartitions() == 5
    assert _collect(one) == _collect(many)
    unseen = score_users(spark, user_df, items, None, K, 3, "identity", 3)
    assert _collect(unseen) == sorted(_brute_force(users, items, {}, K, "identity"))


def test_plan_has_no_cross_join(spark):
    from recbatch.score.engine import score_users

    users, items = _factors()
    user_df, seen_df = _inputs(spark, users, _seen())
    plan = score_users(spark, user_df, items, seen_df, K, 4, "sigmoid", 2)._jdf.queryExecution()
    text = plan.executedPlan().toString()
    assert "MapInArrow" in text
    for bad in ("CartesianProduct", "BroadcastNestedLoopJoin", "Cross"):
        assert bad not in text


def test_regroup_makes_exact_blocks():
    batches = [
        (np.arange(n, dtype=np.int32) + off, np.zeros((n, 2), np.float32), [None] * n)
        for off, n in [(0, 4), (4, 1), (5, 6)]
    ]
    sizes = [len(u) for u, _, _ in regroup(iter(batches), 3)]
    assert sizes == [3, 3, 3, 2]
    assert np.concatenate([u for u, _, _ in regroup(iter(batches), 3)]).tolist() == list(range(11))


def _write_run(spark, layout: RunLayout, users, items, train, test, model="mf"):
    layout.model_dir.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "user_idx": pa.array(range(len(users)), pa.int32()),
                "factors": pa.array(users.tolist(), pa.list_(pa.float32())),
            }
        ),
        layout.user_factors,
    )
    order = np.arange(len(items))[::-1]  # rows stored out of order: the loader must index by item_idx
    pq.write_table(
        pa.table(
            {
                "item_idx": pa.array(order, pa.int32()),
                "factors": pa.array(items[order].tolist(), pa.list_(pa.float32())),
            }
        ),
        layout.item_factors,
    )
    layout.model_manifest.write_text(json.dumps({"model": model, "score_activation": "identity"}))
    spark.createDataFrame(
        [(f"u{u}", u) for u in range(len(users))], "user_id string, user_idx int"
    ).write.parquet(str(layout.user_vocab))
    spark.createDataFrame(
        [(f"i{i}", i) for i in range(len(items))], "item_id string, item_idx int"
    ).write.parquet(str(layout.item_vocab))
    schema = "user_idx int, item_idx int, count long, weight double, rating double, last_ts long"
    for path, pairs in ((layout.interactions, train + test), (layout.train, train)):
        spark.createDataFrame([(u, i, 1, 1.0, None, 0) for u, i in pairs], schema).write.parquet(str(path))


@pytest.mark.parametrize("user_input", ["files", "spark"])
def test_run_score_maps_ids_and_excludes_train_and_test(spark, tmp_path, user_input):
    from recbatch.score.stage import run_score

    users = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    items = np.array([[3, 0], [2, 0], [1, 0], [0, 3], [0, 2]], np.float32)
    layout = RunLayout(tmp_path, "2026-01-02")
    config = Config()
    config.score.k = 2
    config.score.user_input = user_input
    with pytest.raises(DataError, match="run `recbatch train"):
        run_score(spark, config, layout, "r1")
    _write_run(spark, layout, users, items, train=[(0, 0), (1, 3)], test=[(0, 1)])

    result = run_score(spark, config, layout, "r1")
    got = result.recommendations
    assert got.columns == ["user_id", "item_id", "score", "rank", "source", "model", "run_id"]
    rows = sorted((r.user_id, r.rank, r.item_id, r.score, r.source, r.model, r.run_id) for r in got.collect())
    assert rows == [
        ("u0", 1, "i2", 1.0, "model", "mf", "r1"),  # i0 (train) and i1 (test) are excluded
        ("u0", 2, "i3", 0.0, "model", "mf", "r1"),  # tie at 0 with i4: lower index first
        ("u1", 1, "i4", 2.0, "model", "mf", "r1"),
        ("u1", 2, "i0", 0.0, "model", "mf", "r1"),
        # u2 has no train rows, so its vector is untrained: the most popular train items instead
        # (i0 and i3, one of two train users each; ties by index), scored by that share.
        ("u2", 1, "i0", 0.5, "fallback", "mf", "r1"),
        ("u2", 2, "i3", 0.5, "fallback", "mf", "r1"),
    ]
    expected = {r.user_id: r.expected for r in result.expected.collect()}
    assert expected == {"u0": 3, "u1": 4, "u2": 5}
    assert result.k_bound == 2
    cold = result.request.cold  # u2, cached for the engine and the fallback until released
    assert cold is not None and cold.is_cached
    result.release()
    assert not cold.is_cached


def test_run_score_rejects_mismatched_model(spark, tmp_path):
    from recbatch.score.stage import run_score

    layout = RunLayout(tmp_path, "2026-01-02")
    items = np.ones((4, 2), np.float32)
    _write_run(spark, layout, np.ones((2, 2), np.float32), items, train=[(0, 0), (1, 1)], test=[])
    pq.write_table(
        pa.table({"item_idx": pa.array([0, 1, 2], pa.int32()), "factors": pa.array([[1.0, 1.0]] * 3)}),
        layout.item_factors,
    )
    with pytest.raises(PipelineError, match="3 items but the prepared vocabulary has 4"):
        run_score(spark, Config(), layout, "r1")


def test_item_file_transport_and_item_tiles_give_identical_results(spark):
    from recbatch.score.engine import score_users

    users, items = _factors(seed=31)
    seen = _seen(seed=32)
    user_df, seen_df = _inputs(spark, users, seen)
    want = sorted(_brute_force(users, items, seen, K, "identity"))
    for transport, tile in (("file", None), ("broadcast", 7), ("file", 2)):
        got = _collect(
            score_users(
                spark, user_df, items, seen_df, K, 5, "identity", 3, item_tile=tile, item_transport=transport
            )
        )
        assert [(u, i, r) for u, i, _, r in got] == [(u, i, r) for u, i, _, r in want], (transport, tile)


def test_non_finite_factors_are_refused_with_the_index(spark):
    from recbatch.score.engine import score_users

    users, items = _factors()
    broken = items.copy()
    broken[6, 1] = np.nan
    user_df, _ = _inputs(spark, users, _seen())
    with pytest.raises(ValueError, match="item_idx 6 has NaN"):
        score_users(spark, user_df, broken, None, K, 4, "identity", 1)
    bad_users = users.copy()
    bad_users[9, 0] = np.inf
    bad_df, _ = _inputs(spark, bad_users, _seen())
    with pytest.raises(Exception, match="user_idx 9 has NaN or infinite factors"):
        score_users(spark, bad_df, items, None, K, 4, "identity", 1).collect()


def test_score_dry_run_prints_the_plan_without_spark(tmp_path, spark):
    from typer.testing import CliRunner

    from recbatch.cli import app

    layout = RunLayout(tmp_path, "2026-01-02")
    users, items = _factors()
    _write_run(spark, layout, users, items, train=[(0, 0)], test=[])
    runner = CliRunner()
    args = ["score", "--dry-run", "--date", "2026-01-02", "--set", f'paths.workdir="{tmp_path}"']
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{N_USERS} users x {N_ITEMS} items, d={DIM}, K=10" in result.output
    assert "peak per worker" in result.output and "user block" in result.output
    missing = runner.invoke(
        app, ["score", "--dry-run", "--date", "2026-01-03", "--set", f'paths.workdir="{tmp_path}"']
    )
    assert missing.exit_code == 3 and "run `recbatch train" in missing.output


def test_allowed_items_are_applied_before_selection(spark):
    from recbatch.score.engine import score_users

    users, items = _factors(seed=41)
    seen = _seen(seed=42)
    allowed = [i for i in range(N_ITEMS) if i % 3 != 1]  # a deny list of every third item
    user_df, seen_df = _inputs(spark, users, seen)
    got = _collect(score_users(spark, user_df, items, seen_df, K, 6, "identity", 2, allowed_items=allowed))
    masked = {u: seen.get(u, set()) | (set(range(N_ITEMS)) - set(allowed)) for u in range(N_USERS)}
    want = sorted(_brute_force(users, items, masked, K, "identity"))
    assert [(u, i, r) for u, i, _, r in got] == [(u, i, r) for u, i, _, r in want]
    assert sum(1 for u, *_ in got if u == 0) == K  # still k items where k allowed unseen ones exist
    with pytest.raises(ValueError, match="allowed_items"):
        score_users(spark, user_df, items, seen_df, K, 6, "identity", 2, allowed_items=[N_ITEMS])


def test_run_score_applies_allow_and_deny_lists(spark, tmp_path):
    from recbatch.score.stage import run_score

    users = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    items = np.array([[3, 0], [2, 0], [1, 0], [0, 3], [0, 2]], np.float32)
    layout = RunLayout(tmp_path, "2026-01-02")
    _write_run(spark, layout, users, items, train=[(0, 0), (1, 3)], test=[(0, 1)])
    allow, deny = tmp_path / "allow", tmp_path / "deny"
    spark.createDataFrame([("i0",), ("i2",), ("i3",), ("i4",), ("nope",)], "item_id string").write.parquet(
        str(allow)
    )
    spark.createDataFrame([("i4",)], "item_id string").write.parquet(str(deny))
    config = Config()
    config.score.k = 2
    config.score.allow_items, config.score.deny_items = str(allow), str(deny)
    result = run_score(spark, config, layout, "r1")
    rows = sorted((r.user_id, r.rank, r.item_id) for r in result.recommendations.collect())
    # allowed: i0, i2, i3; u0 has seen i0 (and i1), u1 has seen i3
    assert rows == [
        ("u0", 1, "i2"),
        ("u0", 2, "i3"),
        ("u1", 1, "i0"),
        ("u1", 2, "i2"),
        ("u2", 1, "i0"),
        ("u2", 2, "i3"),
    ]
    expected = {r.user_id: r.expected for r in result.expected.collect()}
    assert expected == {"u0": 2, "u1": 2, "u2": 3}
    result.release()
    config.score.allow_items = str(deny)
    with pytest.raises(DataError, match="leave no item"):
        run_score(spark, config, layout, "r1")


@pytest.mark.parametrize("user_input", ["files", "spark"])
def test_run_score_scores_only_listed_users(spark, tmp_path, user_input):
    from recbatch.score.stage import run_score

    users, items = _factors()
    layout = RunLayout(tmp_path, "2026-01-02")
    _write_run(spark, layout, users, items, train=[(0, 0), (5, 1)], test=[])
    listed = tmp_path / "actives"
    spark.createDataFrame([("u5",), ("u0",), ("u0",), ("ghost",)], "user_id string").write.parquet(
        str(listed)
    )
    config = Config()
    config.score.users = str(listed)
    config.score.user_input = user_input
    result = run_score(spark, config, layout, "r1")
    got = result.recommendations.collect()
    assert {(r.user_id, r.source) for r in got} == {("u0", "model"), ("u5", "model"), ("ghost", "fallback")}
    assert len(got) == 3 * config.score.k
    # The unknown user gets the popular items (i0, i1 first), nothing seen to exclude.
    assert [r.item_id for r in sorted(got, key=lambda r: r.rank) if r.user_id == "ghost"][:2] == ["i0", "i1"]
    expected = {r.user_id: r.expected for r in result.expected.collect()}
    assert expected == {"u0": N_ITEMS - 1, "u5": N_ITEMS - 1, "ghost": N_ITEMS}
    result.release()
    config.score.fallback = "none"
    with run_score(spark, config, layout, "r1") as result:
        got = result.recommendations.collect()
        assert {r.user_id for r in got} == {"u0", "u5"} and len(got) == 2 * config.score.k
        assert {r.user_id for r in result.expected.collect()} == {"u0", "u5"}


def test_network_models_need_their_weights_rather_than_ranking_by_embeddings(tmp_path):
    import json

    from recbatch.artifacts import read_manifest as read_model_manifest

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"model": "neumf", "score_activation": "sigmoid", "scoring": "network"}))
    with pytest.raises(DataError, match=r"network.npz not found .* rerun `recbatch train`"):
        read_model_manifest(manifest)
    (tmp_path / "network.npz").write_bytes(b"")
    assert read_model_manifest(manifest)["scoring"] == "network"
