"""Events -> one row per (user, item): exact and near duplicates merged, the time window applied.

Every pair carries the counters the stage's accounting needs: `copies` (raw valid rows
behind it), `events` (distinct events), `near` (events merged as near duplicates),
`window_out` (events outside the time window) and `count` (events kept). So one pass
over the events yields every count, and the identity copies = (copies - events) + near +
window_out + count holds per pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.prep.parse import COPIES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PAIR_COLUMNS = ("user_id", "item_id", "count", "weight", "rating", "first_ts", "last_ts", COPIES)
COUNTERS = ("events", "near", "window_out")
EVENT_KEY = ("user_id", "item_id", "event", "weight", "rating", "ts")


def aggregate_events(
    events: DataFrame,
    near_seconds: int = 0,
    window_start: int | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """Parsed events (user_id, item_id, event, weight, rating, ts) -> pairs with counters.

    Exact duplicates (all six values equal) become one event with `copies`. With
    `near_seconds` > 0, an event of the same user, item and type at most that many seconds
    after the previous one is merged into it (chains: each is compared with the one before).
    Events before `window_start` (unix seconds) are counted in `window_out`, not kept.
    A pair whose events all fall out has count 0 (the caller filters it, with its counts).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # One shuffle by (user, item) serves the dedupe, the near-duplicate window and the pair sums.
    spread = (
        events.repartition(partitions, "user_id", "item_id")
        if partitions
        else events.repartition("user_id", "item_id")
    )
    exact = spread.groupBy(*[F.col(c) for c in EVENT_KEY]).agg(F.count(F.lit(1)).cast("long").alias(COPIES))
    if near_seconds > 0:
        order = Window.partitionBy("user_id", "item_id", "event").orderBy("ts", "weight", "rating")
        near = F.coalesce(F.col("ts") - F.lag("ts").over(order) <= near_seconds, F.lit(False))
    else:
        near = F.lit(False)
    inside = F.col("ts") >= window_start if window_start is not None else F.lit(True)
    marked = exact.select(*[F.col(c) for c in (*EVENT_KEY, COPIES)], near.alias("_near"), inside.alias("_in"))
    keep = ~F.col("_near") & F.col("_in")

    def kept(col: str):
        return F.when(keep, F.col(col))

    return (
        marked.groupBy(F.col("user_id"), F.col("item_id"))
        .agg(
            F.count(kept("ts")).cast("long").alias("count"),
            F.sum(kept("weight")).cast("double").alias("weight"),
            F.avg(kept("rating")).cast("double").alias("rating"),
            F.min(kept("ts")).cast("long").alias("first_ts"),
            F.max(kept("ts")).cast("long").alias("last_ts"),
            F.sum(COPIES).cast("long").alias(COPIES),
            F.count(F.lit(1)).cast("long").alias("events"),
            F.count(F.when(F.col("_near"), 1)).cast("long").alias("near"),
            F.count(F.when(~F.col("_near") & ~F.col("_in"), 1)).cast("long").alias("window_out"),
        )
        .select(*[F.col(c) for c in (*PAIR_COLUMNS, *COUNTERS)])
    )


def normalise(pairs: DataFrame, log_weights: bool, center_ratings: bool) -> DataFrame:
    """Optional log(1 + weight) scaling and per-user centring of mean ratings (nulls stay null)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    weight = F.log1p(F.col("weight")) if log_weights else F.col("weight")
    rating = F.col("rating")
    if center_ratings:
        rating = rating - F.avg("rating").over(Window.partitionBy("user_id"))
    cols = [
        weight.alias(c) if c == "weight" else rating.alias(c) if c == "rating" else F.col(c)
        for c in PAIR_COLUMNS
    ]
    return pairs.select(*cols)
