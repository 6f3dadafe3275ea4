"""The built-in tasks: the data sets visiontune reads by name, their kind, shape, classes and
default split.

Words: a *task* is what a command is given to train on, a built-in task's name (these) or the path
of a user's data set (``TrainConfig.task``, ``SearchOptions.task``, ``DataSplits.task`` hold that
string); its *kind* (classification or segmentation, ``kinds.Kind``) is what follows for metrics,
models and outputs. Only the data loader (``data.load_splits``) looks a task up here: it turns
the name into arrays and a data-set card (``data.card``), and from then on the card is the task.
"""

from __future__ import annotations

from dataclasses import dataclass

from visiontune.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """What a built-in task is: its kind, data shape and default split."""

    name: str
    kind: str  # "classification" or "segmentation"
    description: str
    in_channels: int
    image_size: int
    num_classes: int
    val_size: int  # default validation split carved from the training set
    synthetic_sizes: tuple[int, int]  # (train+val, test) of the synthetic stand-in
    synthetic_val_size: int
    class_names: tuple[str, ...] = ()  # empty: the class indices as names
    # The channels of the decoded RGB file the model sees (None: as decoded): what predict keeps.
    keep_channels: tuple[int, ...] | None = None

    @property
    def classes(self) -> list[str]:
        """The class names in index order."""
        return list(self.class_names) or [str(index) for index in range(self.num_classes)]


TASKS: dict[str, TaskSpec] = {
    "mnist": TaskSpec(
        name="mnist", kind="classification", description="MNIST handwritten digits, 10 classes",
        in_channels=1, image_size=28, num_classes=10, val_size=5000, synthetic_sizes=(600, 200),
        synthetic_val_size=100,
    ),
    "warwick": TaskSpec(
        name="warwick", kind="segmentation", description="WARWICK (GlaS) gland segmentation, 128x128, 2 stains",
        in_channels=2, image_size=128, num_classes=2, val_size=17, synthetic_sizes=(48, 16),
        synthetic_val_size=12, class_names=("background", "gland"),
        # Its PNGs are RGB holding the two stains in R and G (B is zero): the model sees those two.
        keep_channels=(0, 1),
    ),
}


def _torchvision_task(name: str, description: str, channels: int, size: int) -> TaskSpec:
    """A 10-class classification set of torchvision's (data/torchvision_sets.py), run like MNIST."""
    return TaskSpec(name=name, kind="classification", description=description, in_channels=channels,
                    image_size=size, num_classes=10, val_size=5000, synthetic_sizes=(600, 200),
                    synthetic_val_size=100)


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
