"""The tasks visiontune knows: what kind each is, its data, its metric and its default split.

A task ties a data set to a kind of learning problem. Everything task-specific that the rest of
the code needs to look up lives here, so adding a task is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from visiontune import metrics
from visiontune.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: kind, data shape, validation metric, default split and model."""

    name: str
    kind: str  # "classification" or "segmentation"
    description: str
    val_metric: str  # the metric selection, early stopping and ASHA maximise
    test_metric: str
    in_channels: int
    image_size: int
    num_classes: int
    val_size: int  # default validation split carved from the training set
    default_model: str
    synthetic_sizes: tuple[int, int]  # (train+val, test) of the synthetic stand-in
    synthetic_val_size: int


TASKS: dict[str, TaskSpec] = {
    "mnist": TaskSpec(
        name="mnist", kind="classification", description="MNIST handwritten digits, 10 classes",
        val_metric=metrics.VAL_ACC, test_metric=metrics.TEST_ACC, in_channels=1, image_size=28,
        num_classes=10, val_size=5000, default_model="cnn", synthetic_sizes=(600, 200), synthetic_val_size=100,
    ),
    "warwick": TaskSpec(
        name="warwick", kind="segmentation", description="WARWICK (GlaS) gland segmentation, 128x128, 2 stains",
        val_metric=metrics.VAL_DICE, test_metric=metrics.TEST_DICE, in_channels=2, image_size=128,
        num_classes=2, val_size=17, default_model="fcn2", synthetic_sizes=(48, 16), synthetic_val_size=12,
    ),
}


def _torchvision_task(name: str, description: str, channels: int, size: int) -> TaskSpec:
    """A 10-class classification set of torchvision's (data/torchvision_sets.py), run like MNIST."""
    return TaskSpec(name=name, kind="classification", description=description, val_metric=metrics.VAL_ACC,
                    test_metric=metrics.TEST_ACC, in_channels=channels, image_size=size, num_classes=10,
                    val_size=5000, default_model="cnn", synthetic_sizes=(600, 200), synthetic_val_size=100)


TASKS.update({task.name: task for task in (
    _torchvision_task("fashion-mnist", "Fashion-MNIST clothing images, 10 classes", 1, 28),
    _torchvision_task("kmnist", "Kuzushiji-MNIST cursive Japanese characters, 10 classes", 1, 28),
    _torchvision_task("cifar10", "CIFAR-10 colour photographs, 32x32, 10 classes", 3, 32),
)})


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; a :class:`ConfigError` listing the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
