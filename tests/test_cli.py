"""The CLI as a user meets it: help, config errors and exit codes (no Spark needed)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from recbatch.cli import app
from tests.builders import lock_held_elsewhere

runner = CliRunner()


def test_help_lists_every_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "prepare", "train", "evaluate", "score", "run"):
        assert command in result.output


def test_importing_the_cli_loads_neither_spark_nor_tensorflow():
    code = (
        "import sys, recbatch.cli\n"
        "heavy = [m for m in ('pyspark', 'tensorflow', 'keras', 'pandas') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_config_value_is_one_line_and_exit_2():
    result = runner.invoke(app, ["run", "--set", "train.epochs=-1"])
    assert result.exit_code == 2
    assert "train.epochs = -1 is invalid" in result.output
    assert "Traceback" not in result.output


def test_unknown_key_missing_config_and_bad_date_exit_2(tmp_path):
    assert runner.invoke(app, ["train", "--set", "train.epoch=1"]).exit_code == 2
    missing = runner.invoke(app, ["prepare", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    bad_date = runner.invoke(app, ["score", "--date", "2026-02-30"])
    assert bad_date.exit_code == 2
    assert "YYYY-MM-DD" in bad_date.output


def test_config_command_prints_effective_values():
    result = runner.invoke(app, ["config", "--config", "conf/demo.toml", "--set", "train.epochs=3"])
    assert result.exit_code == 0
    assert '"epochs": 3' in result.output


def test_exit_codes_are_listed():
    result = runner.invoke(app, ["exit-codes"])
    assert result.exit_code == 0
    assert "2  usage or configuration error" in result.output


def test_every_command_that_writes_the_workdir_takes_its_lock(tmp_path):
    """While another run holds the lock, each stage command exits 5 before starting any work."""
    lock = tmp_path / "work" / "locks" / "run"
    with lock_held_elsewhere(lock, "cron run"):
        workdir = f'paths.workdir="{tmp_path / "work"}"'
        for command in (["prepare"], ["train"], ["evaluate"], ["tune"], ["score"], ["export", "-f", "csv"]):
            result = runner.invoke(app, [*command, "--set", workdir, "--date", "2026-01-02"])
            assert result.exit_code == 5, (command, result.output)
            assert "cron run" in result.output and "Traceback" not in result.output


def test_blank_workdir_and_loose_dates_are_refused():
    blank = runner.invoke(app, ["train", "--set", 'paths.workdir=" "'])
    assert blank.exit_code == 2 and "paths.workdir" in blank.output
    for date in ("20260102", "2026-W01-1", "2026-1-2"):
        result = runner.invoke(app, ["train", "--date", date])
        assert result.exit_code == 2 and "YYYY-MM-DD" in result.output, date


def test_missing_or_empty_input_fails_before_spark_starts(tmp_path):
    """A typo in input.path costs a second: the check runs before any JVM (the conftest guard
    fails this unmarked test if a SparkContext starts)."""
    empty = tmp_path / "events"
    (empty / "sub").mkdir(parents=True)
    (empty / "_SUCCESS").write_text("")
    workdir = f'paths.workdir="{tmp_path / "work"}"'
    result = runner.invoke(app, ["prepare", "--set", f'input.path="{empty}"', "--set", workdir])
    assert result.exit_code == 3 and "no data files under input.path" in result.output
    missing = runner.invoke(app, ["run", "--set", f'input.path="{tmp_path / "nope.csv"}"', "--set", workdir])
    assert missing.exit_code == 3 and "does not exist" in missing.output
