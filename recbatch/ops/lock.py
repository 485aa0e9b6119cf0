"""The per-workdir lock that keeps two runs (cron overlaps, a manual rerun) off the same work directory."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recbatch.errors import LockHeldError


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
