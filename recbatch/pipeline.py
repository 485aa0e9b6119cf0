"""The stages wired together: what `recbatch <stage>`, `recbatch run` and jobs/ call.

Each stage reads its inputs from the run's artifact layout and writes its outputs there,
so stages can be rerun one at a time. Spark is passed in (built once by the caller).
"""

from __future__ import annotations

import json
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
    return RunLayout(config.paths.workdir, date)


def prepare(spark: SparkSession, config: Config, layout: RunLayout) -> dict[str, Any]:
    """Clean, aggregate, index and split the raw log; returns the row-accounting report.

    DataError (exit 3) after the report is written when more than prepare.quarantine_fail of the
    rows were quarantined: nothing is trained on what is left of such an input.
    """
    from recbatch.prep.checks import check_quarantine
    from recbatch.prep.stage import run_prepare

    report = run_prepare(spark, config, layout)
    check_quarantine(report, config.prepare, str(layout.quarantine))
    return report


def has_test_split(layout: RunLayout) -> bool:
    """Whether prepare held out a test split (prepare.test_per_user = 0 gives none)."""
    from recbatch.storage import count_rows

    return layout.test.exists() and count_rows(layout.test) > 0


def evaluated_layout(config: Config, layout: RunLayout) -> RunLayout:
    """Where the model evaluation measures lives: model_split/ when the published model/ is refitted
    on every interaction (train.final_fit = "all" and a test split exists), else model/ itself."""
    if config.train.final_fit == "all" and has_test_split(layout):
        return layout.split_model
    return layout


