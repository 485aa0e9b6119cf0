"""Pair filters with exact counts: low ratings, outlier users/items, and iterative k-core.

Each filter removes whole (user, item) pairs and reports the events (`count`) it removed,
so the stage's accounting adds up. Filters run on a persisted frame and need one small
action each (a count, a quantile); nothing data-sized reaches the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recbatch.prep.aggregate import PAIR_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recbatch.config import PrepareConfig

KCORE_USER = "min_user_interactions"
KCORE_ITEM = "min_item_interactions"


@dataclass
class Filtered:
    """What the filters removed (events per filter name) and the details worth reporting."""

    rows: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    _cached: list[DataFrame] = field(default_factory=list)

    def keep(self, df: DataFrame) -> DataFrame:
        from pyspark import StorageLevel

        self._cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    def release(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()


def _events(df: DataFrame) -> int:
    from pyspark.sql import functions as F

    return int(df.agg(F.sum("count")).first()[0] or 0)


def drop_low_ratings(pairs: DataFrame, min_rating: float, out: Filtered) -> DataFrame:
    """Remove pairs whose mean rating is below `min_rating` (pairs without a rating pass)."""
    from pyspark.sql import functions as F

    low = F.coalesce(F.col("rating") < min_rating, F.lit(False))
    out.rows["min_rating"] = _events(pairs.where(low))
    return out.keep(pairs.where(~low))


def drop_outliers(
    pairs: DataFrame, key: str, quantile: float | None, cap: int | None, out: Filtered
) -> DataFrame:
    """Remove every pair of a `key` (user_id or item_id) whose events exceed the threshold.

    The threshold is the smaller of `cap` and the exact `quantile` of events per key.
    """
    from pyspark.sql import functions as F

    name = "outlier_user" if key == "user_id" else "outlier_item"
    totals = out.keep(pairs.groupBy(F.col(key)).agg(F.sum("count").alias("_n")))
    limits = [float(cap)] if cap is not None else []
    if quantile is not None:
        limits.append(float(totals.agg(F.percentile(F.col("_n"), quantile)).first()[0]))
    threshold = min(limits)
    stats = totals.where(F.col("_n") > threshold).agg(F.count(F.lit(1)), F.sum("_n")).first()
    out.rows[name] = int(stats[1] or 0)
    out.details[name] = {"quantile": quantile, "cap": cap, "threshold": threshold, "removed": int(stats[0])}
    bad = totals.where(F.col("_n") > threshold).select(F.col(key))
    return out.keep(pairs.join(F.broadcast(bad), on=key, how="left_anti").select(*pairs.columns))


def kcore(pairs: DataFrame, min_user: int, min_item: int, max_rounds: int, out: Filtered) -> DataFrame:
    """Repeat until every user has >= min_user items and every item >= min_user users (the k-core).

    Each round checks both degrees on the same data; a pair failing both counts for users.
    With only one side active one round reaches the core (removing a user's pairs cannot
    lower another user's degree), so no confirming round is spent.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out.rows.setdefault(KCORE_USER, 0)
    out.rows.setdefault(KCORE_ITEM, 0)
    rounds: list[dict[str, int]] = []
    out.details["kcore"] = {"min_user": min_user, "min_item": min_item, "rounds": rounds, "converged": True}
    if min_user <= 1 and min_item <= 1:
        return pairs
    one = F.count(F.lit(1))
    users = one.over(Window.partitionBy("user_id")) if min_user > 1 else F.lit(min_user)
    items = one.over(Window.partitionBy("item_id")) if min_item > 1 else F.lit(min_item)
    why = F.when(users < min_user, F.lit(KCORE_USER)).when(items < min_item, F.lit(KCORE_ITEM))
    current = pairs
    for number in range(1, max_rounds + 1):
        marked = out.keep(current.select(*[F.col(c) for c in current.columns], why.alias("_why")))
        stats = {
            r["_why"]: (int(r["rows"] or 0), int(r["pairs"]))
            for r in marked.groupBy("_why").agg(F.sum("count").alias("rows"), one.alias("pairs")).collect()
        }
        removed = {k: v for k, v in stats.items() if k is not None}
        rounds.append({"round": number, **{k: removed.get(k, (0, 0))[0] for k in (KCORE_USER, KCORE_ITEM)}})
        for k, (rows, _) in removed.items():
            out.rows[k] += rows
        # Read from the cached marks; the next round (if any) caches its own marks.
        current = marked.where(F.col("_why").isNull()).select(*[F.col(c) for c in pairs.columns])
        if not removed or min_user <= 1 or min_item <= 1:
            return current
    out.details["kcore"]["converged"] = False
    return current


def pair_columns(df: DataFrame) -> DataFrame:
    """The pair schema (drops counters)."""
    from pyspark.sql import functions as F

    return df.select(*[F.col(c) for c in PAIR_COLUMNS])


def filter_pairs(pairs: DataFrame, prep: PrepareConfig, out: Filtered) -> DataFrame:
    """Apply the filters `prep` turns on, counting in `out` the events each one removes.

    Order: low ratings (explicit feedback only), outlier users, outlier items, then the k-core.
    """
    current = pairs
    if prep.feedback == "explicit" and prep.min_rating is not None:
        current = drop_low_ratings(current, prep.min_rating, out)
    for key, q, cap in (
        ("user_id", prep.outlier_user_quantile, prep.outlier_user_max),
        ("item_id", prep.outlier_item_quantile, prep.outlier_item_max),
    ):
        if q is not None or cap is not None:
            current = drop_outliers(current, key, q, cap, out)
    return kcore(current, prep.min_user_interactions, prep.min_item_interactions, prep.kcore_max_rounds, out)
