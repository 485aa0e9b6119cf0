"""Run identity: the `--date` contract, the input fingerprint, the run id, and the versions in manifests.

A run id is derived from the date, the effective config and the input files, so a rerun
of the same date on the same inputs produces the same id and the same tables, while a
changed input file (name, size or modification time) gives a new id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
from typing import TYPE_CHECKING

from recbatch.config import Config
from recbatch.errors import ConfigError
from recbatch.io.input_files import input_files

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(value: str | None) -> str:
    """Validate a `--date` value (YYYY-MM-DD exactly); default: today in UTC.

    Python's fromisoformat also takes 20260131 and week dates (2026-W05-6); a run id and
    a dt= folder must have one spelling per day, so only the documented form is accepted.
    """
    if value is None:
        return dt.datetime.now(dt.UTC).date().isoformat()
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date: use YYYY-MM-DD, e.g. --date 2026-01-31") from None


def input_fingerprint(path: str, spark: SparkSession | None = None) -> str:
    """Hash of the input files' names, sizes and modification times (cheap; no data read)."""
    digest = hashlib.sha256()
    for file, size, mtime_ns in input_files(path, spark):
        digest.update(f"{os.path.basename(file)}:{size}:{mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def make_run_id(config: Config, date: str, spark: SparkSession | None = None) -> str:
    """Deterministic run id: the same date, config and input files give the same id."""
    fingerprint = input_fingerprint(config.input.path, spark)
    digest = hashlib.sha256(f"{date}|{config.fingerprint()}|{fingerprint}".encode())
    return f"{date.replace('-', '')}-{digest.hexdigest()[:10]}"


def versions() -> dict[str, str]:
    """Versions of the pieces that shape results, for manifests."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("recbatch", "pyspark", "tensorflow", "keras", "numpy", "pandas", "pyarrow"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out
