"""Smoke test of `recbatch bench train` at a tiny size: both fits run on the same split and report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recbatch.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tiny_bench_train_fits_mf_and_als_on_the_same_validation_carve(tmp_path):
    result = CliRunner().invoke(app, ["bench", "train", "--events", "3000", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    (size,) = results["sizes"]
    report = json.loads(
        (tmp_path / "3000" / "work" / "runs" / "dt=2026-01-02" / "prepared" / "report.json").read_text()
    )
    assert size["interactions"] == report["interactions"] > 0
    mf, als = size["mf"], size["als"]
    assert mf["rank"] == als["rank"] == 32 and mf["loss"] == "bce"
    # ALS fits the train rows less each validation user's held-out item: one per user with >= 2.
    assert 0 < als["fit_rows"] < report["train_rows"]
    assert 0 < mf["val_ndcg@10"] <= 1 and 0 < als["val_ndcg@10"] <= 1
    assert size["fit_ratio_mf_over_als"] == round(mf["fit_s"] / als["fit_s"], 2)
    assert mf["peak_rss_mib"] > 100 and als["peak_rss_mib"] > 100  # a Python and a JVM each
    assert "| mf (rank 32, bce) |" in result.output and (tmp_path / "report.md").is_file()


def test_sizes_that_are_not_numbers_are_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "train", "--events", "1e6", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "give whole numbers separated by commas" in result.output
