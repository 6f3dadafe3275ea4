"""The report's experiments as named studies: each a grid of settings, with the report's numbers.

A study is a grid of rows (settings that belong together) crossed with training seeds, run
through the search service (``--searcher grid``, no early stopping, as the report trained every
setting in full). ``report`` is the figure the report gives for a row, as it gives it; where the
report read it off the test set while also using the test set to choose, the study says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from visiontune.errors import ConfigError


@dataclass(frozen=True)
class Row:
    """One setting of a study: a label, the settings it fixes, and the report's number for it."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    report: str = "-"


@dataclass(frozen=True)
class Study:
    name: str
    task: str
    description: str
    base: dict[str, Any]  # settings every row shares
    rows: tuple[Row, ...]
    epochs: int  # the report's
    quick_epochs: int
    report_note: str  # how the report obtained its numbers

    def space(self, seeds: int) -> dict[str, Any]:
        """The study as a declarative grid space: its rows, each with every seed."""
        space: dict[str, Any] = {"description": f"study {self.name}: {self.description}",
                                 "params": {**self.base, "seed": list(range(seeds))}}
        if any(row.settings for row in self.rows):
            space["rows"] = [dict(row.settings) for row in self.rows]
        return space

    def row_of(self, config: dict[str, Any]) -> Row | None:
        """The row a trial's configuration belongs to."""
        for row in self.rows:
            if all(config.get(key) == value for key, value in row.settings.items()):
                return row
        return None


# The report's MNIST CNN of 1.2: three conv-ReLU-pool blocks 8-16-32 (21,578 weights).
REPORT_CNN = {"model": "cnn", "blocks": 3, "width": 8, "activation": "relu"}
SGD_01 = {"optimizer": "sgd", "lr": 0.1}
ADAM = {"optimizer": "adam", "lr": 0.001}
ON_TEST = "the report read test accuracy every epoch and also chose settings by it"
WARWICK_ON_TEST = "the report validated on the test set"
WARWICK_TABLES = "the report split a validation set off, but chose the setting by test Dice"

