"""Loading a user's data set: list (``folders``), decide, check, decode (or read the cache), split.

The decisions are made before any pixel is decoded, from the files' headers: one channel count
(grey where every image is grey, else RGB, unless ``dataset.yaml`` says), one size (kept where
all images share it; else ``--image-size`` or the median height and width, at most 256 a side),
and whether the cache's disk holds the decoded arrays. Decoding writes straight into the
cache's memory-mapped files. Each decision is recorded in words on the card.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from visiontune import image_files
from visiontune.data import cache
from visiontune.data.card import build_card
from visiontune.data.decode import Decoder
from visiontune.data.folders import Layout, find_layout
from visiontune.data.normalisation import check_method
from visiontune.data.spec import SPEC_FILE, parse_image_size
from visiontune.data.splits import TEST_FRACTION, VAL_FRACTION, DataSplits, ImageSet, carve, limit
from visiontune.errors import DataError

MAX_SIDE = 256  # the default size is the median, capped here: larger images cost memory, not accuracy here
def _choose_size(headers: np.ndarray, requested: list[int] | None, choices: list[str]) -> tuple[int, int]:
    sizes = {(int(h), int(w)) for h, w in np.unique(headers[:, :2], axis=0)}
    if requested:
        choices.append(f"every image resized to {requested[0]}x{requested[1]} (as asked; masks by nearest neighbour)")
        return requested[0], requested[1]
    if len(sizes) == 1:
        height, width = sizes.pop()
        choices.append(f"all images are {height}x{width}: kept")
        return height, width
    height = min(MAX_SIDE, int(np.median(headers[:, 0])))
    width = min(MAX_SIDE, int(np.median(headers[:, 1])))
    choices.append(f"sizes differ ({len(sizes)} sizes): every image resized to {height}x{width}, the median height "
                   f"and width{f' capped at {MAX_SIDE}' if max(np.median(headers[:, :2], axis=0)) > MAX_SIDE else ''} "
                   "(masks by nearest neighbour; --image-size to choose)")
    return height, width


def _choose_channels(headers: np.ndarray, requested: int | None, choices: list[str], layout: Layout) -> int:
    """One channel count for every image: as ``dataset.yaml`` asks, or the images' own; grey and
    RGB images together are read as RGB; other differences are a one-line error naming two
    files that differ."""
    counts = headers[:, 2]
    names = [item.image for item in layout.items]

    def named(count: int) -> str:
        return image_files.describe_ref(layout.source, names[int(np.flatnonzero(counts == count)[0])])

    if requested in (1, 3):
        others = sorted(set(counts.tolist()) - {1, 3})
        if others:
            raise DataError(f"{named(others[0])}: {others[0]} channels; channels: {requested} in {SPEC_FILE} converts "
                            "grey and RGB images only (a list such as [0, 1, 2] keeps channels)")
        choices.append(f"every image converted to {'grey (1 channel)' if requested == 1 else 'RGB (3 channels)'} "
                       f"(as {SPEC_FILE} asks)")
        return requested
    present = sorted(set(counts.tolist()))
    if requested and present != [requested]:
        other = next(count for count in present if count != requested)
        raise DataError(f"{named(other)}: {other} channel{'s' if other > 1 else ''}, but channels: {requested} in "
                        f"{SPEC_FILE} says every image has {requested}")
    if present == [1]:
        choices.append("all images are grey: 1 channel")
        return 1
    if present == [1, 3]:
        grey = int((counts == 1).sum())
        choices.append(f"{grey} grey and {len(headers) - grey} colour images: all read as RGB (3 channels, grey "
                       f"replicated; channels: 1 in {SPEC_FILE} reads them as grey)")
        return 3
    if present == [3]:
        choices.append("colour images: 3 channels (RGB; an alpha channel is dropped)")
        return 3
    if len(present) > 1:
        raise DataError(f"{named(present[0])}: {present[0]} channel{'s' if present[0] > 1 else ''}, but "
                        f"{named(present[1])} has {present[1]}; the images of a data set must have one channel count")
    choices.append(f"{present[0]} channels in every image (pages or samples of each file"
                   f"{', or one file per channel' if not isinstance(names[0], str) else ''})")
    return present[0]


def _spec_file(layout: Layout) -> str:
    """The data set's ``dataset.yaml`` as messages name it."""
    return layout.source.describe(f"{layout.root}/{SPEC_FILE}" if layout.root else SPEC_FILE)


