"""The evaluate stage: rank all unseen items for held-out users, compare the model with baselines.

Protocol: for every user with test rows (or a seeded sample of `evaluate.max_users`),
score every item the user has not interacted with in train, take the top K, and count
the user's test items among them (metrics in `recbatch.metrics`). The trained model
ranks by the raw dot of its exported factors (the activation is monotonic), exactly as
the scoring engine does, through the same kernel (`recbatch.score.kernel.top_k_dot`).
Baselines: popularity = number of train users per item, the same list for everyone;
Spark ALS (implicit) factors when the caller passes them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recbatch.config import Config
from recbatch.errors import DataError
from recbatch.layout import RunLayout
from recbatch.metrics import METRIC_NAMES, ranking_metrics
from recbatch.runs import write_json
from recbatch.score.kernel import top_k_dot
from recbatch.training.artifacts import read_factors, read_manifest
from recbatch.training.data import check_range, read_pairs

log = logging.getLogger(__name__)

PROTOCOL = "full ranking over unseen items"


def group_items(users: np.ndarray, items: np.ndarray, num_users: int) -> list[np.ndarray]:
    """Items per user index (a list of num_users arrays), from parallel user/item arrays."""
    order = np.argsort(users, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])
    sorted_items = items[order]
    return [sorted_items[bounds[u] : bounds[u + 1]] for u in range(num_users)]


def rank_users(
    user_vecs: np.ndarray, item_vecs: np.ndarray, k: int, seen: list[np.ndarray], block: int
) -> np.ndarray:
    """Top-k item indices per row of `user_vecs` (seen[r] excluded), in blocks of `block` users."""
    ranked = np.full((len(user_vecs), k), -1, dtype=np.int64)
    for start in range(0, len(user_vecs), block):
        stop = start + block
        ranked[start:stop], _ = top_k_dot(user_vecs[start:stop], item_vecs, k, seen=seen[start:stop])
    return ranked


def item_popularity(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Number of train users per item (prepared splits hold one row per user and item)."""
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


def sample_users(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """All `users`, or a seeded sample of `max_users` of them, ascending."""
    if max_users is None or len(users) <= max_users:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))


def run_evaluate(
    config: Config,
    layout: RunLayout,
    extra_factors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model and the baselines on the test split; write and return layout.metrics.

    `extra_factors` maps a baseline's name to its (user, item) factor matrices by dense
    index (e.g. Spark ALS, trained by the caller that holds the SparkSession); they are
    ranked by the same kernel on the same candidates.
    """
    ecfg = config.evaluate
    manifest = read_manifest(layout.model_manifest)
    model_name = str(manifest.get("model", config.train.model))
    user_matrix = read_factors(layout.user_factors, "user_idx")
    item_matrix = read_factors(layout.item_factors, "item_idx")
    num_users, num_items = len(user_matrix), len(item_matrix)
    for split in (layout.train, layout.test):
        if not split.exists():
            raise DataError(f"prepared split {split} not found: run `recbatch prepare` first")
    train_u, train_i = read_pairs(layout.train)
    test_u, test_i = read_pairs(layout.test)
    check_range(train_u, train_i, num_users, num_items, layout.train)
    check_range(test_u, test_i, num_users, num_items, layout.test)

    with_test = np.unique(test_u)
    if len(with_test) == 0:
        raise DataError(
            f"the test split at {layout.test} is empty: set prepare.test_per_user >= 1 and re-run prepare"
        )
    users = sample_users(with_test, ecfg.max_users, config.train.seed)
    seen_all = group_items(train_u, train_i, num_users)
    relevant_all = group_items(test_u, test_i, num_users)
    seen = [seen_all[u] for u in users]
    relevant = [relevant_all[u] for u in users]
    ks = sorted(set(ecfg.ks) | {ecfg.primary_k})

    rankers: dict[str, tuple[np.ndarray, np.ndarray]] = {model_name: (user_matrix[users], item_matrix)}
    if "popularity" in ecfg.baselines:
        popularity = item_popularity(train_i, num_items)
        rankers["popularity"] = (np.ones((len(users), 1), np.float32), popularity[:, None])
    for name, (extra_users, extra_items) in (extra_factors or {}).items():
        rankers[name] = (extra_users[users], extra_items)
    results: dict[str, dict[str, float]] = {}
    for name, (user_vecs, item_vecs) in rankers.items():
        ranked = rank_users(user_vecs, item_vecs, max(ks), seen, config.score.user_block)
        results[name] = ranking_metrics(ranked, relevant, ks, num_items)
        p = ecfg.primary_k
        log.info(
            "evaluate %s: hr@%d %.4f ndcg@%d %.4f",
            name,
            p,
            results[name][f"hr@{p}"],
            p,
            results[name][f"ndcg@{p}"],
        )

    metrics = {
        "k": ks,
        "primary_k": ecfg.primary_k,
        "model": model_name,
        "models": results,
        "users_evaluated": len(users),
        "users_with_test": len(with_test),
        "num_items": num_items,
        "protocol": PROTOCOL,
    }
    write_json(layout.metrics, metrics)
    return metrics


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """An aligned text table: one row per model or baseline, one column per metric at primary_k."""
    k = metrics["primary_k"]
    columns = [f"{name}@{k}" for name in METRIC_NAMES]
    rows = [[name] + [f"{scores[c]:.4f}" for c in columns] for name, scores in metrics["models"].items()]
    header = ["model", *columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
