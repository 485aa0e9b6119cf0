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
    from recbatch.evaluate.table import format_metrics_table

    published = result.published
    lines = [
        f"recbatch run {result.run_id} (date {result.date})",
        "",
        render_report(result.report, result.layout),
        "",
        format_metrics_table(result.metrics),
        "",
        f"published {published.get('rows', 0):,} recommendations for {published.get('users', 0):,} users"
        f" -> {published.get('path')}",
        *source_lines(published),
        "",
        "top-5 of three users:",
    ]
    for user, items in top_recommendations(spark, str(published.get("path"))):
        lines.append(f"  {user}: {', '.join(items)}")
    for fmt, path in result.exports.items():
        lines.append(f"exported {fmt} -> {path}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    lines += ["", f"stage times: {timings}"]
    return "\n".join(lines)


def source_lines(published: dict[str, Any]) -> list[str]:
    """One line per recommendation source (model / fallback) of a publish manifest."""
    return [
        f"  from {source:<9} {counts['rows']:>10,} rows for {counts['users']:,} users"
        for source, counts in sorted(published.get("by_source", {}).items())
    ]
