"""Invariants of a top-K recommendation table, checked before it is published.

One aggregation pass computes per-user statistics and the totals; only when a check fails
is a second query run to fetch an offending row for the error message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REQUIRED_COLUMNS = ("user_id", "item_id", "score", "rank")


def _bad_value() -> Column:
    from pyspark.sql import functions as F

    return (
        F.col("user_id").isNull()
        | F.col("item_id").isNull()
        | F.col("rank").isNull()
        | F.col("score").isNull()
        | F.isnan("score")
        | (F.abs(F.col("score")) == F.lit(float("inf")))
    )


def per_user_stats(df: DataFrame, expected_rows_per_user: DataFrame | None) -> DataFrame:
    """user_id, n, items, min_rank, max_rank, ranks, bad (+ expected where given)."""
    from pyspark.sql import functions as F

    # A user has at most k rows, so small per-user sets beat countDistinct (which expands rows).
    stats = df.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.size(F.collect_set("item_id")).alias("items"),
        F.min("rank").alias("min_rank"),
        F.max("rank").alias("max_rank"),
        F.size(F.collect_set("rank")).alias("ranks"),
        F.sum(F.when(_bad_value(), 1).otherwise(0)).alias("bad"),
    )
    if expected_rows_per_user is None:
        return stats.withColumn("expected", F.lit(None).cast("long"))
    expected = expected_rows_per_user.select(
        F.col("user_id").cast("string").alias("user_id"), F.col("expected").cast("long").alias("expected")
    )
    # Full join: a user expected to get rows but absent from the table is a failure too.
    return (
        stats.join(expected, on="user_id", how="full")
        .withColumn("n", F.coalesce(F.col("n"), F.lit(0)))
        .withColumn("bad", F.coalesce(F.col("bad"), F.lit(0)))
        .withColumn("expected", F.coalesce(F.col("expected"), F.lit(0)))
    )


def _checks(k: int, with_expected: bool) -> dict[str, tuple[Column, str]]:
    from pyspark.sql import functions as F

    n = F.col("n")
    checks = {
        "bad_values": (F.col("bad") > 0, "null ids/ranks or NaN/infinite/null scores"),
        "duplicate_items": ((n > 0) & (F.col("items") < n), "the same (user_id, item_id) appears twice"),
        "ranks_not_contiguous": (
            (n > 0) & ((F.col("min_rank") != 1) | (F.col("max_rank") != n) | (F.col("ranks") != n)),
            "a user's ranks are not exactly 1..n",
        ),
        "too_many_rows": (n > k, f"a user has more than k={k} rows"),
    }
    if with_expected:
        checks["wrong_row_count"] = (
            n != F.least(F.lit(k), F.col("expected")),
            f"a user does not have exactly min(k={k}, unseen items) rows",
        )
    return checks


def _example(df: DataFrame, stats: DataFrame, name: str, flag: Column) -> dict[str, Any] | None:
    from pyspark.sql import functions as F

    if name == "bad_values":
        row = df.filter(_bad_value()).select(*REQUIRED_COLUMNS).first()
    elif name == "duplicate_items":
        row = (
            df.groupBy("user_id", "item_id")
            .agg(F.count(F.lit(1)).alias("copies"))
            .filter(F.col("copies") > 1)
            .orderBy("user_id", "item_id")
            .first()
        )
    else:
        row = stats.filter(flag).orderBy("user_id").first()
    return row.asDict() if row is not None else None


def validate_recommendations(df: DataFrame, k: int, expected_rows_per_user: DataFrame | None = None) -> dict:
    """Check a recommendation table; return {"rows", "users"} (+ "by_source") or raise PipelineError.

    Checks: no null ids/ranks, no NaN/null/infinite scores, no duplicate (user_id, item_id),
    ranks 1..n contiguous per user, at most k rows per user, and, where
    `expected_rows_per_user` (user_id, expected) is given, exactly min(k, expected) rows per
    user, so only users whose unseen catalogue is exhausted get fewer than k.
    """
    from pyspark.sql import functions as F

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise PipelineError(f"recommendation table lacks columns {missing} (it has {df.columns})")
    stats = per_user_stats(df, expected_rows_per_user)
    checks = _checks(k, expected_rows_per_user is not None)
    totals = stats.agg(
        F.sum("n").alias("rows"),
        F.sum(F.when(F.col("n") > 0, 1).otherwise(0)).alias("users"),
        *[F.sum(F.when(flag, 1).otherwise(0)).alias(name) for name, (flag, _) in checks.items()],
    ).first()
    rows, users = int(totals["rows"] or 0), int(totals["users"] or 0)
    for name, (flag, what) in checks.items():
        failing = int(totals[name] or 0)
        if failing:
            example = _example(df, stats, name, flag)
            raise PipelineError(f"check {name} failed for {failing} user(s): {what}; e.g. {example}")
    if rows == 0:
        raise PipelineError("check non_empty failed: the recommendation table has no rows")
    result: dict[str, Any] = {"rows": rows, "users": users}
    if "source" in df.columns:
        # Rows and users per source (model / fallback): how many users the model really served.
        per_source = df.groupBy("source").agg(
            F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users")
        )
        result["by_source"] = {
            str(r.source): {"rows": int(r.rows), "users": int(r.users)} for r in per_source.collect()
        }
    return result
