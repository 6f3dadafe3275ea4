"""The kinds of learning problem visiontune trains, and what follows from the kind alone.

A data set's card (``data.card.DatasetCard``) names its kind; everything that depends on the
kind and not on the particular data set is here, read from ``card.task_kind`` and never looked
up again by a task's name: the metrics selection and ASHA may maximise, the default model, the
losses and test-time augmentations that make sense, the augmentations the data may take, and
the kind's part of the training loop (its metric accumulator, its running training sums, how
augmentation treats the targets). ``engine.Trainer`` has no branch on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from visiontune import losses, metrics
from visiontune.errors import ConfigError

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard

Sums = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # loss, hits (or Dice numerator), Dice denominator


@dataclass(frozen=True)
class TaskKind:
    """What a kind of task implies, whatever the data set."""

    name: str  # "classification" or "segmentation"
    val_metric: str  # what selection, early stopping and ASHA maximise by default
    val_metrics: tuple[str, ...]  # what --metric may choose instead
    test_metric: str
    default_model: str
    losses: tuple[str, ...]
    # Test-time augmentation: the mean of the class probabilities over flipped and rotated views.
    # Segmentation only: a flipped or rotated digit can be another digit.
    tta_modes: tuple[str, ...]
    augmentations: tuple[str, ...]  # what this kind of data may be augmented with (data/augment.py)
    augment_targets: bool  # whether a geometric augmentation moves the targets too (masks)
    padding: str  # what augmentation fills new borders with
    eval_batch: int  # images per evaluation batch (inference mode keeps no gradients)
    train_metric: str  # the running training figure reported beside the loss

    def loss(self, name: str) -> losses.Loss:
        """The loss function ``(logits, target) -> scalar`` called ``name``."""
        _check_choice("loss", name, self.losses, self.name)
        return losses.LOSSES[name]

    def accumulator(self, card: "DatasetCard", per_class: bool = False):
        """A fresh metric accumulator for one evaluation pass over ``card``'s data; ``per_class``
        adds each class's own figure (the test split's, for the report)."""
        raise NotImplementedError

    def hits_dtype(self) -> torch.dtype:
        """The type of the running hit count (integers add without a type-promoting copy)."""
        raise NotImplementedError

    def add_step(self, logits: torch.Tensor, targets: torch.Tensor, sums: Sums, num_classes: int) -> None:
        """Add one training batch's hits to the running sums, on the device, without a host sync."""
        raise NotImplementedError

    def epoch_figure(self, sums: Sums, count: int) -> float:
        """The epoch's training figure (``train_metric``) from its sums."""
        raise NotImplementedError


def _check_choice(what: str, value: str, choices: tuple[str, ...], kind: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)} for {kind}, not {value!r}")


@dataclass(frozen=True)
class Classification(TaskKind):
    """One label per image: accuracy (also balanced, macro F1), cross-entropy."""

    def accumulator(self, card: "DatasetCard", per_class: bool = False) -> metrics.AccuracyAccumulator:
        return metrics.AccuracyAccumulator(card.num_classes, card.classes if per_class else None)

    def hits_dtype(self) -> torch.dtype:
        return torch.long

    def add_step(self, logits: torch.Tensor, targets: torch.Tensor, sums: Sums, num_classes: int) -> None:
        sums[1].add_((logits.argmax(1) == targets).sum())

    def epoch_figure(self, sums: Sums, count: int) -> float:
        return float(sums[1]) / count


@dataclass(frozen=True)
class Segmentation(TaskKind):
    """A class per pixel: per-image Dice per foreground class, pooled Dice; CE and soft Dice."""

    def accumulator(self, card: "DatasetCard", per_class: bool = False) -> metrics.DiceAccumulator:
        return metrics.DiceAccumulator(card.num_classes, card.classes)  # several foreground classes: always

    def hits_dtype(self) -> torch.dtype:
        return torch.float

    def add_step(self, logits: torch.Tensor, targets: torch.Tensor, sums: Sums, num_classes: int) -> None:
        numerator, denominator = metrics.dice_counts(metrics.segmentation_map(logits), targets, num_classes)
        sums[1].add_(numerator.sum())
        sums[2].add_(denominator.sum())

    def epoch_figure(self, sums: Sums, count: int) -> float:
        return float(sums[1] / sums[2]) if float(sums[2]) > 0 else 1.0


KINDS: dict[str, TaskKind] = {
    "classification": Classification(
        name="classification", val_metric=metrics.VAL_ACC,
        val_metrics=(metrics.VAL_ACC, metrics.VAL_BALANCED_ACC, metrics.VAL_MACRO_F1), test_metric=metrics.TEST_ACC,
        default_model="cnn", losses=("ce",), tta_modes=("none",), augmentations=("rotate", "shift", "noise"),
        augment_targets=False, padding="zeros", eval_batch=2048, train_metric="train/acc"),
    "segmentation": Segmentation(
        name="segmentation", val_metric=metrics.VAL_DICE, val_metrics=(metrics.VAL_DICE, metrics.VAL_DICE_POOLED),
        test_metric=metrics.TEST_DICE, default_model="fcn2", losses=("ce", "dice", "ce+dice"),
        tta_modes=("none", "flip", "d4"), augmentations=("flip", "rot90", "rotate", "shift", "noise", "stain"),
        augment_targets=True, padding="reflection", eval_batch=64, train_metric="train/dice_pooled"),
}


def task_kind(name: str) -> TaskKind:
    """The kind called ``name``; a :class:`ConfigError` listing the kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}") from None
