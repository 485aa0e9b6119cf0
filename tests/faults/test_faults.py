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


def _rerun_cleans_up(config, work, date=DATE):
    code, out = finish(recbatch("score", "--config", str(config), "--date", date))
    assert code == 0, out[-3000:]
    assert debris(work) == []


@pytest.mark.parametrize("point", ["written", "before_commit"])
def test_kill_during_publish_keeps_the_previous_version(workdir, reader, point):
    """Killed while writing the new version, or with it complete but not yet committed."""
    config, work = workdir
    before = read_current(work)
    process = recbatch("score", "--config", str(config), "--date", DATE, env={"RECBATCH_PAUSE_AT": point})
    wait_for(process, f"paused at {point}")
    kill_group(process)
    assert read_current(work) == before
    _rerun_cleans_up(config, work)


def test_kill_right_after_the_commit_serves_the_new_version_whole(workdir, reader):
    config, work = workdir
    before = read_current(work)
    process = recbatch(
        "score", "--config", str(config), "--date", DATE, env={"RECBATCH_PAUSE_AT": "after_commit"}
    )
    wait_for(process, "paused at after_commit")
    kill_group(process)
    after = read_current(work)
    assert after["version"] != before["version"] and after["rows"] == after["expected"] == before["rows"]
    _rerun_cleans_up(config, work)


@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_kill_during_an_earlier_stage_leaves_the_table_and_the_lock_free(workdir, reader, stage):
    config, work = workdir
    before = read_current(work)
    process = recbatch("run", "--config", str(config), "--date", DATE, "--verbose")
    wait_for(process, f"stage {stage}: starting")
    time.sleep(2)
    kill_group(process)
    assert read_current(work) == before
    code, out = finish(recbatch("run", "--config", str(config), "--date", DATE))  # the lock is free at once
    assert code == 0, out[-3000:]
    assert debris(work) == []


def test_overlapping_commands_are_refused_while_a_run_holds_the_lock(workdir, reader):
    config, work = workdir
    holder = recbatch("score", "--config", str(config), "--date", DATE, env={"RECBATCH_PAUSE_AT": "written"})
    try:
        wait_for(holder, "paused at written")
        for command in (["run"], ["train"], ["score"], ["gc"]):
            started = time.monotonic()
            dated = [] if command == ["gc"] else ["--date", DATE]
            code, out = finish(recbatch(*command, "--config", str(config), *dated))
            assert code == 5, (command, out[-2000:])
            assert "another recbatch run holds the lock" in one_error_line(out)
            assert time.monotonic() - started < 60  # refused before any Spark work
    finally:
        kill_group(holder)
    _rerun_cleans_up(config, work)


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
    model.write_bytes(good)
    _rerun_cleans_up(config, work)


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


def test_reruns_in_new_processes_publish_the_same_content(workdir):
    config, work = workdir
    from recbatch.io.publish import published_manifest

    # The copy's config names another workdir, so its run id (a table column) differs from the
    # trained one's: publish twice from here and compare those two.
    code, out = finish(recbatch("score", "--config", str(config), "--date", DATE))
    assert code == 0, out[-3000:]
    first = published_manifest(work / "published", TABLE, DATE)
    code, out = finish(recbatch("score", "--config", str(config), "--date", DATE))
    assert code == 0, out[-3000:]
    second = published_manifest(work / "published", TABLE, DATE)
    assert second["version"] != first["version"] and second["content_sha256"] == first["content_sha256"]
    assert [f["content_sha256"] for f in second["files"]] == [f["content_sha256"] for f in first["files"]]
    assert os.path.exists(work / "published" / TABLE / f"dt={DATE}")
