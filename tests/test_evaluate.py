"""Evaluation: the protocol against a naive reference, sampling, the table, and a real comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recbatch.artifacts import write_factors
from recbatch.errors import DataError
from recbatch.evaluate.stage import format_metrics_table, run_evaluate
from recbatch.storage import write_json
from recbatch.train.compare import fit_comparison_model, fit_comparison_models
from tests.builders import clustered_data, tiny_config, write_prepared


def write_model(layout, users: np.ndarray, items: np.ndarray, name: str = "mf") -> None:
    """Hand-made model artifacts: factor files and a minimal manifest (no TensorFlow involved)."""
    write_factors(layout.user_factors, "user_idx", users)
    write_factors(layout.item_factors, "item_idx", items)
    write_json(layout.model_manifest, {"model": name, "score_activation": "sigmoid"})


def naive_metrics(scores: np.ndarray, seen: dict, relevant: dict, users, k: int) -> dict[str, float]:
    """Rank each user's unseen items by (-score, item) in plain Python and average the metrics."""
    total = dict.fromkeys(("hr", "ndcg", "precision", "recall", "map"), 0.0)
    recommended: set[int] = set()
    n_items = scores.shape[1]
    for u in users:
        candidates = [i for i in range(n_items) if i not in seen[u]]
        top = sorted(candidates, key=lambda i: (-scores[u, i], i))[:k]
        recommended.update(top)
        rel = relevant[u]
        hits = [int(i in rel) for i in top] + [0] * (k - len(top))
        total["hr"] += float(any(hits))
        total["precision"] += sum(hits) / k
        total["recall"] += sum(hits) / len(rel)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        total["ndcg"] += sum(h / math.log2(j + 2) for j, h in enumerate(hits)) / idcg
        total["map"] += sum(hits[j] * sum(hits[: j + 1]) / (j + 1) for j in range(k)) / min(len(rel), k)
    out = {f"{key}@{k}": value / len(users) for key, value in total.items()}
    out[f"coverage@{k}"] = len(recommended) / n_items
    return out


def as_sets(users: np.ndarray, items: np.ndarray, n_users: int) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {u: set() for u in range(n_users)}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        out[u].add(i)
    return out


def test_evaluate_matches_naive_reference(tmp_path: Path) -> None:
    data = clustered_data(n_users=30, n_items=16, per_user=4, seed=5)
    tr_u, tr_i, te_u, te_i, n_users, n_items = data
    layout = write_prepared(tmp_path, data)
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    items[5] = items[6]  # a tie: the lower item index must rank first, as in scoring
    write_model(layout, users, items)
    config = tiny_config(tmp_path, "mf")
    config.evaluate.ks = [1, 3, 5]
    config.score.user_block = 7  # several blocks, the last one partial
    config.evaluate.baselines = ["popularity"]
    config.evaluate.report = False

    metrics = run_evaluate(config, layout)

    assert json.loads(layout.metrics.read_text()) == metrics
    assert metrics["k"] == [1, 3, 5, 10]  # primary_k (10) is always computed
    assert metrics["primary_k"] == 10 and metrics["protocol"] == "full ranking over unseen items"
    assert metrics["users_evaluated"] == 30 and list(metrics["models"]) == ["mf", "popularity"]
    seen, relevant = as_sets(tr_u, tr_i, n_users), as_sets(te_u, te_i, n_users)
    model_scores = users.astype(np.float32) @ items.astype(np.float32).T
    popularity = np.bincount(tr_i, minlength=n_items).astype(np.float64)
    pop_scores = np.tile(popularity, (n_users, 1))
    for name, scores in (("mf", model_scores), ("popularity", pop_scores)):
        for k in metrics["k"]:
            for key, value in naive_metrics(scores, seen, relevant, range(n_users), k).items():
                assert metrics["models"][name][key] == pytest.approx(value, abs=1e-9), (name, key)


def test_max_users_takes_a_seeded_sample(tmp_path: Path) -> None:
    layout = write_prepared(tmp_path, clustered_data(n_users=30, n_items=16, per_user=4))
    rng = np.random.default_rng(1)
    write_model(layout, rng.normal(size=(30, 2)), rng.normal(size=(16, 2)))
    config = tiny_config(tmp_path, "mf")
    config.evaluate.max_users = 12
    first = run_evaluate(config, layout)
    assert first["users_evaluated"] == 12 and first["users_with_test"] == 30
    assert run_evaluate(config, layout) == first


