"""Warm start (`train.warm_start`): begin a fit from an earlier date's model instead of random weights.

"auto" takes the latest earlier `dt=` run of the work directory whose model manifest verifies (every
file's sha256) and whose model, loss and shape are this run's. Embedding rows are matched by id through
both runs' vocabularies (`recbatch.train.warm_rows`): a user or item known to both starts from its old
row, a new one from the same seeded random row a cold start gives it; dense weights are copied whole.
Early stopping still chooses the epoch count, so a warm start that has less to learn stops sooner.

Which earlier model: the split fit (the model evaluation measures) starts from the earlier run's split
model (model_split/), never from a model that saw every interaction, which would include rows this run
holds out as its test split; the final fit starts from the earlier published model (model/).

Anything unusable (no earlier run, a file that fails its checksum, another model or shape, a broken
vocabulary) means a cold start with one log line saying why: a warm start never fails a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from recbatch.artifacts import read_manifest, read_vocab
from recbatch.config import TrainConfig
from recbatch.errors import DataError, PipelineError
from recbatch.layout import RunLayout
from recbatch.storage import Location, count_rows, location
from recbatch.train.warm_rows import RowMap, duplicate_ids, row_map

log = logging.getLogger("recbatch.train")

# Config keys that decide a model's variable shapes beside the catalogue sizes.
SHAPE_KEYS = ("embedding_dim", "mlp_layers", "tower_layers")


@dataclass(frozen=True)
class Source:
    """An earlier model a fit may start from: its folder, verified manifest and its run's prepared/."""

    model_dir: Location
    manifest: dict[str, Any]
    prepared: Location

    @property
    def label(self) -> str:
        """ "dt=<date>" for a run of a work directory, else the folder itself."""
        run = self.model_dir.parent.name
        return run if run.startswith("dt=") else str(self.model_dir)

    @property
    def cold_epochs(self) -> int | None:
        """The epochs the last cold start in this model's line took (carried through warm starts)."""
        earlier = self.manifest.get("warm_start") or {}
        if earlier.get("from"):
            return earlier.get("cold_epochs")
        return self.manifest.get("best_epoch")


