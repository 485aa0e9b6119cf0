"""The pre-flight check: its verdicts (pure), and its Spark job on the session's local executors.

The multi-node case (executors on a Python without recbatch, exit 4 in seconds) is in
tests/cluster/test_standalone.py; here the same job runs on local[2]'s Python workers.
"""

from __future__ import annotations

import time

import pytest

from recbatch.config import Config
from recbatch.errors import PipelineError
from recbatch.ops import preflight

DRIVER = {"python": "3.11.7", "recbatch": "0.1.0", "numpy": "2.4.6", "pyarrow": "26.0.1", "pandas": "2.3.3"}


def report(**changes) -> dict:
    base = {
        "task": 0,
        "executable": "./env/bin/python",
        "cwd": "/work/app-1/0",
        "versions": dict(DRIVER),
        "missing": {},
        "storage": "ok",
    }
    base.update(changes)
    return base


def test_the_check_runs_off_local_masters_unless_told_otherwise():
    assert preflight.wanted("auto", "spark://10.0.0.1:7077")
    assert preflight.wanted("auto", "yarn")
    assert not preflight.wanted("auto", "local[2]")
    assert preflight.wanted("always", "local[*]")
    assert not preflight.wanted("off", "yarn")


def test_matching_executors_pass_and_a_patch_difference_is_only_warned():
    assert preflight.compare(DRIVER, [report(), report(task=1)], "/w") == ([], [])
    patched = report(versions={**DRIVER, "numpy": "2.4.5"})
    problems, warnings = preflight.compare(DRIVER, [patched], "/w")
    assert problems == []
    assert warnings == ["numpy 2.4.5 on executors, 2.4.6 on the driver"]


def test_missing_packages_are_one_problem_naming_them_and_the_flags_that_ship_them():
    bare = report(executable="/usr/bin/python3", versions={"python": "3.11.2"}, storage=None)
    bare["missing"] = {"recbatch": "ModuleNotFoundError", "pyarrow": "ModuleNotFoundError"}
    problems, _ = preflight.compare(DRIVER, [bare], "/w")
    assert len(problems) == 1
    assert problems[0].startswith("executors cannot import pyarrow, recbatch (python /usr/bin/python3)")
    assert "--archives dist/recbatch-env.tar.gz#env" in problems[0]
    assert "--py-files dist/recbatch.zip" in problems[0]


def test_a_different_minor_or_recbatch_version_is_a_problem():
    older = report(versions={**DRIVER, "pyarrow": "25.0.0", "recbatch": "0.0.9"})
    problems, warnings = preflight.compare(DRIVER, [older], "/w")
    assert [p.split(":")[0] for p in problems] == [
        "recbatch 0.0.9 on executors, 0.1.0 on the driver",
        "pyarrow 25.0.0 on executors, 26.0.1 on the driver",
    ]
    assert warnings == []


def test_the_same_version_with_other_code_is_a_problem():
    driver = {**DRIVER, "recbatch sources": "aaaa"}
    stale = report(versions={**driver, "recbatch sources": "bbbb"})
    problems, _ = preflight.compare(driver, [report(versions=driver), stale], "/w")
    assert len(problems) == 1
    assert problems[0].startswith(
        "recbatch's code differs from the driver's (recbatch sources aaaa, bbbb on executors, aaaa on the driver"
    )
    assert "--py-files dist/recbatch.zip" in problems[0]


def test_the_source_digest_is_the_same_from_the_checkout_and_from_the_zip(tmp_path):
    import subprocess
    import sys

    from recbatch.ops.ship import build_zip

    zipped = build_zip(tmp_path)
    code = f"import sys; sys.path.insert(0, {str(zipped)!r}); from recbatch.ops import preflight as p; print(p.__file__, p.source_digest())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    where, digest = done.stdout.split()
    assert where.startswith(str(zipped))
    assert digest == preflight.source_digest()


def test_an_unreachable_workdir_is_a_problem_naming_it():
    lost = report(storage="FileNotFoundError: no file at /local/w/tmp/preflight-1/driver")
    problems, _ = preflight.compare(DRIVER, [report(), lost], "/local/w")
    assert len(problems) == 1
    assert problems[0].startswith("executors cannot use the work directory /local/w (FileNotFoundError")
    assert "not a driver-local folder" in problems[0]


def test_the_job_reports_every_worker_and_cleans_its_probe_files(spark, tmp_path):
    config = Config.model_validate({"paths": {"workdir": str(tmp_path)}, "spark": {"preflight": "always"}})
    reports = preflight.run_preflight(spark, config)
    assert len(reports) >= 2
    ours = preflight.driver_versions()
    assert all(r["versions"] == ours and r["storage"] == "ok" and not r["missing"] for r in reports)
    assert list((tmp_path / "tmp").iterdir()) == []  # the probe folder is removed
    # Once per application and work directory: the score path's call after run_all's is free.
    assert preflight.run_preflight(spark, config) == []


def test_a_package_missing_on_the_workers_is_reported_not_raised_there(spark, tmp_path):
    reports = preflight.probe_executors(spark, str(tmp_path), 60, ("recbatch", "no_such_package_xyz"))
    assert all("no_such_package_xyz" in r["missing"] for r in reports)
    problems, _ = preflight.compare(preflight.driver_versions(), reports, str(tmp_path))
    assert problems[0].startswith("executors cannot import no_such_package_xyz")


def test_a_python_worker_crash_becomes_one_line_not_a_py4j_traceback(spark):
    # A task function that cannot even be set up in the worker: the real Spark error text.
    crashing = spark.sparkContext.parallelize(range(2), 2).map(lambda _: __import__("no_such_module_xyz"))
    with pytest.raises(PipelineError) as caught:
        preflight._collect(spark.sparkContext, crashing, 60)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("pre-flight: executors cannot import no_such_module_xyz (ModuleNotFoundError")
    assert "--archives dist/recbatch-env.tar.gz#env" in message


def test_no_answer_within_the_timeout_cancels_the_job_and_says_why(spark):
    slow = spark.sparkContext.parallelize(range(2), 2).map(lambda x: __import__("time").sleep(60) or x)
    started = time.monotonic()
    with pytest.raises(PipelineError, match="no executor ran the check within 2 s"):
        preflight._collect(spark.sparkContext, slow, 2)
    assert time.monotonic() - started < 10
    # The cancelled job must not hold the session's cores: the next job runs at once.
    assert spark.sparkContext.parallelize(range(4), 2).sum() == 6


def test_worker_failure_names_a_python_that_cannot_start():
    text = 'java.io.IOException: Cannot run program "./env/bin/python": error=2, No such file or directory'
    line = preflight.worker_failure(text)
    assert line.startswith("executors cannot start Python './env/bin/python'")
    assert "--archives dist/recbatch-env.tar.gz#env" in line