def test_missing_model_is_a_data_error(tmp_path: Path) -> None:
    layout = write_prepared(tmp_path)
    with pytest.raises(DataError, match="run `recbatch train` first"):
        run_evaluate(tiny_config(tmp_path, "mf"), layout)


def test_pipeline_evaluate_checks_its_inputs_before_fitting_extra_models(tmp_path: Path) -> None:
    from recbatch import pipeline

    layout = write_prepared(tmp_path)
    config = tiny_config(tmp_path, "mf")
    config.evaluate.extra_models = ["gmf"]
    with pytest.raises(DataError, match="run `recbatch train` first"):
        pipeline.evaluate(config, layout)
    rng = np.random.default_rng(1)
    write_model(layout, rng.normal(size=(60, 2)), rng.normal(size=(40, 2)))
    layout.test.delete()
    with pytest.raises(DataError, match="run `recbatch prepare` first"):
        pipeline.evaluate(config, layout)


def test_format_metrics_table() -> None:
    scores = {
        f"{m}@10": v
        for m, v in zip(
            ("hr", "ndcg", "precision", "recall", "map", "mrr", "coverage"),
            (0.5, 0.25, 0.05, 0.5, 0.125, 0.375, 1.0),
            strict=True,
        )
    }
    metrics = {"primary_k": 10, "models": {"mf": scores, "popularity": {k: v / 2 for k, v in scores.items()}}}
    lines = format_metrics_table(metrics).splitlines()
    assert lines[0].split() == [
        "model",
        "hr@10",
        "ndcg@10",
        "precision@10",
        "recall@10",
        "map@10",
        "mrr@10",
        "coverage@10",
    ]
    assert lines[2].split() == ["mf", "0.5000", "0.2500", "0.0500", "0.5000", "0.1250", "0.3750", "1.0000"]
    assert lines[3].split()[0] == "popularity" and lines[3].split()[1] == "0.2500"
    assert len({len(line) for line in lines}) == 1  # aligned: every line equally wide


def test_trained_mf_beats_popularity_and_seed_matches_it(tmp_path: Path) -> None:
    """Two taste clusters: mf must learn them; seed ranks every user's items alike, like popularity."""
    from recbatch.train.stage import run_train

    layout = write_prepared(tmp_path)
    results = {}
    for model in ("mf", "seed"):
        config = tiny_config(tmp_path, model)
        run_train(config, layout)
        results[model] = run_evaluate(config, layout)["models"]
    mf, seed = results["mf"]["mf"], results["seed"]["seed"]
    popularity = results["mf"]["popularity"]
    # Measured: mf 0.88, popularity 0.43 (a user-independent list spends half its slots on
    # the other cluster's items).
    assert mf["hr@10"] >= popularity["hr@10"] + 0.25
    assert mf["ndcg@10"] > popularity["ndcg@10"]
    assert abs(seed["hr@10"] - popularity["hr@10"]) <= 0.15
    assert seed["coverage@10"] <= popularity["coverage@10"] + 0.1


def test_sampled_protocol_ranks_only_test_items_and_sampled_negatives(tmp_path: Path) -> None:
    data = clustered_data(n_users=30, n_items=40, per_user=4, seed=2)
    tr_u, tr_i, te_u, te_i, n_users, n_items = data
    layout = write_prepared(tmp_path, data)
    rng = np.random.default_rng(3)
    write_model(layout, rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3)))
    config = tiny_config(tmp_path, "mf")
    config.evaluate.baselines = ["popularity"]
    config.evaluate.report = False
    full = run_evaluate(config, layout)
    config.evaluate.protocol, config.evaluate.negatives = "sampled", 5
    sampled = run_evaluate(config, layout)
    assert sampled["protocol"] == "sampled ranking: each test item among 5 sampled unseen items"
    # 1 test item + 5 negatives: a top-10 list holds all six, so every user is a hit.
    assert (
        sampled["models"]["mf"]["hr@10"] == 1.0
        and sampled["models"]["mf"]["hr@5"] >= full["models"]["mf"]["hr@5"]
    )
    assert sampled["models"]["mf"]["coverage@10"] <= 30 * 6 / n_items

    from recbatch.core.ranking import sample_candidates

    seen = [tr_i[tr_u == u] for u in range(n_users)]
    relevant = [te_i[te_u == u] for u in range(n_users)]
    cands = sample_candidates(relevant, seen, n_items, 5, np.random.default_rng(0))
    for rel, s, c in zip(relevant, seen, cands, strict=True):
        assert len(c) == 6 and len(set(c.tolist())) == 6 and c[0] == rel[0]
        assert not set(c[1:].tolist()) & (set(s.tolist()) | set(rel.tolist()))


