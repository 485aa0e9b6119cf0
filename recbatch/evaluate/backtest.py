"""The backtest's scoring: the published table against the held-out rows, beside baselines on the same data.

`recbatch backtest` (recbatch.pipeline.backtest) hides each user's latest interactions from
the raw input (recbatch.prep.holdout), runs the configured pipeline on the rest as production
would, then ranks here, for every user with a relevant held-out pair: the **published** top-K
table as readers get it (model rows and fallback rows alike), popularity over the visible
prepared interactions, and Spark ALS fitted on those same interactions (grid-tuned on their
validation carve when [als] has a grid). Users the visible run removed get popularity from
both baselines, as the published fallback does; a held-out item the visible run never saw
counts as relevant and can never be hit. Every table is mapped to one item index space (the
visible run's vocabulary, unknown held-out items after it) and scored by
`recbatch.core.metrics.ranking_metrics`, so the three rows of the table are comparable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recbatch.artifacts import read_pairs
from recbatch.core.metrics import ranking_metrics
from recbatch.core.ranking import DotScorer, ListScorer, group_items, rank_users
from recbatch.evaluate.baselines import item_popularity
from recbatch.storage import write_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout
    from recbatch.storage import Location

log = logging.getLogger(__name__)


@dataclass
class Truth:
    """The evaluated users (sorted ids) and their relevant held-out items, in the backtest's index space."""

    users: np.ndarray  # user ids (str), ascending
    relevant: list[np.ndarray]  # item indices per user; unknown items are >= n_items
    user_idx: np.ndarray  # the visible run's user index, -1 for users it does not know
    n_items: int  # the visible run's catalogue
    item_index: dict[str, int]  # item id -> index (the vocabulary's, then unknown held-out items)


def _vocab(layout: RunLayout, name: str) -> dict[str, int]:
    import pyarrow.parquet as pq

    path = layout.user_vocab if name == "user" else layout.item_vocab
    table = pq.read_table(path.fs_path, filesystem=path.filesystem, columns=[f"{name}_id", f"{name}_idx"])
    return dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))


def load_truth(held: DataFrame, layout: RunLayout) -> Truth:
    """The relevant held-out pairs mapped onto the visible run's vocabularies."""
    from pyspark.sql import functions as F

    rows = held.where(F.col("relevant")).select("user_id", "item_id").toPandas()  # users × N
    users_vocab, items = _vocab(layout, "user"), _vocab(layout, "item")
    n_items = len(items)
    for item in sorted(set(rows["item_id"]) - set(items)):
        items[item] = len(items)  # never recommended, still relevant
    grouped = rows.groupby("user_id")["item_id"].apply(list).sort_index()
    users = grouped.index.to_numpy(dtype=object)
    relevant = [np.array([items[i] for i in group], dtype=np.int64) for group in grouped]
    known = np.array([users_vocab.get(u, -1) for u in users], dtype=np.int64)
    return Truth(users, relevant, known, n_items, items)


def published_ranking(table: DataFrame, truth: Truth, k: int) -> np.ndarray:
    """[users, k] item indices of the published top-k of each evaluated user, -1 where it has none."""
    from pyspark.sql import functions as F

    wanted = table.sparkSession.createDataFrame([(str(u),) for u in truth.users], "user_id string")
    rows = (
        table.where(F.col("rank") <= k)
        .join(F.broadcast(wanted), on="user_id", how="left_semi")
        .select("user_id", "item_id", "rank")
        .toPandas()  # users × k
    )
    position = {u: r for r, u in enumerate(truth.users)}
    ranked = np.full((len(truth.users), k), -1, dtype=np.int64)
    for user, item, rank in rows.itertuples(index=False):
        ranked[position[user], int(rank) - 1] = truth.item_index.get(item, -1)
    return ranked


def _seen(layout: RunLayout, truth: Truth, n_users: int) -> list[np.ndarray]:
    """Per evaluated user: the visible items the run knows them by (interactions, or filtered rows)."""
    users, items = read_pairs(layout.interactions)
    by_user = group_items(users, items, n_users)
    removed: dict[str, list[int]] = {}
    if layout.filtered_users.exists():
        import pyarrow.parquet as pq

        path = layout.filtered_users
        table = pq.read_table(path.fs_path, filesystem=path.filesystem).to_pandas()
        for user, item in table.dropna().itertuples(index=False):
            removed.setdefault(user, []).append(int(item))
    return [
        by_user[i] if i >= 0 else np.array(removed.get(u, []), dtype=np.int64)
        for u, i in zip(truth.users, truth.user_idx, strict=True)
    ]


