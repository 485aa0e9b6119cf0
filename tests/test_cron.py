"""Cron operations end to end, through the CLI: the quality gate, --force, rollback, runs, backfill, gc, textfile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.io import versions
from recbatch.io.publish import published_manifest
from recbatch.storage import location
from tests.test_e2e import published_rows, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

runner = CliRunner()
D1, D2 = "2026-01-02", "2026-01-03"
# Small and quick: the gate and the history are what is under test, not the model.
FAST = [
    "--set",
    "train.epochs=2",
    "--set",
    'evaluate.baselines=["popularity"]',
    "--set",
    "evaluate.report=false",
]


def _cli(config: Path, *args: str):
    result = runner.invoke(app, [args[0], "--config", str(config), *args[1:], *FAST])
    return result


def _error_line(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith("recbatch: error:")]
    return line


@pytest.fixture(scope="module")
def cron_dir(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cron")
    config = write_config(tmp)
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    first = _cli(config, "run", "--date", D1)
    assert first.exit_code == 0, first.output
    assert "gate: passed (first publish" in first.output
    return tmp, config


def test_gate_refuses_a_worse_table_keeps_the_current_one_and_force_overrides(spark, cron_dir):
    tmp, config = cron_dir
    root = tmp / "work" / "published"
    before = published_manifest(root, "recommendations", D1)
    worse = _cli(config, "run", "--date", D2, "--set", "score.k=2")  # 7 -> 2 items a user: rows fall 71%
    assert worse.exit_code == 4, worse.output
    line = _error_line(worse.output)
    assert (
        "quality gate failed against dt=2026-01-02" in line
        and "rows fell 71.4%" in line
        and "--force" in line
    )
    with pytest.raises(Exception, match="no published version"):
        published_manifest(root, "recommendations", D2)  # nothing was committed for D2
    assert published_manifest(root, "recommendations") == before  # readers still get yesterday's table
    report = json.loads((tmp / "work" / "runs" / f"dt={D2}" / "gate.json").read_text())
    assert report["drops"]["rows"] > 0.5 and report["failed"] and report["baseline"]["rows"] == before["rows"]
    assert not [v for v in (root / "recommendations" / ".versions" / f"dt={D2}").iterdir()]  # no debris

    forced = _cli(config, "run", "--date", D2, "--set", "score.k=2", "--force")
    assert forced.exit_code == 0, forced.output
    assert "gate: FORCED past rows fell" in forced.output
    manifest = published_manifest(root, "recommendations", D2)
    assert manifest["gate"]["forced"] is True and manifest["k"] == 2
    assert versions.commits(location(root / "recommendations"), D2)[-1]["forced"] is True

    normal = _cli(config, "run", "--date", D2)  # a normal rerun passes against the forced table
    assert normal.exit_code == 0, normal.output
    assert "gate: passed against dt=2026-01-03" in normal.output


def test_rollback_serves_the_earlier_version_again(spark, cron_dir):
    tmp, config = cron_dir
    root = tmp / "work" / "published"
    log = versions.commits(location(root / "recommendations"), D2)
    current, previous = log[-1]["version"], log[-2]["version"]
    done = _cli(config, "rollback", "--date", D2)
    assert done.exit_code == 0, done.output
    assert f"now serves {previous} (was {current})" in done.output
    assert published_manifest(root, "recommendations", D2)["k"] == 2
    assert (
        len(published_rows(spark, root / "recommendations" / f"dt={D2}"))
        == published_manifest(root, "recommendations", D2)["rows"]
    )
    again = _cli(config, "rollback", "--date", D2, "--to", current.rsplit("-", 1)[0])  # by run id
    assert again.exit_code == 0 and published_manifest(root, "recommendations", D2)["version"] == current
    missing = _cli(config, "rollback", "--date", "2026-02-01")
    assert missing.exit_code == 3 and "was never published" in _error_line(missing.output)


def test_runs_lists_every_run_and_the_textfile_reports_the_last(cron_dir):
    tmp, config = cron_dir
    listed = _cli(config, "runs", "--json")
    assert listed.exit_code == 0, listed.output
    records = [json.loads(line) for line in listed.output.splitlines()]
    statuses = [(r["date"], r["status"], r.get("exit_code")) for r in records]
    assert statuses[:4] == [(D1, "ok", 0), (D2, "failed", 4), (D2, "ok", 0), (D2, "ok", 0)]
    assert records[1]["gate"]["passed"] is False and "quality gate failed" in records[1]["error"]
    assert set(records[0]["seconds"]) == {"prepare", "train", "evaluate", "final_fit", "score"}
    table = _cli(config, "runs", "--date", D1)
    assert "ndcg@10" in table.output and D1 in table.output
    prom = (tmp / "work" / "monitoring" / "recbatch.prom").read_text()
    assert 'recbatch_last_run_success{table="recommendations"} 1.0' in prom
    assert 'recbatch_stage_seconds{table="recommendations",stage="score"}' in prom
    assert "# TYPE recbatch_rows_published gauge" in prom and "recbatch_gate_passed" in prom


def test_backfill_runs_three_dates_in_order_then_gc_cleans_up(cron_dir):
    tmp, config = cron_dir
    table = location(tmp / "work" / "published" / "recommendations")
    orphan = versions.version_dir(table, D1, "killed-20200101T000000000000")
    (orphan / "part-00000.parquet").write_bytes(b"half")  # what a publish killed mid-write leaves
    done = _cli(
        config, "run", "--from", "2026-01-04", "--to", "2026-01-06", "--set", "publish.keep_versions=1"
    )
    assert done.exit_code == 0, done.output
    assert "backfill: 3 date(s) done" in done.output
    assert versions.published_dates(table)[-3:] == ["2026-01-04", "2026-01-05", "2026-01-06"]
    assert not orphan.exists()  # removed by the first publish of the backfill (older than it)
    backwards = _cli(config, "run", "--from", "2026-01-06", "--to", "2026-01-04")
    assert backwards.exit_code == 2 and "is after" in _error_line(backwards.output)
    kept = {d: len((table / ".versions" / f"dt={d}").iterdir()) for d in (D1, D2)}
    gc = _cli(config, "gc", "--set", "publish.keep_versions=1")
    assert gc.exit_code == 0, gc.output
    assert f"removed {kept[D2] - 1} old" in gc.output  # D2 had three versions, D1 one
    assert len((table / ".versions" / f"dt={D2}").iterdir()) == 1
    assert (table / ".versions" / f"dt={D2}" / versions.current_version(table, D2)).is_dir()
