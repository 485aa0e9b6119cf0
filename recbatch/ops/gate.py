"""The quality gate: a new table is compared with the one readers have now before it may replace it.

The baseline is the current version of the same date (a rerun) or else of the newest earlier
date (yesterday, under cron). Checks, each with a threshold in `[gate]`:

    metric     relative drop of the evaluation metric (evaluate.primary_k NDCG) from the baseline's
    rows       relative drop of the row count
    users      relative drop of the users covered
    coverage   relative drop of the distinct items recommended (catalogue coverage)
    overlap    mean Jaccard overlap of each user's list with the baseline's (churn), a floor
    replaced   share of users whose list shares no item with the baseline's, a ceiling

Users in only one of the two tables count in `users`, not in the churn figures. A check whose
baseline figure is missing (the first run, a baseline without metrics) passes and says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError
from recbatch.io import versions
from recbatch.storage import Location, write_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recbatch.config import GateConfig


def table_stats(table: DataFrame) -> dict[str, int]:
    """Rows, users and distinct items of a recommendation table, in one aggregation."""
    from pyspark.sql import functions as F

    row = table.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("user_id").alias("users"),
        F.countDistinct("item_id").alias("items"),
    ).first()
    return {"rows": int(row["rows"]), "users": int(row["users"]), "items": int(row["items"])}


def churn(new: DataFrame, old: DataFrame) -> dict[str, float | int]:
    """Mean Jaccard overlap of users' item sets and the share of users whose set changed entirely.

    Over users present in both tables; exact, in Spark (one join on (user_id, item_id) and
    one on user_id), never a collect of the lists.
    """
    from pyspark.sql import functions as F

    def sizes(df: DataFrame, name: str) -> DataFrame:
        return df.groupBy("user_id").agg(F.countDistinct("item_id").alias(name))

    pairs_new = new.select("user_id", "item_id").distinct()
    pairs_old = old.select("user_id", "item_id").distinct()
    common = pairs_new.join(pairs_old, on=["user_id", "item_id"], how="inner").groupBy("user_id").count()
    per_user = (
        sizes(new, "n_new")
        .join(sizes(old, "n_old"), on="user_id", how="inner")
        .join(common.withColumnRenamed("count", "both"), on="user_id", how="left")
        .select(
            (
                F.coalesce(F.col("both"), F.lit(0))
                / (F.col("n_new") + F.col("n_old") - F.coalesce(F.col("both"), F.lit(0)))
            ).alias("jaccard"),
            F.col("both").isNull().alias("replaced"),
        )
    )
    row = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.avg("jaccard").alias("jaccard"),
        F.avg(F.col("replaced").cast("double")).alias("replaced"),
    ).first()
    users = int(row["users"])
    return {
        "common_users": users,
        "mean_jaccard": round(float(row["jaccard"]), 6) if users else None,
        "replaced_share": round(float(row["replaced"]), 6) if users else None,
    }


def _drop(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return round((old - new) / old, 6)


def compare(
    new: DataFrame, old: DataFrame | None, new_metric: float | None, old_metric: float | None
) -> dict[str, Any]:
    """The figures the gate judges: both tables' sizes, relative drops and churn (no thresholds)."""
    ours = table_stats(new)
    out: dict[str, Any] = {"new": {**ours, "metric": new_metric}}
    if old is None:
        return {**out, "baseline": None}
    theirs = table_stats(old)
    out["baseline"] = {**theirs, "metric": old_metric}
    out["drops"] = {
        "metric": _drop(new_metric, old_metric),
        "rows": _drop(ours["rows"], theirs["rows"]),
        "users": _drop(ours["users"], theirs["users"]),
        "coverage": _drop(ours["items"], theirs["items"]),
    }
    out["churn"] = churn(new, old)
    return out


def verdict(comparison: dict[str, Any], config: GateConfig) -> list[str]:
    """The failed checks of a comparison, one phrase each (empty: the gate passes)."""
    if comparison.get("baseline") is None:
        return []
    failures = []
    limits = {
        "metric": config.max_metric_drop,
        "rows": config.max_rows_drop,
        "users": config.max_users_drop,
        "coverage": config.max_coverage_drop,
    }
    names = {
        "metric": "the evaluation metric",
        "rows": "rows",
        "users": "users covered",
        "coverage": "items covered",
    }
    for check, limit in limits.items():
        drop = comparison["drops"].get(check)
        if drop is not None and drop > limit:
            old = comparison["baseline"][check if check != "coverage" else "items"]
            new = comparison["new"][check if check != "coverage" else "items"]
            failures.append(
                f"{names[check]} fell {drop:.1%} ({old} -> {new}; gate.max_{check}_drop = {limit})"
            )
    churn_ = comparison["churn"]
    if churn_["mean_jaccard"] is not None and churn_["mean_jaccard"] < config.min_mean_overlap:
        failures.append(
            f"mean list overlap with the baseline is {churn_['mean_jaccard']:.3f} "
            f"(gate.min_mean_overlap = {config.min_mean_overlap})"
        )
    if churn_["replaced_share"] is not None and churn_["replaced_share"] > config.max_replaced_share:
        failures.append(
            f"{churn_['replaced_share']:.1%} of users got an entirely new list "
            f"(gate.max_replaced_share = {config.max_replaced_share})"
        )
    return failures


def enforce(
    comparison: dict[str, Any], config: GateConfig, baseline_name: str, force: bool
) -> dict[str, Any]:
    """The gate's record for the manifest; PipelineError naming the failed checks unless `force`."""
    failures = verdict(comparison, config)
    record = {**comparison, "baseline_version": baseline_name, "failed": failures, "passed": not failures}
    if failures and not force:
        raise PipelineError(
            f"quality gate failed against {baseline_name}: {'; '.join(failures)} "
            "(rerun with --force to publish anyway)"
        )
    record["forced"] = bool(failures and force)
    return record


def primary_metric(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """{"name", "value"} of the published model's NDCG@primary_k in evaluate's metrics, if evaluated."""
    model, k = metrics.get("model"), metrics.get("primary_k")
    value = metrics.get("models", {}).get(model, {}).get(f"ndcg@{k}")
    return None if value is None else {"name": f"ndcg@{k}", "value": float(value)}


def publish_gate(
    config: GateConfig, metric: dict[str, Any] | None, force: bool, report: Location
) -> Callable[[DataFrame, Location, str], dict[str, Any]]:
    """The check publish runs between writing a version and committing it (recbatch.io.publish).

    It compares the staged table with the baseline version, writes the comparison to
    `report` whatever the outcome, and raises PipelineError on a failed check unless `force`.
    """

    def check(staged: DataFrame, table_dir: Location, date: str) -> dict[str, Any]:
        base = versions.baseline(table_dir, date)
        old = old_metric = None
        name = "no earlier version"
        if base is not None:
            name = f"dt={base[0]} {base[1]}"
            folder = versions.version_dir(table_dir, *base)
            old = staged.sparkSession.read.parquet(str(folder))
            old_metric = (json.loads((folder / versions.MANIFEST).read_text()).get("metric") or {}).get(
                "value"
            )
        comparison = compare(staged, old, (metric or {}).get("value"), old_metric)
        try:
            return enforce(comparison, config, name, force)
        finally:
            failed = verdict(comparison, config)
            write_json(
                report,
                {
                    **comparison,
                    "baseline_version": name,
                    "failed": failed,
                    "passed": not failed,
                    "forced": bool(failed and force),
                    "checked_at": datetime.now(UTC).isoformat(),
                },
            )

    return check
