"""Run ids, dates and the work-directory lock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from recbatch.config import load_config
from recbatch.core.files import write_json
from recbatch.errors import ConfigError, LockHeldError
from recbatch.ops.lock import workdir_lock
from recbatch.ops.run_id import make_run_id, parse_date


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
    data.write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    assert make_run_id(cfg, "2026-01-01") != make_run_id(
        load_config(None, [f'input.path="{data}"']), "2026-01-02"
    )


def test_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    lock = tmp_path / "locks" / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from recbatch.ops.lock import workdir_lock\n"
            f"with workdir_lock(Path({str(lock)!r}), 'test holder'):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match="test holder"), workdir_lock(lock, "second"):
            pass
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with workdir_lock(lock, "third"):
        assert "third" in lock.read_text()


def test_write_json_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "m.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    write_json(target, {"b": 2})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]
