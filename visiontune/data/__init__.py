"""Data sets as uint8 arrays (in memory, or mapped from the decoded cache), split once by seed, with their card: ``load_splits(name_or_path, ...)``.

Sub-modules: ``mnist`` and ``warwick`` read the report's sets (folders, zips, IDX, download),
``torchvision_sets`` torchvision's by name, ``folders``/``user`` a user's own folder of images
(layouts, ``dataset.yaml`` in ``spec``, decoding in ``decode``, the array ``cache``),
``synthetic`` makes tiny stand-ins, ``splits`` holds the containers and the seeded split,
``card`` describes a data set, ``augment`` transforms batches on the training device,
``paths`` resolves the data folder, ``options`` declares the data options.
"""

from __future__ import annotations

import os
from pathlib import Path

from visiontune.data.card import build_card
from visiontune.data.paths import resolve_data_dir
from visiontune.data.spec import SPEC_FILE
from visiontune.data.splits import VAL_FRACTION, DataSplits, ImageSet, limit, split_train_val
from visiontune.errors import ConfigError, DataError
from visiontune.tasks import TASKS, get_task

# A task's fixed validation size applies where it leaves most images to train on; otherwise
# (the course's MNIST folders with 3,000 images against MNIST's 5,000) VAL_FRACTION does.
FIXED_VAL_AT_MOST = 0.25


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in task rather than a path to a user's data set."""
    return name in TASKS


def task_label(task: str) -> str:
    """A short name for run folders: the built-in task, or the data set's folder, zip or
    ``dataset.yaml``'s folder name."""
    if is_builtin(task):
        return task
    path = Path(os.path.expanduser(task)).resolve()
    if path.name == SPEC_FILE:
        return path.parent.name
    return path.stem if path.suffix.lower() == ".zip" else path.name


def kind_of(task: str) -> str:
    """The kind of a built-in task or of a user's data set (from its layout, without decoding it)."""
    if is_builtin(task):
        return TASKS[task].kind
    from visiontune.data.folders import find_layout

    return find_layout(task).kind


def _validation_size(spec, total: int, val_size: int | None, choices: list[str]) -> int:
    if val_size is not None:
        return val_size
    if spec.val_size <= FIXED_VAL_AT_MOST * total:
        return spec.val_size
    count = max(1, round(VAL_FRACTION * total))
    choices.append(f"the task's {spec.val_size:,} validation images do not fit {total:,} training images: "
                   f"{VAL_FRACTION:.0%} ({count:,}) instead")
    return count


def _load_builtin(task: str, data_dir, synthetic: bool, val_size: int | None, split_seed: int,
                  train_limit: int | None, download: bool) -> DataSplits:
    spec = get_task(task)
    choices: list[str] = []
    if synthetic:
        from visiontune.data.synthetic import synthetic_digits, synthetic_glands

        make = synthetic_digits if spec.kind == "classification" else synthetic_glands
        full_count, test_count = spec.synthetic_sizes
        full = make(full_count, seed=1000 + split_seed, size=spec.image_size, channels=spec.in_channels)
        test = make(test_count, seed=2000 + split_seed, size=spec.image_size, channels=spec.in_channels)
        source, default_val = f"synthetic {task} (generated)", spec.synthetic_val_size
        classes = spec.classes
    else:
        root = resolve_data_dir(data_dir)
        if spec.name == "mnist":
            from visiontune.data.mnist import load_mnist

            full, test, source = load_mnist(root, download=download)
            classes = spec.classes
        elif spec.name == "warwick":
            from visiontune.data.warwick import load_warwick

            full, test, source = load_warwick(root)
            classes = spec.classes
        else:
            from visiontune.data.torchvision_sets import load_torchvision_set

            full, test, classes, source = load_torchvision_set(spec.name, root, download=download)
        default_val = None
    count = val_size if val_size is not None else (default_val or _validation_size(spec, len(full), None, choices))
    train, val = split_train_val(full, count, split_seed)
    train = limit(train, train_limit, split_seed)
    how = f"validation: {len(val)} images carved by a seeded permutation of the training set; test as given"
    card = build_card(name=task, kind=spec.kind, classes=classes, train=train, val=val, test=test, seed=split_seed,
                      how=how, source=source, choices=choices, description=spec.description,
                      keep_channels=list(spec.keep_channels) if spec.keep_channels else None)
    return DataSplits(task=task, train=train, val=val, test=test, split_seed=split_seed, source=source, card=card)


def load_splits(
    task: str,
    data_dir: str | os.PathLike | None = None,
    synthetic: bool = False,
    val_size: int | None = None,
    split_seed: int = 0,
    train_limit: int | None = None,
    download: bool = True,
    image_size: str | None = None,
) -> DataSplits:
    """Load a data set and split it into train/validation/test, with its card.

    ``task`` is a built-in task (mnist, warwick, fashion-mnist, kmnist, cifar10) or the path of a
    user's data set: a folder, a ``.zip`` or a ``dataset.yaml`` (``data.folders``). For a built-in
    task the validation set (``val_size``, default per task, or 10% where that does not fit) is
    carved from the training set by a permutation seeded with ``split_seed``; the test set is the
    data set's own, untouched. ``train_limit`` keeps a seeded subset of the remaining training
    samples (quick runs). ``synthetic`` replaces a built-in set with its tiny generated stand-in.
    ``image_size`` (``HxW``) applies to a user's data set.
    """
    if is_builtin(task):
        if image_size:
            raise ConfigError(f"--image-size applies to a folder of your own images, not to the built-in {task}")
        return _load_builtin(task, data_dir, synthetic, val_size, split_seed, train_limit, download)
    if synthetic:
        raise ConfigError(f"--synthetic applies to the built-in tasks ({', '.join(TASKS)}), not to {task}")
    if not os.path.exists(os.path.expanduser(task)):
        raise DataError(f"{task}: neither a built-in task ({', '.join(TASKS)}) nor an existing folder, .zip or "
                        "dataset.yaml")
    from visiontune.data.user import load_folder

    return load_folder(task, image_size=image_size, val_size=val_size, split_seed=split_seed,
                       train_limit=train_limit)


__all__ = ["DataSplits", "ImageSet", "is_builtin", "kind_of", "load_splits", "resolve_data_dir", "task_label"]
