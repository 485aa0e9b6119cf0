"""Raw interaction readers: every column comes back as a string, plus `source_file`.

Strings on purpose: Spark's own casting would turn "abc" in a numeric column into a
silent null, so the prepare stage parses and validates values itself and quarantines
what fails, with a reason. Formats differ only in how column names are found:
CSV/TSV from the header or `input.names`, JSON lines from the first lines of the
data, Parquet from its schema.
"""

from __future__ import annotations

import glob
import json
import re
from typing import TYPE_CHECKING

from recbatch.config import InputConfig
from recbatch.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SOURCE_FILE = "source_file"
# Columns the prepare stage adds beside the input's own (source file, quarantine reason,
# duplicate count); an input column of the same name would be ambiguous.
RESERVED_COLUMNS = (SOURCE_FILE, "reason", "copies")
JSON_SAMPLE_LINES = 1000
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def mapped_columns(cfg: InputConfig) -> dict[str, str]:
    """Config key -> input column name, for the columns recbatch uses."""
    keys = {
        "input.user_col": cfg.user_col,
        "input.item_col": cfg.item_col,
        "input.rating_col": cfg.rating_col,
        "input.timestamp_col": cfg.timestamp_col,
        "input.event_col": cfg.event_col,
    }
    return {key: col for key, col in keys.items() if col is not None}


def _check_path(cfg: InputConfig) -> None:
    path = cfg.path
    if _SCHEME.match(path) and not path.startswith("file://"):
        return  # a remote filesystem: Spark reports it, translated in _read
    local = path.removeprefix("file://")
    if not glob.glob(local):
        raise DataError(
            f"input.path {path!r} does not exist (set input.path to a file, a folder of part files "
            "or a glob, e.g. --set input.path=data/demo/events.csv; `recbatch synth` writes a demo log)"
        )


def _check_columns(cfg: InputConfig, columns: list[str]) -> None:
    for key, col in mapped_columns(cfg).items():
        if col not in columns:
            hint = ""
            if len(columns) == 1 and cfg.format in ("csv", "tsv"):
                hint = f"; only one column was found, so check input.format/input.delimiter ({cfg.format!r})"
            raise DataError(
                f"{key} = {col!r} is not a column of {cfg.path}; its columns are: "
                f"{', '.join(columns) or '(none)'} (set {key} to one of them){hint}"
            )


def _csv_names(spark: SparkSession, cfg: InputConfig) -> list[str]:
    if cfg.names:
        return list(cfg.names)
    # Only the header line is read: without inferSchema Spark stops at the first record.
    return (
        spark.read.option("header", True)
        .option("sep", cfg.effective_delimiter())
        .option("inferSchema", False)
        .csv(cfg.path)
        .columns
    )


def _json_names(spark: SparkSession, cfg: InputConfig) -> list[str]:
    names: list[str] = []
    for row in spark.read.text(cfg.path).limit(JSON_SAMPLE_LINES).collect():
        try:
            record = json.loads(row[0])
        except ValueError:
            continue  # malformed lines are caught row by row later
        if isinstance(record, dict):
            names.extend(k for k in record if k not in names)
    return names


def _read(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    def strings(names: list[str]) -> StructType:
        return StructType([StructField(n, StringType(), True) for n in names])

    if cfg.format in ("csv", "tsv"):
        names = _csv_names(spark, cfg)
        _check_columns(cfg, names)
        df = (
            spark.read.schema(strings(names))
            .option("header", cfg.header)
            .option("sep", cfg.effective_delimiter())
            .option("mode", "PERMISSIVE")
            .csv(cfg.path)
        )
    elif cfg.format == "jsonl":
        names = _json_names(spark, cfg)
        _check_columns(cfg, names)
        df = spark.read.schema(strings(names)).option("mode", "PERMISSIVE").json(cfg.path)
    else:
        df = spark.read.parquet(cfg.path)
        names = df.columns
        _check_columns(cfg, names)
    clash = [n for n in names if n in RESERVED_COLUMNS]
    if clash:
        raise DataError(
            f"{cfg.path} has column(s) {', '.join(clash)}, which recbatch adds itself "
            "(rename them in the input, e.g. with input.names for CSV/TSV)"
        )
    return df.select(
        *[F.col(n).cast("string").alias(n) for n in names],
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def read_raw(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    """Read the raw log at `cfg.path` as all-string columns plus `source_file`.

    Raises DataError when the path does not exist or holds no data files, or when a
    column named in the config is not in the data (naming the columns that are).
    """
    from pyspark.errors import AnalysisException

    _check_path(cfg)
    try:
        return _read(spark, cfg)
    except AnalysisException as exc:
        cond = exc.getCondition() or ""
        if cond == "PATH_NOT_FOUND":
            raise DataError(f"input.path {cfg.path!r} does not exist (set input.path to the log)") from None
        if cond.startswith("UNABLE_TO_INFER_SCHEMA"):
            raise DataError(
                f"input.path {cfg.path!r} holds no readable {cfg.format} data "
                "(check input.path and input.format)"
            ) from None
        raise
