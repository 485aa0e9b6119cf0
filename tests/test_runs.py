"""Run ids, input fingerprints, dates and the work-directory lock."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from recbatch.config import load_config
from recbatch.errors import ConfigError, LockHeldError
from recbatch.io.input_files import input_files
from recbatch.ops.lock import workdir_lock
from recbatch.ops.run_id import input_fingerprint, make_run_id, parse_date
from recbatch.storage import write_json
from tests.builders import lock_held_elsewhere


def test_parse_date_accepts_iso_and_rejects_the_rest():
    assert parse_date("2026-01-31") == "2026-01-31"
    assert len(parse_date(None)) == 10
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        parse_date("31/01/2026")


def test_run_id_is_deterministic_for_date_config_and_input(tmp_path):
    data = tmp_path / "events.csv"
    data.write_text("user_id,item_id\nu1,i1\n")
    cfg = load_config(None, [f'input.path="{data}"'])
    assert make_run_id(cfg, "2026-01-01") == make_run_id(cfg, "2026-01-01")
    assert make_run_id(cfg, "2026-01-01") != make_run_id(cfg, "2026-01-02")
    other = load_config(None, [f'input.path="{data}"', "train.epochs=1"])
    assert make_run_id(other, "2026-01-01") != make_run_id(cfg, "2026-01-01")
    before = make_run_id(cfg, "2026-01-01")
    data.write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    # Same date, same config: only the input changed.
    assert make_run_id(cfg, "2026-01-01") != before


def _touch(path, text: str, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fingerprint_sees_every_file_of_a_glob_spanning_folders(tmp_path):
    _touch(tmp_path / "2026-01-01" / "a.json", "{}\n", 1_000_000_000)
    _touch(tmp_path / "2026-01-02" / "b.json", "{}\n", 1_000_000_000)
    _touch(tmp_path / "2026-01-02" / "_SUCCESS", "", 1_000_000_000)
    pattern = str(tmp_path / "2026-01-*" / "*.json")
    assert [Path(f).name for f, _, _ in input_files(pattern)] == ["a.json", "b.json"]
    empty = hashlib.sha256().hexdigest()[:16]
    first = input_fingerprint(pattern)
    assert first != empty
    _touch(tmp_path / "2026-01-02" / "b.json", "{}\n{}\n", 1_000_000_000)  # size changes
    second = input_fingerprint(pattern)
    assert second != first
    _touch(tmp_path / "2026-01-02" / "b.json", "{}\n{}\n", 2_000_000_000)  # only mtime changes
    assert input_fingerprint(pattern) != second
    # A folder is walked; Spark's hidden files (_SUCCESS, .crc) are not data.
    assert [Path(f).name for f, _, _ in input_files(str(tmp_path / "2026-01-02"))] == ["b.json"]
    assert input_fingerprint(f"file://{pattern}") == input_fingerprint(pattern)


def test_remote_paths_need_spark_to_be_listed():
    with pytest.raises(ValueError, match="needs a SparkSession"):
        input_fingerprint("s3a://bucket/events/2026-01-*/*.json")


@pytest.mark.spark
def test_hadoop_listing_resolves_the_same_files_as_spark(spark, tmp_path):
    from recbatch.io.input_files import _hadoop_files

    _touch(tmp_path / "d1" / "a.csv", "u,i\n", 1_000_000_000)
    _touch(tmp_path / "d2" / "b.csv", "u,i\n", 1_000_000_000)
    _touch(tmp_path / "d2" / ".b.csv.crc", "x", 1_000_000_000)
    pattern = f"file://{tmp_path}/d*"
    listed = _hadoop_files(spark, pattern)
    spark_files = sorted(spark.read.text(pattern).inputFiles())
    assert [Path(f.split(":", 1)[1]).name for f, _, _ in listed] == ["a.csv", "b.csv"]
    assert len(listed) == len(spark_files) == 2
    assert [(size, mtime) for _, size, mtime in listed] == [(4, 1_000_000_000)] * 2


def test_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    lock = tmp_path / "locks" / "run"
    with (
        lock_held_elsewhere(lock, "test holder"),
        pytest.raises(LockHeldError, match="test holder"),
        workdir_lock(lock, "second"),
    ):
        pass
    time.sleep(0.1)
    with workdir_lock(lock, "third"):
        (claim,) = lock.glob("*.json")
        assert "third" in claim.read_text()
    assert not list(lock.glob("*.json"))


def test_write_json_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "m.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    write_json(target, {"b": 2})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]
