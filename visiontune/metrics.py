"""Metrics and the metric names shared by training, search and analysis.

Names are constants so that the engine, the Ray trainables, ASHA and the analysis code agree
on them: ``val/acc`` for classification, ``val/dice`` for segmentation, ``train/loss`` and
``val/loss`` for both, and ``test/...`` only once a run or search has ended.

Metric functions take tensors and return tensors (no host synchronisation); accumulators
follow MONAI's protocol: ``update`` per batch, ``aggregate`` per epoch.

Shapes:
    classification logits ``(N, C)``, targets ``(N,)`` integer class ids;
    segmentation logits ``(N, 2, H, W)`` (background, gland), targets ``(N, H, W)`` in {0, 1}.
"""

from __future__ import annotations

import torch

TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_DICE = "val/dice"
VAL_DICE_POOLED = "val/dice_pooled"
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
TEST_DICE = "test/dice"
TEST_DICE_POOLED = "test/dice_pooled"


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max class equals the target, as a 0-d tensor."""
    return (logits.argmax(dim=1) == target).float().mean()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion counts ``M[true, predicted]`` as an int64 ``(C, C)`` tensor."""
    index = target.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_map(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max over the class channel of ``(N, 2, H, W)`` logits: a ``(N, H, W)`` 0/1 map.

    Softmax is monotone, so the report's softmax-then-argmax equals a plain argmax.
    """
    return logits.argmax(dim=1)


def dice_counts(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(2|A∩B|, |A|+|B|)`` for binary maps ``(N, H, W)``, as float tensors."""
    pred = pred.reshape(pred.shape[0], -1).float()
    truth = truth.reshape(truth.shape[0], -1).float()
    return 2.0 * (pred * truth).sum(dim=1), pred.sum(dim=1) + truth.sum(dim=1)


def dice_per_image(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Sørensen-Dice coefficient ``2|A∩B| / (|A|+|B|)`` of each image, shape ``(N,)``.

    ``pred`` and ``truth`` are binary maps ``(N, H, W)`` (1 = gland). An image where both maps
    are empty scores 1.0 (perfect agreement), where the report's formula would give 0/0.
    """
    numerator, denominator = dice_counts(pred, truth)
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1.0), torch.ones_like(numerator))


def pooled_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice over all pixels of all images at once (large glands weigh more), a 0-d tensor."""
    numerator, denominator = dice_counts(pred, truth)
    total = denominator.sum()
    return torch.where(total > 0, numerator.sum() / total.clamp_min(1.0), torch.ones_like(total))


class DiceAccumulator:
    """Accumulates per-image Dice over batches; ``aggregate`` gives the epoch's figures.

    ``update(logits (N, 2, H, W), target (N, H, W))``; ``aggregate()`` returns
    ``{"dice": mean per-image Dice, "dice_pooled": pooled Dice}`` as Python floats and
    ``per_image()`` the ``(N_total,)`` tensor of per-image scores in update order.
    """

    def __init__(self) -> None:
        self._numerators: list[torch.Tensor] = []
        self._denominators: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch."""
        numerator, denominator = dice_counts(segmentation_map(logits), target)
        self._numerators.append(numerator)
        self._denominators.append(denominator)

    def per_image(self) -> torch.Tensor:
        """Per-image Dice of every image seen, in order."""
        if not self._numerators:
            return torch.empty(0)
        numerator = torch.cat(self._numerators)
        denominator = torch.cat(self._denominators)
        return torch.where(denominator > 0, numerator / denominator.clamp_min(1.0), torch.ones_like(numerator))

    def aggregate(self) -> dict[str, float]:
        """Mean per-image Dice and pooled Dice over everything seen."""
        if not self._numerators:
            raise ValueError("DiceAccumulator.aggregate called before any update")
        numerator = torch.cat(self._numerators)
        denominator = torch.cat(self._denominators)
        total = denominator.sum()
        pooled = (numerator.sum() / total) if total > 0 else torch.tensor(1.0)
        return {"dice": float(self.per_image().mean()), "dice_pooled": float(pooled)}


class AccuracyAccumulator:
    """Accumulates correct counts and a confusion matrix over batches.

    ``update(logits (N, C), target (N,))``; ``aggregate()`` returns ``{"acc": float}``;
    ``confusion()`` the ``(C, C)`` matrix ``M[true, predicted]``.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
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
        """Accuracy over everything seen."""
        matrix = self.confusion()
        total = int(matrix.sum())
        if total == 0:
            raise ValueError("AccuracyAccumulator.aggregate called before any update")
        return {"acc": float(matrix.diagonal().sum()) / total}
