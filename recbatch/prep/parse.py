"""Validation and parsing of raw string rows.

Validation is a list of (reason, condition) rules, checked in order; the first rule a
row fails names its quarantine reason. Conditions are null-safe (a row is rejected only
when its condition is true), so adding a rule never silently drops rows.
Parsed columns are computed only for rows that passed, and carry fixed names:
user_id, item_id, event, weight, rating, ts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.config import InputConfig, PrepareConfig

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REASON = "reason"
COPIES = "copies"  # raw rows behind a deduplicated row
# Beyond ~year 300,000 a "timestamp" is a unit mix-up, and a cast to long could overflow.
MAX_ABS_SECONDS = 1e13


def _blank(col: Column) -> Column:
    from pyspark.sql import functions as F

    return col.isNull() | (F.trim(col) == "")


def _number(col: Column) -> Column:
    """The value as a double, or null when it is not a finite number."""
    from pyspark.sql import functions as F

    x = F.trim(col).try_cast("double")
    return F.when(~F.isnan(x) & (F.abs(x) < float("inf")), x)


def _seconds(col: Column, unit: str) -> Column:
    """Unix seconds as a double, or null when the value does not parse in `unit`."""
    from pyspark.sql import functions as F

    if unit == "iso":
        return F.unix_micros(F.try_to_timestamp(F.trim(col))) / 1_000_000.0
    x = _number(col)
    secs = x / 1000.0 if unit == "ms" else x
    return F.when(F.abs(secs) < MAX_ABS_SECONDS, secs)


def validation_rules(inp: InputConfig, prep: PrepareConfig) -> list[tuple[str, Column]]:
    """(reason, condition) pairs in the order they are checked; a true condition rejects the row."""
    from pyspark.sql import functions as F

    rules: list[tuple[str, Column]] = [
        ("missing_user", _blank(F.col(inp.user_col))),
        ("missing_item", _blank(F.col(inp.item_col))),
    ]
    if inp.rating_col is not None:
        raw = F.col(inp.rating_col)
        rating = _number(raw)
        if prep.feedback == "explicit":
            rules.append(("missing_rating", _blank(raw)))
        rules.append(("bad_rating", ~_blank(raw) & rating.isNull()))
        rules.append(("rating_out_of_range", (rating < prep.rating_min) | (rating > prep.rating_max)))
    if inp.timestamp_col is not None:
        raw = F.col(inp.timestamp_col)
        rules.append(("missing_timestamp", _blank(raw)))
        rules.append(("bad_timestamp", _seconds(raw, inp.timestamp_unit).isNull()))
    if inp.event_col is not None:
        known = list(prep.event_weights)
        rules.append(
            ("unknown_event", _blank(F.col(inp.event_col)) | ~F.trim(F.col(inp.event_col)).isin(known))
        )
    return rules


def reason_column(rules: list[tuple[str, Column]]) -> Column:
    """The reason of the first failing rule, or null for a valid row."""
    from pyspark.sql import functions as F

    expr = None
    for reason, condition in rules:
        expr = F.when(condition, F.lit(reason)) if expr is None else expr.when(condition, F.lit(reason))
    return F.lit(None).cast("string") if expr is None else expr


def with_reason(df: DataFrame, inp: InputConfig, prep: PrepareConfig) -> DataFrame:
    """Raw rows plus a `reason` column (null when the row is valid)."""
    from pyspark.sql import functions as F

    return df.select(
        *[F.col(c) for c in df.columns], reason_column(validation_rules(inp, prep)).alias(REASON)
    )


def parse_valid(df: DataFrame, inp: InputConfig, prep: PrepareConfig) -> DataFrame:
    """Typed columns of valid rows: user_id, item_id, event, weight, rating, ts.

    Expects rows that passed `validation_rules`; a missing rating stays null and a
    missing timestamp column gives ts 0 (the split then falls back to item order).
    A `copies` column, if present, is passed through.
    """
    from pyspark.sql import functions as F

    if inp.event_col is not None:
        event = F.trim(F.col(inp.event_col))
        weight = F.lit(None)
        for name, w in reversed(prep.event_weights.items()):
            weight = F.when(event == name, F.lit(w)).otherwise(weight)
    else:
        event = F.lit(prep.default_event)
        weight = F.lit(prep.event_weights.get(prep.default_event, 1.0))
    rating = _number(F.col(inp.rating_col)) if inp.rating_col is not None else F.lit(None)
    if inp.timestamp_col is not None:
        ts = F.floor(_seconds(F.col(inp.timestamp_col), inp.timestamp_unit))
    else:
        ts = F.lit(0)
    return df.select(
        F.trim(F.col(inp.user_col)).alias("user_id"),
        F.trim(F.col(inp.item_col)).alias("item_id"),
        event.cast("string").alias("event"),
        weight.cast("double").alias("weight"),
        rating.cast("double").alias("rating"),
        ts.cast("long").alias("ts"),
        *([F.col(COPIES)] if COPIES in df.columns else []),
    )
