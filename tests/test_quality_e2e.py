"""No silent traps, end to end through the CLI: `run` without an evaluation split, the fallback of users
the filters removed, a quarantined share past the thresholds, and input without timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from tests.test_backtest_e2e import DATE, small_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

runner = CliRunner()


def _invoke(config: Path, *args: str):
    return runner.invoke(app, [*args, "--config", str(config), "--date", DATE])


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    """One synthetic log shared by the tests below (each writes its own workdir)."""
    tmp = tmp_path_factory.mktemp("quality-data")
    assert runner.invoke(app, ["synth", "--config", str(small_config(tmp))]).exit_code == 0
    return tmp / "events.csv"


def _config(tmp: Path, events: Path, **sections: str) -> Path:
    config = small_config(tmp, **sections)
    config.write_text(config.read_text().replace(str(tmp / "events.csv"), str(events)))
    return config


def test_run_without_a_test_split_publishes_a_list_for_every_user_of_the_input(spark, tmp_path, events):
    """test_per_user = 0: evaluation is skipped (and says so); users below min_user_interactions get
    the popularity fallback, tagged, without their own items."""
    from pyspark.sql import functions as F

    config = _config(tmp_path, events, prepare="test_per_user = 0\nmin_user_interactions = 5")
    result = _invoke(config, "run")
    assert result.exit_code == 0, result.output
    assert "evaluation: skipped: no test split (prepare.test_per_user = 0)" in result.output
    assert "published model: mf fitted on all" in result.output
    run_dir = tmp_path / "work" / "runs" / f"dt={DATE}"
    assert not (run_dir / "eval" / "metrics.json").exists()
    report = json.loads((run_dir / "prepared" / "report.json").read_text())
    assert report["filtered_users"] > 10 and report["test_rows"] == 0
    table = spark.read.parquet(str(tmp_path / "work" / "published" / "recommendations" / f"dt={DATE}"))
    raw = spark.read.csv(str(events), header=True).where(
        F.col("user_id").isNotNull() & F.col("item_id").isNotNull()
    )
    input_users = {r[0] for r in raw.select(F.trim("user_id")).distinct().collect()}
    assert {r[0] for r in table.select("user_id").distinct().collect()} == input_users - {""}
    removed = spark.read.parquet(str(run_dir / "prepared" / "filtered_users"))
    fallback = table.where(F.col("source") == "fallback")
    assert fallback.select("user_id").distinct().count() == report["filtered_users"]
    assert fallback.join(removed.select("user_id").distinct(), "user_id", "left_anti").count() == 0
    own = removed.join(spark.read.parquet(str(run_dir / "prepared" / "vocab" / "items")), "item_idx", "inner")
    assert fallback.join(own.select("user_id", "item_id"), ["user_id", "item_id"], "inner").count() == 0
    assert table.groupBy("user_id").count().where(F.col("count") != 5).count() == 0


def test_a_quarantined_share_past_the_thresholds_fails_or_warns_naming_reason_and_key(tmp_path, events):
    bad = tmp_path / "bad.csv"
    lines = events.read_text().splitlines()
    # Every 10th row gets an event type the config has no weight for: 10% quarantined.
    bad.write_text(
        "\n".join(
            [lines[0]]
            + [ln.replace(",view,", ",like,") if n % 10 == 0 else ln for n, ln in enumerate(lines[1:])]
        )
        + "\n"
    )
    config = _config(tmp_path, bad)
    failed = _invoke(config, "prepare")
    assert failed.exit_code == 3, failed.output
    line = failed.output.strip().splitlines()[-1]
    assert line.startswith("recbatch: error: ") and "above prepare.quarantine_fail = 0.05" in line
    assert "unknown_event" in line and "prepare.event_weights" in line
    assert (tmp_path / "work" / "runs" / f"dt={DATE}" / "prepared" / "report.json").exists()
    allowed = _invoke(config, "prepare", "--set", "prepare.quarantine_fail=1.0")
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: " in allowed.output and "unknown_event" in allowed.output


def test_input_without_timestamps_splits_at_random_and_says_so(spark, tmp_path, events):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    config, no_time = _config(tmp_path, events), ("--set", 'input.timestamp_col=""')
    refused = _invoke(config, "run", *no_time, "--set", "prepare.split=time_cutoff")
    assert refused.exit_code == 2 and "needs input.timestamp_col" in refused.output, refused.output
    result = _invoke(config, "prepare", *no_time)
    assert result.exit_code == 0, result.output
    assert "WARNING: the input has no timestamp column" in result.output
    prepared = tmp_path / "work" / "runs" / f"dt={DATE}" / "prepared"
    pairs = (
        spark.read.parquet(str(prepared / "train"))
        .withColumn("is_test", F.lit(False))
        .unionByName(spark.read.parquet(str(prepared / "test")).withColumn("is_test", F.lit(True)))
    )
    top = F.max("item_idx").over(Window.partitionBy("user_idx"))
    test = pairs.withColumn("top", top).where(F.col("is_test"))
    largest = test.where(F.col("item_idx") == F.col("top")).count() / test.count()
    assert test.count() > 150 and largest < 0.4, f"{largest:.0%} of test items are the user's largest index"