def _choose_pixel_type(headers: np.ndarray, choices: list[str]) -> str:
    """The smallest type that holds every image (``image_files.PIXEL_TYPES``)."""
    kinds = sorted(set(headers[:, 3].tolist()))
    pixel_type = image_files.PIXEL_TYPES[kinds[-1]]
    words = {"uint8": "8-bit", "uint16": "16-bit", "float32": "floating-point"}
    if len(kinds) > 1:
        choices.append(f"{' and '.join(words[image_files.PIXEL_TYPES[k]] for k in kinds)} images: all stored as "
                       f"{pixel_type}, values as they are")
    elif pixel_type != "uint8":
        choices.append(f"{words[pixel_type]} images: stored as {pixel_type}, every bit kept")
    return pixel_type


def _check_keep(keep: list[int] | None, channels: int, where: str) -> None:
    if keep and max(keep) >= channels:
        raise DataError(f"{where}: channels: {keep} in {SPEC_FILE} names channel {max(keep)}, but the images have "
                        f"{channels} (0 to {channels - 1})")


def _check_disk(count: int, channels: int, size: tuple[int, int], masks: bool, where: str,
                pixel_type: str = "uint8") -> None:
    """Refuse, before decoding, a data set whose decoded arrays the cache's disk cannot hold."""
    from visiontune.data.placement import check_disk

    check_disk(count * size[0] * size[1] * (channels * np.dtype(pixel_type).itemsize + (1 if masks else 0)), where)


ORIGINAL_SIZES = "original_sizes"  # the cached array of every image's [height, width] as read

SAMPLE = 256  # images whose headers are read first, to choose between one pass and two


