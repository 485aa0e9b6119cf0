"""How good similar items are, measured on the evaluation split: hit rate of the last train item.

For each test user, the anchor is their most recent train item (largest last_ts, ties by
the larger item_idx); a hit at K is one of the user's held-out items among the anchor's
top K similar items. That is "more like this" on the page of the last thing the user
touched. Both lists come from train data only (the split model, the co-occurrence of the
train split), so the held-out items never leak into either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def anchors(train: DataFrame) -> DataFrame:
    """user_idx, anchor_idx: each user's most recent train item."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    when = F.col("last_ts") if "last_ts" in train.columns else F.lit(0)
    newest = Window.partitionBy("user_idx").orderBy(when.desc(), F.col("item_idx").desc())
    return (
        train.withColumn("n", F.row_number().over(newest))
        .filter(F.col("n") == 1)
        .select(F.col("user_idx"), F.col("item_idx").alias("anchor_idx"))
    )


def hit_rates(train: DataFrame, test: DataFrame, lists: DataFrame, ks: list[int]) -> dict[str, Any]:
    """{"users", "hr@K"...}: share of test users with a held-out item among their anchor's top K.

    `lists` holds item_idx, similar_item_idx, rank; a user whose anchor has no list misses.
    """
    from pyspark.sql import functions as F

    held = test.select("user_idx", "item_idx").join(anchors(train), on="user_idx", how="inner")
    ranked = lists.select(
        F.col("item_idx").alias("anchor_idx"), F.col("similar_item_idx").alias("item_idx"), F.col("rank")
    )
    per_user = (
        held.join(ranked, on=["anchor_idx", "item_idx"], how="left")
        .groupBy("user_idx")
        .agg(F.min("rank").alias("best"))
    )
    totals = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        *[F.sum(F.when(F.col("best") <= k, 1).otherwise(0)).alias(f"hr@{k}") for k in ks],
    ).first()
    users = int(totals["users"] or 0)
    out: dict[str, Any] = {"users": users}
    for k in ks:
        out[f"hr@{k}"] = round(int(totals[f"hr@{k}"] or 0) / users, 4) if users else 0.0
    return out


def list_coverage(lists: DataFrame, n_items: int) -> dict[str, Any]:
    """Items with a list, distinct items listed, and the share of the catalogue listed at all."""
    from pyspark.sql import functions as F

    row = lists.agg(
        F.countDistinct("item_idx").alias("anchored"), F.countDistinct("similar_item_idx").alias("listed")
    ).first()
    return {
        "items_with_list": int(row["anchored"]),
        "distinct_similar_items": int(row["listed"]),
        "catalogue_coverage": round(int(row["listed"]) / n_items, 4) if n_items else 0.0,
    }


def format_report(report: dict[str, Any]) -> str:
    """The side-by-side Markdown report of the model's similar items and the co-occurrence baseline."""
    ks = report["ks"]
    lines = [
        f"# Similar items, dt={report['date']}",
        "",
        f"Hit rate@K: a test user's held-out item among the top K similar items of their last train item "
        f"({report['users']:,} test users; lists from train data only: {report['evaluated_model']}).",
        "",
        "| lists | " + " | ".join(f"HR@{k}" for k in ks) + " | items with a list | catalogue coverage |",
        "|---|" + "---|" * (len(ks) + 2),
    ]
    for name, row in report["contenders"].items():
        hits = " | ".join(f"{row[f'hr@{k}']:.4f}" for k in ks)
        lines.append(f"| {name} | {hits} | {row['items_with_list']:,} | {row['catalogue_coverage']:.3f} |")
    return "\n".join(lines) + "\n"