def test_recent_popularity_counts_only_the_window() -> None:
    from recbatch.evaluate.stage import recent_popularity

    items = np.array([0, 0, 0, 1, 1, 2], np.int32)
    day = 86_400
    ts = np.array([0, 1, 2, 50, 50, 49], np.int64) * day
    scores = recent_popularity(items, ts, 4, window_days=5)  # window: days 45..50
    order = np.argsort(-scores, kind="stable").tolist()
    assert order == [1, 2, 0, 3]  # item 0 is the most popular overall but not recently


def test_network_model_is_ranked_through_its_network(tmp_path: Path) -> None:
    import keras

    from recbatch.train.stage import run_train

    data = clustered_data(n_users=30, n_items=16, per_user=4, seed=5)
    tr_u, tr_i, te_u, te_i, n_users, n_items = data
    layout = write_prepared(tmp_path, data)
    config = tiny_config(tmp_path, "mlp", epochs=2, mlp_layers=[8, 4], validation=False)
    config.evaluate.baselines = []
    config.evaluate.report = False
    run_train(config, layout)
    metrics = run_evaluate(config, layout)
    model = keras.saving.load_model(layout.model_file)
    uu, ii = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    x = {"user_idx": uu.ravel().astype(np.int32), "item_idx": ii.ravel().astype(np.int32)}
    scores = keras.ops.convert_to_numpy(model.logit(x)).reshape(n_users, n_items)
    seen, relevant = as_sets(tr_u, tr_i, n_users), as_sets(te_u, te_i, n_users)
    for k in metrics["k"]:
        for key, value in naive_metrics(scores, seen, relevant, range(n_users), k).items():
            # float32 network sums may order near-ties differently from Keras: allow one user.
            assert metrics["models"]["mlp"][key] == pytest.approx(value, abs=1.0 / n_users + 1e-9), key


def test_side_by_side_report_shows_seed_cannot_personalise(tmp_path: Path) -> None:
    from recbatch import pipeline

    layout = write_prepared(tmp_path)
    config = tiny_config(tmp_path, "seed", epochs=3, validation=False)
    config.evaluate.extra_models = ["mf"]
    config.evaluate.baselines = ["popularity", "popularity_recent"]
    # Where evaluation reads the model (model_split/ under final_fit "all").
    pipeline.train_split(config, layout)
    metrics = pipeline.evaluate(config, layout)  # fits the extra models (train stage), then evaluates
    assert list(metrics["models"]) == ["seed", "mf", "popularity", "popularity_recent"]
    assert metrics["trained_models"] == ["seed", "mf"]
    personal = metrics["personalisation"]
    assert (
        personal["seed"]["kendall_tau"] == pytest.approx(1.0) and personal["seed"]["identical_top_k"] == 1.0
    )
    assert personal["mf"]["kendall_tau"] < 0.5 and personal["mf"]["identical_top_k"] < 0.5
    for key in ("mrr@10", "novelty@10", "popularity_bias@10"):
        assert key in metrics["models"]["mf"]
    assert sum(metrics["long_tail"]["popularity"]) == pytest.approx(1.0)
    for png in ("training_curves.png", "metric_bars.png", "recall_at_k.png", "long_tail.png"):
        assert (layout.eval_dir / png).read_bytes()[:4] == b"\x89PNG", png
    report = (layout.eval_dir / "report.md").read_text()
    assert "| **mf** |" in report and "| popularity |" in report and "cannot personalise" in report
    assert "![Long-tail coverage](long_tail.png)" in report and "Warning" not in report


def test_report_warns_about_sampled_metrics_and_names_the_winner() -> None:
    from recbatch.evaluate.report import render_markdown

    scores = {f"{m}@10": 0.1 for m in ("hr", "ndcg", "precision", "recall", "map", "mrr", "coverage")}
    metrics = {
        "k": [10],
        "primary_k": 10,
        "protocol": "sampled ranking: each test item among 99 sampled unseen items",
        "protocol_name": "sampled",
        "users_evaluated": 5,
        "num_items": 9,
        "trained_models": ["mf"],
        "models": {"mf": scores, "als": {k: v / 2 for k, v in scores.items()}},
    }
    text = render_markdown(metrics, [])
    assert "Warning: sampled protocol" in text and "Krichene & Rendle" in text
    assert "**mf** (HR@10 0.1000, NDCG@10 0.1000); it beats Spark ALS" in text
    assert "| **mf** | 0.1000" in text and "| als | 0.0500" in text


