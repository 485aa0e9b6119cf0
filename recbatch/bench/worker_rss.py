"""Peak resident memory of this SparkSession's Python workers, sampled from /proc (Linux).

Spark's Python workers are forked by `pyspark.daemon`, a child of the session's JVM. A
background thread walks the JVM's descendants every 50 ms while a window is open and keeps
the largest VmHWM (the kernel's own high-water mark) of any worker seen. Elsewhere than
Linux, or when the JVM was not launched by this process, the peak reads 0.
"""

from __future__ import annotations

import threading
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _hwm_bytes(pid: int) -> int:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"pyspark" not in cmd:
            return 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class WorkerRss:
    """Samples the peak RSS of the Python workers of `spark` between start_window and stop_window."""

    def __init__(self, spark, interval: float = 0.05) -> None:
        proc = getattr(spark.sparkContext._gateway, "proc", None)
        self.jvm_pid = proc.pid if proc is not None else None
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        """Take one sample now; returns the peak so far."""
        if self.jvm_pid is not None and Path("/proc").is_dir():
            for pid in _descendants(self.jvm_pid):
                self.peak = max(self.peak, _hwm_bytes(pid))
        return self.peak

    def start_window(self) -> None:
        """Start sampling in the background."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop_window(self) -> int:
        """Stop sampling; returns the largest worker high-water mark seen (bytes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.sample()
