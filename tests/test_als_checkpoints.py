"""ALS checkpoints go where the caller says (the run's tmp/ under the workdir) and are removed after."""

from __future__ import annotations

import os
import threading

import pytest

from recbatch.config import AlsConfig
from recbatch.evaluate.als import als_factors
from tests.builders import clustered_data, write_prepared


def _files_under(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def test_checkpoints_are_written_under_the_given_folder_and_removed_after_the_fit(spark, tmp_path):
    layout = write_prepared(tmp_path, clustered_data(n_users=40, n_items=30, per_user=8, seed=1))
    folder = str(tmp_path / "runs" / "tmp" / "als-checkpoints")
    most = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            most[0] = max(most[0], _files_under(folder))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # 12 sweeps: ALS checkpoints its factors at sweep 10 (checkpointInterval) and keeps them to the end.
        users, _ = als_factors(spark, layout.train, 40, 30, AlsConfig(rank=4, max_iter=12), folder)
    finally:
        done.set()
        watcher.join()
    assert users.shape == (40, 4)
    assert most[0] > 0, "no checkpoint file ever appeared under the folder given"
    assert spark.sparkContext.getCheckpointDir().startswith(f"file:{folder}/")
    assert not os.path.exists(folder), "checkpoints are removed after the fit"


def test_checkpoints_are_removed_when_the_fit_fails(spark, tmp_path):
    folder = str(tmp_path / "tmp" / "als-checkpoints")
    with pytest.raises(Exception, match="PATH_NOT_FOUND|does not exist"):
        als_factors(spark, tmp_path / "no-such-split", 4, 4, AlsConfig(rank=2, max_iter=2), folder)
    assert spark.sparkContext.getCheckpointDir().startswith(f"file:{folder}/"), "the folder was in use"
    assert not os.path.exists(folder)
