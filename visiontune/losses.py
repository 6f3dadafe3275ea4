"""Training losses: cross-entropy (per sample or per pixel) and the soft Dice loss."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from visiontune.image_files import IGNORE_LABEL

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in fp32 (autocast's bf16 logits are cast up first)."""
    return F.cross_entropy(logits.float(), target)


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the pixels of a segmentation, those of the ignore label left out."""
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - per-image soft Dice of each foreground class's probability (smoothed by ``eps``),
    averaged over images and classes; with two classes, of the gland probability alone. Pixels of
    the ignore label are left out (their probability and truth masked to zero)."""
    probability = logits.float().softmax(dim=1)
    valid = target != IGNORE_LABEL  # all true where nothing is ignored: the sums do not change
    probability, target = probability * valid[:, None], torch.where(valid, target, 0)
    if probability.shape[1] == 2:  # the report's binary case, computed as it always was
        probability, target = probability[:, 1], target.float()
        intersection = (probability * target).flatten(1).sum(1)
        total = probability.flatten(1).sum(1) + target.flatten(1).sum(1)
        return 1.0 - ((2 * intersection + eps) / (total + eps)).mean()
    truth = F.one_hot(target.long(), probability.shape[1]).movedim(-1, 1).float()
    probability, truth = probability[:, 1:].flatten(2), truth[:, 1:].flatten(2)
    intersection = (probability * truth).sum(2)
    total = probability.sum(2) + truth.sum(2)
    return 1.0 - ((2 * intersection + eps) / (total + eps)).mean()


def ce_plus_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus the soft Dice loss (nnU-Net's default pairing)."""
    return pixel_cross_entropy(logits, target) + soft_dice_loss(logits, target)


LOSSES: dict[str, Loss] = {"ce": cross_entropy, "dice": soft_dice_loss, "ce+dice": ce_plus_dice}
# A segmentation's, whose cross-entropy leaves the ignore label out; an image's class label is
# never ignored (a data set may have 256 classes or more). kinds.Kind.loss picks the table.
PIXEL_LOSSES: dict[str, Loss] = {**LOSSES, "ce": pixel_cross_entropy}
