"""The staging table (every line once: raw text if rejected, typed values if valid) and the
quarantine derived from it: rejected rows with their reason, raw text, source file and stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.io.lines import BLOCK, HEADER, LINE_NO, NEWLINE_IN_QUOTES, RAW, REASON
from recbatch.io.readers import SOURCE_FILE
from recbatch.prep.parse import PARSED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

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
