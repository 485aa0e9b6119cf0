"""Content hashes of byte streams and local files (storage-aware listing and writes: recbatch.storage)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO


def sha256_stream(handle: BinaryIO) -> str:
    """Hex sha256 of everything left in a binary handle, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file's bytes."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def parquet_content_sha256_stream(handle: BinaryIO, size: int, name: str = "file") -> str:
    """Hex sha256 of a Parquet file's data: every byte before its footer (all pages, no metadata).

    Spark's Parquet writer keeps each column chunk's encodings in a hash set and writes
    them into the footer in an order that changes from one JVM to the next, so the whole
    files of identical data differ between processes; their pages do not. `handle` must be
    seekable; ValueError when it does not end like a Parquet file.
    """
    handle.seek(max(0, size - 8))
    tail = handle.read(8)
    footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 else -1
    if tail[4:] != b"PAR1" or footer < 0 or footer + 12 > size:
        raise ValueError(f"{name} does not end with a Parquet footer")
    handle.seek(0)
    digest = hashlib.sha256()
    left = size - 8 - footer
    while left > 0:
        chunk = handle.read(min(1 << 20, left))
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def parquet_content_sha256(path: str | Path) -> str:
    """parquet_content_sha256_stream of a local file."""
    with open(path, "rb") as handle:
        return parquet_content_sha256_stream(handle, os.path.getsize(path), str(path))
