"""The stages wired together: what `recbatch <stage>`, `recbatch run` and jobs/ call.

Each stage reads its inputs from the run's artifact layout and writes its outputs there,
so stages can be rerun one at a time. Spark is passed in (built once by the caller).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.config import Config
from recbatch.layout import RunLayout
from recbatch.ops.run_id import make_run_id, versions

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def layout_for(config: Config, date: str) -> RunLayout:
    """The artifact layout of this config's work directory for one date."""
    return RunLayout(Path(config.paths.workdir), date)


def prepare(spark: SparkSession, config: Config, layout: RunLayout) -> dict[str, Any]:
    """Clean, aggregate, index and split the raw log; returns the row-accounting report."""
    from recbatch.prep.stage import run_prepare

    return run_prepare(spark, config, layout)


def train(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Fit the configured model on the prepared train split; returns its manifest."""
    from recbatch.train.stage import run_train

    return run_train(config, layout)


def evaluate(config: Config, layout: RunLayout, spark: SparkSession | None = None) -> dict[str, Any]:
    """Rank held-out items for the model, extra models and baselines; returns the metrics.

    What evaluation compares the model with is fitted here, above both stages, on the same
    train split: the Spark ALS baseline when it is configured and a session is at hand
    (evaluate stage), and `evaluate.extra_models` with the [train] settings (train stage).
    """
    from recbatch.evaluate.stage import check_inputs, run_evaluate
    from recbatch.train.compare import fit_comparison_models

    check_inputs(layout)  # a missing model or split fails before anything is fitted
    extra = {}
    if "als" in config.evaluate.baselines and spark is not None:
        from recbatch.evaluate.als import als_factors

        users = spark.read.parquet(str(layout.user_vocab)).count()
        items = spark.read.parquet(str(layout.item_vocab)).count()
        started = time.perf_counter()
        extra["als"] = als_factors(spark, layout.train, users, items, config.als)
        log.info("evaluate: Spark ALS baseline trained in %.1fs", time.perf_counter() - started)
    return run_evaluate(config, layout, extra, fit_comparison_models(config, layout))


def score_and_publish(
    spark: SparkSession, config: Config, layout: RunLayout, run_id: str | None = None
) -> dict[str, Any]:
    """Score every user, then publish the table atomically; returns the publish manifest.

    The publish gate checks each user's row count against the expected rows the score
    stage derives from the same request as the rows themselves (recbatch.score.stage).
    """
    from recbatch.io.publish import publish_table
    from recbatch.score.stage import run_score

    run_id = run_id or make_run_id(config, layout.date, spark)
    started = time.perf_counter()
    # run_score is lazy: the scoring itself happens inside publish's write; leaving the
    # block drops what the stage cached for it.
    with run_score(spark, config, layout, run_id) as scored:
        manifest = publish_table(
            scored.recommendations,
            config.publish,
            layout.published_root,
            layout.date,
            run_id,
            scored.k_bound,
            scored.expected,
            {
                "model": scored.manifest.get("model"),
                "config_hash": config.fingerprint(),
                "data_fingerprint": scored.manifest.get("data_fingerprint"),
                "versions": versions(),
            },
        )
    manifest["score_and_publish_seconds"] = round(time.perf_counter() - started, 3)
    return manifest


def export(
    spark: SparkSession, config: Config, layout: RunLayout, formats: list[str] | None = None
) -> dict[str, str]:
    """Export the currently published table of this date in each configured format."""
    from recbatch.io.export import export_table
    from recbatch.io.publish import read_published

    table = read_published(spark, layout.published_root, config.publish.table, layout.date)
    out_dir = Path(config.export.dir) if config.export.dir else layout.workdir / "exports"
    return export_table(table, formats or config.export.formats, out_dir, config.publish.table, layout.date)


@dataclass
class RunResult:
    """What `recbatch run` did, for the summary and for tests."""

    date: str
    run_id: str
    layout: RunLayout
    report: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_all(spark: SparkSession, config: Config, date: str) -> RunResult:
    """prepare → train → evaluate → score/publish for one date."""
    layout = layout_for(config, date)
    result = RunResult(date=date, run_id=make_run_id(config, date, spark), layout=layout)
    steps = (
        ("prepare", lambda: prepare(spark, config, layout), "report"),
        ("train", lambda: train(config, layout), "model"),
        ("evaluate", lambda: evaluate(config, layout, spark), "metrics"),
        ("score", lambda: score_and_publish(spark, config, layout, result.run_id), "published"),
    )
    if config.export.formats:
        steps += (("export", lambda: export(spark, config, layout), "exports"),)
    for name, step, attr in steps:
        log.info("stage %s: starting", name)
        started = time.perf_counter()
        setattr(result, attr, step())
        result.seconds[name] = round(time.perf_counter() - started, 2)
        log.info("stage %s: done in %.1fs", name, result.seconds[name])
    return result