def baseline_rankings(
    factors: dict[str, tuple[np.ndarray, np.ndarray]],
    popularity: np.ndarray,
    truth: Truth,
    seen: list[np.ndarray],
    k: int,
    candidates: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """[users, k] rankings of popularity and each factor model; users without a vector get popularity."""
    everyone = np.zeros(len(truth.users), dtype=np.int64)
    pop = rank_users(ListScorer(popularity, 1), everyone, k, seen, candidates)
    out = {"popularity": pop}
    known = np.flatnonzero(truth.user_idx >= 0)
    for name, (user_rows, item_rows) in factors.items():
        ranked = pop.copy()
        if len(known):
            cands = None if candidates is None else [candidates[r] for r in known]
            ranked[known] = rank_users(
                DotScorer(user_rows, item_rows), truth.user_idx[known], k, [seen[r] for r in known], cands
            )
        out[name] = ranked
    return out


def backtest_metrics(
    spark: SparkSession,
    config: Config,
    layout: RunLayout,
    held: DataFrame,
    published: DataFrame,
    candidates: DataFrame | None = None,
) -> dict[str, Any]:
    """{"models": {name: metrics}, ...}: the published table, popularity and ALS on the held-out rows."""
    from recbatch.evaluate.als import als_factors

    k = max(config.score.k, 1)
    ks = sorted({x for x in config.evaluate.ks if x <= k} | {min(config.evaluate.primary_k, k)})
    truth = load_truth(held, layout)
    if len(truth.users) == 0:
        from recbatch.errors import DataError

        raise DataError("the backtest held out no relevant row: every user has at most --holdout pairs")
    n_users = len(_vocab(layout, "user"))
    popularity = item_popularity(read_pairs(layout.interactions)[1], truth.n_items)
    seen = _seen(layout, truth, n_users)
    cands = None if candidates is None else _candidate_lists(candidates, truth)
    factors = {}
    if "als" in config.evaluate.baselines:
        started = time.perf_counter()
        checkpoints = str(layout.tmp_dir / "als-checkpoints")  # removed by als_factors
        # The visible run's validation protocol (visible_config): the ALS grid picks for it too.
        negatives = config.train.validation_negatives
        factors["als"] = als_factors(
            spark, layout.interactions, n_users, truth.n_items, config.als, checkpoints, negatives
        )
        log.info(
            "backtest: Spark ALS fitted on the visible interactions in %.1fs", time.perf_counter() - started
        )
    rankings = {"published": published_ranking(published, truth, k)}
    rankings.update(baseline_rankings(factors, popularity, truth, seen, k, cands))
    models = {name: ranking_metrics(r, truth.relevant, ks, truth.n_items) for name, r in rankings.items()}
    return {
        "k": ks,
        "primary_k": min(config.evaluate.primary_k, k),
        "models": models,
        "users_evaluated": len(truth.users),
        "users_known": int((truth.user_idx >= 0).sum()),
        "relevant_pairs": int(sum(len(r) for r in truth.relevant)),
        "relevant_unknown_items": int(sum(int((r >= truth.n_items).sum()) for r in truth.relevant)),
        "num_items": truth.n_items,
    }


def _candidate_lists(candidates: DataFrame, truth: Truth) -> list[np.ndarray]:
    """Per evaluated user: the candidate item indices (items the visible run knows)."""
    rows = candidates.select("user_id", "item_id").toPandas()
    grouped = rows.groupby("user_id")["item_id"].apply(list)
    out = []
    for user in truth.users:
        items = grouped.get(user, [])
        out.append(
            np.array([truth.item_index[i] for i in items if truth.item_index.get(i, -1) < truth.n_items])
        )
    return out


def visible_config(
    config: Config,
    visible_input: Any,
    workdir: Location,
    candidates: str | None,
    negatives: int | None = None,
) -> Config:
    """The configuration of the backtest's own run: the same settings on the visible input, in its
    own work directory, exporting nothing and registering nothing (no catalog table), without a
    gate (its table has no yesterday); with `candidates`, every candidate of that table ranked, and
    validation on the same protocol (`negatives` per item) unless train.validation_negatives says one."""
    from recbatch.config import Config as ConfigModel

    data = config.model_dump(mode="json")
    data["input"] = visible_input.model_dump(mode="json")
    data["paths"]["workdir"] = str(workdir)
    data["export"]["formats"] = []
    data["publish"]["catalog_table"] = None
    data["gate"]["enabled"] = False
    data["prepare"]["previous_vocab"] = ""
    if candidates is not None:
        data["score"].update({"candidates": candidates, "candidates_output": "all"})
        if negatives and not data["train"]["validation_negatives"]:
            data["train"]["validation_negatives"] = negatives
    return ConfigModel.model_validate(data)


def format_backtest(doc: dict[str, Any]) -> str:
    """The backtest's metrics as a Markdown table, with what was held out and what was fitted."""
    p = doc["primary_k"]
    names = ("hr", "ndcg", "precision", "recall", "mrr", "coverage")
    header = "| table | " + " | ".join(f"{n.upper() if n == 'hr' else n}@{p}" for n in names) + " |"
    lines = [
        f"# Backtest of dt={doc['date']}",
        "",
        doc["protocol"],
        "",
        header,
        "|" + "---|" * (len(names) + 1),
    ]
    for name, scores in doc["models"].items():
        label = doc["labels"].get(name, name)
        lines.append(f"| {label} | " + " | ".join(f"{scores[f'{n}@{p}']:.4f}" for n in names) + " |")
    lines += ["", *[f"- {note}" for note in doc["notes"]], ""]
    return "\n".join(lines)


def write_backtest(doc: dict[str, Any], out_dir: Location) -> None:
    """metrics.json and report.md of the backtest under `out_dir`."""
    write_json(out_dir / "metrics.json", doc)
    (out_dir / "report.md").write_text(format_backtest(doc))
