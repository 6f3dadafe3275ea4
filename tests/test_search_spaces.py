"""Search spaces: every named space samples valid, trainable configurations; data spaces are checked."""

from __future__ import annotations

import dataclasses
import pytest
import torch

from visiontune.config import config_from_dict
from helpers import builtin_card

from visiontune.data.card import build_card
from visiontune.data.splits import DataSplits
from visiontune.data.synthetic import synthetic_digits, synthetic_glands
from visiontune.engine import Trainer, TrainingDiverged
from visiontune.errors import ConfigError
from visiontune.search_spaces import check_space, conditioned, describe_space, list_spaces, resolve_space
from visiontune.search_spaces.declarative import DeclarativeSpace


def tiny_splits(task: str) -> DataSplits:
    shape = builtin_card(task)
    if shape.kind == "classification":
        size, channels = shape.image_size[0], shape.channels
        make = lambda n, s: synthetic_digits(n, s, size=size, channels=channels)  # noqa: E731
    else:
        make = lambda n, s: synthetic_glands(n, s, size=32)  # noqa: E731  (32 = 2**5: every depth fits)
    train, val, test = make(6, 0), make(3, 1), make(3, 2)
    card = build_card(name=task, kind=shape.kind, classes=shape.classes, train=train, val=val, test=test, seed=0,
                      how="tiny", source="tiny")
    return DataSplits(task, train, val, test, split_seed=0, source="tiny", card=card)


@pytest.mark.parametrize("name, task", [(name, task) for name, task, _ in list_spaces()])
def test_every_sampled_configuration_builds_and_trains_one_step(name, task):
    """Property test: 40 random configurations per space, each built and stepped once."""
    space = resolve_space(builtin_card(task), name)
    splits = tiny_splits(task)
    # The GPU-sized spaces hold 64-wide nets, seconds a step on a CPU: fewer draws keep CI short.
    configs = space.sample(12 if name.endswith("-gpu") else 40, seed=1)
    assert len({repr(sorted(c.items())) for c in configs}) > 1 or space.declarative is not None
    for sampled in configs:
        # fp32: the bf16 probe of "auto" would time every configuration twice (tested in test_engine).
        config = config_from_dict({**sampled, "task": task, "epochs": 2, "precision": "fp32"}, f"{name} sample")
        trainer = Trainer(config, splits, device="cpu")
        try:
            metrics = trainer.fit_epoch()
        except TrainingDiverged:
            assert config.optimizer == "sgd"  # only large plain-SGD steps may blow up; that is an outcome
            continue
        assert torch.isfinite(torch.tensor(metrics["train/loss"]))
        assert trainer.epoch == 1


def test_conditional_parameters_appear_only_in_their_branch():
    space = resolve_space(builtin_card("mnist"), "mnist")
    for config in space.sample(200, seed=3):
        assert ("hidden" in config) == (config["model"] == "fnn")
        assert ("blocks" in config) == (config["model"] == "cnn")
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert ("reg_weight" in config) == (config["regularizer"] != "none")
        assert ("rotate_degrees" in config) == (config["augment"] != "none")


def test_a_fixed_choice_takes_its_branch_and_draws_nothing_of_the_others():
    space = resolve_space(builtin_card("mnist"), "mnist")
    cnn = conditioned(space, {"model": "cnn", "optimizer": "sgd"})
    for config in cnn.sample(100, seed=3):
        assert config["model"] == "cnn" and "hidden" not in config and {"blocks", "width"} <= set(config)
        assert config["optimizer"] == "sgd" and 1e-2 <= config["lr"] <= 1.0 and "momentum" in config
    shown = "\n".join(describe_space(cnn))
    assert "hidden" not in shown and "model = 'cnn'  (constant)" in shown and "blocks: int 1 to 4" in shown
    fnn = conditioned(space, {"model": "fnn", "width": 16})  # a setting of the other branch: a constant only
    assert all("blocks" not in c and c["hidden"] in (128, 256, 512, 800, 1024) for c in fnn.sample(50, seed=1))
    with pytest.raises(ConfigError, match=r"--set lr=5: the space draws lr from \[0.01, 1\]"):
        conditioned(space, {"optimizer": "sgd", "lr": 5}).sample(5)


def test_a_fixed_value_conditions_a_space_files_when_parameters(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  model: fcn2\n  optimizer: [sgd, adam]\n"
                    "  momentum: {uniform: [0.0, 0.9], when: {optimizer: sgd}}\n  lr: {loguniform: [1.0e-4, 1.0e-1]}\n")
    space = resolve_space(builtin_card("warwick"), str(path))
    assert all("momentum" not in c for c in conditioned(space, {"optimizer": "adam"}).sample(30))
    assert all("momentum" in c for c in conditioned(space, {"optimizer": "sgd"}).sample(30))


def test_named_space_for_the_other_task_is_refused():
    with pytest.raises(ConfigError, match="space 'warwick' is for segmentation tasks such as warwick, not mnist"):
        resolve_space(builtin_card("mnist"), "warwick")
    with pytest.raises(ConfigError, match="unknown space 'nope'; named spaces for mnist: mnist, mnist-cnn"):
        resolve_space(builtin_card("mnist"), "nope")


