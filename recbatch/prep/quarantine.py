"""The staging table (every line once: raw text if rejected, typed values if valid), the
quarantine derived from it, per-file counts, and finding an earlier run's vocabularies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.errors import ConfigError
from recbatch.io.lines import BLOCK, HEADER, LINE_NO, NEWLINE_IN_QUOTES, RAW, REASON
from recbatch.io.readers import SOURCE_FILE
from recbatch.prep.parse import PARSED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from recbatch.layout import RunLayout

STAGE = "stage"
REPEATED_HEADER = "repeated_header"
UNTERMINATED = "unterminated_quote"
# Reasons found while splitting lines; every other reason comes from the value rules.
READ_STAGE = {
    "invalid_utf8",
    "line_too_long",
    "blank_line",
    REPEATED_HEADER,
    UNTERMINATED,
    NEWLINE_IN_QUOTES,
    "malformed_quote",
    "too_few_fields",
    "too_many_fields",
    "non_finite_number",
    "broken_json",
    "not_an_object",
    "nested_value",
    "wrong_type",
}
BOOKKEEPING = (SOURCE_FILE, BLOCK, LINE_NO, RAW, REASON)


def staging_rows(annotated: DataFrame) -> DataFrame:
    """One row per line of `parse.annotate` output: input strings and raw text only when
    rejected, `_parsed` only when valid.

    Positions are kept only where the quarantine needs neighbours (headers, open quotes).
    """
    from pyspark.sql import functions as F

    bad = F.col(REASON).isNotNull()
    near = F.col(REASON).isin(HEADER, UNTERMINATED)
    names = [c for c in annotated.columns if c not in (*BOOKKEEPING, PARSED)]
    return annotated.select(
        *[F.when(bad, F.col(c)).alias(c) for c in names],
        F.col(SOURCE_FILE),
        F.when(near, F.col(BLOCK)).alias(BLOCK),
        F.when(near, F.col(LINE_NO)).alias(LINE_NO),
        F.when(bad, F.col(RAW)).alias(RAW),
        F.col(REASON),
        F.when(~bad, F.col(PARSED)).alias(PARSED),
    )


def valid_events(staging: DataFrame) -> DataFrame:
    """The parsed events of valid rows: user_id, item_id, event, weight, rating, ts."""
    from pyspark.sql import functions as F

    return staging.where(F.col(REASON).isNull()).select(f"{PARSED}.*")


def quarantine_rows(staging: DataFrame, raw_columns: list[str]) -> DataFrame:
    """Rejected rows: input columns (strings), reason, source_file, raw and stage.

    The first header line of each file is not a row; later ones are repeated_header.
    Consecutive lines with an open quote are one record broken by a newline.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [c for c in raw_columns if c not in BOOKKEEPING]
    rejected = staging.where(F.col(REASON).isNotNull())
    by_file = Window.partitionBy(SOURCE_FILE, REASON).orderBy(BLOCK, LINE_NO)
    no = F.col(LINE_NO)
    block = F.col(BLOCK)
    joined = ((F.lag(no).over(by_file) == no - 1) & (F.lag(block).over(by_file) == block)) | (
        (F.lead(no).over(by_file) == no + 1) & (F.lead(block).over(by_file) == block)
    )
    reason = (
        F.when(F.col(REASON) == HEADER, F.lit(REPEATED_HEADER))
        .when((F.col(REASON) == UNTERMINATED) & F.coalesce(joined, F.lit(False)), F.lit(NEWLINE_IN_QUOTES))
        .otherwise(F.col(REASON))
    )
    first_header = (F.col(REASON) == HEADER) & (F.row_number().over(by_file) == 1)
    stage = F.when(F.col("_r").isin(*READ_STAGE), F.lit("read")).otherwise(F.lit("validate"))
    return (
        rejected.select(
            *[F.col(c) for c in (*names, SOURCE_FILE, RAW)], reason.alias("_r"), first_header.alias("_h")
        )
        .where(~F.col("_h"))
        .select(
            *[F.col(c) for c in names],
            F.col("_r").alias(REASON),
            F.col(SOURCE_FILE),
            F.col(RAW),
            stage.alias(STAGE),
        )
    )


def file_counts(staging: DataFrame, files: list[str]) -> dict[str, dict[str, Any]]:
    """Per input file: lines, rows_read (lines less its header), quarantined and header_only."""
    from pyspark.sql import functions as F

    stats: dict[str, dict[str, int]] = {f: {} for f in files}
    for r in staging.groupBy(SOURCE_FILE, REASON).agg(F.count(F.lit(1)).alias("n")).collect():
        stats.setdefault(r[SOURCE_FILE], {})[r[REASON] or ""] = int(r["n"])
    out = {}
    for file, reasons in sorted(stats.items()):
        lines = sum(reasons.values())
        headers = reasons.get(HEADER, 0)
        read = lines - min(headers, 1)
        out[file] = {
            "lines": lines,
            "rows_read": read,
            "quarantined": read - reasons.get("", 0),
            "header_only": headers >= 1 and read == 0,
        }
    return out


def degree_quantiles(interactions: DataFrame, key: str) -> dict[str, float]:
    """Interactions per user (or item): min, p50, p90, p99, max."""
    from pyspark.sql import functions as F

    degrees = interactions.groupBy(key).agg(F.count(F.lit(1)).alias("n"))
    row = degrees.agg(
        F.min("n").alias("min"),
        F.percentile_approx("n", [0.5, 0.9, 0.99], 10_000).alias("q"),
        F.max("n").alias("max"),
    ).first()
    if row["q"] is None:
        return {}
    p50, p90, p99 = row["q"]
    return {"min": row["min"], "p50": p50, "p90": p90, "p99": p99, "max": row["max"]}


def previous_prepared(setting: str, layout: RunLayout) -> Path | None:
    """The prepared/ folder whose vocabularies this run extends (None: build fresh ones)."""
    if not setting:
        return None
    if setting == "auto":
        runs = sorted(
            p
            for p in (layout.workdir / "runs").glob("dt=*")
            if p.name[3:] < layout.date
            and (p / "prepared" / "vocab" / "users").is_dir()
            and (p / "prepared" / "vocab" / "items").is_dir()
        )
        return runs[-1] / "prepared" if runs else None
    path = Path(setting)
    if not ((path / "vocab" / "users").is_dir() and (path / "vocab" / "items").is_dir()):
        raise ConfigError(
            f"prepare.previous_vocab = {setting!r} holds no vocab/users and vocab/items "
            '(point it at an earlier run\'s prepared/ folder, or use "auto")'
        )
    return path
