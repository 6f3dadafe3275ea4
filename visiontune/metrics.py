"""Metrics and the metric names shared by training, search and analysis.

Names are constants so that the engine, the Ray trainables, ASHA and the analysis code agree
on them: ``val/acc`` for classification, ``val/dice`` for segmentation, ``train/loss`` and
``val/loss`` for both, and ``test/...`` only once a run or search has ended.

Metric functions take tensors and return tensors (no host synchronisation); accumulators
follow MONAI's protocol: ``update`` per batch, ``aggregate`` per epoch.

Shapes:
    classification logits ``(N, C)``, targets ``(N,)`` integer class ids;
    segmentation logits ``(N, K, H, W)``, targets ``(N, H, W)`` class indices 0..K-1 (0 the
    background; WARWICK: background, gland).
"""

from __future__ import annotations

import torch

from visiontune.image_files import IGNORE_LABEL

TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_DICE = "val/dice"
VAL_DICE_POOLED = "val/dice_pooled"
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
TEST_DICE = "test/dice"
TEST_DICE_POOLED = "test/dice_pooled"
VAL_BALANCED_ACC = "val/balanced_acc"  # mean recall per class: for imbalanced classes
VAL_MACRO_F1 = "val/macro_f1"


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max class equals the target, as a 0-d tensor."""
    return (logits.argmax(dim=1) == target).float().mean()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion counts ``M[true, predicted]`` as an int64 ``(C, C)`` tensor."""
    index = target.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_map(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max over the class channel of ``(N, K, H, W)`` logits: a ``(N, H, W)`` map of class indices.

    Softmax is monotone, so the report's softmax-then-argmax equals a plain argmax. Read
    channels-last: PyTorch's CPU arg-max over the short class axis of a ``(N, K, H, W)``
    layout is about 9x slower than over the same values stored channels-last (117 against
    13 ms for 60 maps of 2x128x128 on 2 cores, conversion included); for logits already
    channels-last (what the Trainer's models give) the conversion is a no-op.
    """
    return logits.contiguous(memory_format=torch.channels_last).argmax(dim=1)


def dice_counts(pred: torch.Tensor, truth: torch.Tensor, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-foreground-class ``(2|A∩B|, |A|+|B|)`` of label maps ``(N, H, W)`` holding
    class indices 0..K-1 (0 the background), as float tensors ``(N, K-1)``. With two classes
    this is the one gland class of a binary map, as the report counted it. Pixels whose truth is
    the ignore label count in neither."""
    pred = pred.reshape(pred.shape[0], -1)
    truth = truth.reshape(truth.shape[0], -1)
    valid = truth != IGNORE_LABEL
    numerators, denominators = [], []
    for index in range(1, num_classes):
        predicted, true = ((pred == index) & valid).float(), (truth == index).float()
        numerators.append(2.0 * (predicted * true).sum(dim=1))
        denominators.append(predicted.sum(dim=1) + true.sum(dim=1))
    return torch.stack(numerators, dim=1), torch.stack(denominators, dim=1)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Dice from its counts; 1.0 where prediction and truth are both empty (the report's 0/0)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1.0), torch.ones_like(numerator))


def dice_per_image(pred: torch.Tensor, truth: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """Sørensen-Dice ``2|A∩B| / (|A|+|B|)`` of each image, averaged over the foreground classes:
    shape ``(N,)``. An image where a class is absent from both maps scores 1.0 for that class."""
    return _ratio(*dice_counts(pred, truth, num_classes)).mean(dim=1)


def pooled_dice(pred: torch.Tensor, truth: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """Dice over all pixels of all images and foreground classes at once (large regions weigh more)."""
    numerator, denominator = dice_counts(pred, truth, num_classes)
    return _ratio(numerator.sum(), denominator.sum())


class DiceAccumulator:
    """Accumulates per-image, per-class Dice over batches; ``aggregate`` gives the epoch's figures.

    ``update(logits (N, K, H, W), target (N, H, W))``; ``aggregate()`` returns ``{"dice": ...,
    "dice_pooled": ..., "dice/<class>": ...}`` as Python floats: ``dice`` is each foreground class's
    per-image Dice averaged over the images, then averaged over the classes (for two classes, the
    mean per-image Dice of the report); ``dice/<class>`` each class's own average; ``dice_pooled``
    all pixels at once. ``per_image()`` is the ``(N_total,)`` tensor of per-image scores (mean
    over classes) in update order.
    """

    def __init__(self, num_classes: int = 2, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = list(class_names or [f"class {index}" for index in range(num_classes)])
        self._numerators: list[torch.Tensor] = []
        self._denominators: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch."""
        numerator, denominator = dice_counts(segmentation_map(logits), target, self.num_classes)
        self._numerators.append(numerator)
        self._denominators.append(denominator)

    def _per_image_class(self) -> torch.Tensor:
        return _ratio(torch.cat(self._numerators), torch.cat(self._denominators))

    def per_image(self) -> torch.Tensor:
        """Per-image Dice (mean over the foreground classes) of every image seen, in order."""
        if not self._numerators:
            return torch.empty(0)
        return self._per_image_class().mean(dim=1)

    def aggregate(self) -> dict[str, float]:
        """Mean per-image Dice (over images, then classes), each class's, and pooled Dice."""
        if not self._numerators:
            raise ValueError("DiceAccumulator.aggregate called before any update")
        per_image_class = self._per_image_class()
        per_class = per_image_class.mean(dim=0)
        # Two classes: the one column's mean, computed as the report's figure always was.
        dice = per_image_class[:, 0].mean() if self.num_classes == 2 else per_class.mean()
        result = {"dice": float(dice),
                  "dice_pooled": float(_ratio(torch.cat(self._numerators).sum(), torch.cat(self._denominators).sum()))}
        if self.num_classes > 2:  # with one foreground class, its Dice is "dice" itself
            result.update({f"dice/{name}": float(value) for name, value in zip(self.class_names[1:], per_class)})
        return result


class AccuracyAccumulator:
    """Accumulates correct counts and a confusion matrix over batches.

    ``update(logits (N, C), target (N,))``; ``aggregate()`` returns ``{"acc": float}``;
    ``confusion()`` the ``(C, C)`` matrix ``M[true, predicted]``.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = class_names  # given: each class's recall too (``recall/<class>``)
        self._confusion: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch."""
        batch = confusion_matrix(logits.argmax(dim=1), target, self.num_classes)
        self._confusion = batch if self._confusion is None else self._confusion + batch

    def confusion(self) -> torch.Tensor:
        """The confusion matrix so far, on the CPU."""
        if self._confusion is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        return self._confusion.cpu()

    def aggregate(self) -> dict[str, float]:
        """Accuracy, balanced accuracy (mean recall over the classes present) and macro F1 (over
        the classes present or predicted), as scikit-learn defines them."""
        matrix = self.confusion().double()
        total = float(matrix.sum())
        if total == 0:
            raise ValueError("AccuracyAccumulator.aggregate called before any update")
        hits, support, predicted = matrix.diagonal(), matrix.sum(dim=1), matrix.sum(dim=0)
        present = support > 0
        recall = hits[present] / support[present]
        seen = present | (predicted > 0)
        f1 = 2 * hits[seen] / (support[seen] + predicted[seen])
        result = {"acc": float(hits.sum()) / total, "balanced_acc": float(recall.mean()), "macro_f1": float(f1.mean())}
        if self.class_names:
            result.update({f"recall/{name}": float(hits[index] / support[index])
                           for index, name in enumerate(self.class_names) if support[index] > 0})
        return result
