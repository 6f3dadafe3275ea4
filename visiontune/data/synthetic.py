"""Tiny synthetic data sets, generated in memory, for fast tests and offline smoke runs.

``synthetic_digits``: 28x28 grey images of ten classes, each class a distinct stroke pattern
(bars, crosses, boxes, ...) drawn at a jittered position with noise; a small CNN separates them
in an epoch or two. ``synthetic_glands``: two-channel images of bright elliptical "glands" on a
textured background with their 0/1 masks, sized like WARWICK (128x128 by default).
Both are deterministic given the seed.
"""

from __future__ import annotations

import numpy as np
import torch

from visiontune.data.splits import ImageSet


def _digit_template(label: int, size: int) -> np.ndarray:
    """A distinct binary pattern per class, on a size x size canvas."""
    canvas = np.zeros((size, size), dtype=np.float32)
    lo, hi, mid = size // 4, 3 * size // 4, size // 2
    strokes = {
        0: [(slice(lo, hi), slice(lo, lo + 2)), (slice(lo, hi), slice(hi - 2, hi)),
            (slice(lo, lo + 2), slice(lo, hi)), (slice(hi - 2, hi), slice(lo, hi))],
        1: [(slice(lo, hi), slice(mid - 1, mid + 1))],
        2: [(slice(mid - 1, mid + 1), slice(lo, hi))],
        3: [(slice(lo, hi), slice(mid - 1, mid + 1)), (slice(mid - 1, mid + 1), slice(lo, hi))],
        4: [(slice(lo, lo + 2), slice(lo, hi)), (slice(hi - 2, hi), slice(lo, hi))],
        5: [(slice(lo, hi), slice(lo, lo + 2)), (slice(lo, hi), slice(hi - 2, hi))],
        6: [(slice(lo, mid), slice(lo, mid))],
        7: [(slice(mid, hi), slice(mid, hi))],
        8: [(slice(lo, mid), slice(mid, hi)), (slice(mid, hi), slice(lo, mid))],
        9: [(slice(lo, lo + 2), slice(lo, hi)), (slice(lo, hi), slice(hi - 2, hi))],
    }[label]
    for rows, cols in strokes:
        canvas[rows, cols] = 1.0
    return canvas


def synthetic_digits(count: int, seed: int, size: int = 28, channels: int = 1) -> ImageSet:
    """``count`` labelled digit-like images (uint8, ``channels`` copies of one grey channel), classes balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = np.empty((count, 1, size, size), dtype=np.uint8)
    for index, label in enumerate(labels):
        shift = rng.integers(-2, 3, size=2)
        pattern = np.roll(_digit_template(int(label), size), tuple(shift), axis=(0, 1))
        noisy = pattern * rng.uniform(0.7, 1.0) + rng.normal(0.0, 0.08, pattern.shape)
        images[index, 0] = np.clip(noisy * 255, 0, 255).astype(np.uint8)
    return ImageSet(torch.from_numpy(images).repeat(1, channels, 1, 1), torch.from_numpy(labels.astype(np.int64)))


def synthetic_glands(count: int, seed: int, size: int = 128, channels: int = 2) -> ImageSet:
    """``count`` two-channel (stain) images with elliptical glands and their 0/1 masks (uint8)."""
    if channels != 2:
        raise ValueError("synthetic glands have two stain channels")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, 2, size, size), dtype=np.uint8)
    masks = np.empty((count, size, size), dtype=np.uint8)
    for index in range(count):
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(2, 6)):
            cy, cx = rng.uniform(0.15, 0.85, size=2) * size
            ry, rx = rng.uniform(0.08, 0.2, size=2) * size
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        background = rng.normal(0.3, 0.08, (2, size, size))
        gland = np.stack([np.full((size, size), 0.75), np.full((size, size), 0.45)]) + rng.normal(0, 0.08, (2, size, size))
        image = np.where(mask[None], gland, background)
        images[index] = np.clip(image * 255, 0, 255).astype(np.uint8)
        masks[index] = mask
    return ImageSet(torch.from_numpy(images), torch.from_numpy(masks))
