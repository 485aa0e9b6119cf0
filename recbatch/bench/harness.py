"""The scaffolding every benchmark shares: sizes and specs, timed runs, the Spark session,
process-tree memory from /proc, and writing results.json + report.md.

Timing: one warm-up, then `runs` timed runs; figures are medians. Memory is sampled in a
background thread: the resident set of a process tree (a child command and everything it
started) or the VmHWM high-water mark of this session's Python workers (forked by
`pyspark.daemon`, a child of the session's JVM). Elsewhere than Linux, or when the JVM was
not launched by this process, memory reads 0.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbatch import storage
from recbatch.errors import ConfigError

# Named sizes of the scoring benchmarks (bench score, bench network): (users, items).
SIZES = {"tiny": (2_000, 500), "quick": (20_000, 5_000), "full": (100_000, 20_000)}
MIB = 1 << 20


def size_of(size: str) -> tuple[int, int]:
    """(users, items) of a named size; a ConfigError (exit 2) names the sizes there are."""
    if size not in SIZES:
        raise ConfigError(f"--size {size!r} is not a benchmark size; choose one of {', '.join(SIZES)}")
    return SIZES[size]


@dataclass
class ScoringSpec:
    """What both scoring benchmarks measure on: the factors' shape, K, seen items, runs, seed."""

    users: int
    items: int
    dim: int = 32
    k: int = 10
    seen_per_user: int = 20
    runs: int = 3
    seed: int = 0


def synthetic_events(
    events: int, folder: Path, users: int, items: int, files: int, seed: int, reuse: bool = True
) -> tuple[Path, dict[str, Any]]:
    """`events` synthetic events as CSV under `folder/events` and the generator's summary; files
    a run of the same size made there are reused (same generator, seed and size: same bytes)."""
    from recbatch.config import SynthConfig
    from recbatch.synth import generate

    data, summary = folder / "events", folder / "synth.json"
    if reuse and summary.is_file() and json.loads(summary.read_text())["events"] == events:
        return data, json.loads(summary.read_text())
    synth = SynthConfig(
        users=max(100, users),
        items=max(50, items),
        events=events,
        files=files,
        end_date="2026-01-01",
        seed=seed,
        out=str(data),
    )
    written = generate(synth, data)
    summary.write_text(json.dumps(written), encoding="utf-8")
    return data, written


def write_bench_config(folder: Path, data: Path, cores: int, sections: str = "") -> Path:
    """`folder/bench.toml`: the work directory `folder/work`, the CSV input `data`, Spark on
    local[cores], then `sections` (more TOML); returns its path."""
    config = folder / "bench.toml"
    config.write_text(
        f'[paths]\nworkdir = "{folder / "work"}"\n\n[input]\npath = "{data}"\nformat = "csv"\n\n'
        f'[spark]\nmaster = "local[{cores}]"\n{sections}',
        encoding="utf-8",
    )
    return config


def timed(action: Callable[[], Any], runs: int, warm_up: bool = True) -> list[float]:
    """Wall seconds of `runs` calls of `action`, after one untimed warm-up call unless `warm_up` is False."""
    if warm_up:
        action()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def median(seconds: list[float]) -> float:
    """The figure every benchmark reports of its timed runs."""
    return statistics.median(seconds)


def bench_session(app_name: str):
    """A local[*] session for the benchmarks: every core, 4g driver, two shuffle partitions per core."""
    from recbatch.config import SparkConfig
    from recbatch.session import build_session

    return build_session(
        SparkConfig(
            master="local[*]",
            app_name=app_name,
            driver_memory="4g",
            shuffle_partitions=2 * (os.cpu_count() or 1),
            log_level="ERROR",
        )
    )


def to_noop(df) -> None:
    """Compute every row of `df` into Spark's noop sink: the whole cost, nothing written."""
    df.write.format("noop").mode("overwrite").save()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text(errors="replace")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(root: int) -> list[int]:
    """The process ids below `root` (children, their children, ...), from /proc now."""
    tree, out, todo = _children(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_bytes(pid: int) -> int:
    """Resident bytes of one process now (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants now."""
    return sum(rss_bytes(pid) for pid in [root, *descendants(root)])


def _worker_hwm_bytes(pid: int) -> int:
    try:
        if b"pyspark" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakSampler:
    """Keeps the largest value `measure()` returns, sampled every `interval` s between start and stop."""

    def __init__(self, measure: Callable[[], int], interval: float) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Take one sample now; returns the peak so far."""
        self.peak = max(self.peak, self.measure())
        return self.peak

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Start sampling in the background."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop sampling; returns the peak seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak


class WorkerRss(PeakSampler):
    """Samples the peak RSS (VmHWM) of the Python workers of `spark` between start_window and stop_window."""

    def __init__(self, spark, interval: float = 0.05) -> None:
        proc = getattr(spark.sparkContext._gateway, "proc", None)
        self.jvm_pid = proc.pid if proc is not None else None
        super().__init__(self._largest_worker, interval)

    def _largest_worker(self) -> int:
        if self.jvm_pid is None or not Path("/proc").is_dir():
            return 0
        return max((_worker_hwm_bytes(pid) for pid in descendants(self.jvm_pid)), default=0)

    def start_window(self) -> None:
        """Start sampling in the background."""
        self.start()

    def stop_window(self) -> int:
        """Stop sampling; returns the largest worker high-water mark seen (bytes), one last sample included."""
        self.stop()
        return self.sample()


def measure_command(cmd: list[str], log: Path | None = None, interval: float = 0.2) -> dict[str, Any]:
    """Run `cmd`; return wall seconds, peak tree RSS (MiB), exit code and the output's tail
    (the whole output goes to `log` when given)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = PeakSampler(lambda: tree_rss(proc.pid), interval)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    peak = sampler.stop()
    text = output.decode(errors="replace")
    if log is not None:
        log.write_text(text, encoding="utf-8")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak / MIB, 1),
        "rc": proc.returncode,
        "tail": text[-3000:],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON in its own key order (the report's layout), numpy scalars as floats."""
    storage.write_json(path, data, sort_keys=False, default=float)


def save_results(folder: Path, results: dict[str, Any], summarise, format_report) -> str:
    """Add the load average and summary to `results`, write results.json and report.md; return the report."""
    results["load_average"] = os.getloadavg()
    results["summary"] = summarise(results)
    report = format_report(results)
    write_json(folder / "results.json", results)
    (folder / "report.md").write_text(report, encoding="utf-8")
    return report


def printed_report(folder: Path, results: dict[str, Any], summarise, format_report) -> str:
    """`save_results`, then the report as the command prints it: followed by where results.json went."""
    return save_results(folder, results, summarise, format_report) + f"results -> {folder / 'results.json'}\n"