def train_split(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Fit the configured model on the prepared train split, where evaluation reads it; returns its manifest."""
    from recbatch.train.stage import run_train

    return run_train(config, evaluated_layout(config, layout))


def final_fit(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Refit the published model on every prepared interaction, for the split model's epoch count.

    A no-op returning the published model's manifest when there is nothing to add (train.final_fit
    = "train", or no test split, where the split model already is the published one).
    """
    from recbatch.artifacts import read_manifest
    from recbatch.train.stage import run_final_fit

    evaluated = evaluated_layout(config, layout)
    if evaluated is layout:
        return read_manifest(layout.model_manifest)
    return run_final_fit(config, layout, read_manifest(evaluated.model_manifest))


def train(config: Config, layout: RunLayout) -> dict[str, Any]:
    """`recbatch train`: the split fit, then the final fit; returns the published model's manifest.

    `run_all` calls the two apart, with evaluation between them, so a failed evaluation costs
    no refit.
    """
    train_split(config, layout)
    return final_fit(config, layout)


def evaluate(config: Config, layout: RunLayout, spark: SparkSession | None = None) -> dict[str, Any]:
    """Rank held-out items for the model, extra models and baselines; returns the metrics.

    What evaluation compares the model with is fitted here, above both stages, on the same
    train split: the Spark ALS baseline when it is configured and a session is at hand
    (evaluate stage), and `evaluate.extra_models` with the [train] settings (train stage).
    """
    from recbatch.evaluate.stage import check_inputs, run_evaluate
    from recbatch.train.compare import fit_comparison_models

    layout = evaluated_layout(config, layout)  # the model fitted on train, never the refit
    check_inputs(layout)  # a missing model or split fails before anything is fitted
    extra = {}
    if "als" in config.evaluate.baselines and spark is not None:
        from recbatch.evaluate.als import als_factors

        users = spark.read.parquet(str(layout.user_vocab)).count()
        items = spark.read.parquet(str(layout.item_vocab)).count()
        started = time.perf_counter()
        checkpoints = str(layout.tmp_dir / "als-checkpoints")  # removed by als_factors
        negatives = config.train.validation_negatives
        extra["als"] = als_factors(spark, layout.train, users, items, config.als, checkpoints, negatives)
        log.info("evaluate: Spark ALS baseline trained in %.1fs", time.perf_counter() - started)
    return run_evaluate(config, layout, extra, fit_comparison_models(config, layout))


def score_and_publish(
    spark: SparkSession, config: Config, layout: RunLayout, run_id: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Score every user, then publish the table atomically; returns the publish manifest.

    The publish checks each user's row count against the expected rows the score stage
    derives from the same request as the rows themselves (recbatch.score.stage), then the
    quality gate compares the table with the current one (recbatch.ops.gate) unless it is
    off; `force` publishes past a failed gate (recorded in the manifest and commit).
    """
    from recbatch.io.publish import publish_table
    from recbatch.ops.gate import primary_metric, publish_gate
    from recbatch.ops.preflight import run_preflight
    from recbatch.score.stage import run_score

    run_preflight(spark, config)  # `recbatch score` alone; a no-op after run_all's own check
    run_id = run_id or make_run_id(config, layout.date, spark)
    metric = primary_metric(json.loads(layout.metrics.read_text())) if layout.metrics.exists() else None
    gate = (
        publish_gate(config.gate, metric, force, layout.run_dir / "gate.json")
        if config.gate.enabled
        else None
    )
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
                "metric": metric,
            },
            gate=gate,
        )
    manifest["score_and_publish_seconds"] = round(time.perf_counter() - started, 3)
    return manifest


def similar_and_publish(
    spark: SparkSession, config: Config, layout: RunLayout, run_id: str | None = None
) -> dict[str, Any]:
    """Similar items of the published model, published as their own table, plus the quality report.

    Returns the publish manifest with "report" (the hit rates of the train-only model beside
    co-occurrence, also in <run>/similar/report.{json,md}) when similar.baseline is on.
    """
    from recbatch.io.item_tables import publish_item_table
    from recbatch.score.similar_report import format_report
    from recbatch.score.similar_stage import similar_job, similar_quality
    from recbatch.storage import write_json

    run_id = run_id or make_run_id(config, layout.date, spark)
    scratch = layout.tmp_dir / f"similar-{run_id}"
    started = time.perf_counter()
    try:
        job = similar_job(spark, config, layout, run_id, scratch / "published")
        extra = {"model": job.model, "metric": config.similar.metric, "versions": versions()}
        manifest = publish_item_table(job.rows, job.spec, layout.published_root, layout.date, run_id, extra)
        manifest["similar_seconds"] = round(time.perf_counter() - started, 3)
        if config.similar.baseline and has_test_split(layout):
            evaluated = evaluated_layout(config, layout)
            report = {"date": layout.date, **similar_quality(spark, config, evaluated, scratch / "eval")}
            write_json(layout.run_dir / "similar" / "report.json", report)
            if "contenders" in report:
                (layout.run_dir / "similar" / "report.md").write_text(format_report(report))
            manifest["report"] = report
    finally:
        scratch.delete()
    return manifest


def audience_and_publish(
    spark: SparkSession, config: Config, layout: RunLayout, run_id: str | None = None
) -> dict[str, Any]:
    """The top audience.k users of every item (never one who interacted with it), published as a table."""
    from recbatch.io.item_tables import publish_item_table
    from recbatch.score.audience import audience_job

    run_id = run_id or make_run_id(config, layout.date, spark)
    started = time.perf_counter()
    job = audience_job(spark, config, layout, run_id)
    extra = {"model": job.model, "versions": versions()}
    manifest = publish_item_table(job.rows, job.spec, layout.published_root, layout.date, run_id, extra)
    manifest["audience_seconds"] = round(time.perf_counter() - started, 3)
    return manifest


def export(
    spark: SparkSession, config: Config, layout: RunLayout, formats: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Export the currently published table of this date in each configured format.

    Returns {format: target, rows, users, seconds}; each format's rows and users are counted
    in what it wrote and checked against the publish manifest (recbatch.io.export_step).
    """
    from recbatch.io.export_step import run_exports

    out_dir = Path(config.export.dir) if config.export.dir else Path(layout.workdir / "exports")
    return run_exports(
        spark,
        config.export,
        layout.published_root,
        config.publish.table,
        layout.date,
        formats or config.export.formats,
        out_dir,
    )


@dataclass
class RunResult:
    """What `recbatch run` did, for the summary and for tests."""

    date: str
    run_id: str
    layout: RunLayout
    report: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # the published model's manifest
    evaluated_model: dict[str, Any] = field(default_factory=dict)  # the split model's (evaluated)
    metrics: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    similar: dict[str, Any] = field(default_factory=dict)  # the similar_items publish (similar.enabled)
    seconds: dict[str, float] = field(default_factory=dict)


def run_all(
    spark: SparkSession, config: Config, date: str, *, force: bool = False, result: RunResult | None = None
) -> RunResult:
    """prepare → train → evaluate → final fit → score/publish for one date.

    `result` (optional) is filled in stage by stage, so a caller still has the finished
    stages' figures when a later stage raises (recbatch.cron records them).
    """
    from recbatch.models.runtime import import_in_background
    from recbatch.ops.preflight import run_preflight

    import_in_background()  # done by the time prepare is
    # Executors that cannot run recbatch's Python side fail here in seconds, not after training.
    run_preflight(spark, config)
    layout = layout_for(config, date)
    result = result or RunResult(date=date, run_id=make_run_id(config, date, spark), layout=layout)
    steps = (
        ("prepare", lambda: prepare(spark, config, layout), "report"),
        ("train", lambda: train_split(config, layout), "evaluated_model"),
        ("evaluate", lambda: _evaluate_if_split(config, layout, spark), "metrics"),
        # After evaluation, so the metrics are those of the model fitted on train (model_split/).
        ("final_fit", lambda: final_fit(config, layout), "model"),
        ("score", lambda: score_and_publish(spark, config, layout, result.run_id, force), "published"),
    )
    if config.similar.enabled:
        similar = lambda: similar_and_publish(spark, config, layout, result.run_id)  # noqa: E731
        steps += (("similar", similar, "similar"),)
    if config.export.formats:
        steps += (("export", lambda: export(spark, config, layout), "exports"),)
    for name, step, attr in steps:
        if name == "final_fit" and evaluated_layout(config, layout) is layout:
            result.model = result.evaluated_model  # the split model is the published one
            continue
        log.info("stage %s: starting", name)
        started = time.perf_counter()
        setattr(result, attr, step())
        result.seconds[name] = round(time.perf_counter() - started, 2)
        log.info("stage %s: done in %.1fs", name, result.seconds[name])
    return result


def _evaluate_if_split(config: Config, layout: RunLayout, spark: SparkSession) -> dict[str, Any]:
    """`evaluate`, or without a test split (prepare.test_per_user = 0) a note that it was skipped.

    A metrics.json of an earlier run of this date is removed then: the gate must not compare
    figures of other data with yesterday's.
    """
    if has_test_split(layout):
        return evaluate(config, layout, spark)
    layout.metrics.delete()
    reason = (
        "no test split (prepare.test_per_user = 0): evaluation skipped, the model is trained on everything"
    )
    log.warning("evaluate: %s", reason)
    return {"skipped": reason}


def backtest(
    spark: SparkSession, config: Config, date: str, holdout: int = 1, negatives: int | None = None
) -> dict[str, Any]:
    """`recbatch backtest`: hide each user's latest `holdout` interactions from the raw input, run the
    configured pipeline on the rest as production would (prepare → train → final fit → score and
    publish, in its own workdir under runs/dt=<date>/backtest/), and score the published table
    against the hidden rows beside popularity and Spark ALS fitted on the same visible data.

    `negatives`: the NCF candidate protocol instead of full ranking: each held-out item among
    that many sampled items the user never interacted with, ranked through score.candidates.
    Writes backtest/metrics.json and report.md; returns the metrics document.
    """
    from recbatch.evaluate.backtest import backtest_metrics, visible_config, write_backtest
    from recbatch.io.publish import read_published
    from recbatch.prep.holdout import candidate_pairs, split_input, write_visible

    out = layout_for(config, date).backtest_dir
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    split = split_input(spark, config.input, config.prepare, date, holdout)
    split.held.write.mode("overwrite").parquet(str(out / "held_out"))
    held = spark.read.parquet(str(out / "held_out"))
    visible_input = write_visible(split.visible, config.input, split.names, out / "input")
    candidates = None
    if negatives:
        pairs = candidate_pairs(spark, split.events, held, negatives, config.prepare.split_seed)
        pairs.write.mode("overwrite").parquet(str(out / "candidates"))
        candidates = str(out / "candidates")
    inner = visible_config(config, visible_input, out / "work", candidates, negatives)
    layout = layout_for(inner, date)
    seconds["hold_out"] = round(time.perf_counter() - clock, 2)
    steps = (
        ("prepare", lambda: prepare(spark, inner, layout)),
        ("train", lambda: train_split(inner, layout)),
        ("final_fit", lambda: final_fit(inner, layout)),
        ("score", lambda: score_and_publish(spark, inner, layout)),
    )
    done: dict[str, dict[str, Any]] = {}
    for name, step in steps:
        clock = time.perf_counter()
        done[name] = step()
        seconds[name] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    table = read_published(spark, layout.published_root, inner.publish.table, date)
    cands = None if candidates is None else spark.read.parquet(candidates)
    doc = backtest_metrics(spark, inner, layout, held, table, cands)
    seconds["evaluate"] = round(time.perf_counter() - clock, 2)
    doc.update(_backtest_notes(config, date, holdout, negatives, done, held))
    doc["seconds"] = seconds
    write_backtest(doc, out)
    return doc


def _backtest_notes(
    config: Config, date: str, holdout: int, negatives: int | None, done: dict[str, Any], held: Any
) -> dict[str, Any]:
    """What the backtest held out, what the published model saw, and the table's row labels."""
    model, published, report = done["final_fit"], done["score"], done["prepare"]
    timed = config.input.timestamp_col is not None
    which = f"latest {holdout} interaction(s) by time" if timed else f"{holdout} seeded random interaction(s)"
    protocol = (
        f"each user's {which} held out from the raw input (users with more than {holdout} distinct items)"
    )
    if negatives:
        protocol += f"; each held-out item ranked among {negatives} sampled items the user never had"
    else:
        protocol += "; the published top-k against every held-out item (full catalogue)"
    fit = "every visible interaction" if model.get("fit_data") == "all" else "the visible train split"
    sources = ", ".join(
        f"{s}: {c['users']:,} users" for s, c in sorted(published.get("by_source", {}).items())
    )
    return {
        "date": date,
        "protocol": protocol,
        "holdout": holdout,
        "negatives": negatives,
        "timestamps": timed,
        "held_out_pairs": held.count(),
        "published": {k: published.get(k) for k in ("rows", "users", "by_source", "path")},
        "visible": {
            k: report.get(k) for k in ("rows_read", "rows_quarantined", "interactions", "users", "items")
        },
        "labels": {
            "published": f"published table ({model.get('model')}, fitted on {fit})",
            "popularity": "popularity (visible interactions)",
            "als": "Spark ALS (visible interactions)",
        },
        "notes": [
            f"published table: {published.get('rows', 0):,} rows for {published.get('users', 0):,} users ({sources})",
            f"visible input: {report.get('rows_read', 0):,} rows read, {report.get('interactions', 0):,} "
            f"interactions of {report.get('users', 0):,} users × {report.get('items', 0):,} items",
            f"model: {model.get('model')} ({model.get('loss')} loss, d={model.get('factor_dim')}, "
            f"{model.get('epochs')} epochs chosen on validation, train.final_fit = '{config.train.final_fit}')",
        ],
    }
