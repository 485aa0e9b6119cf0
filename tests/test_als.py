"""The Spark ALS baseline, on real Spark, ranked by the same evaluation code as the models."""

from __future__ import annotations

import numpy as np

from recbatch.artifacts import write_factors
from recbatch.config import AlsConfig
from recbatch.evaluate.als import als_factors
from recbatch.evaluate.stage import run_evaluate
from recbatch.storage import write_json
from tests.builders import clustered_data, tiny_config, write_prepared


def test_als_factors_cover_every_index_and_learn_the_clusters(spark, tmp_path):
    data = clustered_data(n_users=40, n_items=30, per_user=8, seed=1)
    layout = write_prepared(tmp_path, data)
    users, items = als_factors(
        spark,
        layout.train,
        40,
        30,
        AlsConfig(rank=4, max_iter=8, reg=0.05, alpha=5.0),
        str(tmp_path / "ckpt"),
    )
    assert users.shape == (40, 4) and items.shape == (30, 4)
    assert np.isfinite(users).all() and np.isfinite(items).all()
    # The taste of even users (first half of items) must score their half above the other.
    scores = users @ items.T
    even, odd = scores[0::2], scores[1::2]
    assert even[:, :15].mean() > even[:, 15:].mean()
    assert odd[:, 15:].mean() > odd[:, :15].mean()


def test_als_baseline_is_reported_beside_the_model_and_beats_popularity(spark, tmp_path):
    data = clustered_data(n_users=60, n_items=40, per_user=9, seed=0)
    layout = write_prepared(tmp_path, data)
    n_users, n_items = data[4], data[5]
    # A model with no signal at all: constant factors, so it ranks by item index only.
    write_factors(layout.user_factors, "user_idx", np.ones((n_users, 1), np.float32))
    write_factors(layout.item_factors, "item_idx", np.ones((n_items, 1), np.float32))
    write_json(layout.model_manifest, {"model": "mf", "score_activation": "identity"})
    als = AlsConfig(rank=4, max_iter=10)
    extra = {"als": als_factors(spark, layout.train, n_users, n_items, als, str(tmp_path / "ckpt"))}
    config = tiny_config(tmp_path, "mf")
    config.evaluate.baselines = ["popularity", "als"]
    config.evaluate.report = False
    metrics = run_evaluate(config, layout, extra)
    assert set(metrics["models"]) == {"mf", "popularity", "als"}
    assert metrics["models"]["als"]["hr@10"] > metrics["models"]["popularity"]["hr@10"]


def test_als_grid_picks_the_best_validation_point(spark, tmp_path):
    from recbatch.evaluate.als import grid, pick_params

    data = clustered_data(n_users=40, n_items=30, per_user=8, seed=1)
    layout = write_prepared(tmp_path, data)
    params = AlsConfig(rank=4, max_iter=3, grid_reg=[0.05, 1e4], grid_alpha=[5.0])
    assert [(p.rank, p.reg, p.alpha) for p in grid(params)] == [(4, 0.05, 5.0), (4, 1e4, 5.0)]
    best, trials = pick_params(spark, layout.train, 40, 30, params, str(tmp_path / "ckpt"))
    assert len(trials) == 2 and best.reg == 0.05  # a huge regParam shrinks every factor to ~0
    assert trials[0]["val_ndcg"] > trials[1]["val_ndcg"]
    users, items = als_factors(spark, layout.train, 40, 30, params, str(tmp_path / "ckpt"))
    assert users.shape == (40, 4) and items.shape == (30, 4)
