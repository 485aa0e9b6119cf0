"""The evaluate stage: rank held-out items for the model, other models and baselines, side by side.

Protocol "full" (default): for every user with test rows (or a seeded sample of
`evaluate.max_users`), score every item the user has not interacted with in train, take
the top K, count the user's test items among them (metrics in `recbatch.core.metrics`).
Protocol "sampled": rank each user's test items among `evaluate.negatives` sampled unseen
items per test item (the NCF paper's protocol); comparable with published tables but it
can reorder models (Krichene & Rendle, KDD 2020), so the report warns.
Dot models rank by the raw dot of their exported factors through the scoring kernel;
mlp/neumf through their network (`recbatch.core.network`).
Baselines: popularity (train users per item), popularity_recent (the last window_days of
train) and Spark ALS factors when the caller passes them. `evaluate.extra_models` are
trained here with the [train] settings and evaluated beside the main model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recbatch.artifacts import check_range, read_factors, read_manifest, read_network, read_pairs, read_times
from recbatch.config import Config
from recbatch.core.files import write_json
from recbatch.core.metrics import METRIC_NAMES, ranking_metrics
from recbatch.core.ranking import DotScorer, NetworkScorer, Scorer, group_items, rank_users, sample_candidates
from recbatch.errors import ConfigError, DataError
from recbatch.evaluate.diagnostics import long_tail, personalisation
from recbatch.layout import RunLayout

log = logging.getLogger(__name__)

PROTOCOL = "full ranking over unseen items"
SAMPLED_PROTOCOL = "sampled ranking: each test item among {n} sampled unseen items"
DAY = 86_400

__all__ = ["PROTOCOL", "format_metrics_table", "group_items", "item_popularity", "run_evaluate"]


def item_popularity(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Number of train users per item (prepared splits hold one row per user and item)."""
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


def recent_popularity(
    train_items: np.ndarray, train_ts: np.ndarray, num_items: int, window_days: int
) -> np.ndarray:
    """Train users per item within the last `window_days` of train; all-time counts break ties."""
    recent = train_ts >= train_ts.max(initial=0) - window_days * DAY
    counts = np.bincount(train_items[recent], minlength=num_items).astype(np.float64)
    overall = np.bincount(train_items, minlength=num_items).astype(np.float64)
    return (counts * (overall.max(initial=0) + 1) + overall).astype(np.float64)


