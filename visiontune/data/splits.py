"""In-memory data sets and the seeded train/validation split.

A data set is held as uint8 tensors on the CPU: images ``(N, C, H, W)`` and targets, either
class ids ``(N,)`` (int64) or masks ``(N, H, W)`` (uint8, 0/1). The validation split is carved
from the training set once, by a seeded permutation; the test set is never touched. Split
sizes and seed travel with the data so every run records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from visiontune.errors import ConfigError

# Where a data set gives no validation (or test) split, this share of its images is carved off.
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard


@dataclass
class ImageSet:
    """Images ``(N, C, H, W)`` uint8 and their targets (labels ``(N,)`` or masks ``(N, H, W)``)."""

    images: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The samples at ``index``, as a new set."""
        return ImageSet(self.images[index], self.targets[index])


@dataclass
class DataSplits:
    """Train, validation and test sets of one task, with where they came from."""

    task: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    split_seed: int
    source: str  # human-readable origin: a folder, a zip, "synthetic", ...
    card: "DatasetCard"  # what the data set is: the task as every later step sees it
    # Cross-validation (data.folds): the fold of each train image, where train pools train and
    # validation; a trial whose config names a fold trains and validates on that fold's splits.
    folds: torch.Tensor | None = None

    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def describe(self) -> dict:
        """What a run records about its data (``data.json``): source, split sizes and seed, the card."""
        described = {"source": self.source, "split_seed": self.split_seed, "sizes": self.sizes(),
                     "card": self.card.to_dict()}
        if self.folds is not None:
            described["folds"] = int(self.folds.max()) + 1
        return described


def split_train_val(full: ImageSet, val_size: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split ``full`` into (train, validation) by a permutation seeded with ``seed``.

    The same seed and size give the same split on every machine (torch's CPU generator).
    """
    if not 0 < val_size < len(full):
        raise ConfigError(f"--val-size must be between 1 and {len(full) - 1} for this data set, not {val_size}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(full), generator=generator)
    val_index, train_index = order[:val_size].sort().values, order[val_size:].sort().values
    return full.subset(train_index), full.subset(val_index)


def limit(images: ImageSet, count: int | None, seed: int) -> ImageSet:
    """A seeded random subset of ``count`` samples (all of them when ``count`` is None)."""
    if count is None or count >= len(images):
        return images
    if count < 1:
        raise ConfigError(f"a subset size must be at least 1, not {count}")
    generator = torch.Generator().manual_seed(seed + 1)
    return images.subset(torch.randperm(len(images), generator=generator)[:count].sort().values)


def carve(count: int, size: int, seed: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``0..size-1`` split into (rest, carved) with ``count`` carved, by a seeded draw.

    With ``labels``, stratified: each class gives its share of ``count`` (largest remainders),
    and a class never gives all its samples away, so every class stays in the rest.
    """
    if not 0 < count < size:
        raise ConfigError(f"cannot set {count} of {size} samples apart; the split needs 1 to {size - 1}")
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        order = torch.randperm(size, generator=generator)
        return order[count:].sort().values, order[:count].sort().values
    classes, counts = labels.unique(return_counts=True)
    limits = (counts - 1).clamp_min(0)  # leave at least one sample of each class in the rest
    quota = counts.double() * count / size
    shares = torch.minimum(quota.floor().long(), limits)
    for index in torch.argsort(quota - quota.floor(), descending=True, stable=True).tolist() * 2:
        if int(shares.sum()) >= count:
            break
        if shares[index] < limits[index]:
            shares[index] += 1
    carved = []
    for value, share in zip(classes.tolist(), shares.tolist()):
        members = (labels == value).nonzero().flatten()
        carved.append(members[torch.randperm(len(members), generator=generator)[:share]])
    chosen = torch.cat(carved).sort().values
    keep = torch.ones(size, dtype=torch.bool)
    keep[chosen] = False
    return keep.nonzero().flatten(), chosen
