"""Splitting annotated rows into quarantine and valid rows, and merging exact duplicates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recbatch.io.readers import SOURCE_FILE
from recbatch.prep.parse import COPIES, REASON

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def raw_columns(df: DataFrame) -> list[str]:
    """The input's own columns: everything but the reader's `source_file` and our `reason`."""
    return [c for c in df.columns if c not in (SOURCE_FILE, REASON)]


def quarantined(df: DataFrame) -> DataFrame:
    """Rejected rows as read (all strings), with their reason and source file."""
    from pyspark.sql import functions as F

    return df.where(F.col(REASON).isNotNull()).select(
        *[F.col(c) for c in raw_columns(df)], F.col(REASON), F.col(SOURCE_FILE)
    )


def valid(df: DataFrame) -> DataFrame:
    """Rows that passed validation, with the input's own columns only."""
    from pyspark.sql import functions as F

    return df.where(F.col(REASON).isNull()).select(*[F.col(c) for c in raw_columns(df)])


def drop_exact_duplicates(df: DataFrame) -> DataFrame:
    """One row per distinct raw row (all input columns equal, nulls equal), with `copies` (long).

    Callers pass rows without `source_file`, so the same event shipped in two files
    still counts as a duplicate; `copies - 1` rows were merged into each survivor.
    """
    from pyspark.sql import functions as F

    cols = [F.col(c) for c in df.columns]
    return df.groupBy(*cols).agg(F.count(F.lit(1)).cast("long").alias(COPIES)).select(*cols, F.col(COPIES))
