"""Pre-flight: one tiny Spark job, before any stage, proves the executors can run recbatch's Python side.

Each task imports recbatch, numpy, pyarrow and pandas in an executor's Python worker,
reports their versions, its interpreter and its working directory, reads a probe file the
driver wrote under the work directory and writes, reads back and deletes one of its own
(through recbatch.storage, as scoring does). The driver compares what came back with its
own versions. Any gap is one line naming what is missing or different and the flags that
ship it, raised as PipelineError (exit 4) within seconds, instead of a Py4J traceback from
the score stage after training.

The probe function is defined inside a function, so cloudpickle ships it by value: an
executor without recbatch can still run it and say so, instead of failing to unpickle it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError
from recbatch.storage import location

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from recbatch.config import Config

log = logging.getLogger(__name__)

PACKAGES = ("recbatch", "numpy", "pyarrow", "pandas")
# Versions that must agree exactly; the others must agree on major.minor (a patch differs: warned).
EXACT = frozenset({"recbatch", "recbatch sources"})
SHIP = (
    "--archives dist/recbatch-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python "
    "--py-files dist/recbatch.zip (build them with `make dist`; README: Running on a cluster)"
)
_checked: set[tuple[str, str]] = set()


def wanted(mode: str, master: str) -> bool:
    """Whether the check runs: 'always', 'off', or 'auto' = any master but local[...]."""
    return mode == "always" or (mode == "auto" and not master.startswith("local"))


def run_preflight(spark: SparkSession, config: Config) -> list[dict[str, Any]]:
    """Check the executors once per application and work directory; returns their reports.

    PipelineError (exit 4) names what is missing or mismatched and how to ship it. Called
    at the top of `run` and of the score path; the second call in one run is free.
    """
    sc = spark.sparkContext
    key = (sc.applicationId, config.paths.workdir)
    if not wanted(config.spark.preflight, sc.master) or key in _checked:
        return []
    started = time.perf_counter()
    reports = probe_executors(spark, config.paths.workdir, config.spark.preflight_timeout_s)
    problems, warnings = compare(driver_versions(), reports, config.paths.workdir)
    for line in warnings:
        log.warning("pre-flight: %s", line)
    if problems:
        raise PipelineError("pre-flight: " + "; ".join(problems))
    _checked.add(key)
    log.info("pre-flight: %s in %.1fs", describe(reports), time.perf_counter() - started)
    return reports


def driver_versions() -> dict[str, str]:
    """The driver's Python and package versions, as the probe reports them."""
    import importlib
    import platform

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        out[name] = getattr(importlib.import_module(name), "__version__", "?")
    out["recbatch sources"] = source_digest()
    return out


def source_digest() -> str:
    """sha256 (16 hex) of recbatch's .py files, names and bytes, from a folder or a zip alike.

    The same version number can hide different code (a zip built before the last edit);
    the driver and each executor compute this over the copy they import.
    """
    import hashlib
    import os
    import zipfile

    import recbatch

    root = os.path.dirname(os.path.abspath(recbatch.__file__ or ""))
    files: dict[str, bytes] = {}
    if ".zip" + os.sep in root:  # imported from a --py-files zip: <zip>/recbatch
        archive, inner = root.split(".zip" + os.sep, 1)
        with zipfile.ZipFile(archive + ".zip") as zipped:
            for name in zipped.namelist():
                if name.startswith(inner + "/") and name.endswith(".py"):
                    files[name[len(inner) + 1 :]] = zipped.read(name)
    else:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as handle:
                        files[os.path.relpath(path, root).replace(os.sep, "/")] = handle.read()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def probe_executors(
    spark: SparkSession, workdir: str, timeout_s: float, packages: Iterable[str] = PACKAGES
) -> list[dict[str, Any]]:
    """Run the probe on every executor (one task each) and return their reports.

    PipelineError when the executors' Python cannot start or no executor answers in time.
    """
    sc = spark.sparkContext
    probe_dir = location(workdir) / "tmp" / f"preflight-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    try:
        (probe_dir / "driver").write_text(token)
    except OSError as exc:
        raise PipelineError(f"pre-flight: the driver cannot write under {workdir}: {exc}") from exc
    # getExecutorMemoryStatus lists the driver too; at least two tasks reach two executors.
    tasks = max(2, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)
    job = sc.parallelize(range(tasks), tasks).mapPartitionsWithIndex(
        _probe(str(probe_dir), token, tuple(packages))
    )
    try:
        return [json.loads(line) for line in _collect(sc, job, timeout_s)]
    finally:
        probe_dir.delete()