def incompatibility(manifest: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why a model with this manifest cannot initialise `cfg`'s model, or None when it can."""
    if manifest.get("model") != cfg.model:
        return f"it is a {manifest.get('model')} model, this run trains {cfg.model}"
    if manifest.get("loss") != cfg.loss:
        return f"it was trained with {manifest.get('loss')} loss, this run uses {cfg.loss}"
    earlier = (manifest.get("config") or {}).get("train") or {}
    for key in SHAPE_KEYS:
        if key in earlier and earlier[key] != getattr(cfg, key):
            return f"its train.{key} is {earlier[key]}, this run's is {getattr(cfg, key)}"
    return None


def _candidate(run: RunLayout, split_fit: bool, sees_everything: bool) -> tuple[Location | None, str]:
    """The model folder of an earlier run this fit may start from, or (None, why not)."""
    if not split_fit:
        return run.model_dir, ""
    if run.split_model.model_manifest.is_file():
        return run.split_model.model_dir, ""
    if sees_everything:  # no test split to protect in this run
        return run.model_dir, ""
    return None, "its only model saw every interaction, this run's test rows included"


def _check(model_dir: Location, prepared: Location, cfg: TrainConfig) -> tuple[Source | None, str]:
    """A usable Source, or (None, why not): verified files, same model and shape, matching vocabularies."""
    try:
        manifest = read_manifest(model_dir / "manifest.json")
    except (DataError, PipelineError) as exc:
        return None, str(exc)
    reason = incompatibility(manifest, cfg)
    if reason is None:
        for side in ("users", "items"):
            vocab = prepared / "vocab" / side
            rows = count_rows(vocab) if vocab.is_dir() else None
            if rows != manifest.get(f"num_{side}"):
                reason = f"its {side} vocabulary ({vocab}) has {rows} rows, the model {manifest.get(f'num_{side}')}"
                break
    return (None, reason) if reason else (Source(model_dir, manifest, prepared), "")


def find_source(setting: str, layout: RunLayout, cfg: TrainConfig, split_fit: bool, sees_everything: bool):
    """(Source or None, why none) for `train.warm_start` = "auto" or a model folder."""
    if setting != "auto":
        model_dir = location(setting)
        source, reason = _check(model_dir, model_dir.parent / "prepared", cfg)
        return source, "" if source else f"train.warm_start = {setting!r}: {reason}"
    earlier = sorted(
        (p.name[3:] for p in (layout.workdir / "runs").glob("dt=*") if p.name[3:] < layout.date), reverse=True
    )
    first_reason = ""
    for date in earlier:
        run = RunLayout(layout.workdir, date)
        if not run.model_manifest.is_file():
            continue  # a run that stopped before training: nothing to start from
        model_dir, reason = _candidate(run, split_fit, sees_everything)
        source = None
        if model_dir is not None:
            source, reason = _check(model_dir, run.prepared, cfg)
        if source is not None:
            return source, ""
        first_reason = first_reason or f"dt={date}: {reason}"
    if first_reason:
        return None, f"no usable earlier model (newest: {first_reason})"
    return None, f"no earlier dt= run with a model under {layout.workdir / 'runs'}"


def _row_maps(source: Source, layout: RunLayout) -> tuple[RowMap, RowMap] | str:
    """Both sides' RowMaps (old vocabulary -> this run's), or why the vocabularies cannot be matched."""
    maps = []
    for side, new_path in (("user", layout.user_vocab), ("item", layout.item_vocab)):
        old_path = source.prepared / "vocab" / f"{side}s"
        try:
            new_ids, new_idx = read_vocab(new_path, side)
            old_ids, old_idx = read_vocab(old_path, side)
        except (DataError, PipelineError) as exc:
            return str(exc)
        for path, ids in ((new_path, new_ids), (old_path, old_ids)):
            if duplicate_ids(ids):
                return f"{path} repeats {duplicate_ids(ids)} {side} id(s)"
        maps.append(row_map(new_ids, new_idx, old_ids, old_idx))
    return maps[0], maps[1]


@dataclass
class WarmStart:
    """The warm start of one fit: where from, the row maps, and what `initialise` copied."""

    setting: str
    source: Source | None = None
    users: RowMap | None = None
    items: RowMap | None = None
    reason: str = ""
    _old_weights: dict[str, np.ndarray] | None = None

    @property
    def active(self) -> bool:
        return self.source is not None and self.users is not None and self.items is not None

    def fall_back(self, reason: str) -> None:
        """Give up on the warm start: the fit starts cold, and one line says why."""
        self.source, self.users, self.items, self.reason = None, None, None, reason
        log.warning("train: cold start instead of train.warm_start = %r: %s", self.setting, reason)

    def initialise(self, model: Any) -> None:
        """Overwrite a freshly built model's weights from the source (all or nothing)."""
        from recbatch.train.warm_weights import load_weights, warm_values

        if not self.active:
            return
        if self._old_weights is None:
            self._old_weights = load_weights(self.source.model_dir)  # once: the search and the refit share it
        values = warm_values(model, self._old_weights, self.users, self.items)
        if isinstance(values, str):
            self.fall_back(f"{self.source.label}: {values}")
            return
        for variable, value in values:
            variable.assign(value)

    def record(self) -> dict[str, Any]:
        """The manifest's "warm_start" entry."""
        source = self.source if self.active else None
        return {
            "setting": self.setting,
            "from": str(source.model_dir) if source else None,
            "from_run": source.label if source else None,
            "users_copied": self.users.copied if source else 0,
            "items_copied": self.items.copied if source else 0,
            "index_stable": (self.users.index_stable and self.items.index_stable) if source else None,
            "cold_epochs": source.cold_epochs if source else None,
            "reason": self.reason,
        }


def plan_warm_start(
    cfg: TrainConfig, layout: RunLayout, split_fit: bool, sees_everything: bool
) -> WarmStart | None:
    """The warm start of a fit into `layout`, or None for train.warm_start = "off"."""
    if cfg.warm_start == "off":
        return None
    warm = WarmStart(cfg.warm_start)
    source, reason = find_source(cfg.warm_start, layout, cfg, split_fit, sees_everything)
    if source is None:
        warm.reason = reason
        # The first date of a work directory has nothing to start from: expected, so info, not a warning.
        level = logging.INFO if reason.startswith("no earlier dt= run") else logging.WARNING
        log.log(level, "train: cold start (train.warm_start = %r): %s", cfg.warm_start, reason)
        return warm
    maps = _row_maps(source, layout)
    if isinstance(maps, str):
        warm.fall_back(f"{source.label}: {maps}")
        return warm
    if maps[0].copied == 0 and maps[1].copied == 0:
        warm.fall_back(f"{source.label}: no user or item id in common with this run")
        return warm
    warm.source, warm.users, warm.items = source, maps[0], maps[1]
    warm.reason = f"same model, loss and shape as {source.label}; rows matched by id"
    log.info(
        "train: warm start from %s: %d of %d users and %d of %d items carry their rows over",
        source.label,
        maps[0].copied,
        count_rows(layout.user_vocab),
        maps[1].copied,
        count_rows(layout.item_vocab),
    )
    return warm
