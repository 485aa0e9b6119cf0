"""End to end: the CLI as a user drives it, on synthetic data, on MovieLens-100K, and under spark-submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.io.publish import published_manifest
from tests.builders import run_cli
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

runner = CliRunner()
DATE = "2026-01-02"


def write_config(tmp: Path, workdir: str = "work", **extra: str) -> Path:
    """A small synthetic setup, written the way a user would write their own config."""
    text = f"""
[spark]
master = "local[2]"
shuffle_partitions = 2

[paths]
workdir = "{tmp / workdir}"

[synth]
users = 300
items = 120
events = 9000
clusters = 4
seed = 11
out = "{tmp / "events.csv"}"

[input]
path = "{tmp / "events.csv"}"

[train]
model = "{extra.get("model", "mf")}"
embedding_dim = 16
epochs = 3
batch_size = 1024

[score]
k = 7
"""
    path = tmp / f"{workdir}.toml"
    path.write_text(text)
    return path


def published_rows(spark, manifest_path: Path):
    table = spark.read.parquet(str(manifest_path))
    return sorted(
        tuple(r) for r in table.select("user_id", "item_id", "score", "rank", "model", "run_id").collect()
    )


@pytest.fixture(scope="module")
def demo_run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    config = write_config(tmp)
    synth = runner.invoke(app, ["synth", "--config", str(config)])
    assert synth.exit_code == 0, synth.output
    result = runner.invoke(app, ["run", "--config", str(config), "--date", DATE])
    assert result.exit_code == 0, result.output
    return tmp, config, result.output


def test_run_prints_the_summary_a_user_needs(demo_run):
    _, _, output = demo_run
    for piece in ("rows read", "quarantined", "popularity", "ndcg@10", "published", "top-5 of three users"):
        assert piece in output, f"{piece!r} missing from:\n{output}"


def test_published_table_has_k_unseen_items_per_user(spark, demo_run):
    from pyspark.sql import functions as F

    tmp, _, _ = demo_run
    table = tmp / "work" / "published" / "recommendations" / f"dt={DATE}"
    assert table.is_symlink(), "the date partition is a pointer swapped atomically"
    recs = spark.read.parquet(str(table))
    assert {"user_id", "item_id", "score", "rank", "model", "run_id"} <= set(recs.columns)
    per_user = recs.groupBy("user_id").agg(F.count("*").alias("n"), F.max("rank").alias("r")).collect()
    assert per_user and all(r["n"] == 7 and r["r"] == 7 for r in per_user)
    vocab = spark.read.parquet(str(tmp / "work" / "runs" / f"dt={DATE}" / "prepared" / "vocab" / "users"))
    assert len(per_user) == vocab.count(), "every user gets recommendations"
    seen = spark.read.parquet(str(tmp / "work" / "runs" / f"dt={DATE}" / "prepared" / "interactions"))
    items = spark.read.parquet(str(tmp / "work" / "runs" / f"dt={DATE}" / "prepared" / "vocab" / "items"))
    seen_ids = (
        seen.join(vocab, "user_idx", "inner").join(items, "item_idx", "inner").select("user_id", "item_id")
    )
    assert recs.join(seen_ids, ["user_id", "item_id"], "inner").count() == 0, (
        "seen items are never recommended"
    )
    assert recs.where(F.isnan("score") | F.col("score").isNull()).count() == 0


def test_report_accounts_for_every_row_and_metrics_beat_popularity(demo_run):
    tmp, _, _ = demo_run
    run_dir = tmp / "work" / "runs" / f"dt={DATE}"
    report = json.loads((run_dir / "prepared" / "report.json").read_text())
    assert report["rows_quarantined"] > 0, "the synthetic data carries malformed rows"
    assert (
        report["rows_read"]
        == report["rows_clean"]
        + report["rows_quarantined"]
        + report["duplicates_merged"]
        + report["rows_filtered"]
    )
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics["models"]["mf"]["ndcg@10"] > metrics["models"]["popularity"]["ndcg@10"]


def test_rerun_of_the_same_date_replaces_the_table_with_identical_content(spark, demo_run):
    tmp, config, _ = demo_run
    table = tmp / "work" / "published" / "recommendations" / f"dt={DATE}"
    before = published_rows(spark, table)
    again = runner.invoke(app, ["score", "--config", str(config), "--date", DATE])
    assert again.exit_code == 0, again.output
    assert published_rows(spark, table) == before


def test_a_rerun_in_another_process_publishes_the_same_content_checksum(demo_run):
    """Spark orders footer metadata differently per JVM, so whole-file hashes of a rerun may
    differ; the manifest's content checksum (the pages) must not."""
    tmp, config, _ = demo_run
    table = tmp / "work" / "published" / "recommendations" / f"dt={DATE}"
    before = json.loads((table / "_manifest.json").read_text())
    proc = run_cli("score", "--config", str(config), "--date", DATE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((table / "_manifest.json").read_text())
    assert after["version"] != before["version"] and after["run_id"] == before["run_id"]
    assert after["content_sha256"] == before["content_sha256"]
    assert [f["content_sha256"] for f in after["files"]] == [f["content_sha256"] for f in before["files"]]


def test_a_file_uri_workdir_publishes_the_same_table_without_symlinks(spark, demo_run):
    """The portable protocol (commit log, claim-file lock) gives the plain path's table, row for row."""
    tmp, config, _ = demo_run
    uri = f"file://{tmp}/uri-work"
    result = runner.invoke(
        app, ["run", "--config", str(config), "--date", DATE, "--set", f'paths.workdir="{uri}"']
    )
    assert result.exit_code == 0, result.output
    plain = published_manifest(tmp / "work" / "published", "recommendations", DATE)
    portable = published_manifest(uri + "/published", "recommendations", DATE)
    assert portable["path"].startswith(uri + "/published/recommendations/.versions/")
    # The run id hashes the config, which names another workdir; every other column must match.
    assert [r[:5] for r in published_rows(spark, portable["path"])] == [
        r[:5] for r in published_rows(spark, plain["path"])
    ]
    table = tmp / "uri-work" / "published" / "recommendations"
    assert not [p for p in table.rglob("*") if p.is_symlink()]  # no view: readers resolve the commit log
    assert not list((tmp / "uri-work" / "locks" / "run").iterdir())  # the lock's claim is gone


def test_missing_input_is_a_data_error(tmp_path):
    config = write_config(tmp_path)  # no synth: the input file does not exist
    result = runner.invoke(app, ["prepare", "--config", str(config), "--date", DATE])
    assert result.exit_code == 3, result.output
    assert "events.csv" in result.output
    assert "Traceback" not in result.output


def test_score_before_train_says_what_to_run(tmp_path):
    config = write_config(tmp_path)
    result = runner.invoke(app, ["score", "--config", str(config), "--date", "2030-01-01"])
    assert result.exit_code == 3, result.output
    assert "recbatch train" in result.output


def test_seed_model_runs_through_scoring(spark, tmp_path):
    config = write_config(tmp_path, model="seed")
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    for stage in ("prepare", "train", "evaluate", "score"):
        result = runner.invoke(app, [stage, "--config", str(config), "--date", DATE])
        assert result.exit_code == 0, f"{stage}: {result.output}"
    table = tmp_path / "work" / "published" / "recommendations" / f"dt={DATE}"
    assert {r["model"] for r in spark.read.parquet(str(table)).select("model").distinct().collect()} == {
        "seed"
    }


def test_movielens_100k_mf_beats_popularity(spark, ml100k, tmp_path):
    config = REPO / "conf" / "movielens-100k.toml"
    result = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(config),
            "--date",
            DATE,
            "--set",
            f'input.path="{ml100k / "u.data"}"',
            "--set",
            f'paths.workdir="{tmp_path / "ml"}"',
            # The shipped config also trains four more models and an ALS grid for its comparison
            # table; the end-to-end check needs only the main model against the baselines.
            "--set",
            "evaluate.extra_models=[]",
            "--set",
            "als.grid_rank=[]",
            "--set",
            "als.grid_reg=[]",
            "--set",
            "als.grid_alpha=[]",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ml" / "runs" / f"dt={DATE}" / "eval" / "metrics.json").read_text())
    report = json.loads((tmp_path / "ml" / "runs" / f"dt={DATE}" / "prepared" / "report.json").read_text())
    assert report["rows_read"] == 100_000
    assert report["users"] == 943
    assert metrics["models"]["mf"]["ndcg@10"] > metrics["models"]["popularity"]["ndcg@10"]


def test_spark_submit_produces_the_same_table_as_the_cli(spark, demo_run, tmp_path):
    tmp, config, _ = demo_run
    submit = Path(sys.executable).parent / "spark-submit"
    if not submit.exists():
        pytest.skip(f"spark-submit not found beside {sys.executable}")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    other = tmp_path / "submitted"
    proc = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            str(REPO / "jobs" / "pipeline.py"),
            "--config",
            str(config),
            "--date",
            DATE,
            "--set",
            f'paths.workdir="{other}"',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = published_rows(spark, tmp / "work" / "published" / "recommendations" / f"dt={DATE}")
    theirs = published_rows(spark, other / "published" / "recommendations" / f"dt={DATE}")
    # The run id hashes the config, which names a different workdir; everything else must match.
    assert [r[:5] for r in ours] == [r[:5] for r in theirs]


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("recbatch: error:")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("case", "code"), [("bad_config", 2), ("missing_input", 3)], ids=["bad-config", "missing-input"]
)
def test_spark_submit_and_the_cli_fail_alike(tmp_path, case, code):
    """jobs/*.py call the CLI's entry point: the same failure gives the same exit code and message."""
    submit = Path(sys.executable).parent / "spark-submit"
    assert submit.exists(), f"spark-submit not found beside {sys.executable} (pyspark ships it)"
    config = write_config(tmp_path)  # no synth: the input file does not exist
    args = ["--config", str(config), "--date", DATE]
    if case == "bad_config":
        args += ["--set", "train.epochs=-1"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cli = run_cli("run", *args)
    submitted = subprocess.run(
        [str(submit), "--master", "local[1]", str(REPO / "jobs" / "pipeline.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert cli.returncode == submitted.returncode == code, (cli.stderr[-2000:], submitted.stderr[-2000:])
    # spark-submit's PythonRunner merges the Python driver's stderr into its stdout.
    assert _error_line(cli.stderr) == _error_line(submitted.stdout + submitted.stderr)
    assert "Traceback" not in cli.stderr + submitted.stdout + submitted.stderr
