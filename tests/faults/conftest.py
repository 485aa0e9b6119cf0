"""Shared set-up of the fault suite: one trained work directory, copied per fault, and a polling reader."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

DATE = "2026-01-02"
NEXT = "2026-01-03"
TABLE = "recommendations"


def write_config(tmp: Path, work: Path) -> Path:
    """A tiny synthetic setup (quick stages), with the workdir `work`."""
    path = tmp / f"{work.name}.toml"
    path.write_text(
        f"""
[spark]
master = "local[2]"
shuffle_partitions = 2

[paths]
workdir = "{work}"

[synth]
users = 200
items = 80
events = 5000
clusters = 4
seed = 5
out = "{tmp / "events.csv"}"

[input]
path = "{tmp / "events.csv"}"

[train]
epochs = 2
embedding_dim = 8
batch_size = 1024

[evaluate]
baselines = ["popularity"]
report = false

[score]
k = 5
"""
    )
    return path


def recbatch(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m recbatch ARGS` in a new process group (so kill -9 takes its JVM and workers too)."""
    full_env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "recbatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=REPO,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def kill_group(process: subprocess.Popen) -> None:
    """kill -9 the process and everything it started (the JVM, Python workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def wait_for(process: subprocess.Popen, marker: str, timeout: float = 600) -> str:
    """Read the process's output until a line contains `marker`; the output so far."""
    seen = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before {marker!r}:\n{''.join(seen)[-3000:]}")
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not seen within {timeout}s")


def one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("recbatch: error:")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A work directory after one successful run of DATE (what every fault starts from)."""
    tmp = tmp_path_factory.mktemp("faults")
    config = write_config(tmp, tmp / "base")
    code, out = finish(recbatch("synth", "--config", str(config)))
    assert code == 0, out
    code, out = finish(recbatch("run", "--config", str(config), "--date", DATE))
    assert code == 0, out[-3000:]
    return tmp


@pytest.fixture
def workdir(trained, tmp_path) -> tuple[Path, Path]:
    """(config, workdir): a private copy of the trained work directory."""
    work = tmp_path / "work"
    shutil.copytree(trained / "base", work, symlinks=True)
    return write_config(trained, work), work


def read_current(work: Path, date: str = DATE) -> dict:
    """Read the current version as a reader would (commit log, then the files its manifest lists)."""
    import pyarrow.parquet as pq

    from recbatch.io.versions import MANIFEST, resolve
    from recbatch.storage import location

    folder = resolve(location(work / "published"), TABLE, date)
    manifest = json.loads((folder / MANIFEST).read_text())
    rows, run_ids = 0, set()
    for part in manifest["files"]:
        table = pq.read_table(str(folder / part["path"]), columns=["run_id"])
        rows += table.num_rows
        run_ids |= set(table.column("run_id").to_pylist())
    return {"version": manifest["version"], "rows": rows, "expected": manifest["rows"], "run_ids": run_ids}


class Reader(threading.Thread):
    """Polls the current version during a fault; records every read that was partial or mixed."""

    def __init__(self, work: Path, date: str = DATE) -> None:
        super().__init__(daemon=True)
        self.work, self.date = work, date
        self.reads, self.bad = 0, []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                seen = read_current(self.work, self.date)
            except FileNotFoundError as exc:  # a pruned version between resolve and read: retried
                self.bad.append(f"vanished: {exc}")
                continue
            self.reads += 1
            if seen["rows"] != seen["expected"] or len(seen["run_ids"]) != 1:
                self.bad.append(str(seen))
            time.sleep(0.05)


@pytest.fixture
def reader(workdir) -> Iterator[Reader]:
    poller = Reader(workdir[1])
    poller.start()
    yield poller
    poller.stopped.set()
    poller.join(timeout=10)
    assert poller.reads > 0 and poller.bad == [], poller.bad[:3]


def debris(work: Path) -> list[str]:
    """Version folders no commit names, lock claims and temporary files left anywhere."""
    from recbatch.io import versions
    from recbatch.storage import location

    table = location(work / "published" / TABLE)
    left = []
    for folder in (table / versions.VERSIONS).glob("dt=*"):
        named = {c["version"] for c in versions.commits(table, folder.name[3:])}
        left += [f"{folder.name}/{v.name}" for v in folder.iterdir() if v.name not in named]
    left += [p.name for p in (work / "locks" / "run").glob("*")] if (work / "locks" / "run").exists() else []
    left += [str(p) for p in work.rglob(".*.tmp-*")]
    return left