def test_yaml_space_with_conditions_and_grid(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "description: lr and momentum\n"
        "params:\n"
        "  model: fcn2\n"
        "  optimizer: [sgd, adam]\n"
        "  lr: {loguniform: [1.0e-4, 1.0e-1]}\n"
        "  momentum: {uniform: [0.0, 0.9], when: {optimizer: sgd}}\n"
        "  depth: {int: [2, 4]}\n")
    space = resolve_space(builtin_card("warwick"), str(path))
    assert space.description == "lr and momentum"
    configs = space.sample(50, seed=0)
    assert all(c["model"] == "fcn2" and 1e-4 <= c["lr"] <= 0.1 and c["depth"] in (2, 3, 4) for c in configs)
    assert all(("momentum" in c) == (c["optimizer"] == "sgd") for c in configs)
    with pytest.raises(ConfigError, match="lr: a grid search needs a list of values"):
        space.grid()
    grid = DeclarativeSpace({"params": {"model": "fcn2", "batch_size": [8, 16], "lr": [0.01, 0.001]}},
                            builtin_card("warwick"), "g")
    assert grid.grid_size() == 4
    assert {(p["batch_size"], p["lr"]) for p in grid.grid_points()} == {(8, 0.01), (8, 0.001), (16, 0.01), (16, 0.001)}


@pytest.mark.parametrize("text, message", [
    ("params:\n  lrr: [0.1]\n", "lrr: unknown parameter"),
    ("params:\n  dropout: {uniform: [0.5, 0.5]}\n", r"dropout: empty range \[0.5, 0.5\]"),
    ("params:\n  lr: {uniform: [-0.1, 0.1]}\n", r"lr: the learning rate must be positive, got range \[-0.1, 0.1\]"),
    ("params:\n  lr: {loguniform: [0, 0.1]}\n", r"lr: a log range must lie above 0, got \[0, 0.1\]"),
    ("params:\n  lr: {normal: [0, 1]}\n", "lr: expected exactly one of uniform, loguniform"),
    ("params:\n  batch_size: []\n", "batch_size: a choice needs a non-empty list"),
    ("params:\n  optimizer: [sgd, rmsprop]\n", "optimizer: optimizer must be one of sgd, adam, adamw"),
    ("params:\n  momentum: {uniform: [0, 0.9], when: {optimizer: sgd}}\n", "'when' refers to 'optimizer'"),
    ("params:\n  epochs: [1, 2]\n", "epochs: is set by the search itself"),
    ("params: {}\n", "needs a non-empty 'params' mapping"),
    ("parameters:\n  lr: [0.1]\n", "unknown key 'parameters'"),
    ("params:\n  lr: [0.1\n", r"not valid YAML \(line"),
    ("task: mnist\nparams:\n  lr: [0.1]\n", "is a space for task 'mnist', not 'warwick'"),
])
def test_bad_space_files_are_rejected_with_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        resolve_space(builtin_card("warwick"), str(path))
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_space_combinations_are_checked_by_sampling(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("params:\n  model: [cnn, fnn]\n  blocks: [2, 3]\n")  # blocks also sampled for the FNN
    space = resolve_space(builtin_card("mnist"), str(path))
    with pytest.raises(ConfigError, match="blocks does not apply to model 'fnn'"):
        check_space(space, {"task": "mnist", "epochs": 1}, builtin_card("mnist"))


def test_json_space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{"params": {"model": "cnn", "width": [8, 16], "lr": {"loguniform": [1e-4, 1e-2]}}}')
    config = resolve_space(builtin_card("mnist"), str(path)).sample(1)[0]
    assert config["width"] in (8, 16) and config["model"] == "cnn"


def test_warm_start_points_are_checked_against_the_space():
    from visiontune.search import REPORT_BEST
    from visiontune.search_spaces import check_point_in_space

    # The report's best lies in each task's default space, fitted to the real data set's 55,000
    # and 68 training images (the synthetic stand-ins hold too few for WARWICK's batch of 64).
    for task, train in (("mnist", 55_000), ("warwick", 68)):
        card = builtin_card(task)
        card = dataclasses.replace(card, split={**card.split, "sizes": {**card.split["sizes"], "train": train}})
        check_point_in_space(resolve_space(card, task), REPORT_BEST[task], {"task": task, "epochs": 3})
    space = resolve_space(builtin_card("warwick"), "warwick-unet")
    with pytest.raises(ConfigError, match="'64' not in"):
        check_point_in_space(space, {"batch_size": 64}, {"task": "warwick"})
    with pytest.raises(ConfigError, match=r"lr=0.5 lies outside the range \[0.0001, 0.002\]"):
        check_point_in_space(space, {"lr": 0.5}, {"task": "warwick"})
    with pytest.raises(ConfigError, match="model='fcn2' does not fit space 'warwick-unet', which gives 'unet'"):
        check_point_in_space(space, {"model": "fcn2"}, {"task": "warwick"})
    with pytest.raises(ConfigError, match="hidden=100 is not a setting of space 'mnist'"):
        check_point_in_space(resolve_space(builtin_card("mnist"), "mnist"), {"model": "cnn", "hidden": 100}, {"task": "mnist"})


def test_a_grid_with_rows_is_shown_as_its_points(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("rows:\n  - {optimizer: sgd, lr: 0.1}\n  - {optimizer: adam, lr: 0.001}\n"
                    "params:\n  model: cnn\n  seed: [0, 1]\n")
    shown = describe_space(resolve_space(builtin_card("mnist"), str(path)))
    assert shown[1] == "  grid: 4 points"  # rows times the lists; never sampled (a row grid cannot be)
    assert sum("optimizer='sgd', lr=0.1" in line for line in shown) == 2 and sum("seed=1" in line for line in shown) == 2
