"""Catalog tables under faults: kill -9 mid-publish keeps the previous version registered and
readable, and a catalog table with another schema fails the run with exit 4 in one line.

The publishers here are processes of their own (recbatch's session factory and
publish_table, the embedded Derby metastore under <workdir>/catalog, as on a laptop or in
cron). Derby admits one JVM at a time, so they run one after another, and each is killed
with its whole process group: the Python driver and the JVM holding Derby, as a machine
loss would. RECBATCH_PAUSE_AT stops publish at a named point so the kill lands there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATE = "2026-01-02"
USERS, K = 30, 4
PROCESS = """
import json, sys
from recbatch.config import load_config
from recbatch.io.catalog import catalog_version
from recbatch.io.publish import publish_table
from recbatch.pipeline import layout_for
from recbatch.session import build_session, catalog_dir
config = load_config(sys.argv[1])
spark = build_session(config.spark, catalog_dir(config))
table, date, run_id, users, k = config.publish.catalog_table, sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def state():
    location = catalog_version(spark, table, date)
    query = f"SELECT run_id, count(*) FROM {table} WHERE dt = '{date}' GROUP BY run_id"
    return json.dumps({"location": location, "rows": dict(spark.sql(query).collect()) if location else {}})

print("BEFORE " + state(), flush=True)
rows = [(f"u{u}", f"i{r}", float(k - r), r, run_id) for u in range(users) for r in range(1, k + 1)]
df = spark.createDataFrame(rows, "user_id string, item_id string, score float, rank int, run_id string")
manifest = publish_table(df, config.publish, layout_for(config, date).published_root, date, run_id, k)
print("AFTER " + json.dumps({"path": manifest["path"], **json.loads(state())}), flush=True)
"""


def write_config(tmp: Path, catalog_table: str) -> Path:
    path = tmp / "catalog.toml"
    path.write_text(
        f"""
[spark]
master = "local[2]"
shuffle_partitions = 2

[paths]
workdir = "{tmp / "work"}"

[synth]
users = 200
items = 80
events = 5000
clusters = 4
seed = 5
out = "{tmp / "events.csv"}"

[input]
path = "{tmp / "events.csv"}"

[train]
model = "mf"
embedding_dim = 8
epochs = 2
batch_size = 1024

[evaluate]
baselines = ["popularity"]

[publish]
catalog_table = "{catalog_table}"
"""
    )
    return path


def _start(config: Path, *args: str, pause_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    if pause_at:
        env["RECBATCH_PAUSE_AT"] = pause_at
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS, str(config), DATE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def _line(proc: subprocess.Popen, prefix: str) -> str:
    """Read the process's output until a line starts with `prefix`; fail with its tail if none."""
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    proc.wait(timeout=60)
    pytest.fail(f"no {prefix!r} line (exit {proc.returncode}):\n{''.join(seen[-40:])}")


def _kill_group(proc: subprocess.Popen) -> None:
    """kill -9 the driver and its JVM at once, and wait until none of the group is left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the JVM must be gone before the next one opens Derby
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"the killed publisher's process group {proc.pid} is still alive")


def _finish(proc: subprocess.Popen, prefix: str) -> str:
    value = _line(proc, prefix)
    assert proc.wait(timeout=120) == 0, f"{prefix} process failed"
    return value


def test_kill_9_at_any_point_of_publish_leaves_the_previous_version_registered(tmp_path):
    config = write_config(tmp_path, "faults.recommendations")
    first = _start(config, "run-first", str(USERS), str(K))
    assert json.loads(_line(first, "BEFORE ")) == {"location": None, "rows": {}}
    published = json.loads(_finish(first, "AFTER "))
    previous = {"location": f"file:{published['path']}", "rows": {"run-first": USERS * K}}
    assert {key: published[key] for key in previous} == previous
    for n, point in enumerate(("written", "before_commit", "after_commit")):
        # Another shape per attempt: a partial or mixed read would show in the counts.
        proc = _start(config, f"run-killed-{n}", str(USERS + 5), str(K - 1), pause_at=point)
        try:
            # What this new process finds is what the kill before it left: the first version, whole.
            assert json.loads(_line(proc, "BEFORE ")) == previous, f"after the kill before {point}"
            assert _line(proc, "recbatch: paused at") == point
        finally:
            _kill_group(proc)
    last = _start(config, "run-after", str(USERS), str(K))
    assert json.loads(_line(last, "BEFORE ")) == previous, "after the kill at after_commit"
    after = json.loads(_finish(last, "AFTER "))
    assert after["location"] == f"file:{after['path']}" and after["rows"] == {"run-after": USERS * K}, (
        "the metastore a killed JVM held takes the next publish"
    )


def test_a_catalog_table_with_another_schema_is_exit_4_in_one_line(spark, tmp_path):
    """In process: the CLI's session is the test session, whose metastore holds the other table."""
    spark.sql("CREATE DATABASE IF NOT EXISTS faults")
    spark.sql(
        "CREATE TABLE IF NOT EXISTS faults.conflict (user_id INT, item_id STRING, dt STRING) "
        f"USING parquet PARTITIONED BY (dt) LOCATION '{tmp_path / 'conflict'}'"
    )
    config = write_config(tmp_path, "faults.conflict")
    runner = CliRunner()
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    result = runner.invoke(app, ["run", "--config", str(config), "--date", DATE])
    assert result.exit_code == 4, result.output[-3000:]
    errors = [ln for ln in result.output.splitlines() if ln.startswith("recbatch: error:")]
    assert len(errors) == 1, result.output[-3000:]
    assert "faults.conflict" in errors[0] and "user_id int (published: string)" in errors[0], errors[0]
    assert "DROP TABLE faults.conflict" in errors[0] and "Traceback" not in result.output
