"""The data-set card: what the rest of visiontune needs to know about a data set, as plain data.

Built once when a data set is loaded (a built-in task or a user's folder, by the same code) and
carried with its arrays (``DataSplits.card``): kind, class names, channels, image size, the
normalisation statistics, the split and how it was made, the augmentations the data permit,
and a fingerprint (nnU-Net's word): class balance, original sizes, mask class frequencies,
skipped files, every choice made while reading, and a hash of the arrays. Every run records it
in its ``data.json``; ``visiontune data check`` prints it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from visiontune.data import normalisation as normalising
from visiontune.kinds import Kind, get_kind


@dataclass
class DatasetCard:
    """A data set described as plain, JSON-serialisable data: the task, as the rest of the code sees it."""

    name: str
    kind: str  # "classification" or "segmentation"
    classes: list[str]  # names in index order; for segmentation index 0 is the background
    channels: int
    image_size: list[int]  # [height, width] of every image as trained on
    mean: list[float]  # per channel, of the training images: 8-bit scaled to [0, 1], deeper as stored
    std: list[float]
    split: dict[str, Any]  # {"sizes": {...}, "seed": S, "how": "..."}
    augmentations: list[str]  # the augmentations this data set permits
    source: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images (or mask pixels)
    original_sizes: dict[str, list[int]] = field(default_factory=dict)  # min / median / max [h, w] as read
    skipped: dict[str, int] = field(default_factory=dict)  # why -> files passed over
    choices: list[str] = field(default_factory=list)  # every decision made while reading, in words
    fingerprint: str = ""  # hash of the arrays and labels
    description: str = ""  # one line: what the data set is
    # How an image file becomes the model's input: decoded to ``decoded_channels`` (None, as cards
    # before it: grey for channels 1, else RGB), from one file per channel where
    # ``channel_files`` (CASE_0000, CASE_0001, ...), these channels kept in order (None: all),
    # stored as ``pixel_type``, resized (bilinear) to image_size, normalised by ``normalisation``.
    keep_channels: list[int] | None = None
    decoded_channels: int | None = None
    channel_files: bool = False
    pixel_type: str = "uint8"
    normalisation: dict[str, Any] = field(default_factory=lambda: dict(normalising.DEFAULT))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def decode_channels(self) -> int:
        """How many channels an image file is decoded to, before ``keep_channels``."""
        if self.decoded_channels is not None:
            return self.decoded_channels
        return 1 if self.channels == 1 else 3

    @property
    def kind_spec(self) -> Kind:
        """What the card's kind implies: metrics, default model, losses, test-time augmentation."""
        return get_kind(self.kind)

    def to_dict(self) -> dict[str, Any]:
        """The card as a plain dict (``data.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetCard":
        """The card a run recorded (``to_dict``'s output); keys a later version added are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


STATS_ROWS = 1024  # images read at a time for the statistics and the fingerprint


def _chunks(data, rows: int = STATS_ROWS):
    """(images, targets) of an ``ImageSet`` a chunk of rows at a time (no copy of the whole set)."""
    return data.batches(rows)


def channel_statistics(data) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of an ``ImageSet``'s uint8 images scaled to [0, 1],
    exactly, from each channel's histogram of the 256 grey levels, counted a chunk at a time."""
    channels = data.image_shape[0]
    if len(data) == 0:
        return [0.0] * channels, [0.0] * channels
    counts = torch.zeros((channels, 256), dtype=torch.float64)
    for images, _ in _chunks(data):
        for channel in range(channels):
            counts[channel] += torch.bincount(images[:, channel].reshape(-1).to(torch.int64), minlength=256)
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(channels):
        total = counts[channel].sum()
        mean = (counts[channel] * levels).sum() / total
        variance = (counts[channel] * (levels - mean) ** 2).sum() / total
        means.append(round(float(mean), 6))
        stds.append(round(float(variance.sqrt()), 6))
    return means, stds


def class_counts(data, kind: str, classes: list[str]) -> dict[str, int]:
    """Images per class (classification) or mask pixels per class (segmentation) of an ``ImageSet``."""
    counts = torch.zeros(len(classes), dtype=torch.int64)
    for _, targets in _chunks(data):
        found = torch.bincount(targets.flatten().to(torch.int64), minlength=len(classes))
        counts += found[:len(classes)]
    return {name: int(counts[index]) for index, name in enumerate(classes)}


def array_hash(*sets) -> str:
    """A short content hash of ``ImageSet``\\ s (each one's images, then its targets: shape, dtype
    and bytes, read a chunk at a time), the same on every machine."""
    digest = hashlib.blake2b(digest_size=12)
    for data in sets:
        rows = data.stored_rows()
        for stored in (data.stored_images, data.stored_targets):
            digest.update(str(((len(data), *stored.shape[1:]), stored.dtype.str)).encode())
            for start in range(0, len(rows), STATS_ROWS):
                digest.update(memoryview(np.ascontiguousarray(stored[rows[start:start + STATS_ROWS]])).cast("B"))
    return digest.hexdigest()


def size_summary(sizes) -> dict[str, list[int]]:
    """Smallest, median and largest [height, width] of image sizes (an ``(N, 2)`` array or list of pairs)."""
    sizes = np.asarray(sizes).reshape(-1, 2)
    if not len(sizes):
        return {}
    return {"min": [int(v) for v in sizes.min(axis=0)], "median": [int(v) for v in np.median(sizes, axis=0)],
            "max": [int(v) for v in sizes.max(axis=0)]}


def build_card(*, name: str, kind: str, classes: list[str], train, val, test, seed: int, how: str, source: str,
               augmentations: list[str] | None = None, original_sizes=None,
               skipped: dict[str, int] | None = None, choices: list[str] | None = None,
               description: str = "", keep_channels: list[int] | None = None, decoded_channels: int | None = None,
               channel_files: bool = False, normalise: str | None = None,
               where: str = "dataset.yaml") -> DatasetCard:
    """The card of a data set split into ``train``, ``val`` and ``test`` (``ImageSet``\\ s), its
    normalisation fitted on ``train`` (``normalise``: the method asked, None: its pixel type's)."""
    pixel_type = train.stored_images.dtype.name
    normalisation, mean, std = normalising.fit(train, normalise, where)
    if pixel_type == "uint8":  # the card's figures of 8-bit images, on [0, 1] as they always were
        mean, std = channel_statistics(train)
    splits = {"train": train, "val": val, "test": test}
    channels, height, width = train.image_shape
    return DatasetCard(
        name=name, kind=kind, classes=list(classes), channels=channels, image_size=[height, width], mean=mean, std=std,
        split={"sizes": {key: len(part) for key, part in splits.items()}, "seed": seed, "how": how},
        augmentations=list(augmentations if augmentations is not None else get_kind(kind).augmentations),
        source=source, description=description, keep_channels=list(keep_channels) if keep_channels else None,
        decoded_channels=decoded_channels, channel_files=channel_files, pixel_type=pixel_type,
        normalisation=normalisation,
        counts={key: class_counts(part, kind, classes) for key, part in splits.items()},
        original_sizes=size_summary(original_sizes if original_sizes is not None else [(height, width)]),
        skipped=dict(skipped or {}), choices=list(choices or []),
        fingerprint=array_hash(*splits.values()))


def summary_lines(card: DatasetCard) -> list[str]:
    """The card as the lines ``visiontune data check`` prints: the fingerprint and every choice."""
    shown = ", ".join(card.classes[:12]) + (f", ... ({card.num_classes - 12} more)" if card.num_classes > 12 else "")
    height, width = card.image_size
    lines = [f"{card.name}: {card.kind}, {card.num_classes} classes ({shown}), {card.channels} "
             f"channel{'s' if card.channels > 1 else ''}, {height}x{width}",
             f"  source: {card.source}",
             "  split: " + ", ".join(f"{k} {v}" for k, v in card.split["sizes"].items()) + f" ({card.split['how']})"]
    if card.kind == "classification":
        for split, counts in card.counts.items():
            lines.append(f"  images per class, {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
        total = sum(card.counts.get("train", {}).values()) or 1
        lines.append("  mask pixels per class, train: "
                     + ", ".join(f"{k} {v / total:.1%}" for k, v in card.counts.get("train", {}).items()))
    if card.original_sizes:
        sizes = card.original_sizes
        lines.append("  sizes: " + ", ".join(f"{key} {sizes[key][0]}x{sizes[key][1]}" for key in ("min", "median", "max"))
                     + " (as read)")
    units, shown = ("on [0, 1]", ".3f") if card.pixel_type == "uint8" else (f"as stored ({card.pixel_type})", ".4g")
    lines.append("  mean " + ", ".join(f"{v:{shown}}" for v in card.mean) + "; std "
                 + ", ".join(f"{v:{shown}}" for v in card.std)
                 + f" (per channel, of the training images {units})")
    lines.append(f"  normalisation: {normalising.describe(card.normalisation)} (in training, predict and export)")
    if card.skipped:
        lines.append("  skipped: " + ", ".join(f"{n} {why}" for why, n in card.skipped.items()))
    lines.append("  augmentations permitted: " + (", ".join(card.augmentations) or "none"))
    lines.append(f"  fingerprint: {card.fingerprint}")
    if card.choices:
        lines.append("  choices:")
        lines.extend(f"    - {choice}" for choice in card.choices)
    return lines
