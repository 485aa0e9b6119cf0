"""Scoring modes beyond the whole catalogue: cold-start fallback and candidate tables.

Worker functions are checked against plain-Python references on seeded data; the stage
is driven through run_score / score_and_publish on a tiny prepared run written with pyarrow.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from recbatch.config import Config
from recbatch.errors import DataError
from recbatch.score.candidates import score_candidate_batch
from recbatch.score.fallback import fallback_batch
from tests.builders import write_scored_run

DATE = "2026-01-02"


def test_fallback_takes_the_first_k_unseen_popular_items_per_user():
    rng = np.random.default_rng(5)
    order = rng.permutation(30).astype(np.int32)
    share = np.linspace(1.0, 0.0, 30).astype(np.float32)
    seen = [None, [], list(order[:3]), list(rng.choice(30, 27, replace=False)), list(range(30))]
    batch = pa.RecordBatch.from_arrays(
        [pa.array([f"u{n}" for n in range(len(seen))]), pa.array(seen, pa.list_(pa.int32()))],
        names=["user_id", "seen"],
    )
    out = fallback_batch(batch, order, share, k=4).to_pydict()
    got = list(zip(out["user_id"], out["item_idx"], out["rank"], strict=True))
    want = []
    for n, s in enumerate(seen):
        unseen = [int(i) for i in order if i not in set(s or [])][:4]
        want += [(f"u{n}", i, r + 1) for r, i in enumerate(unseen)]
    assert sorted(got) == sorted(want)
    position = {int(i): p for p, i in enumerate(order)}
    assert all(abs(s - share[position[i]]) < 1e-7 for i, s in zip(out["item_idx"], out["score"], strict=True))
    assert "u4" not in out["user_id"]  # has seen everything: no rows rather than seen items


def test_candidate_batch_ranks_each_users_candidates_by_dot_then_item():
    rng = np.random.default_rng(6)
    items = rng.integers(-3, 4, size=(12, 3)).astype(np.float32)
    users = rng.integers(-3, 4, size=(4, 3)).astype(np.float32)
    cands = [sorted(rng.choice(12, size=n, replace=False).tolist()) for n in (5, 1, 12, 3)]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([10, 11, 12, 13], pa.int32()),
            pa.array(users.tolist(), pa.list_(pa.float32())),
            pa.array(cands, pa.list_(pa.int32())),
        ],
        names=["user_idx", "factors", "cands"],
    )
    for k in (2, None):
        out = score_candidate_batch(batch, items, k, "identity").to_pydict()
        got = list(zip(out["user_idx"], out["item_idx"], out["rank"], out["score"], strict=True))
        want = []
        for row, user in enumerate([10, 11, 12, 13]):
            ranked = sorted(cands[row], key=lambda i, r=row: (-float(items[i] @ users[r]), i))[:k]
            want += [(user, i, n + 1, float(items[i] @ users[row])) for n, i in enumerate(ranked)]
        assert got == want, k


def test_network_pair_logits_match_the_block_logits():
    from recbatch.core.network import NetworkWeights, network_logits, network_pair_logits

    rng = np.random.default_rng(7)
    g, m = 3, 4
    weights = {
        "gmf_dim": np.array(g),
        "n_layers": np.array(2),
        "w0": rng.standard_normal((2 * m, 5)).astype(np.float32),
        "b0": rng.standard_normal(5).astype(np.float32),
        "w1": rng.standard_normal((5, 2)).astype(np.float32),
        "b1": rng.standard_normal(2).astype(np.float32),
        "out_w": rng.standard_normal(g + 2).astype(np.float32),
        "out_b": np.array([0.3], np.float32),
    }
    users = rng.standard_normal((6, g + m)).astype(np.float32)
    items = rng.standard_normal((6, g + m)).astype(np.float32)
    weights = NetworkWeights.from_arrays(weights)
    full = network_logits(weights, users, items)
    np.testing.assert_allclose(
        network_pair_logits(weights, users, items), np.diag(full), rtol=1e-5, atol=1e-5
    )


USERS = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
ITEMS = np.array([[3, 0], [2, 0], [1, 0], [0, 3], [0, 2]], np.float32)
TRAIN = [(0, 0), (1, 3), (1, 4), (2, 3)]
TEST = [(0, 1)]


@pytest.mark.spark
def test_candidate_table_mode_scores_only_given_pairs_and_counts_unknown_ids(spark, tmp_path, caplog):
    from recbatch.pipeline import score_and_publish
    from recbatch.score.stage import run_score

    layout = write_scored_run(tmp_path, USERS, ITEMS, TRAIN, TEST)
    candidates = tmp_path / "candidates"
    rows = [
        ("u0", "i0"),  # seen (train): never recommended
        ("u0", "i2"),
        ("u0", "i3"),
        ("u0", "i4"),
        ("u0", "i4"),  # duplicate pair: scored once
        ("u1", "i0"),
        ("u1", "nope"),  # unknown item
        ("ghost", "i0"),  # unknown user
        ("u2", "i2"),
    ]
    spark.createDataFrame(rows, "user_id string, item_id string").write.parquet(str(candidates))
    config = Config.model_validate(
        {"paths": {"workdir": str(tmp_path)}, "score": {"k": 2, "candidates": str(candidates)}}
    )
    result = run_score(spark, config, layout, "r1")
    got = sorted((r.user_id, r.rank, r.item_id, r.score, r.source) for r in result.recommendations.collect())
    assert got == [
        ("u0", 1, "i2", 1.0, "model"),
        ("u0", 2, "i3", 0.0, "model"),  # tie with i4 at 0: lower index first, i4 cut at k=2
        ("u1", 1, "i0", 0.0, "model"),
        ("u2", 1, "i2", 1.0, "model"),
    ]
    expected = {r.user_id: r.expected for r in result.expected.collect()}
    assert expected == {"u0": 2, "u1": 1, "u2": 1}
    assert result.k_bound == 2

    config.score.candidates_output = "all"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbatch.score"):
        manifest = score_and_publish(spark, config, layout, "r1")
    # The table is read and checked once per run: one warning about its unknown ids.
    assert sum("score.candidates:" in r.getMessage() for r in caplog.records) == 1
    assert manifest["rows"] == 5 and manifest["users"] == 3 and manifest["k"] == 3
    assert manifest["by_source"] == {"model": {"rows": 5, "users": 3}}
    # A published table is itself a candidate table: the second stage of a two-stage pipeline.
    config.score.candidates, config.score.candidates_output = manifest["path"], "top_k"
    restaged = sorted(
        (r.user_id, r.rank, r.item_id)
        for r in run_score(spark, config, layout, "r2").recommendations.collect()
    )
    assert restaged == [(u, r, i) for u, r, i, _, _ in got]

    spark.createDataFrame([("ghost", "nope")], "user_id string, item_id string").write.mode(
        "overwrite"
    ).parquet(str(candidates))
    config.score.candidates = str(candidates)
    with pytest.raises(DataError, match="none of its 1"):
        run_score(spark, config, layout, "r1")


@pytest.mark.spark
def test_users_without_train_rows_get_the_fallback_and_publishing_counts_sources(spark, tmp_path):
    from recbatch.pipeline import score_and_publish

    users = np.vstack([USERS, [[5, 5]]]).astype(np.float32)  # u3: in the vocabulary, no train rows
    layout = write_scored_run(tmp_path, users, ITEMS, TRAIN, TEST)
    config = Config.model_validate({"paths": {"workdir": str(tmp_path)}, "score": {"k": 2}})
    manifest = score_and_publish(spark, config, layout, "r1")
    assert manifest["by_source"] == {"model": {"rows": 6, "users": 3}, "fallback": {"rows": 2, "users": 1}}
    table = spark.read.parquet(manifest["path"])
    fallback = sorted((r.rank, r.item_id, r.score) for r in table.where("source = 'fallback'").collect())
    # Train users per item: i3 two of three, i0 and i4 one each (tie: lower index first).
    assert [(r, i) for r, i, _ in fallback] == [(1, "i3"), (2, "i0")]
    assert fallback[0][2] == pytest.approx(2 / 3)
