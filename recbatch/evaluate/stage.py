"""The evaluate stage: rank held-out items for the model, other models and baselines, side by side.

Protocol "full" (default): for every user with test rows (or a seeded sample of
`evaluate.max_users`), score every item the user has not interacted with in train, take
the top K, count the user's test items among them (metrics in `recbatch.core.metrics`).
Protocol "sampled": rank each user's test items among `evaluate.negatives` sampled unseen
items per test item (the NCF paper's protocol); comparable with published tables but it
can reorder models (Krichene & Rendle, KDD 2020), so the report warns.
Dot models rank by the raw dot of their exported factors through the scoring kernel;
mlp/neumf through their network (`recbatch.core.network`).
Baselines: popularity and popularity_recent (`recbatch.evaluate.baselines`) and Spark ALS
factors when the caller passes them. The models of `evaluate.extra_models` are fitted by
the train stage (`fit_comparison_models` in train/compare.py) and passed in by the caller
above both stages (`recbatch.pipeline.evaluate`), as the ALS factors are: this package
imports no training and no TensorFlow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from recbatch.artifacts import check_range, read_factors, read_manifest, read_network, read_pairs, read_times
from recbatch.config import Config
from recbatch.core.arrays import distinct
from recbatch.core.metrics import ranking_metrics
from recbatch.core.ranking import (
    DotScorer,
    FittedModel,
    NetworkScorer,
    Scorer,
    group_items,
    rank_users,
    sample_candidates,
)
from recbatch.errors import DataError
from recbatch.evaluate.baselines import item_popularity, popularity_scorers, recent_popularity
from recbatch.evaluate.diagnostics import long_tail, personalisation
from recbatch.evaluate.list_rules import rules_effect
from recbatch.evaluate.table import format_metrics_table
from recbatch.evaluate.two_stage import two_stage
from recbatch.layout import RunLayout
from recbatch.storage import write_json

log = logging.getLogger(__name__)

PROTOCOL = "full ranking over unseen items"
SAMPLED_PROTOCOL = "sampled ranking: each test item among {n} sampled unseen items"

__all__ = [
    "PROTOCOL",
    "SAMPLED_PROTOCOL",
    "HeldOut",
    "check_inputs",
    "format_metrics_table",
    "group_items",
    "item_popularity",
    "model_scorer_from_artifacts",
    "recent_popularity",
    "run_evaluate",
    "sample_users",
]


@dataclass
class HeldOut:
    """Who is evaluated on what: the users, their train (seen) and test (relevant) items."""

    users: np.ndarray
    users_with_test: int
    seen: list[np.ndarray]
    relevant: list[np.ndarray]
    candidates: list[np.ndarray] | None  # sampled protocol: the items each user's ranking is over
    protocol: str


def sample_users(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """All `users` (max_users 0 or None), or a seeded sample of `max_users` of them, ascending."""
    if not max_users or len(users) <= max_users:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))


def model_scorer_from_artifacts(layout: RunLayout, manifest: dict[str, Any]) -> Scorer:
    """The trained model's scorer: factor dot products, or the network for mlp/neumf."""
    user_matrix = read_factors(layout.user_factors, "user_idx")
    item_matrix = read_factors(layout.item_factors, "item_idx")
    network = read_network(layout.model_dir, manifest)
    if network is not None:
        return NetworkScorer(network, user_matrix, item_matrix)
    return DotScorer(user_matrix, item_matrix)


def check_inputs(layout: RunLayout) -> None:
    """DataError unless a trained model and both prepared splits exist: call before any work."""
    read_manifest(layout.model_manifest)
    _require_splits(layout)


def _ks(config: Config) -> list[int]:
    """The cut-offs computed: evaluate.ks and always primary_k."""
    return sorted(set(config.evaluate.ks) | {config.evaluate.primary_k})


def _block(config: Config) -> int:
    """Users per block for dot-product scorers (the scoring engine's block size)."""
    return config.score.user_block or 1024


def _require_splits(layout: RunLayout) -> None:
    for split in (layout.train, layout.test):
        if not split.exists():
            raise DataError(f"prepared split {split} not found: run `recbatch prepare` first")


def _test_set(
    config: Config, layout: RunLayout, num_users: int, num_items: int
) -> tuple[np.ndarray, HeldOut]:
    """The train items (for popularity) and the test set of the configured protocol."""
    ecfg = config.evaluate
    _require_splits(layout)
    train_u, train_i = read_pairs(layout.train)
    test_u, test_i = read_pairs(layout.test)
    check_range(train_u, train_i, num_users, num_items, layout.train)
    check_range(test_u, test_i, num_users, num_items, layout.test)
    with_test = distinct(test_u)
    if len(with_test) == 0:
        raise DataError(
            f"the test split at {layout.test} is empty: set prepare.test_per_user >= 1 and re-run prepare"
        )
    users = sample_users(with_test, ecfg.max_users, config.train.seed)
    seen_all = group_items(train_u, train_i, num_users)
    relevant_all = group_items(test_u, test_i, num_users)
    seen = [seen_all[u] for u in users]
    relevant = [relevant_all[u] for u in users]
    candidates, protocol = None, PROTOCOL
    if ecfg.protocol == "sampled":
        rng = np.random.default_rng(config.train.seed)
        candidates = sample_candidates(relevant, seen, num_items, ecfg.negatives, rng)
        protocol = SAMPLED_PROTOCOL.format(n=ecfg.negatives)
    return train_i, HeldOut(users, len(with_test), seen, relevant, candidates, protocol)


