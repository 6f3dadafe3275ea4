"""How stored pixels become a model's input: the data set's normalisation, fitted once on its
training images, recorded on its card, and applied by one module (:class:`Normalise`) in
training, in the model layer's inference and inside an exported graph.

Two methods (``dataset.yaml``'s ``normalise``):

- ``scale``: pixel / 255 (8-bit) or / 65535 (16-bit). 8-bit images' default: the built-in sets'
  numbers are what they always were.
- ``zscore``: per channel, clip to the 0.5th and 99.5th percentiles of the training images,
  subtract the clipped values' mean and divide by their standard deviation (nnU-Net's
  normalisation of CT, here for every channel: a field without cells keeps its dimness, unlike
  a per-image stretch). 16-bit and floating-point images' default.

Integer images' statistics are exact (each channel's histogram of every level, a chunk of rows
at a time); floating-point images' percentiles come from a seeded sample of whole images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from visiontune.errors import DataError

SCALE, ZSCORE = "scale", "zscore"
PERCENTILES = (0.5, 99.5)
DIVISORS = {"uint8": 255.0, "uint16": 65535.0}
ROWS = 256  # images read at a time
SAMPLE_PIXELS = 4_000_000  # per channel, for floating-point images' percentiles
DEFAULT: dict[str, Any] = {"method": SCALE, "divisor": 255.0}  # what cards without one (8-bit) use


def default_method(pixel_type: str) -> str:
    """The normalisation a data set gets where ``dataset.yaml`` does not choose: 8-bit images are
    scaled to [0, 1] as always, anything deeper is z-scored by the data set's statistics."""
    return SCALE if pixel_type == "uint8" else ZSCORE


def check_method(method: str | None, pixel_type: str, where: str) -> str:
    """The method to use for images of ``pixel_type`` (``method`` or the default); a one-line
    error where ``scale`` is asked of floating-point images, which have no range to scale by."""
    method = method or default_method(pixel_type)
    if method == SCALE and pixel_type not in DIVISORS:
        raise DataError(f"{where}: normalise: scale applies to 8- and 16-bit images; these are floating-point "
                        f"(use zscore)")
    return method


def _histograms(data, levels: int) -> np.ndarray:
    """Per-channel counts of every integer level ``(C, levels)`` over an ``ImageSet``."""
    channels = data.image_shape[0]
    counts = np.zeros((channels, levels), dtype=np.int64)
    for images, _ in data.batches(ROWS):
        values = images.numpy()
        for channel in range(channels):
            counts[channel] += np.bincount(values[:, channel].ravel(), minlength=levels)
    return counts


