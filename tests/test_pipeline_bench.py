"""Smoke test of `recbatch bench pipeline` at a tiny size: each stage timed, memory per process group."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tiny_bench_pipeline_times_every_stage_and_counts_the_published_rows(tmp_path):
    result = CliRunner().invoke(app, ["bench", "pipeline", "--events", "4000", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    (size,) = results["sizes"]
    assert list(size["stages"]) == ["prepare", "train", "evaluate", "final_fit", "score"]
    assert all(stage["seconds"] > 0 for stage in size["stages"].values())
    assert sum(stage["seconds"] for stage in size["stages"].values()) < size["wall_s"]
    # The driver's Python, the JVM (it runs the stages' Spark jobs) and, while scoring, Python workers.
    assert size["peak"]["driver_mib"] > 100 and size["peak"]["jvm_mib"] > 100
    assert size["stages"]["score"]["workers_mib"] > 0
    assert size["published_rows"] == size["published_users"] * 10 and size["rows_read"] >= 4000
    assert results["over_budget"] == [] and "| 4,000 | **whole run** |" in result.output