def _collect(sc: Any, job: Any, timeout_s: float) -> list[str]:
    """job.collect() under a job group, cancelled after `timeout_s`; worker crashes become one line."""
    from pyspark import InheritableThread

    group = f"recbatch-preflight-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def collect() -> None:
        sc.setJobGroup(group, "recbatch pre-flight: executors import recbatch and reach the workdir", True)
        try:
            outcome["rows"] = job.collect()
        except Exception as exc:
            outcome["error"] = exc

    thread = InheritableThread(target=collect, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        sc.cancelJobGroup(group)
        raise PipelineError(
            f"pre-flight: no executor ran the check within {timeout_s:.0f} s: the cluster gave this "
            "application no executors (check free cores and memory on the master's UI, --executor-memory, "
            "--total-executor-cores / --num-executors) or raise spark.preflight_timeout_s"
        )
    if "error" in outcome:
        raise PipelineError(f"pre-flight: {worker_failure(str(outcome['error']))}") from None
    return outcome["rows"]


def worker_failure(message: str) -> str:
    """One line for a Python worker that failed before the probe could report (from Spark's error text)."""
    import re

    if match := re.search(r"No module named '([\w.]+)'", message):
        return f"executors cannot import {match.group(1)} (ModuleNotFoundError in the Python worker): ship it with {SHIP}"
    if "PYTHON_VERSION_MISMATCH" in message or "different minor version" in message:
        found = re.search(
            r"Python in worker has different version:?\s*(\S+) than that in driver:?\s*(\S+)", message
        )
        versions = (
            f" ({found.group(1)} on executors, {found.group(2).rstrip(',.')} on the driver)" if found else ""
        )
        return f"the executors' Python differs from the driver's{versions}: ship the driver's with {SHIP}"
    if match := re.search(r"Cannot run program \"([^\"]+)\"", message):
        return (
            f"executors cannot start Python {match.group(1)!r} (not found in their working directory): "
            f"ship it with {SHIP}"
        )
    first = next((ln.strip() for ln in message.splitlines() if "Error" in ln or "Exception" in ln), message)
    return f"the executors' Python failed: {first[:300]}; ship recbatch and its dependencies with {SHIP}"


def compare(
    driver: dict[str, str], reports: list[dict[str, Any]], workdir: str
) -> tuple[list[str], list[str]]:
    """(problems, warnings) between the driver's versions and the executors' reports (pure)."""
    problems: list[str] = []
    warnings: list[str] = []
    missing = sorted({name for r in reports for name in r["missing"]})
    if missing:
        python = sorted({r["executable"] for r in reports})
        problems.append(
            f"executors cannot import {', '.join(missing)} (python {', '.join(python)}): ship them with {SHIP}"
        )
    for name in ("python", *PACKAGES, "recbatch sources"):
        seen = sorted({r["versions"][name] for r in reports if name in r["versions"]})
        ours = driver.get(name)
        if not seen or ours is None or seen == [ours]:
            continue
        line = f"{name} {', '.join(seen)} on executors, {ours} on the driver"
        if name == "recbatch sources":
            line = f"recbatch's code differs from the driver's ({line}; sha256 of its .py files)"
        if name in EXACT or any(_minor(v) != _minor(ours) for v in seen):
            problems.append(f"{line}: ship the driver's with {SHIP}")
        else:
            warnings.append(line)
    storage = sorted({r["storage"] for r in reports if r.get("storage") not in (None, "ok")})
    if storage and not missing:
        problems.append(
            f"executors cannot use the work directory {workdir} ({storage[0][:200]}): it must be storage "
            "every executor reaches (hdfs://, s3a://, gs://, abfs:// or a shared mount), not a driver-local folder"
        )
    return problems, warnings


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def describe(reports: list[dict[str, Any]]) -> str:
    """One line: how many executors answered, their interpreter and versions."""
    places = sorted({r["cwd"] for r in reports})
    python = sorted({r["executable"] for r in reports})
    versions = reports[0]["versions"] if reports else {}
    listed = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"{len(places)} executor(s) ok ({listed}; python {', '.join(python)}; "
        f"recbatch from {', '.join(sorted({r.get('recbatch_file', '?') for r in reports}))})"
    )


def _probe(probe_dir: str, token: str, packages: tuple[str, ...]) -> Any:
    """The task body, built here so it is shipped by value (see the module docstring)."""

    def probe(index: int, _rows: Iterable[int]) -> Iterator[str]:
        import importlib
        import json
        import os
        import platform
        import sys

        report: dict[str, Any] = {
            "task": index,
            "executable": sys.executable,
            "cwd": os.getcwd(),
            "versions": {"python": platform.python_version()},
            "missing": {},
            "storage": None,
        }
        for name in packages:
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # a broken install fails its import in other ways too
                report["missing"][name] = f"{type(exc).__name__}: {exc}"
                continue
            report["versions"][name] = getattr(module, "__version__", "?")
            if name == "recbatch":
                report["recbatch_file"] = os.path.dirname(module.__file__ or "?")
                report["versions"]["recbatch sources"] = _digest()
        if not report["missing"]:
            report["storage"] = _storage_check(probe_dir, token, index)
        yield json.dumps(report)

    def _digest() -> str:
        try:  # the executor's own copy of this module computes it over the copy it imports
            from recbatch.ops.preflight import source_digest

            return source_digest()
        except Exception as exc:
            return f"unknown ({type(exc).__name__})"

    def _storage_check(where: str, expected: str, index: int) -> str:
        import os

        try:
            from recbatch.storage import location

            here = location(where)
            if (here / "driver").read_text() != expected:
                return f"the driver's probe file under {where} has other content"
            mine = here / f"executor-{index}-{os.getpid()}"
            mine.write_text(expected)
            back = mine.read_text()
            mine.delete()
            return "ok" if back == expected else f"read back other content from {mine}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    return probe