def _sample(count: int) -> list[int]:
    """Evenly spread indices of up to ``SAMPLE`` files (every class folder is represented)."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(count, SAMPLE))})


def _read(layout: Layout, requested: list[int] | None, choices: list[str], writer: cache.EntryWriter
          ) -> tuple[np.ndarray, int]:
    """Decide size, channels and pixel type from the headers, check the disk, decode into
    ``writer``'s memory-mapped arrays chunk by chunk; returns the headers and the channels
    decoded (before ``channels:`` keeps some).

    Images become (N, C, H, W) of the pixel type; targets class indices (N,) or masks (N, H, W).
    """
    items = layout.items
    names = [item.image for item in items]
    segmentation, where = layout.kind == "segmentation", layout.source.describe(layout.root)
    keep = layout.spec.keep_channels

    def images_array(channels: int, size: tuple[int, int], pixel_type: str = "uint8") -> np.ndarray:
        _check_keep(keep, channels, where)
        _check_disk(len(items), len(keep) if keep else channels, size, segmentation, where, pixel_type)
        return writer.array(cache.IMAGES, (len(items), len(keep) if keep else channels, *size), pixel_type)

    with Decoder(layout.source, len(items)) as decoder:
        headers = None
        sample = image_files.headers_chunk(layout.source, [names[i] for i in _sample(len(names))])
        eight_bit = (bool((sample[:, 3] == 0).all()) and set(sample[:, 2].tolist()) <= {1, 3}
                     and layout.spec.channels in (None, 1, 3) and all(isinstance(name, str) for name in names))
        if requested is None and eight_bit and len({(int(h), int(w)) for h, w, _, _ in sample}) == 1:
            # The common case, 8-bit files of one size: every file is read once (two passes otherwise).
            size = (int(sample[0, 0]), int(sample[0, 1]))
            grey = layout.spec.channels is None and bool((sample[:, 2] == 1).all())
            channels = layout.spec.channels or (1 if grey else 3)
            headers = decoder.run_uniform(names, channels, size, grey, images_array(channels, size), keep)
        if headers is not None:
            _choose_size(headers, requested, choices)  # for the choices it records: one size, kept
            channels = _choose_channels(headers, layout.spec.channels, choices, layout)
        else:
            headers = decoder.run(image_files.headers_chunk, [names], (), np.zeros((len(items), 4), dtype=np.int64),
                                  "reading image headers")
            size = _choose_size(headers, requested, choices)
            channels = _choose_channels(headers, layout.spec.channels, choices, layout)
            pixel_type = _choose_pixel_type(headers, choices)
            check_method(layout.spec.normalise, pixel_type, _spec_file(layout))  # before any pixel is decoded
            decoder.run(image_files.images_chunk, [names], (channels, size, pixel_type),
                        images_array(channels, size, pixel_type), "decoding images", keep)
        if keep:
            choices.append(f"channel{'s' if len(keep) > 1 else ''} {', '.join(map(str, keep))} of {channels} kept, in "
                           f"that order ({len(keep)} channel{'s' if len(keep) > 1 else ''}; channels: in {SPEC_FILE})")
        if layout.kind == "classification":
            writer.put(cache.TARGETS, np.array([item.target for item in items], dtype=np.int64))
            return headers, channels
        shapes = [(int(h), int(w)) for h, w, _, _ in headers]
        decoder.run(image_files.masks_chunk, [[item.target for item in items], names, shapes],
                    (len(layout.classes) or None, size, layout.ignore),
                    writer.array(cache.TARGETS, (len(items), *size), np.uint8), "decoding masks")
        return headers, channels


def _masks_max(masks: np.ndarray, chunk: int = 1024) -> int:
    """The largest class value of (memory-mapped) masks, read a chunk at a time (the ignore label
    is not a class)."""
    def largest(part: np.ndarray) -> int:
        return int(part[part != image_files.IGNORE_LABEL].max(initial=0))

    return max((largest(masks[start:start + chunk]) for start in range(0, len(masks), chunk)), default=0)


def _segmentation_classes(layout: Layout, masks: np.ndarray, choices: list[str]) -> list[str]:
    if layout.classes:
        return list(layout.classes)
    count = max(2, _masks_max(masks) + 1)
    choices.append(f"masks hold values 0..{count - 1}: {count} classes (name them with classes: in {SPEC_FILE})")
    return ["background"] + [f"class {index}" for index in range(1, count)]


def _split(layout: Layout, full: ImageSet, kind: str, val_size: int | None, seed: int, choices: list[str]
           ) -> tuple[ImageSet, ImageSet, ImageSet, str]:
    """Train, validation and test: as the layout gives them, the rest carved (stratified, seeded)."""
    spec = layout.spec
    split_of = np.array([item.split for item in layout.items])
    labels = torch.from_numpy(np.array(full.stored_targets)) if kind == "classification" else None
    given = set(layout.given_splits)
    if "val" in given and val_size is not None:
        raise DataError(f"{layout.source.describe(layout.root)}: has a val/ split; --val-size applies only where "
                        "validation is carved")
    how = []
    if "test" in given:
        test = full.subset(torch.from_numpy(np.flatnonzero(split_of == "test")))
        pool_index = np.flatnonzero(split_of != "test")
        how.append("test as given (test/)")
    else:
        fraction = spec.test_fraction or TEST_FRACTION
        count = max(1, round(fraction * len(full)))
        rest, carved = carve(count, len(full), seed + 1, labels)
        test, pool_index = full.subset(carved), rest.numpy()
        how.append(f"test carved: {fraction:.0%} of the images{', stratified by class' if labels is not None else ''}")
    pool = full.subset(torch.from_numpy(pool_index))
    pool_split = split_of[pool_index]
    if "val" in given:
        val = pool.subset(torch.from_numpy(np.flatnonzero(pool_split == "val")))
        train = pool.subset(torch.from_numpy(np.flatnonzero(pool_split != "val")))
        how.append("validation as given (val/)")
    else:
        fraction = spec.val_fraction or VAL_FRACTION
        count = val_size if val_size is not None else max(1, round(fraction * len(pool)))
        if not 0 < count < len(pool):
            raise DataError(f"--val-size must be between 1 and {len(pool) - 1} for this data set, not {count}")
        rest, carved = carve(count, len(pool), seed, pool.targets if labels is not None else None)
        train, val = pool.subset(rest), pool.subset(carved)
        what = f"{count} images" if val_size is not None else f"{fraction:.0%} of the training images"
        how.append(f"validation carved: {what}{', stratified by class' if labels is not None else ''}")
    how.append(f"seed {seed}")
    if len(train) == 0:
        raise DataError(f"{layout.source.describe(layout.root)}: no training images left after the split")
    return train, val, test, "; ".join(how)


def load_folder(path: str | os.PathLike, *, image_size: str | None = None, val_size: int | None = None,
                split_seed: int = 0, train_limit: int | None = None) -> DataSplits:
    """A user's data set (folder, ``.zip`` or ``dataset.yaml``) as split arrays (8-bit, 16-bit or
    float images), memory-mapped from the decoded cache, with its card."""
    layout = find_layout(Path(path).expanduser().resolve())  # recorded as an absolute path
    where = layout.source.describe(layout.root)
    requested = parse_image_size(image_size, "--image-size") if image_size else layout.spec.image_size
    files = [file for item in layout.items for file in image_files.ref_files(item.image)] + \
        [item.target for item in layout.items if isinstance(item.target, str)]
    # Keyed by the files and the requests, not by what they resolve to: a hit needs no header read.
    # "decoding" 2: images kept in their bit depth and channels (entries before it hold 8 bits).
    key = cache.cache_key(layout.source, files, {"kind": layout.kind, "size": requested, "channels": layout.spec.channels,
                                                 "keep": layout.spec.keep_channels, "decoding": 2,
                                                 "ignore": layout.ignore, "channel_files": layout.channel_files,
                                                 "classes": layout.classes, "splits": [i.split for i in layout.items]})
    entry = cache.load_entry(key)
    if entry is None:
        choices: list[str] = [f"layout: {layout.description} ({layout.kind})"]
        with cache.EntryWriter(key) as writer:
            headers, decoded = _read(layout, requested, choices, writer)
            writer.put(ORIGINAL_SIZES, np.ascontiguousarray(headers[:, :2], dtype=np.int32))
            writer.commit({"choices": choices, "decoded_channels": decoded})
        arrays, _, folder = cache.load_entry(key)
        choices.append("decoded and cached")
    else:
        arrays, meta, folder = entry
        decoded = int(meta["decoded_channels"])
        choices = list(meta["choices"])
        choices.append("read from the cache (files unchanged since they were decoded)")
    classes = (layout.classes if layout.kind == "classification"
               else _segmentation_classes(layout, arrays[cache.TARGETS], choices))
    full = ImageSet(arrays[cache.IMAGES], arrays[cache.TARGETS], folder=str(folder))
    train, val, test, how = _split(layout, full, layout.kind, val_size, split_seed, choices)
    train = limit(train, train_limit, split_seed)
    choices.extend(layout.notes)
    augmentations = layout.spec.augmentations  # None: all its kind permits
    card = build_card(name=layout.name, kind=layout.kind, classes=classes, train=train, val=val, test=test,
                      seed=split_seed, how=how, source=where, augmentations=augmentations,
                      original_sizes=arrays[ORIGINAL_SIZES], skipped=dict(layout.skipped),
                      choices=choices, description=f"{layout.kind} images: {layout.description}",
                      keep_channels=layout.spec.keep_channels, decoded_channels=decoded,
                      channel_files=layout.channel_files, normalise=layout.spec.normalise,
                      where=_spec_file(layout))
    return DataSplits(task=str(path), train=train, val=val, test=test, split_seed=split_seed, source=where, card=card)
