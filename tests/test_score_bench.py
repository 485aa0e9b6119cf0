"""The benchmarks' shared harness, and `recbatch bench score` at a tiny size: every contender
computes, results are exact and reported. (The `spark` fixture marks the Spark tests.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from recbatch.bench.harness import measure_command, save_results, size_of, timed
from recbatch.bench.score import BenchSpec, brute_force, make_data, run_bench
from recbatch.bench.score_report import format_report, summarise
from recbatch.core.topk import top_k_dot
from recbatch.errors import ConfigError


def test_timed_runs_a_warm_up_then_the_timed_runs():
    calls = []
    seconds = timed(lambda: calls.append(1), 3)
    assert len(calls) == 4 and len(seconds) == 3 and all(s >= 0 for s in seconds)
    assert len(timed(lambda: calls.append(1), 2, warm_up=False)) == 2 and len(calls) == 6


def test_size_of_names_the_sizes_there_are():
    assert size_of("tiny") == (2_000, 500)
    with pytest.raises(ConfigError, match="tiny, quick, full"):
        size_of("huge")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="process memory is read from /proc")
def test_measure_command_sees_the_memory_of_the_whole_process_tree(tmp_path):
    # The child only waits; its child holds 64 MiB: the peak is the tree's, not the child's.
    hold = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}]); print('done')"
    got = measure_command([sys.executable, "-c", parent], tmp_path / "child.log", interval=0.05)
    assert got["rc"] == 0 and got["tail"].strip() == "done" and got["wall_s"] >= 1.0
    assert got["peak_rss_mib"] >= 64
    assert (tmp_path / "child.log").read_text(encoding="utf-8").strip() == "done"


def test_save_results_adds_load_and_summary_and_writes_both_files(tmp_path):
    results = {"contenders": {"a": {"seconds": [np.float32(0.5)]}}}
    report = save_results(tmp_path, results, lambda r: {"a": len(r)}, lambda r: f"report {r['summary']}\n")
    assert report == "report {'a': 2}\n" == (tmp_path / "report.md").read_text(encoding="utf-8")
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert set(saved) == {"contenders", "load_average", "summary"} and len(saved["load_average"]) == 3
    assert saved["contenders"]["a"]["seconds"] == [0.5]


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
