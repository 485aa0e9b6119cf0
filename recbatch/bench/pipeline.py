"""`recbatch bench pipeline`: `recbatch run` end to end on synthetic events, stage by stage.

Each size's events (users = events/20, items = events/200: 20M events are 1M users x 100K
items) are generated once, then `recbatch run` with the shipped defaults runs as a child
process. Its output is read as it comes, so each stage's start is timed where it happens; a
sampler reads /proc every half second for the resident memory of the driver's Python, the
JVM and the Python workers (children of the JVM) apart. Per stage: wall seconds (the run
record's), and the peak of each process group while it ran; per run: the published rows.

The stated budget (--budget-s, 30 minutes by default) is shared between the stages as
BUDGET_SHARES says; a stage over twice its share of the budget at the largest size is
flagged, as issue 16 asks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from recbatch.bench.harness import (
    MIB,
    descendants,
    printed_report,
    rss_bytes,
    synthetic_events,
    write_bench_config,
)

RUN_DATE = "2026-01-02"
SAMPLE_SECONDS = 0.5
# The share of the whole run's budget each stage is given.
BUDGET_SHARES = {"prepare": 0.25, "train": 0.30, "evaluate": 0.15, "final_fit": 0.15, "score": 0.15}
ROLES = ("driver", "jvm", "workers")


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "driver"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "other"
    if command.split(b"\0", 1)[0].endswith(b"java"):
        return "jvm"
    return "workers" if b"pyspark" in command or b"python" in command else "other"


class RoleSampler:
    """Samples (time, RSS of the driver, of the JVM, of all Python workers) of a process tree."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = {role: 0 for role in ROLES}
            for pid in [self.root, *descendants(self.root)]:
                role = _role(pid, self.root)
                if role in now:
                    now[role] += rss_bytes(pid)
            self.samples.append((time.monotonic(), now))
            self._stop.wait(SAMPLE_SECONDS)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self, start: float, stop: float) -> dict[str, float]:
        """Each role's peak MiB between two monotonic times."""
        window = [s for t, s in self.samples if start <= t < stop] or [{r: 0 for r in ROLES}]
        return {f"{role}_mib": round(max(s[role] for s in window) / MIB, 1) for role in ROLES}


def _run(folder: Path, data: Path, cores: int) -> dict[str, Any]:
    """`recbatch run` on `data` as a child; stage times, per-stage peaks and the run record."""
    config, work = write_bench_config(folder, data, cores), folder / "work"
    command = [sys.executable, "-m", "recbatch", "run", "--config", str(config), "--date", RUN_DATE]
    log = folder / "run.log"
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = RoleSampler(process.pid)
    sampler.start()
    starts: list[tuple[str, float]] = []
    with log.open("w", encoding="utf-8") as out:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()  # the log is where a long run's progress shows
            if ": starting" in line and "stage " in line:
                starts.append((line.split("stage ", 1)[1].split(":", 1)[0], time.monotonic()))
    code = process.wait()
    ended = time.monotonic()
    sampler.stop()
    if code != 0:
        raise RuntimeError(f"recbatch run failed (exit {code}), see {log}")
    records = sorted((work / "runs" / "_records" / f"dt={RUN_DATE}").glob("*.json"))
    record = json.loads(records[-1].read_text())
    bounds = [*(t for _, t in starts[1:]), ended]
    stages = {
        name: {"seconds": record["seconds"].get(name), **sampler.peaks(start, stop)}
        for (name, start), stop in zip(starts, bounds, strict=True)
    }
    return {
        "wall_s": round(ended - started, 1),
        "stages": stages,
        "peak": sampler.peaks(started, ended + 1),
        "rows_read": record["rows_read"],
        "published_rows": record["rows"],
        "published_users": record["users"],
    }


def run_bench(sizes: list[int], workdir: Path, cores: int, budget_s: float, seed: int = 7) -> dict[str, Any]:
    """The pipeline at each size under `workdir/<events>`; the results dict."""
    results: dict[str, Any] = {"cores": cores, "budget_s": budget_s, "shares": BUDGET_SHARES, "sizes": []}
    for events in sizes:
        folder = workdir / str(events)
        folder.mkdir(parents=True, exist_ok=True)
        files = max(1, min(8, events // 1_000_000))
        data, _ = synthetic_events(events, folder, events // 20, events // 200, files, seed)
        results["sizes"].append({"events": events, **_run(folder, data, cores)})
    largest = max(results["sizes"], key=lambda s: s["events"])
    results["over_budget"] = [
        name
        for name, stage in largest["stages"].items()
        if name in BUDGET_SHARES and (stage["seconds"] or 0) > 2 * BUDGET_SHARES[name] * budget_s
    ]
    return results


def _summary(results: dict[str, Any]) -> list[str]:
    lines = [
        f"{s['events']:,} events: {s['wall_s']:.0f} s end to end, {s['published_rows']:,} rows published "
        f"for {s['published_users']:,} users; peak driver {s['peak']['driver_mib']:.0f} MiB, JVM "
        f"{s['peak']['jvm_mib']:.0f} MiB, workers {s['peak']['workers_mib']:.0f} MiB"
        for s in results["sizes"]
    ]
    budget = results["budget_s"]
    over = ", ".join(results["over_budget"]) or "none"
    lines.append(
        f"stages over twice their share of a {budget / 60:.0f}-minute budget at the largest size: {over}"
    )
    return lines


def format_report(results: dict[str, Any]) -> str:
    """The markdown table of results.json: a row per size and stage."""
    load = ", ".join(f"{x:.2f}" for x in results["load_average"])
    lines = [
        f"# bench pipeline ({results['cores']} cores, load {load})",
        "",
        "| events | stage | seconds | driver MiB | JVM MiB | workers MiB |",
        "|---|---|---|---|---|---|",
    ]
    for s in results["sizes"]:
        for name, stage in s["stages"].items():
            lines.append(
                f"| {s['events']:,} | {name} | {stage['seconds']} | {stage['driver_mib']:.0f} | "
                f"{stage['jvm_mib']:.0f} | {stage['workers_mib']:.0f} |"
            )
        lines.append(
            f"| {s['events']:,} | **whole run** | {s['wall_s']} | {s['peak']['driver_mib']:.0f} | "
            f"{s['peak']['jvm_mib']:.0f} | {s['peak']['workers_mib']:.0f} |"
        )
    lines += ["", *(f"- {line}" for line in results["summary"]), ""]
    return "\n".join(lines)


def bench_pipeline(sizes: list[int], workdir: Path, cores: int, budget_s: float) -> str:
    """Run the benchmark, write results.json and report.md under `workdir`; return the report."""
    workdir.mkdir(parents=True, exist_ok=True)
    return printed_report(workdir, run_bench(sizes, workdir, cores, budget_s), _summary, format_report)
