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
from recbatch.io.lines import REASON

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

PARSED = "_parsed"
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


def day_end(date: str) -> int:
    """Unix seconds of the last second of `date` (YYYY-MM-DD, UTC)."""
    import calendar
    import datetime as dt

    return calendar.timegm(dt.date.fromisoformat(date).timetuple()) + 86_399


def parsed_values(inp: InputConfig) -> dict[str, Column]:
    """The numbers the rules and the parser both need: rating, ts (seconds, double), weight."""
    from pyspark.sql import functions as F

    values = {}
    if inp.rating_col is not None:
        values["rating"] = _number(F.col(inp.rating_col))
    if inp.timestamp_col is not None:
        values["ts"] = _seconds(F.col(inp.timestamp_col), inp.timestamp_unit)
    if inp.weight_col is not None:
        values["weight"] = _number(F.col(inp.weight_col))
    return values


def validation_rules(
    inp: InputConfig,
    prep: PrepareConfig,
    run_date: str | None = None,
    values: dict[str, Column] | None = None,
) -> list[tuple[str, Column]]:
    """(reason, condition) pairs in the order they are checked; a true condition rejects the row.

    `run_date` (YYYY-MM-DD) enables future_timestamp when prep.reject_future is on. `values`
    may hold precomputed `parsed_values` columns, so each number is parsed once per row.
    """
    from pyspark.sql import functions as F

    v = values if values is not None else parsed_values(inp)

    rules: list[tuple[str, Column]] = [
        ("missing_user", _blank(F.col(inp.user_col))),
        ("missing_item", _blank(F.col(inp.item_col))),
    ]
    for reason, column, pattern in (
        ("bad_user_id", inp.user_col, inp.user_id_pattern),
        ("bad_item_id", inp.item_col, inp.item_id_pattern),
    ):
        if pattern:
            rules.append((reason, ~F.trim(F.col(column)).rlike(f"^(?:{pattern})$")))
    if inp.rating_col is not None:
        raw = F.col(inp.rating_col)
        rating = v["rating"]
        if prep.feedback == "explicit":
            rules.append(("missing_rating", _blank(raw)))
        rules.append(("bad_rating", ~_blank(raw) & rating.isNull()))
        rules.append(("rating_out_of_range", (rating < prep.rating_min) | (rating > prep.rating_max)))
    if inp.timestamp_col is not None:
        raw = F.col(inp.timestamp_col)
        rules.append(("missing_timestamp", _blank(raw)))
        secs = v["ts"]
        rules.append(("bad_timestamp", secs.isNull()))
        if prep.reject_future and run_date is not None:
            rules.append(("future_timestamp", secs > day_end(run_date)))
        if prep.timestamp_floor is not None:
            rules.append(("timestamp_too_old", secs < day_end(prep.timestamp_floor) - 86_399))
    if inp.event_col is not None:
        known = list(prep.event_weights)
        rules.append(
            ("unknown_event", _blank(F.col(inp.event_col)) | ~F.trim(F.col(inp.event_col)).isin(known))
        )
    if inp.weight_col is not None:
        raw = F.col(inp.weight_col)
        rules.append(("missing_weight", _blank(raw)))
        rules.append(("bad_weight", v["weight"].isNull()))
        rules.append(("nonpositive_weight", v["weight"] <= 0))
    return rules


def reason_column(rules: list[tuple[str, Column]]) -> Column:
    """The reason of the first failing rule, or null for a valid row."""
    from pyspark.sql import functions as F

    expr = None
    for reason, condition in rules:
        expr = F.when(condition, F.lit(reason)) if expr is None else expr.when(condition, F.lit(reason))
    return F.lit(None).cast("string") if expr is None else expr


def with_reason(
    df: DataFrame, inp: InputConfig, prep: PrepareConfig, run_date: str | None = None
) -> DataFrame:
    """Raw rows plus a `reason` column (null when the row is valid).

    A `reason` already present (a read-level one, e.g. too_few_fields) wins over value rules.
    """
    from pyspark.sql import functions as F

    rules = reason_column(validation_rules(inp, prep, run_date))
    if REASON in df.columns:
        return df.select(
            *[F.col(c) for c in df.columns if c != REASON], F.coalesce(F.col(REASON), rules).alias(REASON)
        )
    return df.select(*[F.col(c) for c in df.columns], rules.alias(REASON))


def parsed_columns(
    inp: InputConfig, prep: PrepareConfig, values: dict[str, Column] | None = None
) -> list[Column]:
    """Typed columns of a valid row: user_id, item_id, event, weight, rating, ts.

    A missing rating stays null and a missing timestamp column gives ts 0 (the split then
    falls back to item order). Only meaningful for rows that passed `validation_rules`.
    """
    from pyspark.sql import functions as F

    v = values if values is not None else parsed_values(inp)
    if inp.event_col is not None:
        event = F.trim(F.col(inp.event_col))
        weight = F.lit(None)
        for name, w in reversed(prep.event_weights.items()):
            weight = F.when(event == name, F.lit(w)).otherwise(weight)
    else:
        event = F.lit(prep.default_event)
        weight = F.lit(prep.event_weights.get(prep.default_event, 1.0))
    if inp.weight_col is not None:
        weight = weight * v["weight"]
    rating = v["rating"] if inp.rating_col is not None else F.lit(None)
    ts = F.floor(v["ts"]) if inp.timestamp_col is not None else F.lit(0)
    return [
        F.trim(F.col(inp.user_col)).alias("user_id"),
        F.trim(F.col(inp.item_col)).alias("item_id"),
        event.cast("string").alias("event"),
        weight.cast("double").alias("weight"),
        rating.cast("double").alias("rating"),
        ts.cast("long").alias("ts"),
    ]


def parse_valid(df: DataFrame, inp: InputConfig, prep: PrepareConfig) -> DataFrame:
    """Typed columns of valid rows (see `parsed_columns`); a `copies` column, if present, is passed through."""
    from pyspark.sql import functions as F

    return df.select(*parsed_columns(inp, prep), *([F.col(COPIES)] if COPIES in df.columns else []))


def annotate(df: DataFrame, inp: InputConfig, prep: PrepareConfig, run_date: str | None = None) -> DataFrame:
    """`with_reason` plus `_parsed` (the typed event struct), parsing each number once per row.

    The numbers are computed in their own projection: Spark keeps a projection whose
    expensive columns are used more than once instead of inlining them into every rule.
    """
    from pyspark.sql import functions as F

    values = parsed_values(inp)
    names = {k: f"_value_{k}" for k in values}
    step = df.select(*[F.col(c) for c in df.columns], *[e.alias(names[k]) for k, e in values.items()])
    cols = {k: F.col(n) for k, n in names.items()}
    rules = reason_column(validation_rules(inp, prep, run_date, cols))
    reason = F.coalesce(F.col(REASON), rules) if REASON in df.columns else rules
    return step.select(
        *[F.col(c) for c in df.columns if c != REASON],
        reason.alias(REASON),
        F.struct(*parsed_columns(inp, prep, cols)).alias(PARSED),
    )
