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
from recbatch.io.input_files import input_files, is_local, local_path
from recbatch.io.lines import BLOCK, LINE, LINE_NO, RAW, REASON, csv_fields, json_fields

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SOURCE_FILE = "source_file"
# Columns the prepare stage adds beside the input's own (source file, quarantine reason,
# duplicate count); an input column of the same name would be ambiguous.
RESERVED_COLUMNS = (SOURCE_FILE, "reason", "copies", "raw", "stage", "line_no", "block_start")
JSON_SAMPLE_LINES = 1000


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


def check_input_path(cfg: InputConfig) -> None:
    """DataError unless a local input.path names at least one data file (no Spark needed).

    Called before the session starts, so a typo costs a second, not a JVM start-up.
    Remote filesystems are left to Spark, whose errors `read_input` translates.
    """
    path = cfg.path
    if not is_local(path):
        return
    if not glob.glob(local_path(path)):
        raise DataError(
            f"input.path {path!r} does not exist (set input.path to a file, a folder of part files "
            "or a glob, e.g. --set input.path=data/demo/events.csv; `recbatch synth` writes a demo log)"
        )
    if not input_files(path):
        raise DataError(
            f"no data files under input.path {path!r} (only folders, or _/. files such as _SUCCESS): "
            "point it at the files of the log, or check that the job that writes them has run"
        )


def _check_columns(cfg: InputConfig, columns: list[str]) -> None:
    clash = [n for n in columns if n in RESERVED_COLUMNS]
    if clash:
        raise DataError(
            f"{cfg.path} has column(s) {', '.join(clash)}, which recbatch adds itself "
            "(rename them in the input, e.g. with input.names for CSV/TSV)"
        )
    for key, col in mapped_columns(cfg).items():
        if col not in columns:
            hint = ""
            if len(columns) == 1 and cfg.format in ("csv", "tsv"):
                hint = f"; only one column was found, so check input.format/input.delimiter ({cfg.format!r})"
            raise DataError(
                f"{key} = {col!r} is not a column of {cfg.path}; its columns are: "
                f"{', '.join(columns) or '(none)'} (set {key} to one of them){hint}"
            )


CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
SNIFF_LINES = 20
SNIFF_BYTES = 1 << 16


def _local(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path) if uri.startswith("file:") else uri


def _split_line(line: str, delimiter: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=delimiter), [])


def _first_lines(spark: SparkSession, path: str, n: int) -> list[str]:
    """The first `n` lines of one file (Python for local files, Spark otherwise)."""
    if is_local(path):
        with open(_local(path), "rb") as handle:
            head = handle.read(SNIFF_BYTES).decode("utf-8", errors="replace")
        lines = head.splitlines()
        return [ln.lstrip("\ufeff") if i == 0 else ln for i, ln in enumerate(lines[:n])]
    rows = spark.read.text(path).limit(n).collect()
    return [r[0].lstrip("\ufeff") if i == 0 else r[0] for i, r in enumerate(rows)]


def _check_delimiter(file: str, lines: list[str], delimiter: str, expected: int) -> None:
    """Fail fast when a whole file is clearly split by another delimiter than the configured one."""
    sample = [ln for ln in lines if ln.strip()]
    if expected < 2 or not sample or any(len(_split_line(ln, delimiter)) > 1 for ln in sample):
        return
    for other in CANDIDATE_DELIMITERS:
        if other != delimiter and all(len(_split_line(ln, other)) == expected for ln in sample):
            raise DataError(
                f"{file}: no line of its first {len(sample)} holds the delimiter {delimiter!r}, but every one "
                f"splits into {expected} fields on {other!r} (set input.delimiter = {other!r}, or fix the file)"
            )


def list_files(spark: SparkSession, cfg: InputConfig) -> list[str]:
    """Every data file under input.path, empty ones included, sorted."""
    # inputFiles() writes local URIs as file:///x, the _metadata column as file:/x: use the latter.
    return sorted(re.sub(r"^file://(?=/)", "file:", f) for f in spark.read.text(cfg.path).inputFiles())


