"""Comparison models: `evaluate.extra_models`, fitted with the [train] settings for the evaluate stage.

The caller above both stages (`recbatch.pipeline.evaluate`) fits them here and hands the
scorers and histories to `recbatch.evaluate.stage.run_evaluate`, so evaluation never
imports training. Each model is fitted on the whole train split, at the trained model's
(users, items) shape, with op determinism on as in `recbatch train`; mlp/neumf fall back
from sampled softmax (which needs a dot product) to sampled-negative BCE.
"""

from __future__ import annotations

import logging
from typing import Any

from recbatch.artifacts import factor_shape, read_manifest, read_pairs, read_times, require_prepared
from recbatch.config import Config, TrainConfig
from recbatch.core.ranking import FittedModel
from recbatch.layout import RunLayout

log = logging.getLogger(__name__)


def comparison_config(cfg: TrainConfig, name: str) -> TrainConfig:
    """The [train] settings for model `name`: the same, but bce instead of softmax for mlp/neumf."""
    update: dict[str, Any] = {"model": name}
    if cfg.loss == "softmax" and name in ("mlp", "neumf"):
        # Sampled softmax needs a dot product; network models fall back to sampled-negative BCE.
        update["loss"] = "bce"
    return cfg.model_copy(update=update)


def fit_comparison_model(config: Config, layout: RunLayout, name: str) -> FittedModel:
    """Fit model `name` on `layout.train` at the trained model's shape; returns (scorer, history)."""
    from recbatch.models.runtime import prepare_tensorflow

    require_prepared(layout)
    prepare_tensorflow()
    from recbatch.train.loop import fit
    from recbatch.train.validation import model_scorer

    num_users, num_items = factor_shape(layout.user_factors)[0], factor_shape(layout.item_factors)[0]
    users, items = read_pairs(layout.train)
    cfg = comparison_config(config.train, name)
    log.info("evaluate: training extra model %s (%s loss)", name, cfg.loss)
    result = fit(cfg, num_users, num_items, users, items, read_times(layout.train))
    return model_scorer(result.model), result.history


def fit_comparison_models(config: Config, layout: RunLayout) -> dict[str, FittedModel]:
    """Every model of `evaluate.extra_models` but the trained one, in order, each fitted once."""
    names = config.evaluate.extra_models
    if not names:
        return {}
    trained = str(read_manifest(layout.model_manifest).get("model", config.train.model))
    fitted: dict[str, FittedModel] = {}
    for name in names:
        if name != trained and name not in fitted:
            fitted[name] = fit_comparison_model(config, layout, name)
    return fitted
