"""Data sets as rows of stored arrays, and the seeded train/validation split.

A data set is held as uint8 numpy arrays: images ``(N, C, H, W)`` and targets, either class ids
``(N,)`` (int64) or masks ``(N, H, W)`` (uint8), in memory or memory-mapped from the decoded
cache. Splits, folds and subsets are row indices into the same arrays, never copies. The
validation split is carved from the training set once, by a seeded permutation; the test set is
never touched. Split sizes and seed travel with the data so every run records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from visiontune.data.cache import map_entry
from visiontune.errors import ConfigError

# Where a data set gives no validation (or test) split, this share of its images is carved off.
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2

if TYPE_CHECKING:
    from visiontune.data.card import DatasetCard


class ImageSet:
    """Rows of stored uint8 arrays: images ``(M, C, H, W)`` and targets (labels ``(M,)`` int64 or
    masks ``(M, H, W)`` uint8); ``rows`` picks this set's N of them (None: all, in order).

    The arrays are numpy, never copied by a split, a fold or a subset (those keep their own
    ``rows``): in memory they travel through Ray's object store as one shared, read-only copy per
    node; backed by a cache entry (``folder``, memory-mapped ``.npy`` files) they travel as the
    folder's name and each process maps the same files, whose pages the kernel's cache holds once.
    Batches (``gather``, ``batches``) are the only copies, of a batch each.
    """

    stored_images: np.ndarray
    stored_targets: np.ndarray
    rows: np.ndarray | None  # this set's rows of the stored arrays; None: all of them, in order
    folder: str | None  # the cache entry the arrays are mapped from, if they are

    def __init__(self, images, targets, rows=None, folder: str | None = None) -> None:
        self.stored_images = images.numpy() if isinstance(images, torch.Tensor) else images
        self.stored_targets = targets.numpy() if isinstance(targets, torch.Tensor) else targets
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.folder = folder
        if len(self.stored_images) != len(self.stored_targets):
            raise ValueError(f"{len(self.stored_images)} images but {len(self.stored_targets)} targets")

    def __len__(self) -> int:
        return len(self.stored_images) if self.rows is None else len(self.rows)

    # A file-backed set pickles as its folder (the receiving process maps the files there:
    # data.placement makes sure they are); an in-memory one as its arrays, which Ray's
    # serialiser shares zero-copy.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.folder is not None:
            state["stored_images"] = state["stored_targets"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.folder is not None:
            self.remap()

    def remap(self) -> bool:
        """Map a file-backed set's arrays from its cache entry on this machine; False where the
        entry is not here (yet: ``data.placement.received`` copies it from the run's storage)."""
        mapped = map_entry(self.folder)
        if mapped is None:
            return False
        self.stored_images, self.stored_targets = mapped
        return True

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of every image."""
        return tuple(int(side) for side in self.stored_images.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays this set reads from (all rows, whatever ``rows`` picks)."""
        return int(self.stored_images.nbytes + self.stored_targets.nbytes)

    def stored_rows(self, index=None) -> np.ndarray:
        """Rows of the stored arrays for positions ``index`` of this set (all of them by default)."""
        if index is None:
            return np.arange(len(self)) if self.rows is None else self.rows
        index = index.numpy() if isinstance(index, torch.Tensor) else np.asarray(index, dtype=np.int64)
        return index if self.rows is None else self.rows[index]

    def subset(self, index) -> "ImageSet":
        """The samples at positions ``index`` (a tensor or array), sharing this set's arrays."""
        return ImageSet(self.stored_images, self.stored_targets, self.stored_rows(index), self.folder)

    def concat(self, other: "ImageSet") -> "ImageSet":
        """This set's samples then ``other``'s, which must read from the same arrays."""
        if other.stored_images is not self.stored_images and (self.folder is None or other.folder != self.folder):
            raise ValueError("only sets of the same stored arrays concatenate without a copy")
        return ImageSet(self.stored_images, self.stored_targets,
                        np.concatenate([self.stored_rows(), other.stored_rows()]), self.folder)

    def gather(self, index=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the uint8 images and the targets at positions ``index`` (all by default), as
        CPU tensors; a run of consecutive rows is read as one slice, other rows one by one in the
        order given (numpy's indexing copies them)."""
        rows = self.stored_rows(index)
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (len(rows) < 2 or bool((np.diff(rows) == 1).all())):
            picked = slice(int(rows[0]), int(rows[-1]) + 1)
            images, targets = np.array(self.stored_images[picked]), np.array(self.stored_targets[picked])
        else:
            images, targets = self.stored_images[rows], self.stored_targets[rows]
        return torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(targets))

    def batches(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The set in order, ``size`` samples at a time (``gather``'s copies)."""
        for start in range(0, len(self), size):
            yield self.gather(np.arange(start, min(start + size, len(self))))

    @property
    def images(self) -> torch.Tensor:
        """All images as one uint8 tensor: a copy of the whole set, for small sets and tests."""
        return self.gather()[0]

    @property
    def targets(self) -> torch.Tensor:
        """All targets as one tensor (a copy: labels are small; masks as large as the images)."""
        rows = self.stored_rows()
        return torch.from_numpy(np.array(self.stored_targets[rows] if self.rows is not None else self.stored_targets))


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
    # Set by a search for its trials (data.placement): where they keep the data, and the run's
    # storage (location, name) that a node lacking the cached data copies it from.
    placement: str | None = None
    storage: tuple[str, str] | None = None

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