def _from_histogram(counts: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """(low, high, clipped mean, clipped std, mean, std) of one channel's level counts."""
    levels = np.arange(len(counts), dtype=np.float64)
    total = counts.sum()
    cumulative = np.cumsum(counts)
    low, high = (float(np.searchsorted(cumulative, q / 100.0 * total)) for q in PERCENTILES)
    mean = float((counts * levels).sum() / total)
    std = float(np.sqrt((counts * (levels - mean) ** 2).sum() / total))
    clipped = np.clip(levels, low, high)
    clipped_mean = float((counts * clipped).sum() / total)
    clipped_std = float(np.sqrt((counts * (clipped - clipped_mean) ** 2).sum() / total))
    return low, high, clipped_mean, clipped_std, mean, std


def _float_statistics(data) -> list[tuple[float, float, float, float, float, float]]:
    """The same for floating-point images: percentiles of a seeded sample of whole images, the
    means and standard deviations over every pixel."""
    channels, height, width = data.image_shape
    wanted = max(1, min(len(data), -(-SAMPLE_PIXELS // (height * width))))
    picked = np.sort(np.random.default_rng(0).choice(len(data), wanted, replace=False))
    sample = data.gather(picked)[0].numpy()
    bounds = [np.percentile(sample[:, c], PERCENTILES, method="inverted_cdf") for c in range(channels)]
    sums = np.zeros((channels, 4), dtype=np.float64)  # sum, sum of squares, clipped: sum, sum of squares
    count = 0
    for images, _ in data.batches(ROWS):
        values = images.numpy().astype(np.float64)
        count += values.shape[0] * height * width
        for c in range(channels):
            plane, clipped = values[:, c], np.clip(values[:, c], *bounds[c])
            sums[c] += (plane.sum(), (plane ** 2).sum(), clipped.sum(), (clipped ** 2).sum())
    out = []
    for c in range(channels):
        mean, clipped_mean = sums[c, 0] / count, sums[c, 2] / count
        std = float(np.sqrt(max(sums[c, 1] / count - mean ** 2, 0.0)))
        clipped_std = float(np.sqrt(max(sums[c, 3] / count - clipped_mean ** 2, 0.0)))
        out.append((float(bounds[c][0]), float(bounds[c][1]), float(clipped_mean), clipped_std, float(mean), std))
    return out


def _rounded(values) -> list[float]:
    return [float(f"{value:.7g}") for value in values]


def fit(train, method: str | None, where: str = "dataset.yaml") -> tuple[dict[str, Any], list[float], list[float]]:
    """(normalisation, mean, std) of the training ``ImageSet``: the card's ``normalisation`` by
    ``method`` (None: ``default_method``), and each channel's mean and standard deviation of its
    stored values (what the card shows for images beyond 8 bits)."""
    pixel_type = train.stored_images.dtype.name
    method = check_method(method, pixel_type, where)
    if len(train) == 0:
        raise DataError(f"{where}: no training images to fit the normalisation on")
    if method == SCALE:
        stats = None
    elif pixel_type in DIVISORS:
        stats = [_from_histogram(counts) for counts in _histograms(train, int(DIVISORS[pixel_type]) + 1)]
    else:
        stats = _float_statistics(train)
    if stats is None:
        return {"method": SCALE, "divisor": DIVISORS[pixel_type]}, [], []
    low, high, mean, std, raw_mean, raw_std = (list(column) for column in zip(*stats))
    normalisation = {"method": ZSCORE, "percentiles": list(PERCENTILES), "low": _rounded(low), "high": _rounded(high),
                     "mean": _rounded(mean), "std": _rounded(s if s > 1e-8 else 1.0 for s in std)}
    return normalisation, _rounded(raw_mean), _rounded(raw_std)


def describe(normalisation: dict[str, Any]) -> str:
    """The normalisation in words, for the card's summary and the model card."""
    if normalisation["method"] == SCALE:
        return f"pixel / {normalisation['divisor']:g}"
    low, high = normalisation["percentiles"]
    return (f"per channel: clip to the {low:g}th-{high:g}th percentile of the training images "
            f"([{', '.join(f'{v:g}' for v in normalisation['low'])}] to "
            f"[{', '.join(f'{v:g}' for v in normalisation['high'])}]), subtract the mean "
            f"[{', '.join(f'{v:g}' for v in normalisation['mean'])}], divide by the std "
            f"[{', '.join(f'{v:g}' for v in normalisation['std'])}]")


def pixel_values(images: torch.Tensor) -> torch.Tensor:
    """Stored images (uint8, uint16 or its int16 view, float32) as float32 pixel values, on
    whatever device they are. uint16 travels as an int16 view (CUDA indexes and copies every
    int16 kernel; uint16 has few), read back through int32."""
    if images.dtype in (torch.int16, torch.uint16):
        return images.view(torch.int16).to(torch.int32).bitwise_and_(0xFFFF).float()
    return images.float()


def device_view(images: torch.Tensor) -> torch.Tensor:
    """Stored images as they travel to a device: uint16 as its int16 view (``pixel_values``)."""
    return images.view(torch.int16) if images.dtype == torch.uint16 else images


class Normalise(nn.Module):
    """Pixel values (float32, ``(N, C, H, W)``) to the model's input by a card's normalisation;
    the first step of every model's inference and of an exported graph."""

    def __init__(self, normalisation: dict[str, Any] | None = None, channels: int = 1) -> None:
        super().__init__()
        normalisation = normalisation or DEFAULT
        self.divisor = float(normalisation["divisor"]) if normalisation["method"] == SCALE else None
        shape = (1, channels, 1, 1)
        for name in ("low", "high", "mean", "std"):
            values = normalisation.get(name) if self.divisor is None else None
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32).reshape(shape) if values
                                 else torch.zeros(shape), persistent=False)

    @classmethod
    def from_card(cls, card) -> "Normalise":
        """The normalisation of a data-set card."""
        return cls(card.normalisation, card.channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.divisor is not None:
            return images / self.divisor
        return (torch.maximum(torch.minimum(images, self.high), self.low) - self.mean) / self.std
