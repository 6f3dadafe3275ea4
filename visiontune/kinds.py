"""The kinds of learning problem visiontune trains, and everything that differs between them.

A data set's card (``data.card.DatasetCard``) names its kind; everything that depends on the
kind and not on the particular data set is here, read from ``card.kind_spec`` and never looked
up again by a task's name: the metrics selection and ASHA may maximise, the default model and
space, the losses and test-time augmentations that make sense, the augmentations the data may
take, the kind's part of the training loop (its metric accumulator, its running training sums,
how augmentation treats the targets), and what a trained model's output becomes: prediction
results and their table rows, scores against labels, the test artefacts the analysis draws.
Nothing outside this module (and the data loaders, which read the kind from the files) branches
on the kind: ``engine.Trainer``, the model layer, predict, export and analysis ask the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from visiontune import image_files, losses, metrics
from visiontune.errors import ConfigError

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard
    from visiontune.data.splits import ImageSet

Sums = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # loss, hits (or Dice numerator), Dice denominator
Result = dict[str, Any]  # one image's prediction (Kind.results)


@dataclass(frozen=True)
class Kind:
    """What a kind of task implies, whatever the data set."""

    name: str  # "classification" or "segmentation"
    val_metric: str  # what selection, early stopping and ASHA maximise by default
    val_metrics: tuple[str, ...]  # what --metric may choose instead
    test_metric: str
    default_model: str
    default_space: str  # the named space a data set of this kind searches by default
    losses: tuple[str, ...]
    # Test-time augmentation: the mean of the class probabilities over flipped and rotated views.
    # Segmentation only: a flipped or rotated digit can be another digit.
    tta_modes: tuple[str, ...]
    augmentations: tuple[str, ...]  # what this kind of data may be augmented with (data/augment.py)
    augment_targets: bool  # whether a geometric augmentation moves the targets too (masks)
    padding: str  # what augmentation fills new borders with
    eval_batch: int  # images per evaluation batch (inference mode keeps no gradients)
    train_metric: str  # the running training figure reported beside the loss
    stratified: bool  # whether splits and folds are stratified by the targets (one class per image)
    output_shape: str  # the model's output, as the model card states it
    writes_masks: bool  # predict writes a mask file per image (else a table row is the whole prediction)
    test_figures: tuple[str, ...]  # the analysis figures drawn from the test artefacts (analysis.plots)

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

    def predicted(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The winning class of each image (or pixel), uint8, from class probabilities (or logits)."""
        raise NotImplementedError

    def results(self, probabilities: torch.Tensor, classes: list[str],
                sizes: list[tuple[int, int] | None]) -> list[Result]:
        """Per image, what predict gives: the class and every class's probability, or the mask
        (resized back to the image's own ``sizes``, by nearest neighbour) and each class's pixels."""
        raise NotImplementedError

    def table_header(self, classes: list[str]) -> list[str]:
        """The header of predict's table (``predictions.csv`` or ``areas.csv``)."""
        raise NotImplementedError

    def table_row(self, name: str, result: Result, mask_file: str | None) -> list[Any]:
        """One image's row of predict's table (``mask_file``: where its mask was written)."""
        raise NotImplementedError

    def terminal_line(self, row: dict[str, str]) -> str:
        """One row of predict's table as the line the terminal shows."""
        raise NotImplementedError

    def scorable(self, label_classes: list[str], card: "DatasetCard") -> bool:
        """Whether a labelled folder with these classes can be scored by a model of ``card``."""
        raise NotImplementedError

    def score(self, card: "DatasetCard", truths: list[Any], results: list[Result]) -> dict[str, float]:
        """Predictions against labels (class names, or masks at each image's own size): the
        kind's test metrics with each class's figure."""
        raise NotImplementedError

    def eval_rows(self, card: "DatasetCard") -> int:
        """Images per evaluation batch for ``card``'s images: ``eval_batch``, fewer for large images
        (a batch is made float on the device at once)."""
        values = card.channels * card.image_size[0] * card.image_size[1]
        return max(1, min(self.eval_batch, EVAL_VALUES // values))

    def test_artefacts(self, predicted: torch.Tensor, data: "ImageSet",
                       per_image: torch.Tensor | None) -> dict[str, np.ndarray]:
        """What the analysis draws of a test evaluation (``predictions/TRIAL.npz``), from the
        predicted classes, the labelled test set and the per-image scores: the images drawn
        only, not the whole set."""
        raise NotImplementedError


# The test images the analysis draws: misclassified ones (at most), the best and worst by Dice.
DRAWN_WRONG, DRAWN_EACH = 40, 3

# Pixel values per evaluation batch at most: the largest built-in batch (2048 CIFAR-10 images),
# so the built-in tasks evaluate in the batches they always did.
EVAL_VALUES = 2048 * 3 * 32 * 32


def _check_choice(what: str, value: str, choices: tuple[str, ...], kind: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)} for {kind}, not {value!r}")


@dataclass(frozen=True)
class Classification(Kind):
    """One label per image: accuracy (also balanced, macro F1), cross-entropy."""

    def accumulator(self, card: "DatasetCard", per_class: bool = False) -> metrics.AccuracyAccumulator:
        return metrics.AccuracyAccumulator(card.num_classes, card.classes if per_class else None)

    def hits_dtype(self) -> torch.dtype:
        return torch.long

    def add_step(self, logits: torch.Tensor, targets: torch.Tensor, sums: Sums, num_classes: int) -> None:
        sums[1].add_((logits.argmax(1) == targets).sum())

    def epoch_figure(self, sums: Sums, count: int) -> float:
        return float(sums[1]) / count

    def predicted(self, probabilities: torch.Tensor) -> torch.Tensor:
        return probabilities.argmax(dim=1).to(torch.uint8)

    def results(self, probabilities: torch.Tensor, classes: list[str],
                sizes: list[tuple[int, int] | None]) -> list[Result]:
        winners, values = probabilities.argmax(dim=1).tolist(), probabilities.tolist()  # one call per batch
        return [{"class": classes[w], "probabilities": v} for w, v in zip(winners, values)]

    def table_header(self, classes: list[str]) -> list[str]:
        return ["file", "class", *(f"p_{c}" for c in classes)]

    def table_row(self, name: str, result: Result, mask_file: str | None) -> list[Any]:
        return [name, result["class"], *(f"{p:.6f}" for p in result["probabilities"])]

    def terminal_line(self, row: dict[str, str]) -> str:
        return f"{row['file']}: {row['class']} (p {float(row['p_' + row['class']]):.4f})"

    def scorable(self, label_classes: list[str], card: "DatasetCard") -> bool:
        return set(label_classes) <= set(card.classes)  # class folders the model does not know: not scored

    def score(self, card: "DatasetCard", truths: list[Any], results: list[Result]) -> dict[str, float]:
        accumulator = metrics.AccuracyAccumulator(card.num_classes, card.classes)
        truth = torch.tensor([card.classes.index(name) for name in truths])
        predicted = torch.tensor([card.classes.index(result["class"]) for result in results])
        accumulator.update(torch.nn.functional.one_hot(predicted, card.num_classes).float(), truth)
        return accumulator.aggregate()

    def test_artefacts(self, predicted: torch.Tensor, data: "ImageSet",
                       per_image: torch.Tensor | None) -> dict[str, np.ndarray]:
        targets = data.targets
        wrong = (predicted.long() != targets.long()).nonzero().flatten()
        return {"predicted": predicted.numpy().astype(np.uint8), "target": targets.numpy().astype(np.uint8),
                "wrong_index": wrong.numpy(), "wrong_images": data.gather(wrong[:DRAWN_WRONG])[0].numpy()}


@dataclass(frozen=True)
class Segmentation(Kind):
    """A class per pixel: per-image Dice per foreground class, pooled Dice; CE and soft Dice."""

    def loss(self, name: str) -> losses.Loss:
        """The loss called ``name``, over pixels: the ignore label's are left out."""
        _check_choice("loss", name, self.losses, self.name)
        return losses.PIXEL_LOSSES[name]

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

    def predicted(self, probabilities: torch.Tensor) -> torch.Tensor:
        return metrics.segmentation_map(probabilities).to(torch.uint8)

    def results(self, probabilities: torch.Tensor, classes: list[str],
                sizes: list[tuple[int, int] | None]) -> list[Result]:
        out = []
        for map_, size in zip(self.predicted(probabilities).numpy(), sizes):
            mask = image_files.resize_mask(map_, size)
            counts = np.bincount(mask.ravel(), minlength=len(classes))
            out.append({"mask": mask, "areas": {name: int(counts[i]) for i, name in enumerate(classes)}})
        return out

    def table_header(self, classes: list[str]) -> list[str]:
        return ["file", "mask", *(f"pixels_{c}" for c in classes)]

    def table_row(self, name: str, result: Result, mask_file: str | None) -> list[Any]:
        return [name, mask_file, *result["areas"].values()]

    def terminal_line(self, row: dict[str, str]) -> str:
        areas = ", ".join(f"{key.removeprefix('pixels_')} {value}" for key, value in row.items()
                          if key.startswith("pixels_"))
        return f"{row['file']}: {row['mask']} (pixels: {areas})"

    def scorable(self, label_classes: list[str], card: "DatasetCard") -> bool:
        return True

    def score(self, card: "DatasetCard", truths: list[Any], results: list[Result]) -> dict[str, float]:
        accumulator = metrics.DiceAccumulator(card.num_classes, card.classes)
        for truth, result in zip(truths, results):
            prediction = torch.from_numpy(result["mask"]).long()
            one_hot = torch.nn.functional.one_hot(prediction, card.num_classes).movedim(-1, 0)[None].float()
            accumulator.update(one_hot, torch.from_numpy(truth).long()[None])
        return accumulator.aggregate()

    def test_artefacts(self, predicted: torch.Tensor, data: "ImageSet",
                       per_image: torch.Tensor | None) -> dict[str, np.ndarray]:
        order = np.argsort(per_image.numpy(), kind="stable")
        picks = np.unique(np.concatenate([order[:DRAWN_EACH], order[::-1][:DRAWN_EACH]]))  # worst and best
        images, targets = data.gather(picks)
        return {"dice": per_image.numpy()[picks], "predicted": predicted.numpy()[picks].astype(np.uint8),
                "target": targets.numpy().astype(np.uint8), "images": images.numpy()}


KINDS: dict[str, Kind] = {
    "classification": Classification(
        name="classification", val_metric=metrics.VAL_ACC,
        val_metrics=(metrics.VAL_ACC, metrics.VAL_BALANCED_ACC, metrics.VAL_MACRO_F1), test_metric=metrics.TEST_ACC,
        default_model="cnn", default_space="mnist", losses=("ce",), tta_modes=("none",),
        augmentations=("rotate", "shift", "noise"), augment_targets=False, padding="zeros", eval_batch=2048,
        train_metric="train/acc", stratified=True, output_shape="(N, K)", writes_masks=False,
        test_figures=("confusion_matrix", "misclassified")),
    "segmentation": Segmentation(
        name="segmentation", val_metric=metrics.VAL_DICE, val_metrics=(metrics.VAL_DICE, metrics.VAL_DICE_POOLED),
        test_metric=metrics.TEST_DICE, default_model="fcn2", default_space="warwick",
        losses=("ce", "dice", "ce+dice"), tta_modes=("none", "flip", "d4"),
        augmentations=("flip", "rot90", "rotate", "shift", "noise", "stain"), augment_targets=True,
        padding="reflection", eval_batch=64, train_metric="train/dice_pooled", stratified=False,
        output_shape="(N, K, H, W)", writes_masks=True, test_figures=("best_worst",)),
}


def get_kind(name: str) -> Kind:
    """The kind called ``name``; a :class:`ConfigError` listing the kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}") from None
