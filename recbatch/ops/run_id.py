"""Run identity: the `--date` contract, the input fingerprint, the run id, and the versions in manifests.

A run id is derived from the date, the effective config and the input files, so a rerun
of the same date on the same inputs produces the same id and the same tables, while a
changed input file (name, size or modification time) gives a new id.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import platform
import re
from typing import TYPE_CHECKING

from recbatch.config import Config
from recbatch.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
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


def _hidden(relative: str) -> bool:
    # Spark's file index skips every path component starting with "_" or "." (_SUCCESS, .crc).
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _local_files(pattern: str) -> list[tuple[str, int, int]]:
    """(path, bytes, mtime ns) of the files a local path or glob names, folders walked recursively."""
    found = set()
    for match in glob.glob(pattern):
        if os.path.isfile(match):
            found.add(match)
            continue
        for folder, _, files in os.walk(match):
            for name in files:
                path = os.path.join(folder, name)
                if not _hidden(os.path.relpath(path, match).replace(os.sep, "/")):
                    found.add(path)
    out = []
    for path in sorted(found):
        stat = os.stat(path)
        out.append((path, stat.st_size, stat.st_mtime_ns))
    return out


def _hadoop_files(spark: SparkSession, pattern: str) -> list[tuple[str, int, int]]:
    """(path, bytes, mtime ns) of the files Spark's Hadoop FileSystem resolves for a path or glob."""
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(pattern)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = []
    for status in fs.globStatus(root) or []:
        if not status.isDirectory():
            out.append((str(status.getPath()), status.getLen(), status.getModificationTime() * 1_000_000))
            continue
        base = str(status.getPath())
        listing = fs.listFiles(status.getPath(), True)
        while listing.hasNext():
            file = listing.next()
            path = str(file.getPath())
            if not _hidden(path[len(base) :]):
                out.append((path, file.getLen(), file.getModificationTime() * 1_000_000))
    return sorted(out)


def input_files(path: str, spark: SparkSession | None = None) -> list[tuple[str, int, int]]:
    """The input's data files as (path, bytes, mtime ns), resolved as Spark resolves input.path.

    Local paths (and file:) are globbed and walked here, with nanosecond modification times;
    any other scheme (hdfs://, s3a://, ...) goes through Spark's Hadoop FileSystem, which
    needs `spark`.
    """
    if not _SCHEME.match(path) or path.startswith("file:"):
        local = re.sub(r"^file:(//)?", "", path) if path.startswith("file:") else path
        return _local_files(local)
    if spark is None:
        raise ValueError(f"listing {path!r} needs a SparkSession (its filesystem is Hadoop's)")
    return _hadoop_files(spark, path)


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
