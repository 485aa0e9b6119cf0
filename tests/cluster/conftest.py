"""A Spark standalone cluster on 127.0.0.1 for the session: one master, two workers, shipped recbatch.

The daemons are pyspark's own (`pyspark/bin/spark-class ...Master` / `...Worker`), each worker
with one core, 1 GiB and its own work directory, so executors run in their own folders,
never in the driver's cwd. Executors get Python the documented way: the packed environment
(`--archives recbatch-env.tar.gz#env`, built as `make dist` builds it) and the package zip
(`--py-files`). Nothing of the test's own venv reaches them. If the cluster does not come
up, the tests fail with the daemons' log tails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recbatch.ops import ship
from tests.conftest import REPO

START_TIMEOUT_S = 120
WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_env(conf_dir: Path) -> dict[str, str]:
    """The environment of every cluster process and spark-submit: loopback only, no inherited Python."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_CONF_DIR=str(conf_dir),  # empty: no spark-defaults.conf of the machine's leaks in
        SPARK_DAEMON_MEMORY="256m",
        SPARK_NO_DAEMONIZE="1",
    )
    return env


@dataclass
class Shipped:
    """What `make dist` builds: the packed executor environment and the --py-files zip."""

    env_archive: Path
    zip: Path
    seconds: float


@dataclass
class Cluster:
    master_url: str
    ui_url: str
    root: Path
    env: dict[str, str]
    shipped: Shipped | None = None
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as reply:
                state = json.load(reply)
        except OSError:
            return 0
        return sum(w["state"] == "ALIVE" for w in state["workers"])

    def kill(self, name: str) -> list[int]:
        """kill -9 a daemon and everything it started (a worker's executor JVM and Python workers)."""
        pids = _descendants(self.daemons[name].pid)
        for pid in pids:
            _kill(pid)
        self.daemons[name].wait(timeout=30)
        return pids

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log")))


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_for(check: Callable[[], bool], timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f} s; daemon logs:\n{cluster.log_tail()}")


def _daemon(cluster: Cluster, name: str, main_class: str, *args: str, **env: str) -> None:
    log = (cluster.root / f"{name}.log").open("w")
    command = [str(spark_home() / "bin" / "spark-class"), main_class, "--host", "127.0.0.1", *args]
    cluster.daemons[name] = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**cluster.env, **env}, start_new_session=True
    )


def build_shipped(out: Path) -> Shipped:
    """The executor environment and zip, built by the same code as `make dist` (pip's cache reused)."""
    started = time.monotonic()
    wheel = ship.build_wheel(REPO, out)
    archive = ship.build_executor_env(wheel, out / ship.ENV_NAME)
    return Shipped(archive, ship.build_zip(out), time.monotonic() - started)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The master and two workers, started here and killed (-9, with their children) after the session."""
    root = tmp_path_factory.mktemp("standalone")
    (root / "conf").mkdir()
    port, ui = free_port(), free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", root, spark_env(root / "conf"))
    master = "org.apache.spark.deploy.master.Master"
    try:
        _daemon(cluster, "master", master, "--port", str(port), "--webui-port", str(ui))
        for i in range(WORKERS):
            work = root / f"worker-{i}"
            work.mkdir()
            _daemon(
                cluster,
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                *("--port", str(free_port()), "--webui-port", str(free_port())),
                *("--cores", "1", "--memory", "1g", "--work-dir", str(work), cluster.master_url),
                SPARK_WORKER_DIR=str(work),
            )
        # The JVMs start while the executor environment is built.
        cluster.shipped = build_shipped(root / "dist")
        wait_for(
            lambda: cluster.alive_workers() == WORKERS,
            START_TIMEOUT_S,
            "two workers did not register",
            cluster,
        )
        yield cluster
    finally:
        for name in list(cluster.daemons):
            for pid in _descendants(cluster.daemons[name].pid):
                _kill(pid)


def spark_submit(
    cluster: Cluster,
    job: str,
    *args: str,
    cwd: Path,
    python: str | None = None,
    conf: dict[str, str] | None = None,
    log: str | None = None,
) -> subprocess.Popen:
    """`spark-submit jobs/<job> ARGS` in client mode, shipped as the README says (or, given `python`,
    executors on that interpreter with nothing shipped). Output goes to cwd/<log or job>.log."""
    settings = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.memory": "768m",
        "spark.pyspark.driver.python": sys.executable,  # client mode: the driver is this machine's venv
        "spark.ui.port": str(free_port()),
        **(conf or {}),
    }
    command = [str(spark_home() / "bin" / "spark-submit"), "--master", cluster.master_url]
    if python is None:
        assert cluster.shipped is not None
        # The driver imports the checkout as it is now; a zip rebuilt here (0.1 s) keeps an edit
        # made since the session started from failing the pre-flight code check.
        ship.build_zip(cluster.shipped.zip.parent)
        settings["spark.pyspark.python"] = "./env/bin/python"
        command += [
            "--archives",
            f"{cluster.shipped.env_archive}#env",
            "--py-files",
            str(cluster.shipped.zip),
        ]
    else:
        settings["spark.pyspark.python"] = python
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(REPO / "jobs" / job), *args]
    out = (cwd / f"{log or Path(job).stem}.log").open("w")
    return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=cluster.env)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv of the base interpreter with nothing installed: no recbatch, numpy, pyarrow or pandas."""
    env = tmp_path_factory.mktemp("bare") / "env"
    subprocess.run([ship._base_python(), "-m", "venv", "--without-pip", str(env)], check=True)
    return str(env / "bin" / "python")
