"""`recbatch tune`: a small grid or random search over [train] settings, on the validation split only.

The space is `train.search` ({key = [values]}); `train.search_trials` > 0 samples that
many combinations (seeded) instead of trying all. Each trial trains on train minus each
user's latest train item and is scored by validation NDCG@validation_k with early
stopping, exactly as `recbatch train` picks its epoch count; the test split is never read.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import numpy as np

from recbatch.config import Config, TrainConfig
from recbatch.errors import ConfigError, DataError
from recbatch.layout import RunLayout
from recbatch.storage import write_json

log = logging.getLogger(__name__)


def combinations(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The trials of the search space: every combination, or a seeded sample of search_trials."""
    if not cfg.search:
        raise ConfigError(
            "train.search is empty: give the values to try, e.g. --set 'train.search={ l2 = [0.0, 0.001] }'"
        )
    keys = list(cfg.search)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*cfg.search.values())]
    if cfg.search_trials and cfg.search_trials < len(combos):
        picked = np.random.default_rng(cfg.seed).choice(len(combos), size=cfg.search_trials, replace=False)
        combos = [combos[i] for i in sorted(picked)]
    return combos


def trial_config(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`cfg` with the trial's values, validated like a config file."""
    data = cfg.model_dump() | overrides
    try:
        return TrainConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"train.search trial {overrides} is invalid: {exc}") from None


def run_tune(config: Config, layout: RunLayout) -> dict[str, Any]:
    """Train every trial on the validation split; write <eval>/tune.json and return the results."""
    from recbatch.artifacts import check_range, read_pairs, read_times, require_prepared
    from recbatch.models.runtime import prepare_tensorflow
    from recbatch.storage import count_rows

    require_prepared(layout)
    prepare_tensorflow()
    from recbatch.core.validation import carve_validation, with_sampled_negatives
    from recbatch.train.loop import train_epochs

    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    users, items = read_pairs(layout.train)
    check_range(users, items, num_users, num_items, layout.train)
    split = carve_validation(users, items, read_times(layout.train), num_users)
    if len(split.val_users) == 0:
        raise DataError("no user has two train items, so there is no validation split to tune on")
    with_sampled_negatives(split, num_users, num_items, config.train.validation_negatives)
    trials = []
    for n, overrides in enumerate(combinations(config.train), start=1):
        cfg = trial_config(config.train, overrides)
        started = time.perf_counter()
        result = train_epochs(cfg, num_users, num_items, split.fit_users, split.fit_items, cfg.epochs, split)
        trials.append(
            {
                "params": overrides,
                "val_ndcg": result.validation_ndcg,
                "best_epoch": result.best_epoch,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        log.info(
            "tune %d: %s -> validation ndcg@%d %.4f", n, overrides, cfg.validation_k, result.validation_ndcg
        )
    best = max(trials, key=lambda t: t["val_ndcg"])
    out = {"metric": f"val_ndcg@{config.train.validation_k}", "trials": trials, "best": best}
    write_json(layout.eval_dir / "tune.json", out)
    return out


def format_best(result: dict[str, Any]) -> str:
    """The trials as a table, and the best one as [train] TOML lines to paste into a config."""
    lines = [f"{'val ndcg':>9}  {'epoch':>5}  params"]
    for t in sorted(result["trials"], key=lambda t: -t["val_ndcg"]):
        lines.append(f"{t['val_ndcg']:9.4f}  {t['best_epoch']:5d}  {t['params']}")
    lines += ["", "best config:", "[train]"]
    for key, value in result["best"]["params"].items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