STUDIES: dict[str, Study] = {study.name: study for study in (
    Study("1.1-fnn", "mnist", "FNN 784-800-10 (ReLU), SGD lr 1, batch 1024, 30 epochs",
          {"model": "fnn", "hidden": 800, "activation": "relu", "optimizer": "sgd", "lr": 1.0, "batch_size": 1024},
          (Row("FNN 784-800-10", {}, "0.98"),), 30, 5, ON_TEST),
    Study("1.2-cnn", "mnist", "CNN 8-16-32 (21,578 weights), SGD lr 0.1, batch 32, 20 epochs",
          {**REPORT_CNN, **SGD_01, "batch_size": 32},
          (Row("CNN 8-16-32, ReLU then pool", {}, "0.99"),), 20, 3, ON_TEST),
    Study("1.3-order", "mnist", "pooling before or after the activation, ReLU and tanh (CNN of 1.2, SGD)",
          {"model": "cnn", "blocks": 3, "width": 8, **SGD_01, "batch_size": 32},
          (Row("ReLU, then pool", {"activation": "relu", "pool_first": False}, "0.99"),
           Row("pool, then ReLU", {"activation": "relu", "pool_first": True}, "0.99"),
           Row("tanh, then pool", {"activation": "tanh", "pool_first": False}, "-"),
           Row("pool, then tanh", {"activation": "tanh", "pool_first": True}, "0.99")), 20, 3, ON_TEST),
    Study("1.4-adam", "mnist", "Adam with its default lr 1e-3 against SGD lr 0.1 (CNN of 1.2)",
          {**REPORT_CNN, "batch_size": 32},
          (Row("SGD lr 0.1", SGD_01, "0.99 (after 5 epochs)"),
           Row("Adam lr 1e-3", ADAM, "0.99 (after 2 epochs)")), 20, 3, ON_TEST),
    Study("1.5-blocks", "mnist", "number of conv blocks 1-4 (width 8, Adam)",
          {"model": "cnn", "width": 8, "activation": "relu", **ADAM, "batch_size": 32},
          tuple(Row(f"{b} block{'s' if b > 1 else ''}", {"blocks": b}, "best of 4" if b == 3 else "-")
                for b in (1, 2, 3, 4)), 20, 3, ON_TEST),
    Study("1.5-width", "mnist", "first-block feature maps 8/16/32/64 (3 blocks, Adam)",
          {"model": "cnn", "blocks": 3, "activation": "relu", **ADAM, "batch_size": 32},
          tuple(Row(f"{w} maps", {"width": w}, "best of 4" if w == 32 else "-") for w in (8, 16, 32, 64)),
          20, 3, ON_TEST),
    Study("1.5-activation", "mnist", "activation ReLU / sigmoid / tanh (CNN of 1.2, Adam)",
          {"model": "cnn", "blocks": 3, "width": 8, **ADAM, "batch_size": 32},
          (Row("ReLU", {"activation": "relu"}, "chosen"), Row("sigmoid", {"activation": "sigmoid"}, "slowest to 0.95"),
           Row("tanh", {"activation": "tanh"}, "-")), 20, 3, ON_TEST),
    Study("1.5-dropout", "mnist", "Dropout2d after each pooling, p = 0 to 0.6 (CNN of 1.2, Adam)",
          {**REPORT_CNN, **ADAM, "batch_size": 32},
          tuple(Row(f"p = {p:.1f}", {"dropout": p}, "best" if p == 0 else "-")
                for p in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)), 20, 3, ON_TEST),
    Study("1.5-batchnorm", "mnist", "batch normalisation after each convolution, off / on (CNN of 1.2, Adam)",
          {**REPORT_CNN, **ADAM, "batch_size": 32},
          (Row("no batchnorm", {"batchnorm": False}, "-"), Row("batchnorm", {"batchnorm": True}, "better")),
          20, 3, ON_TEST),
    Study("1.5-regularizer", "mnist", "L1 / L2 (lambda 0.001) with SGD against Adam without (CNN of 1.2)",
          {**REPORT_CNN, "batch_size": 32, "reg_weight": 0.001},
          (Row("none, Adam", {"regularizer": "none", **ADAM}, "best"),
           Row("L1, SGD", {"regularizer": "l1", **SGD_01}, "second"),
           Row("L2, SGD", {"regularizer": "l2", **SGD_01}, "-"),
           Row("none, SGD", {"regularizer": "none", **SGD_01}, "-")), 20, 3, ON_TEST),
    Study("1.5-augment", "mnist", "rotation augmentation (20 degrees) off / on (3 blocks, width 32, batchnorm, Adam)",
          {"model": "cnn", "blocks": 3, "width": 32, "activation": "relu", "batchnorm": True, **ADAM,
           "batch_size": 32, "rotate_degrees": 20.0},
          (Row("no augmentation", {"augment": "none"}, "0.99"),
           Row("rotation 20 degrees", {"augment": "rotate"}, "0.96")), 20, 3,
          ON_TEST + "; its rotated copies were made before any split"),
    Study("1.5-best", "mnist", "the report's best: 3 blocks, 32 maps, ReLU, batchnorm, Adam 1e-3",
          {"model": "cnn", "blocks": 3, "width": 32, "activation": "relu", "batchnorm": True, **ADAM,
           "batch_size": 32},
          (Row("report's best CNN", {}, "0.990"),), 20, 3, ON_TEST),
    Study("2.1-fcn", "warwick", "FCN, Adam 1e-3, batch 32, 100 epochs",
          {"model": "fcn", **ADAM, "batch_size": 32},
          (Row("FCN", {}, "0.70"),), 100, 20, WARWICK_ON_TEST),
    Study("2.2-fcn2", "warwick", "FCN2 (batchnorm, conv after each transposed conv), without and with flips",
          {"model": "fcn2", **ADAM, "batch_size": 32},
          (Row("FCN2", {"augment": "none"}, "0.80"), Row("FCN2 + flips", {"augment": "flip"}, "0.82")),
          100, 20, WARWICK_ON_TEST),
    Study("2.2-batch", "warwick", "report table 1: FCN2 with flips, Adam 1e-3, batch sizes 8-128",
          {"model": "fcn2", "augment": "flip", **ADAM},
          tuple(Row(f"batch {b}", {"batch_size": b}, report) for b, report in
                ((8, "0.8359"), (16, "0.8150"), (32, "0.8036"), (64, "0.8203"), (128, "0.7979"))),
          100, 20, WARWICK_TABLES),
    Study("2.2-lr", "warwick", "report table 2: FCN2 with flips, batch 64, Adam learning rates 1e-2 to 1e-5",
          {"model": "fcn2", "augment": "flip", "optimizer": "adam", "batch_size": 64},
          tuple(Row(f"lr {lr:g}", {"lr": lr}, report) for lr, report in
                ((1e-2, "0.8078"), (1e-3, "0.8230"), (1e-4, "0.7132"), (1e-5, "0.6411"))),
          100, 20, WARWICK_TABLES),
    Study("2.2-best200", "warwick", "the report's best: FCN2 with flips, batch 64, Adam 1e-3, 200 epochs",
          {"model": "fcn2", "augment": "flip", **ADAM, "batch_size": 64},
          (Row("FCN2 + flips, 200 epochs", {}, "0.83"),), 200, 40, WARWICK_TABLES),
)}


def get_study(name: str) -> Study:
    """A study by name; a :class:`ConfigError` listing the names otherwise."""
    try:
        return STUDIES[name]
    except KeyError:
        raise ConfigError(f"unknown study {name!r}; the studies are: {', '.join(STUDIES)} "
                          "(visiontune reproduce --list)") from None
