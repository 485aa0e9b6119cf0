"""End to end: `recbatch similar` on a small prepared run, and `recbatch run` with [similar] enabled.

The similar command's run is built directly (tests.builders' two-cluster prepared data and
factor files placing each cluster's items together), so it takes seconds; the `run` test
drives the whole pipeline on a synthetic log to check the stage is wired in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.io.publish import published_manifest, read_published
from tests.builders import clustered_data, write_prepared, write_split

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

runner = CliRunner()
DATE = "2026-01-02"


def _config(tmp: Path) -> Path:
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
model = "mf"
embedding_dim = 8
epochs = 2
batch_size = 1024

[evaluate]
baselines = ["popularity"]

[similar]
enabled = true
k = 5
"""
    path = tmp / "similar.toml"
    path.write_text(text)
    return path


def _prepared_run(tmp: Path) -> Path:
    """A prepared run (60 users, 40 items in two halves) with mf-like factors: each half's items
    point one way, so an item's true neighbours are the other items of its half."""
    from recbatch.artifacts import write_factors

    data = clustered_data()
    layout = write_prepared(tmp / "work", data)
    tr_u, tr_i, te_u, te_i = data[:4]
    write_split(layout.interactions, np.concatenate([tr_u, te_u]), np.concatenate([tr_i, te_i]))
    rng = np.random.default_rng(1)
    half = np.repeat(np.eye(2, dtype=np.float32), 20, axis=0)
    items = half * 3 + rng.normal(0, 0.3, (40, 2)).astype(np.float32)
    users = np.eye(2, dtype=np.float32)[np.arange(60) % 2]  # even users like the first half
    layout.model_dir.mkdir()
    write_factors(layout.item_factors, "item_idx", items)
    write_factors(layout.user_factors, "user_idx", users)
    manifest = {"model": "mf", "score_activation": "sigmoid", "scoring": "dot", "fit_data": "train"}
    layout.model_manifest.write_text(json.dumps(manifest))
    config = _config(tmp).read_text().replace("[train]", '[train]\nfinal_fit = "train"')
    path = tmp / "prepared.toml"
    path.write_text(config)
    return path


PREPARED_DATE = "2026-01-01"  # tests.builders.write_prepared's date


def test_similar_command_publishes_lists_within_each_cluster_and_reruns_identically(spark, tmp_path):
    from pyspark.sql import functions as F

    config = _prepared_run(tmp_path)
    root = tmp_path / "work" / "published"
    first = runner.invoke(app, ["similar", "--config", str(config), "--date", PREPARED_DATE])
    assert first.exit_code == 0, first.output
    assert "published 200 similar items for 40 items (mf, cosine)" in first.output
    assert "co-occurrence: HR@5" in first.output
    table = read_published(spark, str(root), "similar_items", PREPARED_DATE)
    assert table.columns == ["item_id", "similar_item_id", "score", "rank", "model", "run_id"]
    half = lambda column: F.substring(F.col(column), 2, 9).cast("int") >= 20  # noqa: E731
    assert table.filter(half("item_id") != half("similar_item_id")).count() == 0, "neighbours share a half"
    assert table.filter(F.col("item_id") == F.col("similar_item_id")).count() == 0
    run_dir = tmp_path / "work" / "runs" / f"dt={PREPARED_DATE}"
    report = json.loads((run_dir / "similar" / "report.json").read_text())
    assert set(report["contenders"]) == {"mf (cosine)", "co-occurrence"}
    assert report["users"] == 60
    # Held-out items lie in the user's half; a random 5 of the 39 others would hit ~13% of users.
    assert report["contenders"]["mf (cosine)"]["hr@5"] > 0.2
    assert not list((run_dir / "tmp").glob("similar-*")), "the scratch folder is removed"
    before = published_manifest(root, "similar_items", PREPARED_DATE)
    again = runner.invoke(app, ["similar", "--config", str(config), "--date", PREPARED_DATE])
    assert again.exit_code == 0, again.output
    after = published_manifest(root, "similar_items", PREPARED_DATE)
    assert after["version"] != before["version"] and after["content_sha256"] == before["content_sha256"]
    dot = runner.invoke(
        app, ["similar", "--config", str(config), "--date", PREPARED_DATE, "--k", "3", "--metric", "dot"]
    )
    assert dot.exit_code == 0, dot.output
    assert published_manifest(root, "similar_items", PREPARED_DATE)["rows"] == 120


def test_similar_before_train_says_what_to_run(tmp_path):
    config = _config(tmp_path)
    result = runner.invoke(app, ["similar", "--config", str(config), "--date", DATE])
    assert result.exit_code == 3, result.output
    assert "recbatch train --date 2026-01-02" in result.output


