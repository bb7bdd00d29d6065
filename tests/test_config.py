"""Config: recipes, overrides, validation and close-match suggestions."""

import re

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


@pytest.mark.parametrize("override, match", [
    ("optim.epochs=2.5", "optim.epochs must be an integer, got 2.5"),
    ("seed=abc", "seed must be an integer, got 'abc'"),
    ('seed="zero"', "seed must be an integer, got 'zero'"),
    ("optim.lr=nan", "optim.lr must be a finite number, got nan"),
    ("optim.lr=inf", "optim.lr must be a finite number, got inf"),
    ("optim.lr=abc", "optim.lr must be a finite number, got 'abc'"),
    ("optim.batch_size=true", "optim.batch_size must be an integer, got True"),
    ("optim.channels_last=maybe", "optim.channels_last must be true or false, got 'maybe'"),
    ("optim.warmup_steps=1.5", "optim.warmup_steps must be an integer, got 1.5"),
    ("frontend.f_max_hz=abc", "frontend.f_max_hz must be a finite number or none, got 'abc'"),
    ("augment.dir_devices=[1]", "augment.dir_devices must be a list of strings"),
    ("quant.weight_fake_quant=1", "quant.weight_fake_quant must be true or false, got 1"),
    ("model.kwargs=3", "model.kwargs must be a table"),
])
def test_config_values_are_type_checked_with_one_line_naming_the_key(override, match):
    with pytest.raises(ConfigError, match=re.escape(match)) as info:
        resolve_train_config(None, (override,))
    assert "\n" not in str(info.value) and str(info.value).count(match.split(" ")[0]) == 1


def test_an_integer_for_a_float_is_stored_as_the_float():
    cfg = resolve_train_config(None, ("optim.lr=1", "frontend.f_max_hz=8000", "optim.precision=32"))
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert isinstance(cfg.frontend.f_max_hz, float) and cfg.optim.precision == "32"