def test_two_stage_cost_is_zero_when_retrieving_everything_and_matches_a_naive_rerank(tmp_path: Path) -> None:
    from recbatch.core.ranking import rank_users
    from recbatch.train.stage import run_train

    data = clustered_data(n_users=30, n_items=16, per_user=4, seed=6)
    layout = write_prepared(tmp_path, data)
    config = tiny_config(tmp_path, "mlp", epochs=2, mlp_layers=[8, 4], validation=False)
    config.evaluate.baselines = []
    config.evaluate.report = True
    config.evaluate.extra_models = ["mf"]
    config.evaluate.two_stage_retriever = "mf"
    run_train(config, layout)
    extra_models = fit_comparison_models(config, layout)

    config.evaluate.two_stage_n = 16  # the whole catalogue: the same ranking as exact scoring
    row = run_evaluate(config, layout, extra_models=extra_models)["two_stage"]["mlp <- mf top-16"]
    assert row["recall_cost"] == 0.0 and row["overlap"] == 1.0 and row["recall"] == row["exact_recall"]

    config.evaluate.two_stage_n = 3
    metrics = run_evaluate(config, layout, extra_models=extra_models)
    row = metrics["two_stage"]["mlp <- mf top-3"]
    assert 0.0 <= row["overlap"] <= 1.0 and row["n"] == 3
    assert "Two-stage scoring" in (layout.eval_dir / "report.md").read_text()
    # Naive reference: the retriever's top 3 unseen items, re-sorted by the network's logits.
    from recbatch.artifacts import read_manifest
    from recbatch.evaluate.stage import model_scorer_from_artifacts

    network = model_scorer_from_artifacts(layout, read_manifest(layout.model_manifest))
    retriever, _ = fit_comparison_model(config, layout, "mf")  # a fresh fit: the same seed, the same model
    tr_u, tr_i, te_u, te_i, n_users, _ = data
    seen = [np.asarray(sorted(s), dtype=np.int64) for s in as_sets(tr_u, tr_i, n_users).values()]
    users = np.unique(te_u)
    top3 = rank_users(retriever, users, 3, [seen[u] for u in users])
    hits = 0
    for row_items, u in zip(top3, users, strict=True):
        logits = network.scores(np.array([u]))[0]
        best = sorted(row_items.tolist(), key=lambda i: (-logits[i], i))[: metrics["primary_k"]]
        hits += int(te_i[te_u == u][0] in best)
    assert row["recall"] == pytest.approx(hits / len(users))


def test_configured_extra_models_must_be_passed_in(tmp_path: Path) -> None:
    layout = write_prepared(tmp_path, clustered_data(n_users=30, n_items=16, per_user=4))
    rng = np.random.default_rng(4)
    write_model(layout, rng.normal(size=(30, 2)), rng.normal(size=(16, 2)))
    config = tiny_config(tmp_path, "mf")
    config.evaluate.extra_models = ["mf", "gmf"]  # mf is the trained model itself: never refitted
    config.evaluate.report = False
    with pytest.raises(ValueError, match="'gmf' but run_evaluate got no fitted model"):
        run_evaluate(config, layout)
    assert fit_comparison_models(tiny_config(tmp_path, "mf"), layout) == {}  # nothing configured


def test_network_comparison_models_fall_back_from_softmax_to_bce(tmp_path: Path) -> None:
    from recbatch.train.compare import comparison_config

    cfg = tiny_config(tmp_path, "mf", loss="softmax").train
    assert [(c.model, c.loss) for c in (comparison_config(cfg, m) for m in ("mlp", "neumf", "gmf"))] == [
        ("mlp", "bce"),
        ("neumf", "bce"),
        ("gmf", "softmax"),
    ]
    assert comparison_config(cfg.model_copy(update={"loss": "bpr"}), "mlp").loss == "bpr"


def test_the_evaluate_stage_imports_no_training_and_no_tensorflow() -> None:
    """Stages never import a sibling stage: extra models are fitted by the train stage and passed in."""
    import ast

    package = Path(__file__).resolve().parents[1] / "recbatch" / "evaluate"
    banned = ("recbatch.train", "recbatch.models", "tensorflow", "keras")
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.split(".")[0] in banned or n.startswith(banned)]
            assert not bad, f"{source.name} imports {bad}"
