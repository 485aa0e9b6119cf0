"""The backtest's hold-out: each user's latest interactions hidden from the raw input, the rest kept as read.

`recbatch backtest` (recbatch.pipeline.backtest) hides what each user did last and runs the
configured pipeline on what is left exactly as production would, from the raw input on.
The rows to hide are chosen among the rows prepare would keep: the input is read and checked
by the same rules (`recbatch.prep.parse.annotate`, the same reader), a rejected row is never
held out (it stays in the visible input and is quarantined there again), and a pair is
hidden whole, with every valid row of it, so the model cannot have seen the item.

"Latest" orders a user's pairs by their last event time, ties by the larger item id
(numerically where ids are numbers: MovieLens' "sort by timestamp, then item id"); an input
without timestamps hides `n` seeded random pairs per user instead. Only users with more than
`n` pairs give any (each keeps at least one visible pair). Held-out pairs are kept as
original ids with their rows' values, never as indices: the vocabularies are the visible
run's to build. With explicit feedback and `prepare.min_rating`, a held-out pair whose mean
rating is below it is hidden but not relevant (prepare would not count it as a positive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recbatch.config import InputConfig, PrepareConfig
from recbatch.io.lines import HEADER, RAW, REASON
from recbatch.io.readers import SOURCE_FILE, read_input
from recbatch.prep.parse import PARSED, annotate

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.storage import Location

HELD_COLUMNS = ("user_id", "item_id", "rows", "last_ts", "rating", "relevant")
_BOOKKEEPING = (SOURCE_FILE, "block_start", "line_no", RAW, REASON)


def held_out_pairs(events: DataFrame, n: int, seed: int | None, min_rating: float | None = None) -> DataFrame:
    """user_id, item_id, rows, last_ts, rating, relevant of each user's latest `n` pairs of `events`
    (parsed valid rows: user_id, item_id, rating, ts), for users with more than `n` pairs.

    `seed` None orders by time; a seed (no timestamps) orders by a seeded hash of the pair.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pairs = events.groupBy(F.col("user_id"), F.col("item_id")).agg(
        F.count(F.lit(1)).alias("rows"), F.max("ts").alias("last_ts"), F.avg("rating").alias("rating")
    )
    by_user = Window.partitionBy("user_id")
    if seed is None:
        numeric = F.col("item_id").try_cast("long")
        order = [F.col("last_ts").desc(), numeric.desc_nulls_last(), F.col("item_id").desc()]
    else:
        order = [F.xxhash64(F.col("user_id"), F.col("item_id"), F.lit(seed)).desc(), F.col("item_id").desc()]
    held = (F.row_number().over(by_user.orderBy(*order)) <= n) & (F.count(F.lit(1)).over(by_user) > n)
    relevant = F.lit(True) if min_rating is None else F.coalesce(F.col("rating") >= min_rating, F.lit(True))
    return (
        pairs.select(*[F.col(c) for c in pairs.columns], held.alias("_held"), relevant.alias("relevant"))
        .where(F.col("_held"))
        .select(*[F.col(c) for c in HELD_COLUMNS])
    )


def visible_rows(annotated: DataFrame, held: DataFrame) -> DataFrame:
    """The rows of `annotate` output that stay in the input: all but the valid rows of `held` pairs."""
    from pyspark.sql import functions as F

    valid = F.col(REASON).isNull()
    keyed = annotated.select(
        *[F.col(c) for c in annotated.columns],
        # Rejected rows get null keys, which match nothing: they always stay visible.
        F.when(valid, F.col(f"{PARSED}.user_id")).alias("_user"),
        F.when(valid, F.col(f"{PARSED}.item_id")).alias("_item"),
    )
    keys = held.select(F.col("user_id").alias("_user"), F.col("item_id").alias("_item"))
    return keyed.join(keys, on=["_user", "_item"], how="left_anti").select(
        *[F.col(c) for c in annotated.columns if c != PARSED]
    )


