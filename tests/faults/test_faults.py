"""Faults a cron deployment meets, injected into real recbatch processes (kill -9, full disks, swapped files).

Each fault asserts: the exit code, a single error line, the previous table still current and readable,
no partial table seen by a reader polling meanwhile, and no debris after the next successful run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.faults.conftest import (
    DATE,
    NEXT,
    TABLE,
    debris,
    finish,
    kill_group,
    one_error_line,
    read_current,
    recbatch,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]


def _refused_while_held(config) -> None:
    """Every command that writes the work directory, started at once: each is refused before Spark."""
    started = time.monotonic()
    waiting = {
        command: recbatch(command, "--config", str(config), *([] if command == "gc" else ["--date", DATE]))
        for command in ("run", "train", "score", "gc")
    }
    for command, process in waiting.items():
        code, out = finish(process)
        assert code == 5, (command, out[-2000:])
        assert "another recbatch run holds the lock" in one_error_line(out)
    assert time.monotonic() - started < 60  # refused before any Spark work


def test_kills_at_every_point_of_publish_then_reruns_publish_the_same_content(workdir, reader):
    """One work directory through each publish fault in turn, every one a process of its own, with a
    reader polling throughout; the faults leave state for the next, as they would in cron.

    - paused at `written` (the new version's files complete, nothing committed), holding the lock:
      every other command is refused at once; then kill -9
    - kill -9 at `before_commit`: the previous version stays current
    - kill -9 at `after_commit`: the new version is current and whole
    - a rerun in a new process cleans up every debris and publishes the same content as the
      version the process killed after its commit left
    """
    from recbatch.io.publish import published_manifest

    config, work = workdir
    before = read_current(work)
    for point in ("written", "before_commit", "after_commit"):
        process = recbatch("score", "--config", str(config), "--date", DATE, env={"RECBATCH_PAUSE_AT": point})
        try:
            wait_for(process, f"paused at {point}")
            if point == "written":
                _refused_while_held(config)
        finally:
            kill_group(process)
        if point != "after_commit":
            assert read_current(work) == before, point
    after = read_current(work)
    assert after["version"] != before["version"] and after["rows"] == after["expected"] == before["rows"]
    # Published by this work directory's config, as the rerun's is: the same run id (a table
    # column), so the same content (the trained copy's config named another workdir).
    killed = published_manifest(work / "published", TABLE, DATE)

    code, out = finish(recbatch("score", "--config", str(config), "--date", DATE))
    assert code == 0, out[-3000:]
    assert debris(work) == []
    rerun = published_manifest(work / "published", TABLE, DATE)
    assert rerun["version"] != killed["version"] and rerun["content_sha256"] == killed["content_sha256"]
    assert [f["content_sha256"] for f in rerun["files"]] == [f["content_sha256"] for f in killed["files"]]
    assert os.path.exists(work / "published" / TABLE / f"dt={DATE}")


def test_kills_during_prepare_and_train_leave_the_table_and_the_lock_free(workdir, reader):
    config, work = workdir
    before = read_current(work)
    for stage in ("prepare", "train"):
        process = recbatch("run", "--config", str(config), "--date", DATE, "--verbose")
        try:
            wait_for(process, f"stage {stage}: starting")
            time.sleep(2)
        finally:
            kill_group(process)
        assert read_current(work) == before, stage
    code, out = finish(recbatch("run", "--config", str(config), "--date", DATE))  # the lock is free at once
    assert code == 0, out[-3000:]
    assert debris(work) == []


def test_a_full_disk_while_writing_fails_cleanly(workdir):
    config, work = workdir
    target = work / "published" / TABLE / ".versions" / f"dt={NEXT}"
    target.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): run as root to test"
        )
    try:
        before = read_current(work)
        # NEXT reuses DATE's model: only publishing writes to the full disk.
        shutil.copytree(work / "runs" / f"dt={DATE}", work / "runs" / f"dt={NEXT}")
        code, out = finish(
            recbatch("score", "--config", str(config), "--date", NEXT, "--set", "gate.enabled=false")
        )
        assert code == 4, out[-3000:]
        assert "no space left on device" in one_error_line(out)
        assert read_current(work) == before
        assert list(target.iterdir()) == []  # the half-written version was removed
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_swapped_model_file_is_refused_by_name(workdir, reader):
    config, work = workdir
    model = work / "runs" / f"dt={DATE}" / "model" / "model.keras"
    good = model.read_bytes()
    model.write_bytes(good[:-10] + b"0123456789")
    code, out = finish(recbatch("score", "--config", str(config), "--date", DATE))
    assert code == 4 and "model.keras does not match the sha256 train recorded" in one_error_line(out)
    assert debris(work) == []  # refused before anything was written or claimed


def test_a_truncated_factor_file_is_refused(workdir, reader):
    config, work = workdir
    factors = work / "runs" / f"dt={DATE}" / "model" / "user_factors.parquet"
    factors.write_bytes(factors.read_bytes()[:200])
    manifest = work / "runs" / f"dt={DATE}" / "model" / "manifest.json"
    data = json.loads(manifest.read_text())
    data.pop("files_sha256", None)  # past the checksum, the reader itself must refuse it
    manifest.write_text(json.dumps(data))
    code, out = finish(recbatch("score", "--config", str(config), "--date", DATE))
    assert code == 4 and "user_factors.parquet" in one_error_line(out)


def test_a_truncated_parquet_file_read_by_spark_names_the_file(workdir, reader):
    config, work = workdir
    folder = work / "runs" / f"dt={DATE}" / "prepared" / "interactions"
    part = sorted(p for p in folder.iterdir() if p.name.startswith("part-"))[0]
    part.write_bytes(part.read_bytes()[:100])
    # The Spark input path reads the seen pairs with Spark, whose failure must name the file.
    code, out = finish(
        recbatch("score", "--config", str(config), "--date", DATE, "--set", "score.user_input='spark'")
    )
    line = one_error_line(out)
    assert code == 4 and ("unreadable Parquet file" in line or part.name in line), line


def test_a_task_failing_once_is_retried_and_the_run_succeeds(workdir, reader):
    config, work = workdir
    code, out = finish(
        recbatch("score", "--config", str(config), "--date", DATE, env={"RECBATCH_FAIL_TASK_ONCE": "score"})
    )
    assert code == 0, out[-3000:]
    assert read_current(work)["rows"] > 0 and debris(work) == []
