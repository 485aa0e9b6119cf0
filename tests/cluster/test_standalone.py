"""recbatch on a real multi-node Spark: a standalone master and two workers on 127.0.0.1.

Executors run the packed environment and the zip, shipped as the README says, in their own
work directories. The whole pipeline under spark-submit equals a local `recbatch run` of the
same config and date row for row; a worker killed (-9) mid-score is survived with the same
table; executors on a Python without recbatch fail the pre-flight check with one line, exit 4,
before prepare starts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.builders import run_cli
from tests.cluster.conftest import Cluster, spark_submit

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow]

DATE = "2026-01-02"
# A partition count no other stage of the score job has, so the test can tell the scoring stage.
PARTITIONS = 48
# Each submission's limit (CI's per-test limit is 600 s); raise it on a machine shared with other jobs.
RUN_TIMEOUT_S = float(os.environ.get("RECBATCH_CLUSTER_TIMEOUT_S", "540"))

CONFIG = """
[spark]
shuffle_partitions = 2

[paths]
workdir = "work"   # relative: qualified against the driver's cwd when the config is loaded

[synth]
users = 300
items = 120
events = 9000
clusters = 4
seed = 11
out = "{events}"

[input]
path = "{events}"

[train]
model = "mf"
embedding_dim = 16
epochs = 3
batch_size = 1024

[evaluate]
baselines = ["popularity"]