@dataclass(frozen=True)
class InputSplit:
    """The raw input split for a backtest (all lazy): what is hidden and what stays."""

    held: DataFrame  # HELD_COLUMNS: the held-out pairs, as ids
    visible: DataFrame  # the rows that stay, as read (input columns, bookkeeping, reason)
    events: DataFrame  # every valid row's parsed values (user_id, item_id, event, weight, rating, ts)
    names: list[str]  # the input's column names, in file order


def split_input(spark: SparkSession, inp: InputConfig, prep: PrepareConfig, date: str, n: int) -> InputSplit:
    """The raw input `inp` of run `date` with each user's latest `n` pairs held out."""
    from pyspark.sql import functions as F

    raw, _, _ = read_input(spark, inp, prep.max_line_bytes)
    names = [c for c in raw.columns if c not in _BOOKKEEPING]
    annotated = annotate(raw, inp, prep, date)
    events = annotated.where(F.col(REASON).isNull()).select(f"{PARSED}.*")
    seed = None if inp.timestamp_col is not None else prep.split_seed
    min_rating = prep.min_rating if prep.feedback == "explicit" else None
    held = held_out_pairs(events, n, seed, min_rating)
    return InputSplit(held, visible_rows(annotated, held), events, names)


def candidate_pairs(
    spark: SparkSession, events: DataFrame, held: DataFrame, negatives: int, seed: int
) -> DataFrame:
    """user_id, item_id: each relevant held-out pair plus `negatives` seeded items per pair that the
    user never interacted with, drawn from the items of the visible rows (the NCF paper's protocol).

    Drawn on the driver: the protocol is meant for research-sized logs.
    """
    import numpy as np
    from pyspark.sql import functions as F

    pairs = events.select("user_id", "item_id").distinct()
    keys = held.select("user_id", "item_id")
    visible_items = pairs.join(keys, on=["user_id", "item_id"], how="left_anti").select("item_id").distinct()
    items = np.array(sorted(r[0] for r in visible_items.collect()), dtype=object)  # catalogue-sized
    index = {item: i for i, item in enumerate(items)}
    wanted = held.where(F.col("relevant")).select("user_id", "item_id").toPandas()
    wanted = wanted.groupby("user_id")["item_id"].apply(sorted).sort_index()
    users = spark.createDataFrame([(str(u),) for u in wanted.index], "user_id string")
    seen = pairs.join(F.broadcast(users), on="user_id", how="left_semi").toPandas()
    seen = seen.groupby("user_id")["item_id"].apply(list)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str]] = []
    for user, held_items in wanted.items():
        taken = np.array([index[i] for i in seen.get(user, []) if i in index], dtype=np.int64)
        pool = np.setdiff1d(np.arange(len(items)), taken)
        picks = rng.choice(pool, size=min(len(pool), negatives * len(held_items)), replace=False)
        rows += [(user, item) for item in held_items] + [(user, str(items[j])) for j in np.sort(picks)]
    return spark.createDataFrame(rows, "user_id string, item_id string")


def write_visible(rows: DataFrame, inp: InputConfig, names: list[str], target: Location) -> InputConfig:
    """Write `visible_rows` in the input's own format under `target`; return the [input] that reads it.

    Text formats keep each line's raw text, in input order; CSV/TSV lose their header lines and
    name their columns in input.names instead. Parquet keeps the columns as the reader saw them.
    """
    from pyspark.sql import functions as F

    if inp.format == "parquet":
        rows.select(*[F.col(c) for c in names]).write.mode("overwrite").parquet(str(target))
        return inp.model_copy(update={"path": str(target)})
    lines = rows.where(F.col(REASON).isNull() | (F.col(REASON) != HEADER))
    (
        lines.orderBy(F.col(SOURCE_FILE), F.col("block_start"), F.col("line_no"))
        .select(F.col(RAW).alias("value"))
        .write.mode("overwrite")
        .text(str(target))
    )
    update: dict[str, object] = {"path": str(target)}
    if inp.format in ("csv", "tsv"):
        update |= {"header": False, "names": names}
    return InputConfig.model_validate(inp.model_dump() | update)