def _csv_header(spark: SparkSession, cfg: InputConfig, files: list[str]) -> tuple[list[str], str | None]:
    """(column names, header text or None) for CSV/TSV, checking each file's delimiter on the way."""
    delimiter = cfg.effective_delimiter()
    if len(delimiter) != 1:
        raise DataError(f"input.delimiter = {delimiter!r}: CSV/TSV delimiters must be one character")
    header_text = None
    names = list(cfg.names) if cfg.names else None
    for file in files:
        lines = _first_lines(spark, file, SNIFF_LINES)
        if not lines:
            continue
        if cfg.header and header_text is None:
            header_text = lines[0]
            names = names or [n.strip() for n in _split_line(header_text, delimiter)]
        if names:
            _check_delimiter(file, lines, delimiter, len(names))
    return names or [], header_text


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


def _check_parquet(files: list[str]) -> None:
    """Name the first local Parquet file that is empty or truncated (Spark would fail without a name)."""
    import pyarrow.parquet as pq

    for file in files:
        if not is_local(file):
            continue
        local = _local(file)
        try:
            pq.read_metadata(local)
        except Exception as exc:  # pyarrow raises several types for broken footers
            raise DataError(
                f"input file {local} is not a readable Parquet file ({exc}); it may be empty or truncated — "
                "remove or rewrite it (corrupt files are never skipped silently)"
            ) from None


def _lines(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    from pyspark.sql import functions as F

    return spark.read.text(cfg.path).select(
        F.col("value").alias(LINE),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.col("_metadata.file_block_start").alias(BLOCK),
        F.monotonically_increasing_id().alias(LINE_NO),
    )


def _read(
    spark: SparkSession, cfg: InputConfig, max_line_bytes: int
) -> tuple[DataFrame, list[str], str | None]:
    from pyspark.sql import functions as F

    files = list_files(spark, cfg)
    header = None
    if cfg.format in ("csv", "tsv"):
        names, header = _csv_header(spark, cfg, files)
        _check_columns(cfg, names)
        df = csv_fields(_lines(spark, cfg), names, cfg.effective_delimiter(), header, max_line_bytes)
    elif cfg.format == "jsonl":
        names = _json_names(spark, cfg)
        _check_columns(cfg, names)
        df = json_fields(_lines(spark, cfg), names, list(mapped_columns(cfg).values()), max_line_bytes)
    else:
        _check_parquet(files)
        raw = spark.read.parquet(cfg.path)
        names = raw.columns
        _check_columns(cfg, names)
        df = raw.select(
            *[F.col(n).cast("string").alias(n) for n in names],
            F.col("_metadata.file_path").alias(SOURCE_FILE),
            F.lit(0).cast("long").alias(BLOCK),
            F.monotonically_increasing_id().alias(LINE_NO),
            F.to_json(F.struct(*[F.col(n) for n in names])).alias(RAW),
            F.lit(None).cast("string").alias(REASON),
        )
    cols = [*names, SOURCE_FILE, BLOCK, LINE_NO, RAW, REASON]
    return df.select(*[F.col(c) for c in cols]), files, header


def read_raw(spark: SparkSession, cfg: InputConfig, max_line_bytes: int = 1 << 20) -> DataFrame:
    """Read the raw log at `cfg.path`: the input's columns as strings, then `source_file`,
    `block_start`, `line_no`, `raw` (the line or record as read) and `reason` (a read-level
    quarantine reason, null when the line split into fields cleanly; "header" for header lines).

    Raises DataError when the path does not exist or holds no data files, a column named in
    the config is not in the data (naming the columns that are), a whole file uses another
    delimiter, or a Parquet file is unreadable (naming it).
    """
    return read_input(spark, cfg, max_line_bytes)[0]


def read_input(
    spark: SparkSession, cfg: InputConfig, max_line_bytes: int = 1 << 20
) -> tuple[DataFrame, list[str], str | None]:
    """`read_raw`'s frame, every input file (empty ones too) and the header line (CSV/TSV with header)."""
    from pyspark.errors import AnalysisException

    check_input_path(cfg)
    try:
        return _read(spark, cfg, max_line_bytes)
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
