"""K-fold cross-validation over a data set's train and validation images (nnU-Net's protocol).

The train and validation splits are pooled (train first, then validation, in their stored
order) and every pooled image is dealt to one of K folds by a seeded draw, stratified by class
for classification. A fold trial trains on the other K-1 folds and validates on its own; the
test split is left out of the pooled data altogether, so nothing that trains or ranks by fold
can read it. ``DataSplits.folds`` carries the assignment to the trials; ``fold_splits(k)`` makes
fold k's splits, ``refit_splits`` the refit's (every pooled image to train on).
"""

from __future__ import annotations

import dataclasses

import torch

from visiontune.data.splits import DataSplits
from visiontune.errors import ConfigError


def assign_folds(count: int, folds: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The fold (0..K-1) of each of ``count`` samples, by a permutation seeded with ``seed``.

    Fold sizes differ by at most one. With ``labels`` (classification), stratified: each class's
    samples are shuffled and dealt round the folds in turn, continuing where the previous class
    stopped, so every fold holds each class's share (within one image) and the sizes stay even.
    """
    if not 2 <= folds <= count:
        raise ConfigError(f"--cv {folds}: cross-validation needs 2 to {count} folds for {count} train+validation "
                          "images")
    generator = torch.Generator().manual_seed(seed)
    assignment = torch.empty(count, dtype=torch.long)
    if labels is None:
        order = torch.randperm(count, generator=generator)
        assignment[order] = torch.arange(count) % folds
        return assignment
    start = 0
    for value in labels.unique().tolist():
        members = (labels == value).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        assignment[members] = (start + torch.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return assignment


def pooled_for_cv(splits: DataSplits, folds: int, seed: int) -> DataSplits:
    """Train and validation pooled as the training set, with each image's fold in ``folds``; the
    validation and test splits empty."""
    pool = splits.train.concat(splits.val)  # rows of the same arrays: no copy
    labels = pool.targets if splits.card.kind_spec.stratified else None
    empty = pool.subset(torch.arange(0))
    return dataclasses.replace(splits, train=pool, val=empty, test=empty,
                               folds=assign_folds(len(pool), folds, seed, labels))


def fold_splits(pooled: DataSplits, fold: int) -> DataSplits:
    """Fold ``fold``'s splits of pooled data: train on the other folds, validate on this one."""
    if pooled.folds is None:
        raise ValueError("fold_splits needs pooled data (pooled_for_cv)")
    count = int(pooled.folds.max()) + 1
    if not 0 <= fold < count:
        raise ValueError(f"fold {fold} of {count}")
    train = pooled.train.subset((pooled.folds != fold).nonzero().flatten())
    val = pooled.train.subset((pooled.folds == fold).nonzero().flatten())
    return dataclasses.replace(pooled, train=train, val=val, folds=None)


def refit_splits(pooled: DataSplits) -> DataSplits:
    """The refit's splits of pooled data: train on every pooled image. Its validation figures are
    of fold 0's images, which it trains on: they choose nothing (the refit keeps its last epoch),
    and one fold keeps their cost at a fold trial's."""
    if pooled.folds is None:
        raise ValueError("refit_splits needs pooled data (pooled_for_cv)")
    return dataclasses.replace(pooled, val=pooled.train.subset((pooled.folds == 0).nonzero().flatten()), folds=None)


__all__ = ["assign_folds", "fold_splits", "pooled_for_cv", "refit_splits"]
