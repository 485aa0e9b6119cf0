"""Smoke test of `recbatch bench similar` at the tiny size: it runs, and its own checks hold."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tiny_bench_is_exact_and_byte_identical_on_rerun(spark, tmp_path):
    result = CliRunner().invoke(
        app, ["bench", "similar", "--size", "tiny", "--runs", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "recbatch / ALS recommendForAllItems" in result.output
    results = json.loads((tmp_path / "similar-tiny" / "results.json").read_text())
    rec = results["contenders"]["recbatch"]
    assert rec["exact_items"] == rec["sampled_items"] == 64
    assert rec["rerun"]["rows"] == 2_000 * 20
    assert rec["rerun"]["rows_identical"] and rec["rerun"]["files_byte_identical"]
    assert results["summary"]["recbatch_vs_als"] > 0


def test_unknown_size_is_a_usage_error():
    result = CliRunner().invoke(app, ["bench", "similar", "--size", "huge"])
    assert result.exit_code == 2
    assert "tiny, quick, full" in result.output


def test_als_on_a_sample_of_query_items_counts_only_their_pairs(spark, tmp_path):
    from recbatch.bench.similar import SimilarSpec, run_bench

    spec = SimilarSpec(items=400, runs=1, als_items=40, contenders=["als"])
    als = run_bench(spark, spec, tmp_path)["contenders"]["als"]
    assert als["query_items"] == 40 and als["pairs"] == 40 * 400
    assert als["pairs_per_s"] == als["pairs"] / als["seconds"][0]
