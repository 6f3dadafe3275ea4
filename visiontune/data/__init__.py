"""Data sets as in-memory tensors, split once by seed: ``load_splits(task, ...)``.

Sub-modules: ``mnist`` and ``warwick`` read the real sets (folders, zips, IDX, download),
``synthetic`` makes tiny stand-ins, ``splits`` holds the containers and the seeded split,
``augment`` transforms batches on the training device, ``paths`` resolves the data folder.
"""

from __future__ import annotations

import os

from visiontune.data.paths import resolve_data_dir
from visiontune.data.splits import DataSplits, ImageSet, limit, split_train_val
from visiontune.tasks import get_task


def load_splits(
    task: str,
    data_dir: str | os.PathLike | None = None,
    synthetic: bool = False,
    val_size: int | None = None,
    split_seed: int = 0,
    train_limit: int | None = None,
    download: bool = True,
) -> DataSplits:
    """Load a task's data and split it into train/validation/test.

    The validation set (``val_size``, default per task) is carved from the training set by a
    permutation seeded with ``split_seed``; the test set is the data set's own, untouched.
    ``train_limit`` keeps a seeded subset of the remaining training samples (quick runs).
    ``synthetic`` replaces the real data with the task's tiny generated stand-in.
    """
    spec = get_task(task)
    if synthetic:
        from visiontune.data.synthetic import synthetic_digits, synthetic_glands

        make = synthetic_digits if spec.kind == "classification" else synthetic_glands
        full_count, test_count = spec.synthetic_sizes
        full, test = make(full_count, seed=1000 + split_seed), make(test_count, seed=2000 + split_seed)
        source = f"synthetic {task} (generated)"
        default_val = spec.synthetic_val_size
    else:
        root = resolve_data_dir(data_dir)
        if spec.name == "mnist":
            from visiontune.data.mnist import load_mnist

            full, test, source = load_mnist(root, download=download)
        else:
            from visiontune.data.warwick import load_warwick

            full, test, source = load_warwick(root)
        default_val = spec.val_size
    train, val = split_train_val(full, default_val if val_size is None else val_size, split_seed)
    train = limit(train, train_limit, split_seed)
    return DataSplits(task=task, train=train, val=val, test=test, split_seed=split_seed, source=source)


__all__ = ["DataSplits", "ImageSet", "load_splits", "resolve_data_dir"]
