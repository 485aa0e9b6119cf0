"""`recbatch tune`: the search space, validation-only trials, the CLI output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.config import TrainConfig
from recbatch.errors import ConfigError
from recbatch.train.tune import combinations, trial_config
from tests.builders import write_prepared


def test_grid_and_seeded_random_trials() -> None:
    cfg = TrainConfig(search={"l2": [0.0, 0.1], "embedding_dim": [4, 8, 16]}, seed=5)
    grid = combinations(cfg)
    assert len(grid) == 6 and grid[0] == {"l2": 0.0, "embedding_dim": 4}
    sampled = combinations(cfg.model_copy(update={"search_trials": 3}))
    assert len(sampled) == 3 and all(t in grid for t in sampled)
    assert sampled == combinations(cfg.model_copy(update={"search_trials": 3}))
    with pytest.raises(ConfigError, match="train.search is empty"):
        combinations(TrainConfig())
    with pytest.raises(ConfigError, match="invalid"):
        trial_config(cfg, {"embedding_dim": 0})


def test_unknown_search_key_is_a_config_error() -> None:
    from recbatch.config import load_config

    with pytest.raises(ConfigError, match="not \\[train\\] keys"):
        load_config(None, ["train.search={ nope = [1, 2] }"])


def test_tune_cli_uses_only_the_validation_split(tmp_path: Path) -> None:
    layout = write_prepared(tmp_path / "work")
    shutil.rmtree(layout.test)  # tuning must never need the test split
    config = tmp_path / "tune.toml"
    config.write_text(
        f"""
[paths]
workdir = "{tmp_path / "work"}"

[train]
model = "mf"
epochs = 4
batch_size = 64
learning_rate = 0.05
seed = 3
search = {{ embedding_dim = [1, 4], loss = ["bce", "bpr"] }}
"""
    )
    result = CliRunner().invoke(app, ["tune", "--config", str(config), "--date", "2026-01-01"])
    assert result.exit_code == 0, result.output
    saved = json.loads((layout.eval_dir / "tune.json").read_text())
    assert len(saved["trials"]) == 4 and saved["metric"] == "val_ndcg@10"
    best = max(saved["trials"], key=lambda t: t["val_ndcg"])
    assert saved["best"] == best
    assert "best config:\n[train]\nembedding_dim = " in result.output
    assert f'loss = "{best["params"]["loss"]}"' in result.output
