"""The score stage's side of the business rules ([score.rules]): resolved once per run on the driver.

Availability windows act like a deny list: items outside their window on the run date
(`--date`) join the excluded items before selection, so they never reach a list and a user
still gets k items where k available ones exist. The category cap and the MMR re-rank travel
to the workers as a `ListRules` (recbatch.core.rules) and choose each user's k rows there.

A cap that cannot fill k rows from the available catalogue is a ConfigError; a user whose
unseen items cannot fill k under the cap (most of a category already seen) gets fewer rows,
and the publish gate expects exactly that many (`cap_losses`), with the users counted
in a warning: never silently fewer rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from recbatch.core.rules import NO_CATEGORY, ListRules
from recbatch.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import ScoreRulesConfig
    from recbatch.io.item_metadata import ItemMetadata

log = logging.getLogger(__name__)


def with_availability(
    allowed: np.ndarray | None,
    metadata: ItemMetadata | None,
    config: ScoreRulesConfig,
    date: str,
    n_items: int,
) -> np.ndarray | None:
    """The allowed item indices less the items unavailable on `date` (None: every item allowed)."""
    if metadata is None:
        return allowed
    available = metadata.available(date, config.unlisted_items)
    if available.all():
        return allowed
    keep = np.zeros(n_items, dtype=bool)
    keep[np.arange(n_items) if allowed is None else allowed] = True
    n_before = int(keep.sum())
    keep &= available
    log.info(
        "score.rules: %d of %d allowed items are unavailable on %s", n_before - keep.sum(), n_before, date
    )
    if not keep.any():
        raise DataError(
            f"score.rules.item_metadata: no item is available on {date}; "
            "check the available_from / available_to dates (or score.rules.unlisted_items)"
        )
    return np.flatnonzero(keep)


def check_fill(rules: ListRules | None, allowed: np.ndarray | None, n_items: int, k: int) -> None:
    """ConfigError when the cap cannot fill k rows from the whole allowed catalogue."""
    if rules is None or rules.cap <= 0 or rules.categories is None:
        return
    cats = rules.categories if allowed is None else rules.categories[allowed]
    free = int((cats == NO_CATEGORY).sum())
    per_category = np.bincount(cats[cats != NO_CATEGORY])
    most = int(np.minimum(per_category[per_category > 0], rules.cap).sum()) + free
    if most < k:
        n_categories = int((per_category > 0).sum())
        raise ConfigError(
            f"score.rules.category_cap = {rules.cap} allows at most {most} items per list from the "
            f"{n_categories} categories (+ {free} uncategorised items) available, fewer than score.k = {k}: "
            "raise the cap, add categories to the metadata, or lower k"
        )


def _allowed_categories(rules: ListRules, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(allowed item indices, their category codes)."""
    cats = rules.categories
    if cats is None:
        raise ValueError("a category cap needs the item categories")
    items = np.arange(len(cats)) if allowed is None else np.asarray(allowed, np.int64)
    return items, cats[items].astype(np.int64)


def capped_list_rows(rules: ListRules, allowed: np.ndarray | None) -> int:
    """The most rows the cap allows a user who has seen nothing: sum of min(cap, a_c), plus uncategorised."""
    _, item_cats = _allowed_categories(rules, allowed)
    counts = np.bincount(item_cats[item_cats != NO_CATEGORY], minlength=1)
    return int(np.minimum(counts, rules.cap).sum()) + int((item_cats == NO_CATEGORY).sum())


def cap_losses(
    spark: SparkSession, seen: DataFrame, key: str, rules: ListRules, allowed: np.ndarray | None
) -> DataFrame:
    """key, lost: how many rows below `capped_list_rows` each user's seen items cost under the cap.

    Per category c with a_c allowed items of which the user saw s_c the user can still get
    min(cap, a_c - s_c), so the loss is min(cap, a_c) - min(cap, a_c - s_c); a seen
    uncategorised item costs one row. `seen` holds `key` and item_idx.
    """
    from pyspark.sql import functions as F

    items, item_cats = _allowed_categories(rules, allowed)
    counts = np.bincount(item_cats[item_cats != NO_CATEGORY], minlength=1)
    lookup = spark.createDataFrame(
        [
            (int(i), int(c), int(counts[c]) if c != NO_CATEGORY else 0)
            for i, c in zip(items, item_cats, strict=True)
        ],
        "item_idx int, category long, available long",
    )
    per_category = (
        seen.select(F.col(key), F.col("item_idx").cast("int"))
        .where(F.col("item_idx").isNotNull())
        .distinct()
        .join(F.broadcast(lookup), on="item_idx", how="inner")  # only allowed items shorten a list
        .groupBy(key, "category", "available")
        .agg(F.count(F.lit(1)).alias("n_seen"))
    )
    cap = F.lit(rules.cap)
    loss = F.when(F.col("category") == NO_CATEGORY, F.col("n_seen")).otherwise(
        F.least(cap, F.col("available")) - F.least(cap, F.col("available") - F.col("n_seen"))
    )
    return per_category.groupBy(key).agg(F.sum(loss).cast("long").alias("lost"))


def warn_short(expected: DataFrame, k: int) -> int:
    """Count (and warn about) the users the cap leaves with fewer than k rows; returns the count."""
    from pyspark.sql import functions as F

    short = expected.where(F.col("expected") < k).count()
    if short:
        log.warning(
            "score.rules.category_cap: %d users get fewer than k = %d rows (their unseen items cannot fill "
            "the list under the cap); the publish check expects exactly that many",
            short,
            k,
        )
    return short
