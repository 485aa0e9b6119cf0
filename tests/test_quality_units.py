"""Issue 13's pure parts: loss weights, the validation carve without time, the quarantine thresholds,
what the summary says about the data the models saw, the split model's paths, backtest ranking."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.config import Config, PrepareConfig, TrainConfig, load_config
from recbatch.core.validation import carve_validation, has_time, pair_draw
from recbatch.errors import ConfigError, DataError
from recbatch.evaluate.backtest import Truth, baseline_rankings, format_backtest
from recbatch.layout import RunLayout
from recbatch.prep.checks import check_quarantine, quarantine_warnings, time_warnings
from recbatch.summary import evaluation_lines, published_model_lines
from recbatch.train.sampling import MemoryInput
from recbatch.train.weights import example_weights, newer_counts


def test_weights_are_none_by_default_and_scale_to_mean_one():
    strength = np.array([1.0, 1.0, 3.0, 99.0])
    users, ts = np.zeros(4, np.int32), np.arange(4)
    assert example_weights(TrainConfig(), strength, users, ts) is None
    log = example_weights(TrainConfig(weighting="log"), strength, users, ts)
    conf = example_weights(TrainConfig(weighting="confidence", weight_alpha=2.0), strength, users, ts)
    for w in (log, conf):
        assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0, rel=1e-6)
        assert w[0] == w[1] < w[2] < w[3]
    # log damps a heavy pair: 99 plays weigh far less than 33x one play, confidence keeps it near linear.
    assert log[3] / log[0] == pytest.approx((1 + np.log1p(99)) / (1 + np.log1p(1)), rel=1e-5)
    assert conf[3] / conf[0] == pytest.approx((1 + 2 * 99) / (1 + 2 * 1), rel=1e-5)


def test_negative_or_missing_strength_never_weighs_below_one_unit():
    cfg = TrainConfig(weighting="confidence")
    w = example_weights(cfg, np.array([-2.0, np.nan, 0.0]), np.zeros(3, np.int32), np.zeros(3, np.int64))
    assert np.all(w == w[0])


def test_recency_halves_the_weight_every_half_life_of_newer_interactions_of_the_same_user():
    users = np.array([0, 0, 0, 0, 1, 1], np.int32)
    ts = np.array([40, 10, 30, 30, 5, 9], np.int64)  # user 0: the two rows at 30 tie
    assert newer_counts(users, ts).tolist() == [0, 3, 1, 1, 1, 0]
    w = example_weights(TrainConfig(recency_half_life=1.0), None, users, ts)
    raw = np.array([1.0, 0.125, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-6)
    both = example_weights(TrainConfig(recency_half_life=1.0, weighting="log"), np.full(6, 3.0), users, ts)
    np.testing.assert_allclose(both, w, rtol=1e-6), "equal strengths leave recency alone"
    no_time = np.zeros(6, np.int64)
    assert example_weights(TrainConfig(recency_half_life=1.0), None, users, no_time) is None


def test_weighted_memory_input_keeps_each_positive_with_its_weight_and_negatives_at_one():
    users = np.array([0, 0, 1, 2], np.int32)
    items = np.array([1, 2, 3, 4], np.int32)
    weights = np.array([0.5, 1.5, 2.0, 0.0], np.float32)
    data = MemoryInput(users, items, 10, weights)
    for loss in ("bce", "bpr", "softmax"):
        cfg = TrainConfig(loss=loss, model="mf", negatives=2, batch_size=1000)
        data.start(cfg, np.random.default_rng(0))
        (batch,) = list(data.epoch(cfg))
        w = batch[-1]
        assert len(w) == len(batch[0])
        by_pair = {(int(u), int(i)): float(x) for u, i, x in zip(batch[0], batch[1], w, strict=True)}
        for u, i, x in zip(users, items, weights, strict=True):
            assert by_pair[(int(u), int(i))] == pytest.approx(float(x))
        if loss == "bce":
            assert np.all(w[batch[2] == 0] == 1.0), "sampled negatives weigh 1"


def test_weights_change_no_draw_only_what_each_example_counts():
    users, items = np.array([0, 1, 1], np.int32), np.array([2, 3, 4], np.int32)
    for loss in ("bce", "bpr", "softmax"):
        cfg = TrainConfig(loss=loss, model="mf", batch_size=100)
        plain, weighted = MemoryInput(users, items, 8), MemoryInput(users, items, 8, np.ones(3, np.float32))
        plain.start(cfg, np.random.default_rng(5))
        weighted.start(cfg, np.random.default_rng(5))
        a, b = next(plain.epoch(cfg)), next(weighted.epoch(cfg))
        assert len(b) == len(a) + 1, "only the weighted input appends weights (the loop adds ones)"
        for x, y in zip(a, b[:-1], strict=True):
            np.testing.assert_array_equal(x, y)


def test_without_time_the_carve_holds_out_random_items_not_the_largest_index():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(400, dtype=np.int32), 5)
    items = np.concatenate([rng.choice(50, 5, replace=False) for _ in range(400)]).astype(np.int32)
    split = carve_validation(users, items, np.zeros(len(users), np.int64), 400)
    largest = np.array([items[users == u].max() for u in split.val_users])
    share_largest = float(np.mean(split.val_items == largest))
    assert 0.1 < share_largest < 0.35, f"the largest index was held out for {share_largest:.0%} of users"
    again = carve_validation(users[::-1].copy(), items[::-1].copy(), np.zeros(len(users), np.int64), 400)
    assert dict(zip(split.val_users, split.val_items, strict=True)) == dict(
        zip(again.val_users, again.val_items, strict=True)
    ), "the draw depends on the pairs, not on their row order"
    np.testing.assert_array_equal(split.fit_users, users[split.fit_index])


def test_with_time_the_carve_still_holds_out_the_latest_item():
    users = np.array([0, 0, 0, 1, 1], np.int32)
    items = np.array([9, 1, 5, 3, 4], np.int32)
    ts = np.array([10, 30, 20, 7, 5], np.int64)
    split = carve_validation(users, items, ts, 2)
    assert split.val_items.tolist() == [1, 3]
    assert has_time(ts) and not has_time(np.zeros(3, np.int64))
    assert np.array_equal(pair_draw(users, items), pair_draw(users, items))


def test_many_users_hold_out_their_latest_item_and_a_seeded_sample_of_them_is_ranked(monkeypatch):
    import recbatch.core.validation as validation
    from recbatch.core.ranking import DotScorer

    monkeypatch.setattr(validation, "VALIDATION_USERS", 50)
    users = np.repeat(np.arange(400, dtype=np.int32), 3)
    items = np.tile(np.arange(3, dtype=np.int32), 400)
    ts = np.tile(np.array([1, 3, 2], np.int64), 400)  # item 1 is everyone's latest
    split = carve_validation(users, items, ts, 400)
    assert len(split.fit_users) == 800 and not np.any(split.fit_items == 1)
    assert len(split.val_users) == 50 and (np.diff(split.val_users) > 0).all()
    assert (split.val_items == 1).all()
    again = carve_validation(users, items, ts, 400)
    np.testing.assert_array_equal(split.val_users, again.val_users)
    factors = np.eye(3, dtype=np.float32)
    # Item 1 scores highest for everyone and is unseen: NDCG 1 on the sample.
    assert (
        validation.scorer_ndcg(DotScorer(np.ones((400, 3), np.float32), factors * [1, 2, 1]), split, 400, 2)
        == 1.0
    )


def test_sampled_validation_ranks_each_held_out_item_among_seeded_unseen_items():
    from recbatch.core.ranking import DotScorer
    from recbatch.core.validation import scorer_ndcg, with_sampled_negatives

    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(30, dtype=np.int32), 6)
    items = np.concatenate([rng.choice(200, 6, replace=False) for _ in range(30)]).astype(np.int32)
    ts = np.tile(np.arange(6, dtype=np.int64), 30)
    split = with_sampled_negatives(carve_validation(users, items, ts, 30), 30, 200, 20)
    again = with_sampled_negatives(carve_validation(users, items, ts, 30), 30, 200, 20)
    for user, item, cands, same in zip(
        split.val_users, split.val_items, split.candidates, again.candidates, strict=True
    ):
        assert cands[0] == item and len(set(cands.tolist())) == 21
        assert not set(cands.tolist()) & set(split.fit_items[split.fit_users == user].tolist())
        np.testing.assert_array_equal(cands, same)
    # Item scores = their index: the held-out item's rank depends only on its candidates.
    scorer = DotScorer(np.ones((30, 1), np.float32), np.arange(200, dtype=np.float32)[:, None])
    full = scorer_ndcg(scorer, carve_validation(users, items, ts, 30), 30, 10)
    ranks = [int(np.sum(c[1:] > c[0])) for c in split.candidates]
    expected = np.mean([1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks])
    assert scorer_ndcg(scorer, split, 30, 10) == pytest.approx(expected)
    assert expected > full


def _report(read: int, quarantined: int, reasons: dict[str, int]) -> dict:
    return {"rows_read": read, "rows_quarantined": quarantined, "quarantine_by_reason": reasons}


def test_a_quarantined_share_above_the_warn_threshold_names_the_reason_and_its_key():
    prep = PrepareConfig()
    assert quarantine_warnings(_report(100_000, 500, {"bad_rating": 500}), prep) == []
    (warning,) = quarantine_warnings(_report(100_000, 1_400, {"rating_out_of_range": 1_400}), prep)
    assert "1.40% of rows quarantined" in warning
    assert "rating_out_of_range: 1,400" in warning and "prepare.rating_min / prepare.rating_max" in warning
    check_quarantine(_report(100_000, 1_400, {"rating_out_of_range": 1_400}), prep, "q/")  # below 5%


def test_a_quarantined_share_above_the_fail_threshold_is_a_data_error_unless_allowed():
    report = _report(1_000, 300, {"unknown_event": 250, "missing_user": 50})
    with pytest.raises(DataError) as caught:
        check_quarantine(report, PrepareConfig(), "work/prepared/quarantine")
    message = str(caught.value)
    assert "30.00%" in message and "prepare.quarantine_fail = 0.05" in message
    assert message.index("unknown_event") < message.index("missing_user"), "largest reason first"
    assert "prepare.event_weights" in message and "work/prepared/quarantine" in message
    assert DataError("x").exit_code == 3
    check_quarantine(report, PrepareConfig(quarantine_fail=1.0), "q/")


def test_half_star_ratings_are_valid_by_default():
    assert PrepareConfig().rating_min <= 0.5


def test_time_settings_without_a_timestamp_column_are_refused_before_spark_starts():
    no_time = ["input.timestamp_col=''"]
    with pytest.raises(ConfigError, match="time_cutoff.*needs input.timestamp_col"):
        load_config(None, [*no_time, "prepare.split=time_cutoff"])
    with pytest.raises(ConfigError, match="window_days needs input.timestamp_col"):
        load_config(None, [*no_time, "prepare.window_days=30"])
    with pytest.raises(ConfigError, match="strength = 'rating' needs input.rating_col"):
        load_config(None, ["input.rating_col=''", "train.weighting=log", "train.strength=rating"])
    warnings = time_warnings(load_config(None, no_time))
    assert any("seeded random item(s) per user" in w for w in warnings)
    assert any("popularity_recent is skipped" in w for w in warnings)
    assert time_warnings(Config()) == []


def test_summary_says_which_data_each_model_saw():
    refit = {
        "model": "mf",
        "fit_data": "all",
        "train_positives": 100_000,
        "epochs": 12,
        "evaluated_model": {},
    }
    refit["evaluated_model"] = {"dir": "model_split"}
    (line,) = published_model_lines(refit)
    assert "refitted on all 100,000 prepared interactions (train + test) for 12 epochs" in line
    (line,) = published_model_lines({"model": "mf", "fit_data": "train", "train_positives": 99_057})
    assert "train split only" in line and "train.final_fit = 'train'" in line
    assert evaluation_lines({"skipped": "no test split"}, {}) == ["evaluation: skipped: no test split"]


def test_the_split_model_has_its_own_folder_and_shares_every_other_path(tmp_path):
    layout = RunLayout(tmp_path, "2026-01-02")
    split = layout.split_model
    assert split.model_dir == layout.run_dir / "model_split" and split.split_model is split
    assert split.user_factors == layout.run_dir / "model_split" / "user_factors.parquet"
    for name in ("train", "test", "interactions", "user_vocab", "metrics", "published_root", "lock_dir"):
        assert getattr(split, name) == getattr(layout, name)
    assert layout.model_dir == layout.run_dir / "model"


def test_baselines_rank_unseen_items_and_unknown_users_get_popularity():
    truth = Truth(
        users=np.array(["a", "b", "z"], dtype=object),
        relevant=[np.array([2]), np.array([0]), np.array([4])],
        user_idx=np.array([0, 1, -1]),
        n_items=4,
        item_index={"i0": 0, "i1": 1, "i2": 2, "i3": 3, "new": 4},
    )
    popularity = np.array([1.0, 5.0, 3.0, 2.0], np.float32)
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    items = np.array([[0.0, 1.0], [0.1, 0.0], [1.0, 0.0], [0.5, 0.5]], np.float32)
    seen = [np.array([1]), np.array([3]), np.array([2])]
    ranked = baseline_rankings({"als": (users, items)}, popularity, truth, seen, 2)
    assert ranked["popularity"].tolist() == [[2, 3], [1, 2], [1, 3]]
    assert ranked["als"].tolist() == [[2, 3], [0, 1], [1, 3]], "user z has no vector: popularity"
    cands = [np.array([0, 3]), np.array([0, 2]), np.array([1, 3])]
    ranked = baseline_rankings({}, popularity, truth, seen, 2, cands)
    assert ranked["popularity"].tolist() == [[3, 0], [2, 0], [1, 3]]


def test_the_backtest_report_is_a_markdown_table_of_every_ranked_table():
    scores = {f"{m}@10": 0.5 for m in ("hr", "ndcg", "precision", "recall", "mrr", "coverage")}
    doc = {
        "date": "2026-01-02",
        "primary_k": 10,
        "protocol": "each user's latest 1 interaction(s) by time held out",
        "models": {"published": scores, "popularity": scores},
        "labels": {"published": "published table (mf)"},
        "notes": ["visible input: 10 rows"],
    }
    text = format_backtest(doc)
    assert "| table | HR@10 | ndcg@10 |" in text
    assert "| published table (mf) | 0.5000 |" in text and "| popularity | 0.5000 |" in text
    assert "- visible input: 10 rows" in text
