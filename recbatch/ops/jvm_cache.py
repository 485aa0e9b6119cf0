"""The JVM class-data archive embedded sessions start from (JDK CDS), one per Java and Spark.

Loading and verifying Spark's classes is most of an embedded session's start-up. A dynamic
class-data archive, written by a JVM at exit (`-XX:ArchiveClassesAtExit`) after a small
representative run, lets the next JVMs map those classes instead (measured: a session starts
in 4 s instead of 7, and the first jobs run faster too). `recbatch jvm-cache` builds it.

The archive only ever appears whole: it is written under a temporary name, read back by a
JVM, then renamed into place, since a JVM that maps a truncated archive crashes. An archive
the JVM cannot use (another classpath, rebuilt jars) is skipped by the JVM itself, quietly;
its name carries the Java and Spark it was built for, so an upgrade starts without one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Set by the builder for its workload process: that session writes the archive at exit.
DUMP_ENV = "RECBATCH_JVM_ARCHIVE_OUT"
CACHE_ENV = "RECBATCH_CACHE_DIR"
# The workload: a whole `recbatch run` on a small log loads what every stage loads.
_WORKLOAD = """
[spark]
shuffle_partitions = 2
class_cache = false
[paths]
workdir = "{work}/work"
[synth]
users = 300
items = 80
events = 6000
seed = 5
out = "{work}/events.csv"
[input]
path = "{work}/events.csv"
[train]
model = "mf"
embedding_dim = 8
epochs = 1
[evaluate]
baselines = ["popularity"]
[score]
k = 5
"""


def cache_dir() -> Path:
    """$RECBATCH_CACHE_DIR, else $XDG_CACHE_HOME/recbatch, else ~/.cache/recbatch."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recbatch"


def java_binary() -> str | None:
    """The java Spark's launcher runs: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return os.path.realpath(found) if found and os.path.exists(found) else None


def _spark_home() -> Path | None:
    spec = importlib.util.find_spec("pyspark")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def launcher_classpath(extra_class_path: str | None = None) -> list[str]:
    """The entries Spark's launcher puts on the driver's classpath beside its jars, in its order.

    `spark.driver.extraClassPath`, the conf dir ($SPARK_CONF_DIR, else $SPARK_HOME/conf), then
    $HADOOP_CONF_DIR, $YARN_CONF_DIR and $SPARK_DIST_CLASSPATH: a JVM only maps an archive
    built on the same classpath, so each of these is part of the archive's identity.
    """
    home = _spark_home()
    spark = os.environ.get("SPARK_HOME") or (str(home) if home else "")
    conf_dir = os.environ.get("SPARK_CONF_DIR") or os.path.join(spark, "conf")
    entries = [extra_class_path or "", conf_dir]
    entries += [
        os.environ.get(name, "") for name in ("HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_DIST_CLASSPATH")
    ]
    return [entry for value in entries for entry in value.split(os.pathsep) if entry]


def _entry_state(entry: str) -> str:
    """What the JVM checks of a classpath entry: a jar's size and time, a folder's emptiness."""
    if entry.endswith("*"):
        return ",".join(sorted(p.name for p in Path(entry[:-1] or ".").glob("*.jar")))
    if os.path.isdir(entry):
        return "folder with files" if any(os.scandir(entry)) else "empty folder"
    if os.path.isfile(entry):
        stat = os.stat(entry)
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    return "absent"


def unarchivable_folder(extra_class_path: str | None = None) -> str | None:
    """A folder on the launcher's classpath that holds files, else None.

    The JVM neither writes nor maps a class archive with such a folder on its classpath
    (a spark-defaults.conf in the conf dir, a Hadoop conf dir with its XML files).
    """
    for entry in launcher_classpath(extra_class_path):
        if _entry_state(entry) == "folder with files":
            return entry
    return None


def archive_path(extra_class_path: str | None = None) -> Path | None:
    """Where the archive for this Java, this Spark and this classpath lives (None without Java or
    pyspark). `extra_class_path` is the session's `spark.driver.extraClassPath`."""
    java, spark = java_binary(), _spark_home()
    if java is None or spark is None:
        return None
    stat = os.stat(java)
    parts = [java, str(stat.st_size), str(stat.st_mtime_ns)]
    # The JVM refuses an archive when a jar's path, size or time differs from the build's: a
    # reinstalled pyspark (new times) or another venv (other paths) must not find this one.
    parts += [f"{jar}={_entry_state(str(jar))}" for jar in sorted((spark / "jars").glob("*.jar"))]
    parts += [f"{entry}={_entry_state(entry)}" for entry in launcher_classpath(extra_class_path)]
    key = hashlib.sha256("\n".join(parts).encode())
    return cache_dir() / "jvm" / f"spark-classes-{key.hexdigest()[:16]}.jsa"