def _scorers(
    config: Config,
    main: tuple[str, Scorer, dict[str, list[float]]],
    extra_models: dict[str, FittedModel],
    baselines: dict[str, Scorer],
    extra_factors: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, Scorer], dict[str, dict[str, list[float]]]]:
    """Every scorer in report order (trained model, extra models, baselines) and the histories."""
    model_name, scorer, history = main
    scorers: dict[str, Scorer] = {model_name: scorer}
    histories = {model_name: history}
    for name in config.evaluate.extra_models:
        if name in scorers:
            continue
        if name not in extra_models:
            raise ValueError(
                f"evaluate.extra_models lists {name!r} but run_evaluate got no fitted model for it: "
                "fit them with the train stage's fit_comparison_models first (recbatch.pipeline.evaluate does)"
            )
        scorers[name], histories[name] = extra_models[name]
    scorers.update(baselines)
    for name, (extra_users, extra_items) in extra_factors.items():
        scorers[name] = DotScorer(extra_users, extra_items, _block(config))
    return scorers, histories


def _rank_all(
    config: Config,
    scorers: dict[str, Scorer],
    trained: list[str],
    tests: HeldOut,
    popularity: np.ndarray,
    num_users: int,
) -> dict[str, dict[str, Any]]:
    """Per scorer: its metrics at every K and long-tail shares; personalisation of trained models."""
    ks, p, num_items = _ks(config), config.evaluate.primary_k, len(popularity)
    out: dict[str, dict[str, Any]] = {"models": {}, "long_tail": {}, "personalisation": {}}
    for name, scorer in scorers.items():
        ranked = rank_users(scorer, tests.users, max(ks), tests.seen, tests.candidates)
        scores = ranking_metrics(ranked, tests.relevant, ks, num_items, popularity, num_users)
        out["models"][name] = scores
        out["long_tail"][name] = long_tail(ranked, p, popularity)
        if name in trained:
            out["personalisation"][name] = personalisation(
                scorer, tests.users, num_items, p, config.train.seed
            )
        log.info("evaluate %s: hr@%d %.4f ndcg@%d %.4f", name, p, scores[f"hr@{p}"], p, scores[f"ndcg@{p}"])
    return out


def run_evaluate(
    config: Config,
    layout: RunLayout,
    extra_factors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    extra_models: dict[str, FittedModel] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model, extra models and baselines on the test split; write layout.metrics.

    `extra_factors` maps a baseline's name to its (user, item) factor matrices by dense
    index (e.g. Spark ALS, trained by the caller that holds the SparkSession).
    `extra_models` maps each name of `evaluate.extra_models` (but the trained model's) to its
    fitted (scorer, history), from the train stage's `fit_comparison_models`.
    """
    ecfg = config.evaluate
    manifest = read_manifest(layout.model_manifest)
    model_name = str(manifest.get("model", config.train.model))
    main = model_scorer_from_artifacts(layout, manifest)
    if isinstance(main, DotScorer):
        main.block = _block(config)
    num_users, num_items = main.shape
    train_i, tests = _test_set(config, layout, num_users, num_items)
    popularity = item_popularity(train_i, num_items)
    times = partial(read_times, layout.train)  # read only for popularity_recent
    baselines = popularity_scorers(ecfg, num_users, train_i, popularity, times, _block(config))
    main_model = (model_name, main, manifest.get("history", {}))
    scorers, histories = _scorers(config, main_model, extra_models or {}, baselines, extra_factors or {})
    ranked = _rank_all(config, scorers, list(histories), tests, popularity, num_users)
    staged = {}
    if ecfg.two_stage_retriever is not None and tests.candidates is None:
        staged = two_stage(
            scorers,
            ranked["models"],
            ecfg.two_stage_retriever,
            ecfg.two_stage_n,
            tests.users,
            tests.seen,
            tests.relevant,
            ecfg.primary_k,
        )
    rules = None
    if tests.candidates is None:  # the rules shape full lists; a sampled ranking has none
        rules = rules_effect(config, layout, model_name, main, tests.users, tests.seen, tests.relevant)
    metrics = _metrics(config, model_name, num_items, tests, ranked, histories, staged)
    metrics["rules"] = rules or {}
    write_json(layout.metrics, metrics)
    if ecfg.report:
        from recbatch.evaluate.report import write_report

        write_report(metrics, layout.eval_dir)
    return metrics


def _metrics(
    config: Config,
    model_name: str,
    num_items: int,
    tests: HeldOut,
    ranked: dict[str, dict[str, Any]],
    histories: dict[str, dict[str, list[float]]],
    staged: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The metrics.json document (also what the report is rendered from)."""
    ecfg = config.evaluate
    return {
        "k": _ks(config),
        "primary_k": ecfg.primary_k,
        "model": model_name,
        "models": ranked["models"],
        "trained_models": list(histories),
        "users_evaluated": len(tests.users),
        "users_with_test": tests.users_with_test,
        "num_items": num_items,
        "protocol": tests.protocol,
        "protocol_name": ecfg.protocol,
        "long_tail": ranked["long_tail"],
        "personalisation": ranked["personalisation"],
        "histories": histories,
        "two_stage": staged,
    }
