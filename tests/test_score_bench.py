"""`recbatch bench score` at a tiny size: every contender computes, results are exact and reported."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.bench.score import BenchSpec, brute_force, format_report, make_data, run_bench, summarise
from recbatch.core.topk import top_k_dot

pytestmark = pytest.mark.spark


def test_bench_data_and_brute_force_agree_with_the_kernel():
    spec = BenchSpec(users=50, items=80, dim=8, k=5, seen_per_user=6)
    users, items, rows, cols = make_data(spec)
    assert np.all(np.diff(rows) >= 0) and len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(
        rows
    )
    sample = np.array([0, 7, 49])
    seen = [cols[rows == u] for u in sample]
    idx, _ = top_k_dot(users[sample], items, spec.k, seen)
    assert brute_force(users, items, rows, cols, sample, spec.k) == idx.tolist()


def test_tiny_bench_runs_recbatch_and_als_and_naive(spark, tmp_path):
    spec = BenchSpec(
        users=300,
        items=120,
        dim=8,
        k=5,
        seen_per_user=4,
        runs=1,
        naive_users=40,
        naive_items=30,
        sample_users=20,
        contenders=["recbatch", "als", "naive"],
    )
    results = run_bench(spark, spec, tmp_path)
    mine = results["contenders"]["recbatch"]
    assert mine["exact_users"] == mine["sampled_users"] == 20
    assert mine["worker_peak_rss_bytes"] > 0
    rerun = mine["rerun"]
    assert rerun["rows"] > 0 and rerun["rows_identical"] and rerun["files_byte_identical"]
    table = summarise(results)
    assert set(table) == {"recbatch", "als", "naive"}
    assert table["als"]["vs_als"] == 1.0 and table["recbatch"]["pairs_per_s"] > 0
    report = format_report(results)
    assert "| recbatch |" in report and "20/20 sampled users identical" in report
    assert "rows identical" in report and "byte-identical" in report
