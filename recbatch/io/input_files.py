"""The files an input path names, resolved the way Spark resolves `input.path`.

Local paths and file: URIs are globbed (across folders too) and walked here, with
nanosecond modification times; any other scheme (hdfs://, s3a://, gs://, abfs://) is
listed through Spark's Hadoop FileSystem. Names starting with "_" or "." below the
matched path (_SUCCESS, .crc) are not data, as in Spark's file index.
"""

from __future__ import annotations

import glob
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_local(path: str) -> bool:
    """True for plain paths and file: URIs (what Python can open directly)."""
    return not _SCHEME.match(path) or path.startswith("file:")


def local_path(path: str) -> str:
    """A plain path from a file: URI (file:///x, file:/x), or the path itself."""
    return re.sub(r"^file:(//)?", "", path) if path.startswith("file:") else path


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
    if is_local(path):
        return _local_files(local_path(path))
    if spark is None:
        raise ValueError(f"listing {path!r} needs a SparkSession (its filesystem is Hadoop's)")
    return _hadoop_files(spark, path)


def local_input_bytes(path: str) -> int | None:
    """The total size of a local input's data files; None for remote storage (listing it needs Spark)."""
    if not is_local(path):
        return None
    return sum(size for _, size, _ in _local_files(local_path(path)))
