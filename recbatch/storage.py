"""The one seam for files: a `Location` is a local path or a storage URI, the same on driver and workers.

    /data/recbatch            a plain local path (POSIX: symlink views and pid checks are allowed)
    file:///data/recbatch     the local disk through the portable protocol (no symlinks, no fcntl)
    hdfs://nn:8020/recbatch   HDFS          s3a://bucket/x, s3://bucket/x   S3
    gs://bucket/x             GCS           abfs://container@account.dfs.core.windows.net/x   Azure

Spark is handed `str(location)` (its own Hadoop filesystems read every scheme above); Python
code on the driver and in Spark's Python workers goes through pyarrow.fs, which speaks local,
HDFS, S3, GCS and Azure natively. A Location is a small frozen value: it pickles into worker
closures and builds its filesystem lazily there.

Atomic writes: object stores make a new object visible whole when its upload completes, so
they are written in place; elsewhere a temporary name beside the target is moved over it
(rename is atomic on local disks and HDFS). Nothing here needs symlinks, rename of folders
or file locks, so the same publish and lock protocols hold on every scheme.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.core.files import sha256_stream

if TYPE_CHECKING:
    import pyarrow.fs as pafs

OBJECT_STORES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "wasb", "wasbs"})
KNOWN_SCHEMES = OBJECT_STORES | {"file", "hdfs", "viewfs"}
# Hadoop's names for the same stores, as pyarrow spells them.
_PYARROW_SCHEME = {"s3a": "s3", "s3n": "s3", "gcs": "gs", "wasb": "abfs", "wasbs": "abfs"}


def _split_scheme(uri: str) -> tuple[str, str]:
    if "://" not in uri:
        return "", uri
    scheme, rest = uri.split("://", 1)
    return scheme.lower(), rest


def location(value: str | os.PathLike[str] | Location, base: str | Path | None = None) -> Location:
    """The Location of a path or URI; relative local paths are made absolute against `base` (default: cwd).

    ValueError for an unknown scheme, and for a URI that lost a slash (`hdfs:/nn/x`, what
    pathlib makes of `hdfs://nn/x`), so a mistyped workdir never becomes a local folder.
    """
    if isinstance(value, Location):
        return value
    text = os.fspath(value)
    if not text.strip():
        raise ValueError("an empty path names no location")
    scheme, rest = _split_scheme(text)
    if scheme:
        if scheme not in KNOWN_SCHEMES:
            raise ValueError(
                f"unknown storage scheme {scheme!r} in {text!r}; use one of {sorted(KNOWN_SCHEMES)}"
            )
        if scheme == "file":
            rest = "/" + rest.lstrip("/")
            return Location("file://" + posixpath.normpath(rest))
        return Location(f"{scheme}://{rest.rstrip('/')}")
    head = text.split("/", 1)[0]
    if head.endswith(":") and head[:-1].lower() in KNOWN_SCHEMES:
        raise ValueError(f"{text!r} looks like a URI missing a slash: write {head}//{text.split('/', 1)[1]}")
    return Location(os.path.abspath(os.path.join(os.fspath(base) if base else os.getcwd(), text)))


@functools.lru_cache(maxsize=32)
def _filesystem(root: str) -> pafs.FileSystem:
    """One pyarrow filesystem per scheme and authority (per process; workers build their own)."""
    import pyarrow.fs as pafs

    scheme, _ = _split_scheme(root)
    if scheme in ("", "file"):
        return pafs.LocalFileSystem()
    fs, _ = pafs.FileSystem.from_uri(_PYARROW_SCHEME.get(scheme, scheme) + root[len(scheme) :])
    return fs


@dataclass(frozen=True, order=True)
class Location:
    """A file or folder on some storage: its URI (or absolute local path) and the operations on it."""

    uri: str

    # --- naming -------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:
        # Lets local code (open, os.*, pyarrow) keep working on local locations, and makes
        # any such call on a remote one fail at once instead of touching a local folder.
        if not self.is_local:
            raise TypeError(f"{self.uri} is not on the local disk; use recbatch.storage to reach it")
        return str(self.local_path)

    def __truediv__(self, part: str) -> Location:
        return Location(f"{self.uri}/{part.strip('/')}")

    @property
    def scheme(self) -> str:
        """The URI scheme, '' for a plain local path."""
        return _split_scheme(self.uri)[0]

    @property
    def is_local(self) -> bool:
        """On this machine's disk (a plain path or file://)."""
        return self.scheme in ("", "file")

    @property
    def is_posix(self) -> bool:
        """A plain local path: POSIX conveniences (symlink views, process checks) may be used."""
        return self.scheme == ""

    @property
    def is_object_store(self) -> bool:
        return self.scheme in OBJECT_STORES

    @property
    def local_path(self) -> Path:
        """The local path of a local location; ValueError for a remote one."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local disk")
        return Path(_split_scheme(self.uri)[1] if self.scheme else self.uri)

    @property
    def name(self) -> str:
        return posixpath.basename(self._path)

    @property
    def parent(self) -> Location:
        head, _ = self.uri.rsplit("/", 1)
        return Location(head or "/")

    def with_name(self, name: str) -> Location:
        return self.parent / name

    # --- the filesystem -----------------------------------------------------------------
    @property
    def _path(self) -> str:
        """This location's path inside its filesystem (pyarrow's spelling)."""
        scheme, rest = _split_scheme(self.uri)
        if scheme in ("", "file"):
            return rest if scheme else self.uri
        if scheme in ("hdfs", "viewfs"):
            return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return rest  # bucket/key for object stores

    @property
    def _root(self) -> str:
        scheme, rest = _split_scheme(self.uri)
        return f"{scheme}://{rest.split('/', 1)[0]}" if scheme and scheme != "file" else scheme

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem this location lives on (pass `fs_path` with it)."""
        return _filesystem(self._root)

    @property
    def fs_path(self) -> str:
        """The path to hand to `filesystem` (and to pyarrow readers with filesystem=...)."""
        return self._path

    def _info(self) -> Any:
        return self.filesystem.get_file_info(self._path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def size(self) -> int:
        """Bytes of a file; FileNotFoundError when absent."""
        info = self._info()
        if info.size is None:
            raise FileNotFoundError(f"no file at {self.uri}")
        return int(info.size)

    def iterdir(self) -> list[Location]:
        """The entries directly inside this folder, sorted by name (none when it does not exist)."""
        import pyarrow.fs as pafs

        if not self.is_dir():
            return []
        found = self.filesystem.get_file_info(pafs.FileSelector(self._path, allow_not_found=True))
        return sorted(self / posixpath.basename(info.path) for info in found)

    def glob(self, pattern: str) -> list[Location]:
        """Entries matching `pattern`, one fnmatch pattern per '/'-separated level, sorted."""
        matches = [self]
        for part in pattern.split("/"):
            matches = [child for m in matches for child in m.iterdir() if fnmatchcase(child.name, part)]
        return sorted(matches)

    def walk_files(self) -> Iterator[Location]:
        """Every file under this folder, recursively, sorted by path."""
        import pyarrow.fs as pafs

        if self.is_file():
            yield self
            return
        if not self.is_dir():
            return
        selector = pafs.FileSelector(self._path, recursive=True, allow_not_found=True)
        base = self._path.rstrip("/")
        for info in sorted(self.filesystem.get_file_info(selector), key=lambda i: i.path):
            if info.type == pafs.FileType.File:
                yield self / info.path[len(base) :].lstrip("/")

    # --- reading ------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        try:
            with self.filesystem.open_input_stream(self._path) as handle:
                return bytes(handle.read())
        except (FileNotFoundError, OSError) as exc:
            if not self.exists():
                raise FileNotFoundError(f"no file at {self.uri}") from None
            raise OSError(f"cannot read {self.uri}: {exc}") from exc

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open_input(self) -> Any:
        """A seekable binary handle (pyarrow NativeFile) for reading; close it (or use `with`)."""
        return self.filesystem.open_input_file(self._path)

    # --- writing ------------------------------------------------------------------------
    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create this folder and its parents (a no-op where folders are only key prefixes).

        Always recursive and never an error when it exists (the arguments match pathlib's
        spelling so code written for paths reads the same).
        """
        if not self.is_object_store:
            self.filesystem.create_dir(self._path, recursive=True)

    @contextlib.contextmanager
    def atomic_output(self) -> Iterator[Any]:
        """A binary output stream whose content appears at this location whole when the block ends.

        On failure inside the block nothing appears (and the old content, if any, stays).
        """
        fs = self.filesystem
        if self.is_object_store:
            # An object appears whole when its upload completes; pyarrow offers no way to
            # abandon an upload from Python (closing completes it), so the bytes are held
            # until the block succeeds and then put in one go.
            buffer = io.BytesIO()
            yield buffer
            with fs.open_output_stream(self._path) as stream:
                stream.write(buffer.getbuffer())
            return
        self.parent.mkdir()
        tmp = self.with_name(f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with fs.open_output_stream(tmp._path) as stream:
                yield stream
            fs.move(tmp._path, self._path)
        except BaseException:
            tmp.delete()
            raise

    def write_bytes(self, data: bytes) -> None:
        """Write `data` so a reader sees the old content or the new, never part of it."""
        with self.atomic_output() as stream:
            stream.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def create_new(self, data: bytes) -> bool:
        """Write `data` only if nothing is at this location yet; False when something is.

        Best effort on stores without a conditional put: the check and the write are two
        calls, so protocols that need exclusion (the workdir lock) confirm by listing.
        """
        if self.exists():
            return False
        self.write_bytes(data)
        return True

    def delete(self) -> None:
        """Remove this file or folder (recursively); nothing happens when it is absent."""
        import pyarrow.fs as pafs

        fs = self.filesystem
        kind = self._info().type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(self._path)
        elif kind != pafs.FileType.NotFound:
            fs.delete_file(self._path)

    def unlink(self, missing_ok: bool = False) -> None:
        """Remove this file (pathlib's spelling); FileNotFoundError when absent unless `missing_ok`."""
        if not missing_ok and not self.exists():
            raise FileNotFoundError(f"no file at {self.uri}")
        self.delete()

    def move_to(self, target: Location) -> None:
        """Move a file or folder to `target` on the same storage (a copy and delete on object stores)."""
        self.filesystem.move(self._path, target._path)


def pyarrow_source(target: Location | str | os.PathLike[str]) -> tuple[str, pafs.FileSystem]:
    """(path, filesystem) for pyarrow: `path, fs = pyarrow_source(loc); pq.read_table(path, filesystem=fs)`."""
    loc = location(target)
    return loc.fs_path, loc.filesystem


def write_json(
    target: Location | str | os.PathLike[str],
    payload: dict[str, Any],
    *,
    sort_keys: bool = True,
    default: Any = str,
) -> None:
    """Write indented JSON atomically, so a reader never sees half a file.

    Keys are sorted unless `sort_keys` is False (a report whose key order is its layout);
    `default` converts what json cannot (str for dates and paths, float for numpy scalars).
    """
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=default)
    location(target).write_text(text + "\n")


def _is_data(name: str) -> bool:
    return not name.startswith(("_", "."))


def parquet_files(target: Location | str | os.PathLike[str]) -> list[Location]:
    """The data files of a Parquet file or dataset folder (recursively), sorted by path.

    Spark's and pyarrow's convention: names starting with "_" or "." (_SUCCESS, .crc side
    files, hidden folders) are not data. A plain file is its own single data file; a
    missing path raises FileNotFoundError.
    """
    loc = location(target)
    if loc.is_file():
        return [loc]
    if not loc.is_dir():
        raise FileNotFoundError(f"no Parquet file or folder at {loc}")
    base = len(loc.uri) + 1
    return [f for f in loc.walk_files() if all(_is_data(part) for part in f.uri[base:].split("/"))]


def count_rows(target: Location | str | os.PathLike[str]) -> int:
    """Rows of a Parquet file or dataset folder, from the file footers (no data is read)."""
    import pyarrow.parquet as pq

    total = 0
    for file in parquet_files(target):
        with file.open_input() as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def sha256(target: Location | str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    with location(target).open_input() as handle:
        return sha256_stream(handle)