def test_run_with_similar_and_list_rules_publishes_both_tables(spark, tmp_path):
    """One pipeline run for two wirings: the [similar] stage, and [score.rules] from synth's metadata
    through the published lists to the evaluation report."""
    from pyspark.sql import functions as F

    config = _config(tmp_path)
    items_csv = tmp_path / "items.csv"
    rules = [
        f"synth.item_metadata='{items_csv}'",
        f"score.rules.item_metadata='{items_csv}'",
        "score.rules.category_cap=2",
        "score.k=5",
    ]
    sets = [arg for rule in rules for arg in ("--set", rule)]
    assert runner.invoke(app, ["synth", "--config", str(config), *sets]).exit_code == 0
    result = runner.invoke(app, ["run", "--config", str(config), "--date", DATE, *sets])
    assert result.exit_code == 0, result.output
    root = tmp_path / "work" / "published"
    category = spark.read.csv(str(items_csv), header=True)
    lists = read_published(spark, str(root), "recommendations", DATE).where(F.col("source") == "model")
    per_category = lists.join(category, on="item_id").groupBy("user_id", "category").count()
    assert lists.count() > 0 and per_category.agg(F.max("count")).first()[0] == 2
    metrics = json.loads((tmp_path / "work" / "runs" / f"dt={DATE}" / "eval" / "metrics.json").read_text())
    effect = metrics["rules"]
    assert effect["with_rules"]["max_per_category"] == 2 < effect["by_score"]["max_per_category"]
    assert effect["with_rules"]["categories"] > effect["by_score"]["categories"]
    report = (tmp_path / "work" / "runs" / f"dt={DATE}" / "eval" / "report.md").read_text()
    assert "## Business rules: what they cost at K = 5" in report
    table = read_published(spark, str(root), "similar_items", DATE)
    items = spark.read.parquet(
        str(tmp_path / "work" / "runs" / f"dt={DATE}" / "prepared" / "vocab" / "items")
    )
    per_item = table.groupBy("item_id").agg(F.count(F.lit(1)).alias("n"))
    assert per_item.count() == items.count() and per_item.filter(F.col("n") != 5).count() == 0
    manifest = published_manifest(root, "similar_items", DATE)
    assert manifest["run_id"] == published_manifest(root, "recommendations", DATE)["run_id"]


def test_audience_command_excludes_users_who_interacted(spark, tmp_path):
    from pyspark.sql import functions as F

    config = _prepared_run(tmp_path)
    result = runner.invoke(app, ["audience", "--config", str(config), "--date", PREPARED_DATE, "--k", "10"])
    assert result.exit_code == 0, result.output
    assert "published 400 audience rows for 40 items (mf)" in result.output
    root = tmp_path / "work" / "published"
    table = read_published(spark, str(root), "audiences", PREPARED_DATE)
    assert table.columns == ["item_id", "user_id", "score", "rank", "model", "run_id"]
    run_dir = tmp_path / "work" / "runs" / f"dt={PREPARED_DATE}" / "prepared"
    seen = (
        spark.read.parquet(str(run_dir / "train"))
        .unionByName(spark.read.parquet(str(run_dir / "test")))
        .join(spark.read.parquet(str(run_dir / "vocab" / "users")), on="user_idx", how="inner")
        .join(spark.read.parquet(str(run_dir / "vocab" / "items")), on="item_idx", how="inner")
    )
    assert table.join(seen, on=["item_id", "user_id"], how="inner").count() == 0
    # An item's own half of users scores ~3, the other ~0: the top user is always of the item's half.
    top = table.filter(F.col("rank") == 1).collect()
    assert len(top) == 40
    assert all(int(r.user_id[1:]) % 2 == int(int(r.item_id[1:]) >= 20) for r in top)
    # A campaign's items only: audiences for the listed items the vocabulary knows.
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = sorted(r.item_id for r in spark.read.parquet(str(run_dir / "vocab" / "items")).collect())[:3]
    listed = tmp_path / "campaign.parquet"
    pq.write_table(pa.table({"item_id": [*ids, "not-an-item"]}), listed)
    campaign = runner.invoke(
        app,
        [
            "audience",
            "--config",
            str(config),
            "--date",
            PREPARED_DATE,
            "--k",
            "10",
            "--set",
            f"audience.items='{listed}'",
        ],
    )
    assert campaign.exit_code == 0, campaign.output
    assert "published 30 audience rows for 3 items (mf)" in campaign.output
    table = read_published(spark, str(root), "audiences", PREPARED_DATE)
    assert sorted(r.item_id for r in table.select("item_id").distinct().collect()) == ids
