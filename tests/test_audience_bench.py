"""Smoke test of `recbatch bench audience` at the tiny size: it runs, and its own checks hold."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tiny_bench_audiences_are_exact_beside_als_and_user_scoring(spark, tmp_path):
    result = CliRunner().invoke(
        app, ["bench", "audience", "--size", "tiny", "--runs", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "audience-tiny" / "results.json").read_text())
    rec = results["contenders"]["recbatch"]
    assert rec["exact_items"] == rec["sampled_items"] == 128
    assert rec["pairs"] == 5_000 * 1_000
    assert results["summary"]["recbatch_vs_als"] > 0 and results["summary"]["recbatch_vs_recbatch-users"] > 0
    assert "audiences / ALS recommendForAllItems" in result.output


def test_unknown_contender_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "audience", "--only", "faiss", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "recbatch, als, recbatch-users" in result.output
