"""`recbatch backtest` end to end on synthetic data: the latest rows hidden, the pipeline run on the
rest as production runs it, the published table scored on the hidden rows beside the baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

runner = CliRunner()
DATE = "2026-01-02"


def small_config(tmp: Path, **sections: str) -> Path:
    """A small synthetic setup (200 users × 80 items), as a user would write it; `sections` add TOML."""
    text = f"""
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
embedding_dim = 8
epochs = 3
batch_size = 512

[als]
max_iter = 5

[score]
k = 5
"""
    for name, body in sections.items():
        text += f"\n[{name}]\n{body}\n"
    path = tmp / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def backtested(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backtest")
    config = small_config(tmp)
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    result = runner.invoke(app, ["backtest", "--config", str(config), "--date", DATE])
    assert result.exit_code == 0, result.output
    return tmp / "work" / "runs" / f"dt={DATE}" / "backtest", result.output


def test_backtest_prints_and_writes_the_published_table_beside_both_baselines(backtested):
    out, output = backtested
    for piece in (
        "| published table (mf, fitted on every visible interaction) |",
        "| popularity",
        "| Spark ALS",
    ):
        assert piece in output, output
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["models"]) == {"published", "popularity", "als"}
    assert doc["k"] == [5] and doc["holdout"] == 1 and doc["timestamps"] is True
    for scores in doc["models"].values():
        assert 0.0 <= scores["ndcg@5"] <= scores["hr@5"] <= 1.0
    assert doc["users_evaluated"] == doc["held_out_pairs"] > 150, "one hidden pair per user with two or more"
    assert (out / "report.md").read_text().startswith(f"# Backtest of dt={DATE}")


def test_the_hidden_rows_are_raw_ids_the_visible_run_never_saw(spark, backtested):
    out, _ = backtested
    held = spark.read.parquet(str(out / "held_out"))
    assert held.where(~held.user_id.startswith("u") | ~held.item_id.startswith("i")).count() == 0
    prepared = out / "work" / "runs" / f"dt={DATE}" / "prepared"
    seen = (
        spark.read.parquet(str(prepared / "interactions"))
        .join(spark.read.parquet(str(prepared / "vocab" / "users")), "user_idx", "inner")
        .join(spark.read.parquet(str(prepared / "vocab" / "items")), "item_idx", "inner")
        .select("user_id", "item_id")
    )
    assert seen.count() > 0 and seen.join(held, ["user_id", "item_id"], "inner").count() == 0
    manifest = json.loads((out / "work" / "runs" / f"dt={DATE}" / "model" / "manifest.json").read_text())
    assert manifest["fit_data"] == "all", "the published model saw every visible interaction"


def test_the_backtest_publishes_nothing_in_the_production_workdir(backtested):
    out, _ = backtested
    workdir = out.parents[2]
    assert not (workdir / "published").exists()
    assert (out / "work" / "published" / "recommendations").is_dir()


def test_the_candidate_protocol_ranks_each_hidden_item_among_its_negatives_and_validates_alike(
    spark, tmp_path
):
    config = small_config(tmp_path, evaluate='baselines = ["popularity", "als"]')
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    result = runner.invoke(app, ["backtest", "--config", str(config), "--date", DATE, "--negatives", "20"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "work" / "runs" / f"dt={DATE}" / "backtest"
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["models"]) == {"published", "popularity", "als"}
    candidates = spark.read.parquet(str(out / "candidates"))
    per_user = {r["user_id"]: r["count"] for r in candidates.groupBy("user_id").count().collect()}
    assert set(per_user.values()) == {21}, "each hidden item and its 20 negatives"
    for scores in doc["models"].values():
        assert 0.0 <= scores["ndcg@5"] <= scores["hr@5"] <= 1.0
    # 21 candidates: a random ranking would hit 5/21 of the time; the model must do better.
    assert doc["models"]["published"]["hr@5"] > 5 / 21
    manifest = json.loads((out / "work" / "runs" / f"dt={DATE}" / "model" / "manifest.json").read_text())
    assert manifest["config"]["train"]["validation_negatives"] == 20
