"""The published model is refitted on every interaction after evaluation, for the epochs chosen on
validation; interaction strength weighs the loss only when asked (real TensorFlow, tiny data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recbatch.artifacts import data_fingerprint, read_factors, read_manifest
from recbatch.errors import ConfigError
from tests.builders import clustered_data, tiny_config, write_prepared, write_split


def _prepared_with_interactions(root: Path, strengths: np.ndarray | None = None):
    """write_prepared plus interactions = train + test (and custom weights in every split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = clustered_data()
    tr_u, tr_i, te_u, te_i, _, _ = data
    layout = write_prepared(root, data)
    write_split(layout.interactions, np.concatenate([tr_u, te_u]), np.concatenate([tr_i, te_i]))
    if strengths is not None:
        for split in (layout.train, layout.interactions):
            for part in sorted(Path(split.local_path).glob("part-*.parquet")):
                table = pq.read_table(part)
                rng = np.random.default_rng(len(table))
                weight = pa.array(rng.choice(strengths, size=len(table)).astype(np.float64))
                pq.write_table(
                    table.set_column(table.schema.get_field_index("weight"), "weight", weight), part
                )
    return layout


def test_final_fit_refits_on_every_interaction_for_the_validated_epochs(tmp_path):
    from recbatch import pipeline

    layout = _prepared_with_interactions(tmp_path)
    config = tiny_config(tmp_path, "mf", epochs=6, patience=2)
    published = pipeline.train(config, layout)  # `recbatch train`: split fit, then final fit
    evaluated = read_manifest(layout.split_model.model_manifest)
    assert evaluated["fit_data"] == "train" and published["fit_data"] == "all"
    assert evaluated["train_positives"] == 60 * 8 and published["train_positives"] == 60 * 9
    assert published["epochs"] == evaluated["best_epoch"] >= 1
    assert published["data_fingerprint"] == data_fingerprint(layout.interactions)
    assert published["evaluated_model"]["dir"] == str(layout.split_model.model_dir)
    assert read_manifest(layout.model_manifest)["fit_data"] == "all"
    split_items = read_factors(layout.split_model.item_factors, "item_idx")
    final_items = read_factors(layout.item_factors, "item_idx")
    assert split_items.shape == final_items.shape and not np.allclose(split_items, final_items)


def test_final_fit_train_publishes_the_evaluated_model_itself(tmp_path):
    from recbatch import pipeline

    layout = _prepared_with_interactions(tmp_path)
    config = tiny_config(tmp_path, "mf", epochs=2, final_fit="train")
    assert pipeline.evaluated_layout(config, layout) is layout
    manifest = pipeline.train(config, layout)
    assert manifest["fit_data"] == "train" and not layout.split_model.model_dir.exists()


@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_weighting_by_equal_strengths_is_exactly_no_weighting(tmp_path, loss):
    from recbatch.train.stage import run_train

    factors = {}
    for weighting in ("none", "log"):
        layout = _prepared_with_interactions(tmp_path / weighting)
        run_train(tiny_config(tmp_path / weighting, "mf", epochs=2, loss=loss, weighting=weighting), layout)
        factors[weighting] = read_factors(layout.item_factors, "item_idx")
    np.testing.assert_array_equal(factors["none"], factors["log"])


def test_unequal_strengths_change_the_model_and_the_manifest_says_how(tmp_path):
    from recbatch.train.stage import run_train

    factors = {}
    for weighting in ("none", "confidence"):
        layout = _prepared_with_interactions(tmp_path / weighting, strengths=np.array([1.0, 2.0, 50.0]))
        manifest = run_train(tiny_config(tmp_path / weighting, "mf", epochs=2, weighting=weighting), layout)
        assert manifest["weighting"] == weighting
        factors[weighting] = read_factors(layout.item_factors, "item_idx")
    assert not np.allclose(factors["none"], factors["confidence"])


def test_weighting_a_streamed_split_is_refused_with_the_keys_to_change(tmp_path):
    from recbatch.train.stage import run_train

    layout = _prepared_with_interactions(tmp_path)
    config = tiny_config(tmp_path, "mf", epochs=1, input="stream", weighting="log")
    with pytest.raises(ConfigError, match="memory_limit_mb, or set weighting = 'none'"):
        run_train(config, layout)