def sample_users(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """All `users`, or a seeded sample of `max_users` of them, ascending."""
    if max_users is None or len(users) <= max_users:
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


def _train_extra(config: Config, layout: RunLayout, name: str, num_users: int, num_items: int) -> Any:
    from recbatch.models.runtime import prepare_tensorflow

    prepare_tensorflow()
    from recbatch.train.loop import fit
    from recbatch.train.validation import model_scorer

    users, items = read_pairs(layout.train)
    update: dict[str, Any] = {"model": name}
    if config.train.loss == "softmax" and name in ("mlp", "neumf"):
        # Sampled softmax needs a dot product; network models fall back to sampled-negative BCE.
        update["loss"] = "bce"
    cfg = config.train.model_copy(update=update)
    log.info("evaluate: training extra model %s (%s loss)", name, cfg.loss)
    result = fit(cfg, num_users, num_items, users, items, read_times(layout.train))
    return model_scorer(result.model), result.history


def run_evaluate(
    config: Config,
    layout: RunLayout,
    extra_factors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model, extra models and baselines on the test split; write layout.metrics.

    `extra_factors` maps a baseline's name to its (user, item) factor matrices by dense
    index (e.g. Spark ALS, trained by the caller that holds the SparkSession).
    """
    ecfg = config.evaluate
    manifest = read_manifest(layout.model_manifest)
    model_name = str(manifest.get("model", config.train.model))
    main = model_scorer_from_artifacts(layout, manifest)
    if isinstance(main, DotScorer):
        main.block = config.score.user_block or 1024
    num_users, num_items = main.shape
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
    popularity = item_popularity(train_i, num_items)
    candidates = None
    protocol = PROTOCOL
    if ecfg.protocol == "sampled":
        rng = np.random.default_rng(config.train.seed)
        candidates = sample_candidates(relevant, seen, num_items, ecfg.negatives, rng)
        protocol = SAMPLED_PROTOCOL.format(n=ecfg.negatives)

    scorers: dict[str, Scorer] = {model_name: main}
    histories = {model_name: manifest.get("history", {})}
    for name in ecfg.extra_models:
        if name not in scorers:
            scorers[name], histories[name] = _train_extra(config, layout, name, num_users, num_items)
    block = config.score.user_block or 1024
    ones = np.ones((num_users, 1), np.float32)
    if "popularity" in ecfg.baselines:
        scorers["popularity"] = DotScorer(ones, popularity[:, None], block)
    if "popularity_recent" in ecfg.baselines:
        recent = recent_popularity(train_i, read_times(layout.train), num_items, ecfg.window_days)
        scorers["popularity_recent"] = DotScorer(ones, recent[:, None].astype(np.float64), block)
    for name, (extra_users, extra_items) in (extra_factors or {}).items():
        scorers[name] = DotScorer(extra_users, extra_items, block)

    results: dict[str, dict[str, float]] = {}
    tails: dict[str, list[float]] = {}
    personal: dict[str, dict[str, float]] = {}
    p = ecfg.primary_k
    for name, scorer in scorers.items():
        ranked = rank_users(scorer, users, max(ks), seen, candidates)
        results[name] = ranking_metrics(ranked, relevant, ks, num_items, popularity, num_users)
        tails[name] = long_tail(ranked, p, popularity)
        if name in histories:
            personal[name] = personalisation(scorer, users, num_items, p, config.train.seed)
        log.info(
            "evaluate %s: hr@%d %.4f ndcg@%d %.4f",
            name,
            p,
            results[name][f"hr@{p}"],
            p,
            results[name][f"ndcg@{p}"],
        )

    two_stage = {}
    if ecfg.two_stage_retriever is not None and candidates is None:
        two_stage = _two_stage(
            scorers, results, ecfg.two_stage_retriever, ecfg.two_stage_n, users, seen, relevant, p
        )
        for name, row in two_stage.items():
            log.info("evaluate %s: recall@%d %.4f (exact %.4f)", name, p, row["recall"], row["exact_recall"])

    metrics = {
        "k": ks,
        "primary_k": p,
        "model": model_name,
        "models": results,
        "trained_models": list(histories),
        "users_evaluated": len(users),
        "users_with_test": len(with_test),
        "num_items": num_items,
        "protocol": protocol,
        "protocol_name": ecfg.protocol,
        "long_tail": tails,
        "personalisation": personal,
        "histories": histories,
        "two_stage": two_stage,
    }
    write_json(layout.metrics, metrics)
    if ecfg.report:
        from recbatch.evaluate.report import write_report

        write_report(metrics, layout.eval_dir)
    return metrics


def _two_stage(
    scorers: dict[str, Scorer],
    exact: dict[str, dict[str, float]],
    retriever: str,
    n: int,
    users: np.ndarray,
    seen: list[np.ndarray],
    relevant: list[np.ndarray],
    k: int,
) -> dict[str, dict[str, float]]:
    """Recall@k of retrieve-top-n-then-rerank against exact ranking (`exact`), per network model.

    The retriever's top n unseen items become each user's candidates; the network model
    ranks only those. `overlap` is the share of the exact top-k items the two stages keep.
    """
    if not isinstance(scorers.get(retriever), DotScorer):
        raise ConfigError(
            f"evaluate.two_stage_retriever = {retriever!r} is not a dot-product model of this run; "
            "add it to evaluate.extra_models (mf, gmf, two_tower), or use als with the als baseline on"
        )
    retrieved = rank_users(scorers[retriever], users, n, seen)
    candidates = [row[row >= 0] for row in retrieved]
    out = {}
    for name, scorer in scorers.items():
        if not isinstance(scorer, NetworkScorer):
            continue
        full = rank_users(scorer, users, k, seen)
        staged = rank_users(scorer, users, k, seen, candidates)
        recall = ranking_metrics(staged, relevant, [k], scorer.shape[1])[f"recall@{k}"]
        kept = [
            len(np.intersect1d(a[a >= 0], b[b >= 0])) / max(1, int((a >= 0).sum()))
            for a, b in zip(full, staged, strict=True)
        ]
        out[f"{name} <- {retriever} top-{n}"] = {
            "k": k,
            "n": n,
            "exact_recall": exact[name][f"recall@{k}"],
            "recall": recall,
            "recall_cost": exact[name][f"recall@{k}"] - recall,
            "overlap": float(np.mean(kept)),
        }
    return out


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """An aligned text table: one row per model or baseline, one column per metric at primary_k."""
    k = metrics["primary_k"]
    columns = [f"{name}@{k}" for name in METRIC_NAMES]
    rows = [
        [name] + [f"{scores[c]:.4f}" if c in scores else "-" for c in columns]
        for name, scores in metrics["models"].items()
    ]
    header = ["model", *columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
