"""Local file helpers every layer shares: atomic writes, content hashes, Parquet listing and row counts.

Atomic means a temporary name beside the target, then rename(2) over it, so a reader sees
the old file or the new one, never half of one. Parquet listing follows Spark's and
pyarrow's convention: names starting with "_" or "." (_SUCCESS, .crc side files) are not data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, payload: dict[str, Any], *, sort_keys: bool = True, default: Any = str) -> None:
    """Write indented JSON atomically, so a reader never sees half a file.

    Keys are sorted unless `sort_keys` is False (a report whose key order is its layout);
    `default` converts what json cannot (str for dates and paths, float for numpy scalars).
    """
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=default)
    write_text_atomic(path, text + "\n")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_content_sha256(path: str | Path) -> str:
    """Hex sha256 of a Parquet file's data: every byte before its footer (all pages, no metadata).

    Spark's Parquet writer keeps each column chunk's encodings in a hash set and writes
    them into the footer in an order that changes from one JVM to the next, so the whole
    files of identical data differ between processes; their pages do not. ValueError
    when the file does not end like a Parquet file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
        footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 else -1
        if tail[4:] != b"PAR1" or footer < 0 or footer + 12 > size:
            raise ValueError(f"{path} does not end with a Parquet footer")
        handle.seek(0)
        digest = hashlib.sha256()
        left = size - 8 - footer
        while left > 0:
            chunk = handle.read(min(1 << 20, left))
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _is_data(name: str) -> bool:
    return not name.startswith(("_", "."))


def parquet_files(path: str | Path) -> list[str]:
    """The data files of a Parquet file or dataset folder (recursively), sorted by path.

    A plain file is its own single data file; a missing path raises FileNotFoundError.
    """
    path = str(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no Parquet file or folder at {path}")
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if _is_data(d))
        found += [os.path.join(folder, name) for name in files if _is_data(name)]
    return sorted(found)


def count_rows(path: str | Path) -> int:
    """Rows of a Parquet file or dataset folder, from the file footers (no data is read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(file).metadata.num_rows for file in parquet_files(path))
