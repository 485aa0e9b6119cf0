"""Config loading and validation: no Spark, no TensorFlow."""

from __future__ import annotations

import tomllib

import pytest

from recbatch.config import Config, load_config
from recbatch.config_doc import defaults_template
from recbatch.errors import ConfigError
from tests.conftest import REPO


def test_default_toml_is_the_documented_template_of_the_code_defaults():
    # Regenerate with: recbatch config --template > conf/default.toml
    assert (REPO / "conf" / "default.toml").read_text() == defaults_template()


def test_default_toml_parses_to_the_code_defaults():
    documented = tomllib.loads((REPO / "conf" / "default.toml").read_text())
    defaults = Config().model_dump(mode="json", exclude_none=True)
    assert documented == defaults


@pytest.mark.parametrize("name", ["default.toml", "demo.toml", "movielens-100k.toml"])
def test_shipped_configs_are_valid(name):
    load_config(REPO / "conf" / name)


def test_overrides_are_typed_and_applied_in_order():
    cfg = load_config(None, ["train.epochs=3", "train.model=seed", "evaluate.ks=[1, 5]", "train.epochs=4"])
    assert cfg.train.epochs == 4
    assert cfg.train.model == "seed"
    assert cfg.evaluate.ks == [1, 5]


def test_empty_column_name_means_the_input_has_no_such_column():
    assert load_config(None, ['input.event_col=""']).input.event_col is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epoch=3", "unknown key 'train.epoch' (allowed here: model, embedding_dim, epochs"),
        ("train.epochs=0", "train.epochs = 0 is invalid: Input should be greater than or equal to 1"),
        ("train.model=svd", "unknown model 'svd'; choose one of seed, mf"),
        ("input.format=xml", "input.format = 'xml' is invalid"),
        ("nosection.key=1", "unknown key 'nosection'"),
        ("prepare.rating_min=9", "rating_min (9.0) is above rating_max (5.0)"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)


def test_malformed_override_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_headerless_csv_needs_column_names():
    with pytest.raises(ConfigError, match="needs input.names"):
        load_config(None, ["input.header=false"])


def test_fingerprint_changes_with_config_and_not_otherwise():
    assert Config().fingerprint() == Config().fingerprint()
    assert load_config(None, ["train.epochs=2"]).fingerprint() != Config().fingerprint()
