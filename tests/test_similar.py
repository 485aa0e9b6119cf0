"""Similar items: the engine's lists against numpy brute force, self-exclusion, ties, the
co-occurrence baseline, the hit rate, and the item table's publish checks (real Spark)."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from recbatch.errors import ConfigError, PipelineError
from recbatch.io.item_tables import ItemTable, publish_item_table, validate_item_table
from recbatch.score.plan import make_plan
from recbatch.score.similar import (
    brute_force_similar,
    check_dot_model,
    item_vectors,
    similar_items,
    write_inputs,
)
from recbatch.storage import location


def test_cosine_vectors_are_unit_rows_and_zero_rows_stay_zero():
    factors = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    got = item_vectors(factors, "cosine")
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(item_vectors(factors, "dot"), factors)
    with pytest.raises(ValueError, match="unknown similarity metric"):
        item_vectors(factors, "euclid")


def test_network_models_are_refused_naming_the_models_that_work():
    with pytest.raises(ConfigError, match=r"seed, mf, gmf, two_tower.*neumf.*train\.model=mf"):
        check_dot_model({"model": "neumf", "scoring": "network"})
    check_dot_model({"model": "mf", "scoring": "dot"})  # no error


def _lists(spark, tmp_path, factors, metric, k, user_input, query=None, **plan_kw):
    vectors = item_vectors(factors, metric)
    n_query = len(vectors) if query is None else len(query)
    plan = make_plan(n_query, len(vectors), vectors.shape[1], k, 2, user_input=user_input, **plan_kw)
    inputs = write_inputs(location(tmp_path / f"scratch-{user_input}-{metric}"), vectors, query)
    rows = similar_items(spark, vectors, inputs, k, plan).collect()
    out: dict[int, list[tuple[int, int, float]]] = {}
    for r in rows:
        out.setdefault(r.item_idx, []).append((r.rank, r.similar_item_idx, r.score))
    return {i: sorted(v) for i, v in out.items()}


@pytest.mark.parametrize("user_input", ["files", "spark"])
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_similar_items_equal_numpy_brute_force(spark, tmp_path, user_input, metric):
    rng = np.random.default_rng(7)
    factors = rng.standard_normal((300, 8)).astype(np.float32)
    # Small blocks and tiles: several GEMMs and merges per item, as on a large catalogue.
    got = _lists(spark, tmp_path, factors, metric, 10, user_input, user_block=64, item_tile=128)
    want = brute_force_similar(factors, metric, np.arange(300), 10)
    assert sorted(got) == list(range(300))
    assert [[j for _, j, _ in got[i]] for i in range(300)] == want
    vectors = item_vectors(factors, metric)
    for i in (0, 123, 299):
        assert [rank for rank, _, _ in got[i]] == list(range(1, 11))
        np.testing.assert_allclose(
            [s for _, _, s in got[i]], vectors[[j for _, j, _ in got[i]]] @ vectors[i], rtol=1e-5
        )


def test_an_item_is_never_its_own_neighbour_and_ties_break_by_item_index(spark, tmp_path):
    # Items 0, 2, 4, 5 share one direction (cosine 1 with each other), 1 and 3 another.
    factors = np.array([[1, 0], [0, 1], [2, 0], [0, 3], [5, 0], [0.5, 0]], dtype=np.float32)
    got = _lists(spark, tmp_path, factors, "cosine", 3, "files")
    assert all(i not in [j for _, j, _ in rows] for i, rows in got.items())
    assert [j for _, j, _ in got[4]] == [0, 2, 5], "equal cosines in ascending item index"
    assert [j for _, j, _ in got[1]] == [3, 0, 2], "then the cosine-0 items in index order"
    assert len(got) == 6 and all(len(rows) == 3 for rows in got.values())


def test_a_listed_subset_gets_lists_over_the_whole_catalogue(spark, tmp_path):
    rng = np.random.default_rng(3)
    factors = rng.standard_normal((120, 6)).astype(np.float32)
    query = np.array([5, 17, 90])
    for user_input in ("files", "spark"):
        got = _lists(spark, tmp_path, factors, "cosine", 4, user_input, query=query)
        assert sorted(got) == [5, 17, 90]
        assert [[j for _, j, _ in got[i]] for i in query] == brute_force_similar(factors, "cosine", query, 4)


def test_cooccurrence_equals_the_cosine_of_user_columns(spark):
    from recbatch.score.cooccurrence import cooccurrence_similar

    pairs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 1), (2, 2), (3, 3), (3, 0)]
    frame = spark.createDataFrame(
        [(u, i, n) for n, (u, i) in enumerate(pairs)], "user_idx int, item_idx int, last_ts long"
    )
    got = cooccurrence_similar(frame, 2, 50).collect()
    users = {i: {u for u, j in pairs if j == i} for i in range(4)}
    want = {}
    for a, b in (p for p in combinations(range(4), 2)):
        together = len(users[a] & users[b])
        if together:
            score = together / math.sqrt(len(users[a]) * len(users[b]))
            want.setdefault(a, []).append((-score, b))
            want.setdefault(b, []).append((-score, a))
    expected = {(a, b, r + 1) for a, lst in want.items() for r, (_, b) in enumerate(sorted(lst)[:2])}
    assert {(r.item_idx, r.similar_item_idx, r.rank) for r in got} == expected
    assert all(r.item_idx != r.similar_item_idx for r in got)
    # Recency cap: with one item per user nothing pairs up.
    assert cooccurrence_similar(frame, 2, 1).count() == 0


def test_hit_rate_counts_held_out_items_among_the_last_train_items_list(spark):
    from recbatch.score.similar_report import hit_rates

    train = spark.createDataFrame(
        [(0, 1, 5), (0, 2, 9), (1, 3, 1), (2, 4, 1)], "user_idx int, item_idx int, last_ts long"
    )
    test = spark.createDataFrame([(0, 7), (1, 8), (2, 9)], "user_idx int, item_idx int")
    # User 0's anchor is item 2 (latest): 7 at rank 2. User 1's anchor 3: 8 at rank 6. User 2: no list.
    lists = spark.createDataFrame(
        [(2, 5, 1), (2, 7, 2), (1, 7, 1), (3, 8, 6)], "item_idx int, similar_item_idx int, rank int"
    )
    got = hit_rates(train, test, lists, [1, 5, 10])
    assert got == {"users": 3, "hr@1": 0.0, "hr@5": round(1 / 3, 4), "hr@10": round(2 / 3, 4)}


SPEC = ItemTable(
    table="similar_items", key="item_id", other="similar_item_id", k=2, expected_per_key=2, expected_keys=3
)
GOOD = [
    ("a", "b", 0.9, 1),
    ("a", "c", 0.5, 2),
    ("b", "a", 0.9, 1),
    ("b", "c", 0.1, 2),
    ("c", "a", 0.5, 1),
    ("c", "b", 0.1, 2),
]


def _table(spark, rows):
    return spark.createDataFrame(rows, "item_id string, similar_item_id string, score float, rank int")


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda rows: [*rows[:1], ("a", "a", 0.5, 2), *rows[2:]], "self_listed"),
        (lambda rows: [*rows[:1], ("a", "b", 0.5, 2), *rows[2:]], "duplicate_items"),
        (lambda rows: [*rows[:1], ("a", "c", 0.5, 3), *rows[2:]], "ranks_not_contiguous"),
        (lambda rows: [rows[0], *rows[2:]], "wrong_row_count"),
        (lambda rows: rows[:4], "key_count"),
        (lambda rows: [*rows[:1], ("a", "c", float("nan"), 2), *rows[2:]], "bad_values"),
    ],
)
def test_item_table_checks_name_what_is_wrong(spark, change, check):
    assert validate_item_table(_table(spark, GOOD), SPEC) == {"rows": 6, "keys": 3}
    with pytest.raises(PipelineError, match=f"check {check} failed"):
        validate_item_table(_table(spark, change(GOOD)), SPEC)


def test_a_refused_publish_keeps_the_current_version(spark, tmp_path: Path):
    from recbatch.io.publish import read_published

    first = publish_item_table(_table(spark, GOOD), SPEC, str(tmp_path), "2026-01-02", "run1", files=2)
    assert first["rows"] == 6 and first["keys"] == 3
    bad = [*GOOD[:1], ("a", "a", 0.5, 2), *GOOD[2:]]
    with pytest.raises(PipelineError, match="self_listed.*the published version is unchanged"):
        publish_item_table(_table(spark, bad), SPEC, str(tmp_path), "2026-01-02", "run2", files=2)
    current = read_published(spark, str(tmp_path), "similar_items", "2026-01-02")
    assert sorted((r.item_id, r.similar_item_id, r.rank) for r in current.collect()) == sorted(
        (a, b, rank) for a, b, _, rank in GOOD
    )
    versions = list((tmp_path / "similar_items" / ".versions" / "dt=2026-01-02").iterdir())
    assert [v.name for v in versions] == [first["version"]], "the refused version was removed"
    manifest = json.loads((versions[0] / "_manifest.json").read_text())
    assert manifest["content_sha256"] == first["content_sha256"]