def usable_archive(extra_class_path: str | None = None) -> str | None:
    """The archive's path when one has been built for this Java, Spark and classpath, else None."""
    if unarchivable_folder(extra_class_path) is not None:
        return None
    path = archive_path(extra_class_path)
    return str(path) if path is not None and path.is_file() else None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def install_archive(written: Path, jvm_pid: int, timeout_s: float = 300.0) -> Path:
    """Move the archive a workload JVM (pid `jvm_pid`) writes at exit into place; returns its path.

    Waits for that JVM to finish writing, has a fresh JVM map it (a broken archive crashes it,
    so it is never installed), then renames it over any older one. RuntimeError on failure.
    """
    target, java = archive_path(), java_binary()
    if target is None or java is None:
        raise RuntimeError("no java or pyspark found: set JAVA_HOME (Java 17+) and install pyspark")
    if not _wait_gone(jvm_pid, timeout_s):
        raise RuntimeError(f"the workload's JVM (pid {jvm_pid}) did not exit within {timeout_s:.0f} s")
    if not written.is_file() or written.stat().st_size == 0:
        raise RuntimeError(f"the workload's JVM wrote no class archive at {written}")
    # A JVM that crashes on a broken archive writes its hs_err report beside the archive, not
    # into the caller's working directory.
    crash_log = written.parent / "hs_err_check_%p.log"
    check = subprocess.run(
        [
            java,
            f"-XX:SharedArchiveFile={written}",
            "-Xshare:auto",
            "-Xlog:disable",
            f"-XX:ErrorFile={crash_log}",
            "-version",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=written.parent,
    )
    if check.returncode != 0:
        raise RuntimeError(f"the class archive at {written} is unreadable (java exit {check.returncode})")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.move(str(written), staged)
    os.replace(staged, target)
    return target


def build_archive(timeout_s: float = 900.0) -> tuple[Path, float]:
    """Run the workload in a fresh process whose JVM writes the archive at exit, then install it.

    Returns (the archive's path, seconds taken). RuntimeError names the step that failed.
    """
    folder = unarchivable_folder()
    if folder is not None:
        raise RuntimeError(
            f"{folder} is on Spark's classpath and holds files, and the JVM archives no classes "
            "with such a folder on its classpath: embedded sessions start without an archive "
            "(point SPARK_CONF_DIR/HADOOP_CONF_DIR elsewhere to use one)"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="recbatch-jvm-cache-") as tmp:
        work = Path(tmp)
        config = work / "workload.toml"
        config.write_text(_WORKLOAD.format(work=work))
        written = work / "classes.jsa"
        env = {**os.environ, DUMP_ENV: str(written)}
        for command in (["synth"], ["run", "--date", "2026-01-02"]):
            done = subprocess.run(
                [sys.executable, "-m", "recbatch", *command, "--config", str(config)],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout_s,
                check=False,
            )
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip()[-1500:]
                raise RuntimeError(f"the class-archive workload `recbatch {command[0]}` failed: {tail}")
        pid = int((work / "classes.jsa.pid").read_text())
        path = install_archive(written, pid)
    return path, time.monotonic() - started


def remove_archives() -> list[Path]:
    """Delete every archive in the cache (all Java and Spark versions); returns what was removed."""
    removed = sorted((cache_dir() / "jvm").glob("spark-classes-*.jsa"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
