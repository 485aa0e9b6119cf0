"""Warm start (train.warm_start): the row mapping by id, and a second date started from the first's model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.train.warm_rows import copy_rows, row_map
from tests.test_e2e import write_config

runner = CliRunner()
D1, D2 = "2026-01-02", "2026-01-03"


def test_rows_are_matched_by_id_not_by_index():
    old_ids, old_idx = pa.array(["a", "b", "c", "d"]), np.array([0, 1, 2, 3])
    # "c" is gone, "e" is new, and "a" / "b" swapped indices: only ids say which row is whose.
    new_ids, new_idx = pa.array(["b", "a", "d", "e"]), np.array([0, 1, 2, 3])
    rows = row_map(new_ids, new_idx, old_ids, old_idx)
    naive = sorted(
        (n, o)
        for i, n in zip(new_ids.to_pylist(), new_idx, strict=True)
        for j, o in zip(old_ids.to_pylist(), old_idx, strict=True)
        if i == j
    )
    assert list(zip(rows.new_rows, rows.old_rows, strict=True)) == naive
    assert rows.copied == 3 and not rows.index_stable
    old = np.arange(4, dtype=np.float32)[:, None] * 10
    fresh = -np.ones((4, 1), dtype=np.float32)
    assert copy_rows(fresh, old, rows)[:, 0].tolist() == [10.0, 0.0, 30.0, -1.0]  # "e" keeps its fresh row


def test_integer_and_string_ids_match():
    rows = row_map(pa.array(["17", "3"]), np.array([0, 1]), pa.array([3, 17]), np.array([0, 1]))
    assert rows.new_rows.tolist() == [0, 1] and rows.old_rows.tolist() == [1, 0]


def _run(config, date: str, *sets: str):
    args = [
        "run",
        "--config",
        str(config),
        "--date",
        date,
        "--set",
        "train.epochs=12",
        "--set",
        "train.patience=2",
    ]
    args += ["--set", 'evaluate.baselines=["popularity"]', "--set", "evaluate.report=false"]
    for item in sets:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _manifest(tmp, date: str, folder: str) -> dict:
    return json.loads((tmp / "work" / "runs" / f"dt={date}" / folder / "manifest.json").read_text())


@pytest.mark.e2e
@pytest.mark.slow
def test_a_second_date_starts_from_the_first_dates_model(spark, tmp_path):
    config = write_config(tmp_path)
    assert runner.invoke(app, ["synth", "--config", str(config)]).exit_code == 0
    _run(config, D1, "train.warm_start=auto")  # the first date: nothing to start from, a cold start
    first = _manifest(tmp_path, D1, "model_split")
    assert first["warm_start"]["from"] is None and "no earlier dt= run" in first["warm_start"]["reason"]
    _run(config, D2, "train.warm_start=auto")
    warm = _manifest(tmp_path, D2, "model_split")
    assert warm["warm_start"]["from"].endswith(
        f"dt={D1}/model_split"
    )  # never a model that saw D2's test rows
    assert warm["warm_start"]["users_copied"] == 300 and warm["warm_start"]["index_stable"]
    assert warm["warm_start"]["cold_epochs"] == first["best_epoch"]
    published = _manifest(tmp_path, D2, "model")
    assert published["warm_start"]["from"].endswith(f"dt={D1}/model")
    # The same data, started where D1 ended: it converges no later, and lands where a cold start does.
    assert warm["best_epoch"] <= first["best_epoch"]
    assert warm["validation_ndcg"] >= first["validation_ndcg"] - 0.03
