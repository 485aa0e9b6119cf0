"""Short human summaries printed at the end of `recbatch prepare` and `recbatch run`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recbatch.layout import RunLayout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from recbatch.pipeline import RunResult


def render_report(report: dict[str, Any], layout: RunLayout) -> str:
    """Row accounting of prepare: read = kept + quarantined + merged + filtered."""
    reasons = report.get("quarantine_by_reason") or {}
    filtered = report.get("filtered") or {}
    lines = [
        f"rows read        {report.get('rows_read', 0):>12,}",
        f"  quarantined    {report.get('rows_quarantined', 0):>12,}"
        + (f"  ({', '.join(f'{k}: {v:,}' for k, v in sorted(reasons.items()))})" if reasons else ""),
        f"  duplicates     {report.get('duplicates_merged', 0):>12,}  (merged)",
        f"  filtered       {sum(filtered.values()):>12,}"
        + (f"  ({', '.join(f'{k}: {v:,}' for k, v in sorted(filtered.items()))})" if filtered else ""),
        f"  clean, kept    {report.get('rows_clean', 0):>12,}",
        f"users × items    {report.get('users', 0):,} × {report.get('items', 0):,}"
        f"  ({report.get('interactions', 0):,} interactions; train {report.get('train_rows', 0):,},"
        f" test {report.get('test_rows', 0):,})",
        f"prepared data    {layout.prepared}",
        *[f"WARNING: {w}" for w in report.get("warnings") or []],
    ]
    return "\n".join(lines)


def top_recommendations(
    spark: SparkSession, path: str, users: int = 3, k: int = 5
) -> list[tuple[str, list[str]]]:
    """The top-k items of the first `users` users (by id) of a published table."""
    from pyspark.sql import functions as F

    table = spark.read.parquet(path)
    first = [
        r["user_id"] for r in table.select("user_id").distinct().orderBy("user_id").limit(users).collect()
    ]
    rows = (
        table.where(F.col("user_id").isin(first) & (F.col("rank") <= k))
        .orderBy("user_id", "rank")
        .select("user_id", "item_id")
        .collect()
    )
    return [(u, [r["item_id"] for r in rows if r["user_id"] == u]) for u in first]


def render_run(spark: SparkSession, result: RunResult) -> str:
    """The end-of-run summary: accounting, metrics beside baselines, where the table is, examples."""
    published = result.published
    lines = [
        f"recbatch run {result.run_id} (date {result.date})",
        "",
        render_report(result.report, result.layout),
        "",
        *evaluation_lines(result.metrics, result.evaluated_model),
        *published_model_lines(result.model),
        "",
        f"published {published.get('rows', 0):,} recommendations for {published.get('users', 0):,} users"
        f" -> {published.get('path')}",
        *source_lines(published),
        *gate_lines(published.get("gate")),
        "",
        "top-5 of three users:",
    ]
    for user, items in top_recommendations(spark, str(published.get("path"))):
        lines.append(f"  {user}: {', '.join(items)}")
    lines += export_lines(result.exports)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    lines += ["", f"stage times: {timings}"]
    return "\n".join(lines)


def gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """The quality gate's comparison with the baseline table, in two lines (none when the gate is off)."""
    if gate is None:
        return []
    if gate.get("baseline") is None:
        return ["gate: passed (first publish of this table: nothing to compare with)"]
    new, old, churn = gate["new"], gate["baseline"], gate["churn"]
    state = "FORCED past " + "; ".join(gate["failed"]) if gate.get("forced") else "passed"
    overlap = "-" if churn["mean_jaccard"] is None else f"{churn['mean_jaccard']:.3f}"
    replaced = "-" if churn["replaced_share"] is None else f"{churn['replaced_share']:.1%}"
    return [
        f"gate: {state} against {gate['baseline_version']}",
        f"  rows {old['rows']:,} -> {new['rows']:,}, users {old['users']:,} -> {new['users']:,}, "
        f"items {old['items']:,} -> {new['items']:,}, mean list overlap {overlap}, lists replaced {replaced}",
    ]


def source_lines(published: dict[str, Any]) -> list[str]:
    """One line per recommendation source (model / fallback) of a publish manifest."""
    return [
        f"  from {source:<9} {counts['rows']:>10,} rows for {counts['users']:,} users"
        for source, counts in sorted(published.get("by_source", {}).items())
    ]


def export_lines(exports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per export: rows and users counted in the target (= those published), time, where."""
    return [
        f"exported {fmt:<6} {done['rows']:>10,} rows for {done['users']:,} users"
        f" in {done.get('seconds', 0):.1f}s -> {done['target']}"
        for fmt, done in exports.items()
    ]


def evaluation_lines(metrics: dict[str, Any], evaluated: dict[str, Any]) -> list[str]:
    """The metrics table and which data the evaluated model saw, or why evaluation was skipped."""
    from recbatch.evaluate.table import format_metrics_table

    if not metrics or metrics.get("skipped"):
        return [f"evaluation: skipped: {metrics.get('skipped', 'not run')}"]
    lines = [format_metrics_table(metrics)]
    if evaluated:
        lines.append(
            f"evaluated: {evaluated.get('model')} fitted on the train split "
            f"({evaluated.get('train_positives', 0):,} positives), ranked on the held-out test split"
        )
    lines += rules_lines(metrics.get("rules") or {})
    return lines


def rules_lines(effect: dict[str, Any]) -> list[str]:
    """What [score.rules] did to the evaluated lists: the NDCG cost and the diversity bought."""
    if not effect:
        return []
    k, plain, ruled = effect["k"], effect["by_score"], effect["with_rules"]
    line = (
        f"score.rules (category_cap {effect['category_cap']}, mmr_lambda {effect['mmr_lambda']}): "
        f"ndcg@{k} {plain['ndcg']:.4f} by score -> {ruled['ndcg']:.4f} ({effect['ndcg_cost_share']:+.1%})"
    )
    if "intra_list_diversity" in ruled:
        line += f", intra-list diversity {plain['intra_list_diversity']:.3f} -> {ruled['intra_list_diversity']:.3f}"
    if "max_per_category" in ruled:
        line += f", most of one category {plain['max_per_category']} -> {ruled['max_per_category']}"
    return [line]


def published_model_lines(model: dict[str, Any]) -> list[str]:
    """Which data the published model saw (train.final_fit), in one line."""
    if not model:
        return []
    seen = model.get("train_positives", 0)
    if model.get("fit_data") == "all" and model.get("evaluated_model"):
        return [
            f"published model: {model.get('model')} refitted on all {seen:,} prepared interactions "
            f"(train + test) for {model.get('epochs')} epochs chosen on validation (train.final_fit = 'all')"
        ]
    if model.get("fit_data") == "all":
        return [f"published model: {model.get('model')} fitted on all {seen:,} prepared interactions"]
    return [
        f"published model: {model.get('model')} fitted on the train split only ({seen:,} positives; "
        "train.final_fit = 'train': the latest interactions of each user are not in it)"
    ]