[score]
k = 7
partitions = {partitions}
"""


@dataclass
class Runs:
    cluster_dir: Path  # the driver's cwd for spark-submit
    local_dir: Path  # the cwd of the local `recbatch run`
    cluster_log: str
    local_log: str


def write_config(folder: Path, events: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conf.toml").write_text(CONFIG.format(events=events, partitions=PARTITIONS))


def published_rows(workdir: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    from recbatch.io.versions import resolve
    from recbatch.storage import location

    table = pq.read_table(str(resolve(location(workdir / "published"), "recommendations", DATE)))
    columns = ["user_id", "item_id", "score", "rank", "source", "model"]
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def assert_same_table(theirs: list[tuple], ours: list[tuple]) -> None:
    """The same lists, ranks and sources; scores to float32 rounding.

    Executors size their user blocks from their own memory, and BLAS sums a dot product in a
    different order for a different block shape: the same float32 factors then give scores
    one unit in the last place apart (seen: 0.41700879 vs 0.41700876), never another ranking.
    """
    assert [(u, i, r, s, m) for u, i, _, r, s, m in theirs] == [(u, i, r, s, m) for u, i, _, r, s, m in ours]
    assert [row[2] for row in theirs] == pytest.approx([row[2] for row in ours], rel=1e-6)


def finish(process: subprocess.Popen, log: Path, what: str) -> str:
    try:
        process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{what} ran past {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    return log.read_text()


def stage_seconds(log: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r"stage (\w+): done in ([\d.]+)s", log)}


@pytest.fixture(scope="module")
def runs(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The same config and date run locally and on the cluster, at the same time (2 cores: overlap)."""
    root = tmp_path_factory.mktemp("runs")
    events = root / "events.csv"
    for name in ("cluster", "local"):
        write_config(root / name, events)
    synth = run_cli("synth", "--config", str(root / "local" / "conf.toml"))
    assert synth.returncode == 0, synth.stderr
    local_log = root / "local" / "run.log"
    local = subprocess.Popen(
        [sys.executable, "-m", "recbatch", "run", "--config", "conf.toml", "--date", DATE],
        cwd=root / "local",
        stdout=local_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    submitted = spark_submit(
        cluster, "pipeline.py", "--config", "conf.toml", "--date", DATE, cwd=root / "cluster"
    )
    cluster_log = finish(submitted, root / "cluster" / "pipeline.log", "spark-submit jobs/pipeline.py")
    local_text = finish(local, local_log, "the local recbatch run")
    assert local.returncode == 0, local_text[-3000:]
    assert submitted.returncode == 0, cluster_log[-5000:]
    print(f"\nstage seconds: cluster {stage_seconds(cluster_log)}, local {stage_seconds(local_text)}")
    print(f"executor environment built in {cluster.shipped.seconds:.1f} s")
    return Runs(root / "cluster", root / "local", cluster_log, local_text)


def test_the_pipeline_on_the_cluster_equals_the_local_table(runs: Runs, cluster: Cluster):
    ours = published_rows(runs.local_dir / "work")
    theirs = published_rows(runs.cluster_dir / "work")
    assert len(ours) == 300 * 7
    assert_same_table(theirs, ours)
    # Both executors answered the pre-flight check, from their own work directories, with
    # recbatch from the shipped zip and Python from the shipped environment.
    line = next(ln for ln in runs.cluster_log.splitlines() if "pre-flight: " in ln)
    for i in range(2):
        assert f"{cluster.root}/worker-{i}/app-" in line, line
    assert "/env/bin/python" in line and "recbatch.zip/recbatch" in line, line
    assert str(runs.cluster_dir) not in line  # no executor ran in the driver's cwd
    # The relative workdir was qualified on the driver: executors' own cwd has no such folder.
    executor_dirs = set(re.findall(rf"({re.escape(str(cluster.root))}/worker-\d/app-[\w-]+/\d+)/env", line))
    assert len(executor_dirs) == 2 and not any((Path(d) / "work").exists() for d in executor_dirs)


def test_executors_without_recbatch_fail_in_seconds_with_one_line(
    cluster: Cluster, bare_python: str, tmp_path: Path
):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,rating,timestamp\nu1,i1,view,5,1767000000\n")
    write_config(tmp_path, events)
    started = time.monotonic()
    submitted = spark_submit(
        cluster, "pipeline.py", "--config", "conf.toml", "--date", DATE, cwd=tmp_path, python=bare_python
    )
    log = finish(submitted, tmp_path / "pipeline.log", "the bare-python submission")
    seconds = time.monotonic() - started
    errors = [ln for ln in log.splitlines() if ln.startswith("recbatch: error:")]
    assert submitted.returncode == 4, log[-3000:]
    assert errors == [
        f"recbatch: error: pre-flight: executors cannot import numpy, pandas, pyarrow, recbatch (python "
        f"{bare_python}): ship them with --archives dist/recbatch-env.tar.gz#env --conf "
        "spark.pyspark.python=./env/bin/python --py-files dist/recbatch.zip (build them with `make dist`; "
        "README: Running on a cluster)"
    ]
    assert "Traceback" not in log and "Py4J" not in log
    # Nothing ran: no stage started and the date's run folder was never made.
    assert "stage prepare" not in log and not (tmp_path / "work" / "runs" / f"dt={DATE}").exists()
    print(f"\nmissing packages reported in {seconds:.1f} s")
    assert seconds < 150  # JVM + executor start on a loaded 2-core machine; before: ~6 min then exit 1


def _active_stages(ui: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=5) as reply:
            app = json.load(reply)[0]["id"]
        with urllib.request.urlopen(
            f"{ui}/api/v1/applications/{app}/stages?status=active", timeout=5
        ) as reply:
            return json.load(reply)
    except (OSError, IndexError, ValueError):
        return []


def test_a_worker_killed_mid_score_is_survived(runs: Runs, cluster: Cluster):
    from tests.cluster.conftest import free_port

    ui_port = free_port()
    submitted = spark_submit(
        cluster,
        "score.py",
        "--config",
        "conf.toml",
        "--date",
        DATE,
        cwd=runs.cluster_dir,
        conf={"spark.ui.port": str(ui_port)},
    )
    deadline, killed = time.monotonic() + RUN_TIMEOUT_S, None
    while killed is None and submitted.poll() is None and time.monotonic() < deadline:
        for stage in _active_stages(f"http://127.0.0.1:{ui_port}"):
            # Submitted and not finished: its tasks are queued or running on both executors.
            if stage["numTasks"] == PARTITIONS and stage["numCompleteTasks"] < PARTITIONS:
                killed = (stage["numCompleteTasks"], cluster.kill("worker-0"))
                break
        time.sleep(0.1)
    log = finish(submitted, runs.cluster_dir / "score.log", "spark-submit jobs/score.py")
    assert killed is not None, f"never saw the scoring stage ({PARTITIONS} tasks) running:\n{log[-3000:]}"
    assert submitted.returncode == 0, log[-5000:]
    print(f"\nkilled worker-0 and its executor after {killed[0]}/{PARTITIONS} scoring tasks")
    assert re.search(r"Lost executor|ExecutorLost|Executor lost", log), log[-3000:]
    assert cluster.alive_workers() <= 1 or cluster.daemons["worker-0"].poll() is not None
    assert_same_table(published_rows(runs.cluster_dir / "work"), published_rows(runs.local_dir / "work"))
