"""The work directory's lock, on the work directory's own storage: local disk, HDFS or an object store.

A contender writes its own claim file into `<workdir>/locks/run/`, then lists the folder: if
any other live claim is there it withdraws (exit 5), otherwise it holds the lock. With
read-after-write consistent listings (local disks, HDFS, S3, GCS and Azure all give them)
two contenders cannot both see only themselves: whichever lists second sees the first.
Both may withdraw when they write at the same instant; neither ever proceeds alongside
the other. Nothing here needs fcntl, symlinks or an atomic rename.

A holder rewrites its claim (a heartbeat) while it runs. A claim is dead, and is removed
by the next contender with a warning, when its heartbeat is older than the stale limit, or
at once when it was written on this host by a process that no longer exists (a kill -9
frees the lock for the next cron run on the same machine, as an OS file lock would).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from recbatch.errors import LockHeldError
from recbatch.storage import Location, location

log = logging.getLogger(__name__)

DEFAULT_STALE_SECONDS = 30 * 60


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (so a reused pid is not mistaken for the holder); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "unknown"
    return "unknown"


def _claim(what: str, started: float) -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "process_start": _process_start(pid),
        "what": what,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "heartbeat": time.time(),
    }


def _describe(claim: dict[str, Any]) -> str:
    return (
        f"pid={claim.get('pid')} host={claim.get('host')} {claim.get('what', '')} since={claim.get('since')}"
    )


def _read_claim(path: Location) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None  # withdrawn or finished meanwhile
    except (OSError, ValueError):
        # Unreadable: count it as live (named after its write time in ns) until it is stale.
        written = int(path.name.split("-", 1)[0]) / 1e9 if path.name.split("-", 1)[0].isdigit() else 0.0
        return {"heartbeat": written, "what": "unreadable claim"}


def _dead_reason(claim: dict[str, Any], stale_after: float, now: float) -> str | None:
    age = now - float(claim.get("heartbeat", 0.0))
    if age > stale_after:
        return f"no heartbeat for {age:.0f}s (stale after {stale_after:.0f}s)"
    if claim.get("host") == socket.gethostname() and isinstance(claim.get("pid"), int):
        start = _process_start(claim["pid"])
        if start is None or start not in ("unknown", claim.get("process_start")):
            return "its process on this host has exited"
    return None


def live_claims(
    lock_dir: Location, stale_after: float, *, remove_dead: bool
) -> dict[Location, dict[str, Any]]:
    """The live claims in `lock_dir`; dead ones are removed (and logged) when `remove_dead`."""
    now = time.time()
    live = {}
    for path in lock_dir.iterdir():
        if not path.name.endswith(".json") or path.name.startswith("."):
            continue
        claim = _read_claim(path)
        if claim is None:
            continue
        reason = _dead_reason(claim, stale_after, now)
        if reason is None:
            live[path] = claim
        elif remove_dead:
            log.warning("lock: taking over from %s: %s", _describe(claim), reason)
            path.delete()
    return live


class _Heartbeat(threading.Thread):
    """Rewrites the claim every `interval` seconds until stopped."""

    def __init__(self, path: Location, claim: dict[str, Any], interval: float) -> None:
        super().__init__(name="recbatch-lock-heartbeat", daemon=True)
        self.path, self.claim, self.interval = path, claim, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.claim["heartbeat"] = time.time()
            try:
                if not self.path.exists():
                    log.error("lock: %s was removed by another run that took the lock over", self.path)
                    return
                self.path.write_text(json.dumps(self.claim))
            except OSError as exc:  # storage hiccup: the next beat retries; staleness is minutes away
                log.warning("lock: heartbeat to %s failed: %s", self.path, exc)


@contextlib.contextmanager
def workdir_lock(
    lock_dir: Location | str, what: str, stale_after: float = DEFAULT_STALE_SECONDS
) -> Iterator[None]:
    """Hold the work directory's lock for the duration of the block; LockHeldError when another run has it."""
    lock_dir = location(lock_dir)
    lock_dir.mkdir()
    started = time.time()
    live_claims(lock_dir, stale_after, remove_dead=True)
    claim = _claim(what, started)
    mine = lock_dir / f"{time.time_ns():020d}-{claim['host']}-{claim['pid']}-{uuid.uuid4().hex[:8]}.json"
    mine.write_text(json.dumps(claim))
    others = {p: c for p, c in live_claims(lock_dir, stale_after, remove_dead=False).items() if p != mine}
    if others:
        mine.delete()
        holder = "; ".join(_describe(c) for c in others.values())
        raise LockHeldError(
            f"another recbatch run holds the lock in {lock_dir} ({holder}); wait for it to finish "
            f"(a dead holder's lock is taken over after {stale_after:.0f}s without a heartbeat)"
        )
    beat = _Heartbeat(mine, claim, interval=max(0.5, min(30.0, stale_after / 10)))
    beat.start()
    try:
        yield
    finally:
        beat.stopped.set()
        beat.join(timeout=5)
        mine.delete()
