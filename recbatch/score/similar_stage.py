"""The similar-items stage: what `recbatch similar` (and `run` with similar.enabled) publishes and reports.

`similar_job` reads the model's item factors, the vocabulary and the optional similar.items
list once, plans the job and returns the lazy table to publish (computed by the publish
step's write) with the checks it must pass. `similar_quality` measures the hit rate of the
model fitted on train only beside the co-occurrence baseline of the same train split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recbatch.artifacts import read_factors, read_manifest
from recbatch.errors import DataError
from recbatch.io.item_tables import ItemTable
from recbatch.score.similar import (
    check_dot_model,
    item_vectors,
    similar_items,
    similar_plan,
    with_item_ids,
    write_inputs,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout
    from recbatch.score.plan import ScorePlan
    from recbatch.storage import Location

log = logging.getLogger(__name__)
EVAL_KS = (5, 10, 20)


@dataclass(frozen=True, eq=False)
class SimilarJob:
    """The lazy similar_items rows of one run, their table's checks, and the scratch folder to remove."""

    rows: DataFrame  # item_id, similar_item_id, score, rank, model, run_id
    spec: ItemTable
    model: str
    plan: ScorePlan
    scratch: Location


def _require(layout: RunLayout) -> None:
    for what, path, stage in (
        ("item factors", layout.item_factors, "train"),
        ("model manifest", layout.model_manifest, "train"),
        ("item vocabulary", layout.item_vocab, "prepare"),
    ):
        if not path.exists():
            raise DataError(
                f"{what} not found at {path}; run `recbatch {stage} --date {layout.date}` first "
                f"(or `recbatch run --date {layout.date}`)"
            )


def query_items(
    spark: SparkSession, path: str | None, item_vocab: DataFrame, what: str = "similar.items"
) -> np.ndarray | None:
    """Ascending item indices of the `what` table (None: every item); unknown ids are logged."""
    if path is None:
        return None
    from pyspark.sql import functions as F

    try:
        table = spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: missing or not Parquet
        raise DataError(f"{what} = {path!r} is not a readable Parquet table ({str(exc)[:200]})") from None
    if "item_id" not in table.columns:
        raise DataError(f"{what} table {path} has no item_id column (it has {table.columns})")
    ids = table.select(F.col("item_id").cast("string").alias("item_id")).dropDuplicates()
    rows = ids.join(item_vocab.select("item_id", "item_idx"), on="item_id", how="left").collect()
    known = np.unique(np.array([r.item_idx for r in rows if r.item_idx is not None], dtype=np.int64))
    if len(known) < len(rows):
        log.warning(
            "%s: %d of %d item ids are not in the item vocabulary",
            what,
            len(rows) - len(known),
            len(rows),
        )
    if not len(known):
        raise DataError(f"{what} = {path!r}: none of its {len(rows)} item ids is in the item vocabulary")
    return known


def _lists(
    spark: SparkSession, config: Config, layout: RunLayout, query: np.ndarray | None, scratch: Location
) -> tuple[DataFrame, ScorePlan, dict[str, Any]]:
    """item_idx, similar_item_idx, score, rank of the query items by `layout`'s model (lazy)."""
    manifest = read_manifest(layout.model_manifest)
    check_dot_model(manifest)
    vectors = item_vectors(read_factors(layout.item_factors, "item_idx"), config.similar.metric)
    n_query = len(vectors) if query is None else len(query)
    plan = similar_plan(spark, config, n_query, len(vectors), vectors.shape[1], config.similar.k)
    log.info("similar items: %s", plan.describe())
    inputs = write_inputs(scratch, vectors, query)
    return similar_items(spark, vectors, inputs, config.similar.k, plan), plan, manifest


def similar_job(
    spark: SparkSession, config: Config, layout: RunLayout, run_id: str, scratch: Location
) -> SimilarJob:
    """The similar_items table of `layout`'s published model, lazy, with the checks it must pass."""
    _require(layout)
    item_vocab = spark.read.parquet(str(layout.item_vocab))
    query = query_items(spark, config.similar.items, item_vocab)
    lists, plan, manifest = _lists(spark, config, layout, query, scratch)
    n_items = plan.items
    spec = ItemTable(
        table=config.similar.table,
        key="item_id",
        other="similar_item_id",
        k=config.similar.k,
        expected_per_key=min(config.similar.k, n_items - 1),
        expected_keys=n_items if query is None else len(query),
        keep_versions=config.publish.keep_versions,
    )
    if n_items < 2:
        raise DataError(f"similar items need at least 2 items; the model at {layout.model_dir} has {n_items}")
    model = str(manifest["model"])
    return SimilarJob(with_item_ids(lists, item_vocab, model, run_id), spec, model, plan, scratch)


def similar_quality(
    spark: SparkSession, config: Config, evaluated: RunLayout, scratch: Location
) -> dict[str, Any]:
    """Hit rate@K of the train-only model's lists and of train co-occurrence, side by side."""
    from recbatch.score.cooccurrence import cooccurrence_similar
    from recbatch.score.similar_report import hit_rates, list_coverage

    manifest = read_manifest(evaluated.model_manifest)
    if manifest.get("fit_data") == "all":
        return {
            "skipped": "the model was fitted on every interaction (the test rows too): no honest hit rate"
        }
    ks = sorted({k for k in EVAL_KS if k <= config.similar.k} | {config.similar.k})
    train, test = spark.read.parquet(str(evaluated.train)), spark.read.parquet(str(evaluated.test))
    model_lists, plan, _ = _lists(spark, config, evaluated, None, scratch)
    model_lists = model_lists.cache()
    cooc = cooccurrence_similar(train, config.similar.k, config.similar.max_items_per_user).cache()
    try:
        contenders = {}
        for name, lists in (
            (f"{manifest['model']} ({config.similar.metric})", model_lists),
            ("co-occurrence", cooc),
        ):
            contenders[name] = {**hit_rates(train, test, lists, ks), **list_coverage(lists, plan.items)}
    finally:
        model_lists.unpersist()
        cooc.unpersist()
    users = next(iter(contenders.values()))["users"]
    return {
        "ks": ks,
        "users": users,
        "evaluated_model": f"{manifest['model']} at {evaluated.model_dir}",
        "contenders": contenders,
    }
