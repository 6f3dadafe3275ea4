"""The kinds of learning problem visiontune trains, and what follows from the kind alone.

A data set's card (``data.card.DatasetCard``) names its kind; everything that depends on the
kind and not on the particular data set (the metric that selection and ASHA maximise, the
default model, the losses and test-time augmentations that make sense, the augmentations the
data may take) is read here, from ``card.task_kind``, never looked up again by a task's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from visiontune import metrics
from visiontune.errors import ConfigError


@dataclass(frozen=True)
class TaskKind:
    """What a kind of task implies, whatever the data set."""

    name: str  # "classification" or "segmentation"
    val_metric: str  # what selection, early stopping and ASHA maximise
    test_metric: str
    default_model: str
    losses: tuple[str, ...]
    # Test-time augmentation: the mean of the class probabilities over flipped and rotated views.
    # Segmentation only: a flipped or rotated digit can be another digit.
    tta_modes: tuple[str, ...]
    augmentations: tuple[str, ...]  # what this kind of data may be augmented with (data/augment.py)


KINDS: dict[str, TaskKind] = {
    "classification": TaskKind(
        name="classification", val_metric=metrics.VAL_ACC, test_metric=metrics.TEST_ACC, default_model="cnn",
        losses=("ce",), tta_modes=("none",), augmentations=("rotate", "shift", "noise")),
    "segmentation": TaskKind(
        name="segmentation", val_metric=metrics.VAL_DICE, test_metric=metrics.TEST_DICE, default_model="fcn2",
        losses=("ce", "dice", "ce+dice"), tta_modes=("none", "flip", "d4"),
        augmentations=("flip", "rot90", "rotate", "shift", "noise", "stain")),
}


def task_kind(name: str) -> TaskKind:
    """The kind called ``name``; a :class:`ConfigError` listing the kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}") from None
