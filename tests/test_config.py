"""Config: recipes, overrides, validation and close-match suggestions."""

import pytest

from edgeasc.config import TrainConfig, apply_overrides, from_dict, resolve_train_config, to_dict
from edgeasc.errors import ConfigError


def test_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('seed = 3\n[optim]\nepochs = 7\n[model]\nname = "test_cpmobile"\n'
                      '[augment]\ndir_devices = ["a", "b"]\n')
    cfg = resolve_train_config(recipe, ("optim.lr=0.01", "augment.mixstyle_p=0", "data.cache_dir=/tmp/x"))
    assert cfg.seed == 3 and cfg.optim.epochs == 7 and cfg.optim.lr == 0.01
    assert cfg.augment.mixstyle_p == 0 and cfg.augment.dir_devices == ("a", "b")
    assert cfg.model.name == "test_cpmobile" and cfg.data.cache_dir == "/tmp/x"
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        resolve_train_config(None, ("optim.epoch=3",))
    with pytest.raises(ConfigError, match="did you mean 'augment'"):
        from_dict(TrainConfig, {"augmnet": {}})


def test_invalid_values_are_config_errors():
    with pytest.raises(ConfigError, match="mixstyle_p"):
        resolve_train_config(None, ("augment.mixstyle_p=1.5",))
    with pytest.raises(ConfigError, match="train_split"):
        resolve_train_config(None, ("data.train_split=split33",))
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["optim.epochs"])


def test_missing_or_broken_recipe(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_train_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_train_config(bad)
