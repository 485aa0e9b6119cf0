"""Run identity, dates, manifests and the per-workdir lock that makes cron runs safe.

A run id is derived from the date, the effective config and the input files, so a rerun
of the same date on the same inputs produces the same id and byte-identical tables.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recbatch.config import Config
from recbatch.errors import ConfigError, LockHeldError


def parse_date(value: str | None) -> str:
    """Validate a `--date` value (YYYY-MM-DD); default: today in UTC."""
    if value is None:
        return dt.datetime.now(dt.UTC).date().isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date: use YYYY-MM-DD, e.g. --date 2026-01-31") from None


def input_fingerprint(path: str) -> str:
    """Hash of the input files' names, sizes and modification times (cheap; no data read)."""
    root = Path(path)
    files = (
        sorted(p for p in root.rglob("*") if p.is_file())
        if root.is_dir()
        else sorted(root.parent.glob(root.name))
    )
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def make_run_id(config: Config, date: str) -> str:
    """Deterministic run id: the same date, config and input files give the same id."""
    digest = hashlib.sha256(f"{date}|{config.fingerprint()}|{input_fingerprint(config.input.path)}".encode())
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


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def workdir_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock for the work directory for the duration of a run.

    The lock is an OS file lock, so it is released even when the process is killed; the
    file records who holds it, for the error message of the run that finds it taken.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown holder"
            raise LockHeldError(
                f"another recbatch run holds {lock_file} ({holder}); wait for it to finish, "
                "or remove nothing: the lock frees itself when that process exits"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid={os.getpid()} host={socket.gethostname()} {what} since={time.strftime('%FT%TZ', time.gmtime())}"
        )
        handle.flush()
        yield
    finally:
        handle.close()
