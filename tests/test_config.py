"""Configuration checking: one clear error per bad setting."""

import dataclasses

import pytest
from helpers import builtin_card

from visiontune.config import TrainConfig, config_from_dict, load_config_file
from visiontune.errors import ConfigError


def test_model_kwargs_carry_only_set_fields_and_the_cards_shape():
    warwick, mnist = builtin_card("warwick"), builtin_card("mnist")
    config = config_from_dict({"task": "warwick", "model": "unet", "depth": 3, "width": 4}, card=warwick)
    assert config.model_kwargs(warwick) == {"depth": 3, "width": 4, "in_channels": 2, "num_classes": 2}
    assert TrainConfig(task="mnist").model_kwargs(mnist) == {"in_channels": 1, "num_classes": 10, "image_size": (28, 28)}
    # The shape is the card's, whatever the task's name: a 3-channel 32x32 set of 4 classes.
    colour = dataclasses.replace(mnist, name="mine", channels=3, image_size=[32, 32], classes=list("abcd"))
    assert TrainConfig(task="mine").model_kwargs(colour) == {"in_channels": 3, "num_classes": 4, "image_size": (32, 32)}


def test_without_a_card_only_the_data_independent_checks_run():
    """A config file is checked before the data loads; what depends on the data waits for its card."""
    config = config_from_dict({"task": "mnist", "loss": "dice", "augment": "flip"})
    with pytest.raises(ConfigError, match="loss must be one of ce for classification"):
        config.validate(builtin_card("mnist"))
    config.validate(builtin_card("warwick"))
    with pytest.raises(ConfigError, match="loss must be one of ce, dice, ce\\+dice, not 'focal'"):
        config_from_dict({"task": "mnist", "loss": "focal"})


@pytest.mark.parametrize("settings, message", [
    ({"lrr": 0.1}, "unknown setting 'lrr'"),
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"lr": "fast"}, "lr must be float"),
    ({"blocks": 2.5}, "blocks must be int"),
    ({"batchnorm": "yes"}, "batchnorm must be bool"),
    ({"model": "fnn", "blocks": 3}, "blocks does not apply to model 'fnn'"),
    ({"model": "unet"}, "unknown classification model 'unet'"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw"),
    ({"loss": "dice"}, "loss must be one of ce for classification"),
    ({"augment": "flip"}, r"does not suit mnist \(classification\)"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\)"),
    ({"reg_weight": -1}, "reg_weight must be a non-negative number"),
])
def test_bad_settings_are_rejected_with_their_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"task": "mnist", **settings}, "my.json", builtin_card("mnist"))


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"lr": 0.1,,}')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON \(line 1"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="missing.json: cannot read config file"):
        load_config_file(tmp_path / "missing.json")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config_file(path)


def test_to_dict_round_trips():
    config = config_from_dict({"task": "mnist", "model": "cnn", "blocks": 2, "dropout": 0.2})
    assert config_from_dict(config.to_dict(compact=True)) == config
